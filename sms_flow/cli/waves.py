"""``sms-flow run`` and ``sms-flow drill``: many sources driven to a target, shown as they go.

``--dry-run`` runs nothing: :mod:`sms_flow.wave.dryrun` reads the sources and plans them.

A wave or drill runs in a :class:`~sms_flow.wave.WaveSession` (or
:class:`~sms_flow.wave.DrillSession`) that opens the simulator, client, journal and engine
together; the live display and the summary are :mod:`sms_flow.cli.progress`'s.

Before anything is opened, the journal's and the report's paths are checked
(:mod:`sms_flow.cli._paths`): a run never pushes and then finds that it cannot write them.
(A journal that is a PostgreSQL database is no file: opening it says what is wrong.)
The first Ctrl-C (or SIGTERM) stops the run: no new step starts, the steps in flight finish
and are journalled, and a request waiting for a rate-limit slot is not sent (its step ends
there, and with it the run: the other steps in flight are cancelled as on a second signal);
the summary follows, and the exit status is 130. The second aborts: the steps in flight are
cancelled (their journal intents stay open, and the next run settles them by reading the
sources back), a partial report is written, one line says so, and the exit status is 130.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

from sms_flow.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_OWNED, EXIT_REJECTED
from sms_flow.cli._output import console, err, error_document, print_json
from sms_flow.cli.progress import WaveDisplay, print_drill_summary, print_wave_summary
from sms_flow.errors import InputError, WaitInterrupted
from sms_flow.wave.report import SourceOutcome, WaveReport

__all__ = ["drill", "run"]

_LEFTOVER_GRACE: Final = 5.0
"""Seconds an aborted run's cancelled tasks get to end before the session closes anyway."""


def run(args: argparse.Namespace) -> int:
    """Drive a wave file's sources to its target (``sms-flow run``)."""
    return asyncio.run(_run_wave(args))


def drill(args: argparse.Namespace) -> int:
    """Run a migration drill on syncing sources (``sms-flow drill``)."""
    return asyncio.run(_run_drill(args))


async def _run_wave(args: argparse.Namespace) -> int:
    from sms_flow.wave import WaveSession, folder_of, load_wave

    spec = load_wave(
        args.wave, concurrency=args.concurrency, rate_limit=args.rate_limit, report=args.report
    )
    if args.dry_run:
        return await _dry_run(args, spec, folder_of(args.wave))
    return await _drive_metered(
        args,
        lambda options: WaveSession(
            spec,
            endpoint=args.endpoint,
            region=args.region,
            journal_path=args.journal,
            base_dir=folder_of(args.wave),
            fresh=args.fresh,
            lease=args.lease,
            reset_members=args.reset_members,
            client_options=options,
            join=args.join,
        ),
        what="wave",
    )


async def _drive_metered(
    args: argparse.Namespace, make: Callable[[dict[str, Any]], Any], *, what: str
) -> int:
    """Drive the session ``make(client_options)`` returns, serving its metrics on
    ``--metrics-port`` while it runs (the client's requests traced through its session)."""
    port = args.metrics_port
    if port is not None and not 0 <= port <= 65535:
        raise InputError(
            f"--metrics-port {port}: give a TCP port from 1 to 65535 (0: any free one)"
        )
    async with contextlib.AsyncExitStack() as stack:
        metrics = None
        options: dict[str, Any] = {}
        if port is not None:
            from sms_flow.metrics import Metrics, traced_session

            metrics = Metrics()
            http = traced_session(metrics)
            stack.push_async_callback(http.close)
            options["session"] = http
        session = make(options)
        if metrics is not None:
            assert port is not None
            await stack.enter_async_context(_serve_metrics(metrics, session, port))
        return await _drive_session(args, session, what=what, metrics=metrics)


