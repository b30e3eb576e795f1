"""B6: start-up: the wall time of ``sms-flow check SYNCING/syncing CUTOVERING/cutovering``.

What is measured: the wall time of the whole command, as an operator runs it: the console
script ``sms-flow`` beside the running Python (``python -m sms_flow`` when there is none),
started with :func:`subprocess.run` and timed from start to exit with ``time.perf_counter``;
median of ``runs`` runs. Every run must exit 0 and print ``allowed: cutover``.

Baseline, same run: ``python -c pass`` with the same interpreter: the floor, what starting
Python costs before sms-flow does anything. The two are run interleaved (check, pass, check,
pass, ...) so that both meet the same load; one warm-up run of each comes first.

As a user's installation does, the runs keep Python's bytecode caches: the subprocesses write
and read them in a folder of their own (``PYTHONPYCACHEPREFIX``, with
``PYTHONDONTWRITEBYTECODE`` removed), filled by the warm-up, so that no run compiles sms-flow
or the standard library from source. The default chart's checked form is cached too (see
:func:`sms_flow.chart.default_chart`), in a folder of the benchmark's own, filled by the
warm-up, as on a machine where sms-flow has run once. In the details, not in the figure: the
first run with an empty chart cache (``cold_seconds``: it reads the YAML and imports pydantic;
a few runs, each with a new empty folder) and runs that compile sms-flow's modules from
source (``no_bytecode_seconds``: ``PYTHONDONTWRITEBYTECODE=1``, as in a checkout where
writing bytecode is turned off).

Target: under 0.15 s median (measured on an idle machine; on a slower or loaded one, compare
the margin over ``python -c pass``, which is in the details).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Baseline, Figure, ratio

TARGET_SECONDS = 0.15
ARGS = ("check", "SYNCING/syncing", "CUTOVERING/cutovering")


def _command() -> list[str]:
    script = Path(sys.executable).parent / "sms-flow"
    if script.is_file():
        return [str(script), *ARGS]
    return [sys.executable, "-m", "sms_flow", *ARGS]


def _timed(argv: list[str], env: dict[str, str], *, expect: str = "") -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or expect not in result.stdout:
        raise AssertionError(
            f"B6: {' '.join(argv)} exited {result.returncode}: {result.stdout}{result.stderr}"
        )
    return elapsed


def run(*, runs: int = 30, cold_runs: int = 3, **_unused: Any) -> list[Figure]:
    command = _command()
    floor = [sys.executable, "-c", "pass"]
    allowed = "allowed: cutover"
    with tempfile.TemporaryDirectory(prefix="sms-flow-b6-") as tmp:
        folder = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            PYTHONPYCACHEPREFIX=str(folder / "bytecode"),
            SMS_FLOW_CACHE_DIR=str(folder / "chart-cache"),
        )
        _timed(command, env, expect=allowed)  # warm-up: bytecode and the chart's cache
        _timed(floor, env)
        cold = [
            _timed(
                command, {**env, "SMS_FLOW_CACHE_DIR": str(folder / f"empty-{i}")}, expect=allowed
            )
            for i in range(cold_runs)
        ]
        source_env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
        source_env.pop("PYTHONPYCACHEPREFIX")
        no_bytecode = [_timed(command, source_env, expect=allowed) for _ in range(cold_runs)]
        checks: list[float] = []
        passes: list[float] = []
        for _ in range(runs):
            checks.append(_timed(command, env, expect=allowed))
            passes.append(_timed(floor, env))
    check_median = statistics.median(checks)
    pass_median = statistics.median(passes)
    return [
        Figure(
            id="B6",
            what="sms-flow check, start to exit",
            value=check_median,
            unit="s",
            better="lower",
            target=f"< {TARGET_SECONDS:g} s median",
            met=check_median < TARGET_SECONDS,
            baselines=[
                Baseline("python -c pass (floor)", pass_median, ratio(check_median, pass_median))
            ],
            note=(
                f"median of {runs} runs, interleaved with the floor; "
                f"{check_median - pass_median:.3f} s above it; "
                f"with an empty chart cache {statistics.median(cold):.3f} s, "
                f"compiling sms-flow from source {statistics.median(no_bytecode):.3f} s"
            ),
            details={
                "command": command,
                "runs": runs,
                "seconds": [round(s, 4) for s in checks],
                "floor_seconds": [round(s, 4) for s in passes],
                "above_floor_seconds": round(check_median - pass_median, 4),
                "cold_seconds": [round(s, 4) for s in cold],
                "no_bytecode_seconds": [round(s, 4) for s in no_bytecode],
            },
        )
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure)
