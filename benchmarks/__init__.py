"""Benchmarks of sms-flow against what a user would use instead, on the same machine, in one run.

Run them all with ``make bench`` or ``python -m benchmarks`` (``--quick`` for a smoke run,
``--only B1,B3`` for some of them). Each benchmark module states in its docstring what it
measures and against which baseline; :mod:`benchmarks.__main__` prints the table and writes
``benchmarks/results.json``. These are programs that print figures, not timed tests: nothing
here runs in ``make test``.

=====  ====================================  ==========================================
id     module                                what
=====  ====================================  ==========================================
B1     :mod:`benchmarks.b1_check`            ``Planner.check`` throughput
B2     :mod:`benchmarks.b2_tracking`         tracking 100,000 sources in the engine
B3     :mod:`benchmarks.b3_push`             10,000 signed, journalled pushes
B4     :mod:`benchmarks.b4_wave`             a 2,000-source wave to FINISHED/cutovered
B5     :mod:`benchmarks.b5_recovery`         settling 10,000 open intents
B6     :mod:`benchmarks.b6_startup`          ``sms-flow check`` start-up
B7     :mod:`benchmarks.b7_pg_journal`       B3's pushes, PostgreSQL journal against SQLite
B8     :mod:`benchmarks.b8_workers`          3 workers on a wave, one killed
B9     :mod:`benchmarks.b9_gateway`          ``sms-flow serve``: check, and the gateway
B10    :mod:`benchmarks.b10_history`         ``history --wave`` of 100,000 entries
B11    :mod:`benchmarks.b11_dashboard`       the dashboard with 100,000 sources
=====  ====================================  ==========================================
"""