@contextlib.asynccontextmanager
async def _serve_metrics(metrics: Any, session: Any, port: int) -> AsyncIterator[None]:
    """``/metrics`` on loopback for the run's length (``--metrics-port``)."""
    from sms_flow.metrics import metrics_server

    try:
        server = metrics_server(metrics, lambda: session.journal, port)
        url = await server.__aenter__()
    except OSError as exc:
        raise InputError(
            f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} "
            f"({(exc.strerror or str(exc)).lower()}); give a free port, or 0 for any"
        ) from None
    err(f"metrics: {url}")
    try:
        yield
    finally:
        await server.__aexit__(None, None, None)


async def _run_drill(args: argparse.Namespace) -> int:
    from sms_flow.wave import DrillSession, DrillSpec, drill_definition, folder_of, load_drill

    overrides: dict[str, Any] = {
        "concurrency": args.concurrency,
        "rate_limit": args.rate_limit,
        "report": args.report,
    }
    if args.check:
        overrides["check"] = {"command": args.check, "timeout": args.check_timeout or 60.0}
    if args.drill:
        spec = load_drill(args.drill, **overrides)
        if args.check_timeout and spec.check is not None and not args.check:
            spec = spec.model_copy(
                update={"check": spec.check.model_copy(update={"timeout": args.check_timeout})}
            )
        base_dir = folder_of(args.drill)
    else:
        if not args.ids or not args.check:
            raise InputError(
                "without a drill file give --ids ID[,ID...] and --check COMMAND (and --endpoint)"
            )
        raw = {
            "name": args.name or "drill",
            "sources": {"ids": [i for i in args.ids.split(",") if i]},
            **overrides,
        }
        if args.endpoint is None and args.region is None:
            raw["endpoint"] = "simulator"
        try:
            spec = DrillSpec.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValueError as exc:
            raise InputError(f"drill options: {exc}") from None
        if not args.name:  # its own name: the same drill (check and sources) resumes, no other
            spec = spec.model_copy(update={"name": f"drill-{drill_definition(spec)}"})
        base_dir = None
    if args.dry_run:
        return await _dry_run(args, spec, base_dir)
    return await _drive_metered(
        args,
        lambda options: DrillSession(
            spec,
            endpoint=args.endpoint,
            region=args.region,
            journal_path=args.journal,
            base_dir=base_dir,
            lease=args.lease,
            reset_members=args.reset_members,
            client_options=options,
        ),
        what="drill",
    )


_DRY_RUN_LISTED: Final = 50
"""Up to this many sources, a dry run lists each one; beyond, only the plans' shapes."""


async def _dry_run(args: argparse.Namespace, spec: Any, base_dir: Path | None) -> int:
    """``--dry-run``: every source's plan from where it is; nothing sent, journalled or
    claimed. Exit 0 when a run would find a way for every source, 1 when not."""
    from sms_flow.cli._output import out
    from sms_flow.wave.dryrun import dry_run

    if getattr(args, "fresh", False):
        raise InputError("--fresh starts the embedded simulator over; a dry run changes nothing")
    found = await dry_run(
        spec,
        endpoint=args.endpoint,
        region=args.region,
        journal_path=args.journal,
        base_dir=base_dir,
    )
    code = EXIT_OK if found.plannable else EXIT_REJECTED
    if args.json:
        print_json(
            {
                "status": "planned" if found.plannable else "no_plan",
                "exit_code": code,
                **found.to_dict(),
            }
        )
        return code
    totals = found.to_dict()["totals"]
    out(
        f"dry run of {found.kind} {found.wave} → {found.target} on {found.endpoint}: "
        "nothing was sent, journalled or claimed"
    )
    if len(found.sources) <= _DRY_RUN_LISTED:
        width = max((len(p.source_id) for p in found.sources), default=0)
        for p in found.sources:
            out(f"  {p.source_id.ljust(width)}  {p.shape}")
    out(f"plans ({totals['sources']} sources):")
    for shape, n in found.shapes():
        out(f"  {n:>6}  {shape}")
    out(
        f"a run would push {totals['pushes']} changes, wait for {totals['waits']} moves the "
        f"service makes, and take {totals['irreversible']} irreversible steps (⚠)"
    )
    calls: dict[str, tuple[str, int]] = {}
    for p in found.sources:
        for e in p.actions:
            what, n = calls.get(e.trigger, (e.call or "another API call", 0))
            calls[e.trigger] = (what, n + 1)
    for trigger, (what, n) in calls.items():
        then = (
            "a run waits for it (wait_for_actions)"
            if found.wait_for_actions
            else "a run stops the source there; make the call, then run again"
        )
        out(
            f"{trigger} on {n} source{'s' if n != 1 else ''} is made by another API call: {what}; {then}"
        )
    if totals["to_register"]:
        out(f"{totals['to_register']} sources would be registered first (sources.count)")
    if not found.plannable:
        out(f"{totals['cannot']} source(s) cannot be taken to {found.target} (see above)")
    return code


