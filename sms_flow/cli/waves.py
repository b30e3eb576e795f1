"""``sms-flow run`` and ``sms-flow drill``: many sources driven to a target, shown as they go.

A wave or drill runs in a :class:`~sms_flow.wave.WaveSession` (or
:class:`~sms_flow.wave.DrillSession`) that opens the simulator, client, journal and engine
together; the live display and the summary are :mod:`sms_flow.cli.progress`'s. The first
Ctrl-C (or SIGTERM) stops starting new steps, the second cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from sms_flow.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_OWNED, EXIT_REJECTED
from sms_flow.cli._output import console, err, print_json
from sms_flow.cli.progress import WaveDisplay, print_drill_summary, print_wave_summary
from sms_flow.errors import InputError

__all__ = ["drill", "run"]


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
    session = WaveSession(
        spec,
        endpoint=args.endpoint,
        region=args.region,
        journal_path=args.journal,
        base_dir=folder_of(args.wave),
        fresh=args.fresh,
        lease=args.lease,
    )
    return await _drive_session(args, session, what="wave")


async def _run_drill(args: argparse.Namespace) -> int:
    from sms_flow.wave import DrillSession, DrillSpec, folder_of, load_drill

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
            "name": args.name,
            "sources": {"ids": [i for i in args.ids.split(",") if i]},
            **overrides,
        }
        if args.endpoint is None and args.region is None:
            raw["endpoint"] = "simulator"
        try:
            spec = DrillSpec.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValueError as exc:
            raise InputError(f"drill options: {exc}") from None
        base_dir = None
    session = DrillSession(
        spec,
        endpoint=args.endpoint,
        region=args.region,
        journal_path=args.journal,
        base_dir=base_dir,
        lease=args.lease,
    )
    return await _drive_session(args, session, what="drill")


async def _drive_session(args: argparse.Namespace, session: Any, *, what: str) -> int:
    from sms_flow.wave import state_counts

    spec = session.spec
    screen = console()
    async with session:
        runner = session.runner
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        interrupts = 0

        def on_sigint() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                runner.stop()
            elif task is not None:
                task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_sigint)
        display = None
        ticker = None
        try:
            if not args.json and not args.no_progress:
                display = WaveDisplay(
                    screen,
                    wave=spec.name,
                    target=spec.target,
                    counts=lambda: state_counts(runner.engine, runner.members),
                    total=lambda: len(runner.members),
                    order=[cs.value for cs in runner.engine.chart.states],
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
                    f"{what} {spec.name} → {spec.target} on {runner.endpoint}; journal {session.journal_path}"
                )
            report = await runner.run()
        finally:
            if ticker is not None:
                ticker.cancel()
            if display is not None:
                display.__exit__(None, None, None)
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
        path = session.write_report(report)
    if args.json:
        print_json(report.to_dict())
    elif what == "drill":
        print_drill_summary(screen, report, report_path=str(path))
    else:
        print_wave_summary(screen, report, report_path=str(path))
    if report.lease_lost:
        err(f"sms-flow: {what} {spec.name} stopped: {report.lease_lost}")
        return EXIT_OWNED
    if report.failed or report.unverified:
        return EXIT_REJECTED
    if what == "drill":
        from sms_flow.wave import drill_failures

        if drill_failures(report):
            return EXIT_REJECTED
    if report.not_ours:
        err(
            f"sms-flow: {len(report.not_ours)} source(s) of {what} {spec.name} are held or were "
            "taken over by another driver; see the report"
        )
        return EXIT_OWNED
    if report.interrupted and not report.ok:
        return EXIT_INTERRUPTED
    return EXIT_OK