class _Signals:
    """What Ctrl-C and SIGTERM do to a run: the first stops it, the second aborts it.

    While the session opens (no runner yet), the first signal aborts at once: nothing is in
    flight. Once the runner runs, the first one stops it (no new step starts; the steps in
    flight finish and are journalled) and interrupts every wait for a rate-limit slot (such
    a request is not sent: :class:`~sms_flow.errors.WaitInterrupted`); the second cancels
    the run. Once the run is over, signals are ignored: what is left is writing the report
    and closing, which takes moments.
    """

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.count = 0
        self.runner: Any = None
        self.over = False

    def __call__(self) -> None:
        if self.over:
            return
        self.count += 1
        if self.count == 1 and self.runner is not None:
            from sms_flow.wave.ratelimit import interrupt_waits

            self.runner.stop()
            interrupt_waits(self.runner.client)
        elif self.count <= 2:
            self.task.cancel()

    @property
    def aborted(self) -> bool:
        return self.count >= 2


async def _drive_session(
    args: argparse.Namespace, session: Any, *, what: str, metrics: Any = None
) -> int:
    from sms_flow.cli._paths import check_writable_file

    if isinstance(session.journal_location, Path):  # a database is no file to check
        check_writable_file(
            session.journal_location,
            "journal",
            folder=True,
            hint="give --journal FILE (or set SMS_FLOW_JOURNAL)",
        )
    check_writable_file(
        session.report_path, "report", hint="give --report FILE (or report: in the file)"
    )
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    signals = _Signals(task)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signals)
    try:
        async with session:
            signals.runner = session.runner
            if metrics is not None:  # run --metrics-port: the run's client, journal and steps
                metrics.watch_client(session.client.stats)
                metrics.watch_journal(session.journal)
                session.runner.subscribe(metrics.on_event)
            report = await _drive(args, session, signals, what=what)
            signals.over = True
            path, problem = _write_report(session, report)
    except asyncio.CancelledError:
        if not signals.count:
            raise
        task.uncancel()
        message = f"stopped while the {what} was starting; nothing was pushed"
        if args.json:
            print_json(
                error_document(EXIT_INTERRUPTED, "interrupted", message, status="interrupted")
            )
        else:
            err(f"sms-flow: {message}")
        return EXIT_INTERRUPTED
    finally:
        signals.over = True
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    if args.json:
        print_json(report.to_dict())
    if problem is not None:
        err(f"sms-flow: the {what} report could not be written to {path}: {problem}")
        return EXIT_BAD_INPUT
    if signals.aborted:
        unfinished = sum(1 for r in report.sources.values() if r.outcome is SourceOutcome.STOPPED)
        err(
            f"sms-flow: aborted: {unfinished} sources not finished; steps cut short are settled "
            f"by the next run (the same command); partial report: {path}"
        )
        return EXIT_INTERRUPTED
    if not args.json:
        screen = console()
        if what == "drill":
            print_drill_summary(screen, report, report_path=str(path))
            _print_reused(screen, report)
        else:
            print_wave_summary(screen, report, report_path=str(path))
    code = report.exit_code  # the one the report written above says
    if report.lease_lost:
        err(f"sms-flow: {what} {session.spec.name} stopped: {report.lease_lost}")
    elif report.unreachable:
        err(f"sms-flow: {what} {session.spec.name} stopped: {report.unreachable}")
    elif code == EXIT_OWNED:
        err(
            f"sms-flow: {len(report.not_ours)} source(s) of {what} {session.spec.name} are held "
            "or were taken over by another driver; see the report"
        )
    return code


async def _drive(
    args: argparse.Namespace, session: Any, signals: _Signals, *, what: str
) -> WaveReport:
    """Run the session's runner with its display; the report (``cut_short`` when a signal cut
    the run short: its steps in flight cancelled rather than finished).

    The run is cut short by the second signal (a cancellation), or by the first one when a
    request was waiting for a rate-limit slot: :class:`~sms_flow.errors.WaitInterrupted`
    ends that step and, reaching the runner, the run; the runner then cancels the others.
    """
    from sms_flow.journals import describe
    from sms_flow.wave import state_counts

    spec = session.spec
    runner = session.runner
    screen = console()
    display = None
    ticker = None
    try:
        if not args.json and not args.no_progress:
            joined = bool(getattr(session, "join", False))

            def shown() -> list[str]:
                # A joined worker shows the sources it took, batch after batch; the whole
                # wave is `sms-flow status`'s.
                return list(runner.report.sources) if joined else runner.members

            display = WaveDisplay(
                screen,
                wave=spec.name,
                target=spec.target,
                counts=lambda: state_counts(runner.engine, shown()),
                total=lambda: len(shown()),
                order=[cs.value for cs in runner.engine.chart.states],
                label="this worker's" if joined else "sources done",
                eta=not joined,
            )
            runner.subscribe(display.on_event)
            display.__enter__()

            async def tick() -> None:
                while True:
                    display.refresh()
                    await asyncio.sleep(0.25)

            ticker = asyncio.create_task(tick())
        if not args.json:
            screen.print(
                f"{what} {spec.name} → {spec.target} on {runner.endpoint}; journal {describe(session.journal_location)}"
            )
        before = asyncio.all_tasks()
        try:
            finished: WaveReport = await runner.run()
            return finished
        except (asyncio.CancelledError, WaitInterrupted):
            if not signals.count:
                raise
            # The second signal cancelled the run, or the first one interrupted a wait for a
            # rate-limit slot: the runner has marked what did not finish as stopped.
            signals.over = True
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()
            await _end_leftovers(before)
            report: WaveReport = runner.report
            if not report.finished_at:  # cut short before the runner began its sources
                report.finished_at = time.time()
            report.interrupted = report.cut_short = True
            return report
    finally:
        if ticker is not None:
            ticker.cancel()
        if display is not None:
            display.__exit__(None, None, None)


async def _end_leftovers(before: set[asyncio.Task[Any]]) -> None:
    """Cancel the tasks the run started and left behind, and wait (a little) for them to end,
    so that none of them runs on into the session's closing (or is reported at exit)."""
    leftovers = asyncio.all_tasks() - before - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    if leftovers:
        await asyncio.wait(leftovers, timeout=_LEFTOVER_GRACE)
    for task in leftovers:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: an error in a step cut short is the next run's to see


def _print_reused(screen: Any, report: WaveReport) -> None:
    """Say which results of a drill were reused from an earlier run of the same drill."""
    reused = [r for r in report.sources.values() if r.detail.get("reused")]
    if not reused:
        return
    shown = ", ".join(
        f"{r.source_id} {r.detail.get('drill')} at {r.detail.get('checked_at')}" for r in reused[:5]
    )
    more = f" and {len(reused) - 5} more" if len(reused) > 5 else ""
    screen.print(
        f"reused {len(reused)} earlier result(s) of this drill (the same check and sources), "
        f"not drilled again: {shown}{more}; to drill them again, give the drill another name",
        markup=False,
        highlight=False,
    )


def _write_report(session: Any, report: WaveReport) -> tuple[Path, str | None]:
    """Write the JSON report; its path, and what went wrong when it could not be written."""
    try:
        return session.write_report(report), None
    except OSError as exc:
        return session.report_path, (exc.strerror or str(exc)).lower()
