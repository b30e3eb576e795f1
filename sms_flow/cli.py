"""The ``sms-flow`` command line.

Exit codes, the same for every command:

* 0 - done (allowed, applied, planned, finished)
* 1 - rejected by the chart (or a wave/drill in which a source failed)
* 2 - bad input: an unknown value, a bad option, an unusable file or credentials
* 3 - the API or the network failed (status, error_code, error_msg, request_id printed)
* 4 - not applied: the service ignored the change (frozen) or the read-back disagrees
* 130 - a wave or drill stopped by Ctrl-C before the end (run it again to resume)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from sms_flow import __version__
from sms_flow.chart import Chart, default_chart, load_chart
from sms_flow.errors import (
    ApiError,
    ChartError,
    InputError,
    NotAppliedError,
    SmsFlowError,
    TransitionRejected,
    TransportError,
)
from sms_flow.log import configure as configure_logging
from sms_flow.planner import Plan, Planner, Verdict
from sms_flow.states import parse_pair, parse_request

__all__ = ["EXIT_API", "EXIT_BAD_INPUT", "EXIT_NOT_APPLIED", "EXIT_OK", "EXIT_REJECTED", "main"]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_API = 3
EXIT_NOT_APPLIED = 4

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one clear line (its own default) but never prints usage twice."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _out(text: str = "", *, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _print_json(data: Any) -> None:
    _out(json.dumps(data, indent=2, ensure_ascii=False))


def _chart_from(args: argparse.Namespace) -> Chart:
    path = getattr(args, "chart", None)
    return load_chart(path) if path else default_chart()


# -- check / plan -----------------------------------------------------------------------


def _print_steps(steps: Sequence[Any], indent: str = "  ") -> None:
    width = max((len(s.trigger) for s in steps), default=0)
    for i, step in enumerate(steps, 1):
        wait = "" if step.pushable else f"   (by {step.by.value}: sms-flow waits for the service)"
        _out(f"{indent}{i}. {step.trigger.ljust(width)}  {step.source} → {step.dest}{wait}")


def _print_verdict(verdict: Verdict) -> None:
    if verdict.allowed:
        if verdict.noop:
            _out(f"allowed: {verdict.current} is already {verdict.requested}; nothing to send")
        else:
            _out(f"allowed: {verdict.trigger}  {verdict.current} → {verdict.target}")
        return
    _out(f"rejected: {verdict.current} → {verdict.requested}")
    for reason in verdict.reasons:
        _out(f"  - {reason.message} [{reason.code.value}]")
    if verdict.path:
        n = len(verdict.path)
        _out(f"shortest legal path ({n} step{'s' if n != 1 else ''}):")
        _print_steps(verdict.path)
    else:
        _out("no legal path leads there")


def _cmd_check(args: argparse.Namespace) -> int:
    chart = _chart_from(args)
    current = parse_pair(args.current)
    requested = parse_request(args.requested)
    verdict = Planner(chart).check(current, requested)
    if args.json:
        _print_json(verdict.to_dict())
    else:
        _print_verdict(verdict)
    return EXIT_OK if verdict.allowed else EXIT_REJECTED


def _print_plan(plan: Plan) -> None:
    if not plan.found:
        _out(f"no plan: {plan.current} → {plan.requested}")
        for reason in plan.reasons:
            _out(f"  - {reason.message} [{reason.code.value}]")
        return
    if not plan.steps:
        _out(f"{plan.current} is already {plan.requested}; nothing to do")
        return
    n = len(plan.steps)
    _out(f"plan: {plan.current} → {plan.target} in {n} step{'s' if n != 1 else ''}")
    _print_steps(plan.steps)
    if plan.waits:
        _out(f"{len(plan.waits)} of them made by the service; a driver waits for those")


def _cmd_plan(args: argparse.Namespace) -> int:
    chart = _chart_from(args)
    plan = Planner(chart).plan(parse_pair(args.current), parse_request(args.requested))
    if args.json:
        _print_json(plan.to_dict())
    else:
        _print_plan(plan)
    return EXIT_OK if plan.found else EXIT_REJECTED


# -- diagram ------------------------------------------------------------------------------


def _cmd_diagram(args: argparse.Namespace) -> int:
    from sms_flow.diagram import to_dot, to_markdown, to_mermaid

    chart = _chart_from(args)
    fmt = args.format
    render = {"mermaid": to_mermaid, "dot": to_dot, "markdown": to_markdown}[fmt]
    text = render(chart)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _err(f"wrote {fmt} diagram of chart {chart.name!r} to {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


# -- get / set -----------------------------------------------------------------------------


def _client_from(args: argparse.Namespace) -> Any:
    from sms_flow.client import SmsClient
    from sms_flow.retry import RetryPolicy

    overrides: dict[str, Any] = {}
    if args.endpoint:
        overrides["endpoint"] = args.endpoint
    if args.region:
        overrides["region"] = args.region
    if getattr(args, "insecure", False):
        overrides["verify_tls"] = False
    overrides["retry"] = RetryPolicy(attempts=args.attempts, timeout=args.timeout)
    return SmsClient.from_env(**overrides)


def _print_api_error(exc: ApiError | TransportError) -> None:
    if isinstance(exc, ApiError):
        _err(f"sms-flow: API error: HTTP {exc.status}")
        _err(f"  error_code: {exc.error_code or '-'}")
        _err(f"  error_msg:  {exc.error_msg or exc.body or '-'}")
        _err(f"  request_id: {exc.request_id or '-'}")
        if exc.error_param:
            _err(f"  error_param: {', '.join(exc.error_param)}")
        hint = exc.hint()
        if hint:
            _err(f"  what to do: {hint}")
    else:
        _err(f"sms-flow: network error: {exc}")


async def _get(args: argparse.Namespace) -> int:
    async with _client_from(args) as client:
        src = await client.get_source(args.source_id)
    if args.json:
        _print_json(src.model_dump(mode="json"))
        return EXIT_OK
    pair = src.pair
    _out(f"source {src.id}" + (f" ({src.name})" if src.name else ""))
    _out(
        f"  state: {pair if pair is not None else src.describe_state() + '  (not a state sms-flow knows)'}"
    )
    chart = _chart_from(args)
    if pair is not None and chart.is_permitted(pair):
        flags = [
            f
            for f, on in (("frozen", chart.is_frozen(pair)), ("final", chart.is_final(pair)))
            if on
        ]
        if flags:
            _out(f"  flags: {', '.join(flags)}")
        moves = [
            f"{e.trigger} → {e.dest}" + ("" if e.pushable else f" [by {e.by.value}]")
            for e in chart.edges_from(pair)
        ]
        _out(f"  next:  {'; '.join(moves) if moves else 'none'}")
    return EXIT_OK


def _cmd_get(args: argparse.Namespace) -> int:
    return _run_async(_get(args))


async def _set(args: argparse.Namespace) -> int:
    from sms_flow.engine import Engine
    from sms_flow.journal import default_journal_path
    from sms_flow.journal_sqlite import SqliteJournal
    from sms_flow.planner import ReasonCode
    from sms_flow.states import StateRequest, parse_copystate, parse_cycle

    if args.copystate is None and args.migrationcycle is None:
        raise InputError(
            "give --copystate, --migrationcycle or both: a change naming neither changes nothing"
        )
    if args.force and not args.reason:
        raise InputError("--force needs --reason TEXT saying who asked and why; it is journalled")
    requested = StateRequest(
        parse_copystate(args.copystate) if args.copystate else None,
        parse_cycle(args.migrationcycle) if args.migrationcycle else None,
    )
    chart = _chart_from(args)
    journal = None if args.no_journal else SqliteJournal(args.journal or default_journal_path())
    async with _client_from(args) as client:
        if journal is not None:
            await journal.open()
        try:
            engine = Engine(
                client, chart=chart, journal=journal, verify=not args.no_verify, actor=args.actor
            )
            current = await engine.refresh(args.source_id)
            verdict = engine.planner.check(current, requested)
            if verdict.noop:
                _out(f"source {args.source_id} is already {current}; nothing sent")
                return EXIT_OK
            frozen = not verdict.allowed and ReasonCode.FROZEN in verdict.codes
            forceable = verdict.edge is not None and verdict.codes <= {
                ReasonCode.FROZEN,
                ReasonCode.NOT_BY_CLIENT,
            }
            if not verdict.allowed and not args.path and not (args.force and forceable):
                _print_verdict(verdict)
                if args.force:
                    _out(
                        "--force only lifts the refusal to push from a frozen state or a move the "
                        f"service makes; the chart permits no move from {current} to {requested}"
                    )
                    return EXIT_REJECTED
                if frozen:
                    hint = " Wait for the service" + (
                        ", or --force --reason TEXT to push anyway." if forceable else "."
                    )
                    _out(
                        f"not applied: {current.copystate.value} is frozen; the service would "
                        f"answer 200 and change nothing.{hint}"
                    )
                    return EXIT_NOT_APPLIED
                return EXIT_REJECTED
            results = await engine.change(
                args.source_id,
                requested,
                follow_path=args.path,
                actor=args.actor,
                reason=args.reason,
                force=args.force,
            )
        finally:
            if journal is not None:
                await journal.close()
    if args.json:
        _print_json([r.to_dict() for r in results])
        return EXIT_OK
    for r in results:
        if r.outcome.value == "applied":
            check = "" if args.no_verify else ", read back"
            tries = f"{r.attempts} attempt{'s' if r.attempts != 1 else ''}"
            _out(
                f"applied: {r.trigger}  {r.from_state} → {r.to_state}  (request_id {r.request_id or '-'}, {tries}{check})"
            )
        else:
            _out(
                f"{r.outcome.value}: {r.trigger or 'move'}  {r.from_state} → {r.to_state}  (made by the service)"
            )
    return EXIT_OK


def _cmd_set(args: argparse.Namespace) -> int:
    return _run_async(_set(args))


def _run_async(coro: Any) -> int:
    try:
        result: int = asyncio.run(coro)
    except TransitionRejected as exc:
        _print_verdict(exc.verdict)
        return EXIT_REJECTED
    except NotAppliedError as exc:
        _err(f"sms-flow: {exc}")
        return EXIT_NOT_APPLIED
    except (ApiError, TransportError) as exc:
        _print_api_error(exc)
        return EXIT_API
    return result


# -- run / history / simulator ------------------------------------------------------------


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
    )
    return await _drive_session(args, session, what="drill")


async def _drive_session(args: argparse.Namespace, session: Any, *, what: str) -> int:
    import signal

    from sms_flow._progress import WaveDisplay, print_drill_summary, print_wave_summary
    from sms_flow.wave import state_counts

    spec = session.spec
    console = _console()
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
                    console,
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
                console.print(
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
        _print_json(report.to_dict())
    elif what == "drill":
        print_drill_summary(console, report, report_path=str(path))
    else:
        print_wave_summary(console, report, report_path=str(path))
    if report.failed:
        return EXIT_REJECTED
    if what == "drill":
        from sms_flow.wave import drill_failures

        if drill_failures(report):
            return EXIT_REJECTED
    if report.interrupted and not report.ok:
        return 130
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    return _run_async(_run_wave(args))


def _cmd_drill(args: argparse.Namespace) -> int:
    return _run_async(_run_drill(args))


async def _history(args: argparse.Namespace) -> int:
    from sms_flow.journal import default_journal_path
    from sms_flow.journal_sqlite import SqliteJournal

    if not args.source_id and not args.wave:
        raise InputError("give a SOURCE_ID or --wave NAME")
    path = Path(args.journal) if args.journal else default_journal_path()
    if not path.exists():
        raise InputError(f"no journal at {path}; give --journal PATH (or set SMS_FLOW_JOURNAL)")
    async with SqliteJournal(path) as journal:
        entries = await journal.history(source_id=args.source_id, wave=args.wave, limit=args.limit)
    if args.json:
        _print_json([e.to_dict() for e in entries])
        return EXIT_OK
    if not entries:
        what = f"source {args.source_id}" if args.source_id else f"wave {args.wave}"
        _out(f"no journal entries for {what} in {path}")
        return EXIT_OK
    from datetime import UTC, datetime

    from rich.table import Table

    title = f"source {args.source_id}" if args.source_id else f"wave {args.wave}"
    table = Table(title=f"history of {title} ({len(entries)} entries, {path})", header_style="bold")
    for col in (
        "#",
        "time (UTC)",
        "source",
        "trigger",
        "from → to",
        "outcome",
        "actor",
        "request_id",
        "note",
    ):
        table.add_column(col, overflow="fold")
    for e in entries:
        when = datetime.fromtimestamp(e.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        note = e.error or e.reason or ""
        if e.forced:
            note = f"FORCED: {note}"
        if len(note) > 90:
            note = note[:89] + "… (--json shows all)"
        table.add_row(
            str(e.id),
            when,
            e.source_id if not args.source_id else e.source_id[:8],
            e.trigger or "-",
            f"{e.from_state} → {e.to_state}",
            e.outcome.value,
            e.actor,
            e.request_id or "-",
            note,
        )
    _console().print(table)
    return EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    return _run_async(_history(args))


def _console() -> Any:
    """A rich console; when the output is not a terminal, wide enough not to fold tables."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=160)


def _add_journal_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--journal",
        metavar="PATH",
        help="journal file (default: $SMS_FLOW_JOURNAL or ./.sms-flow/journal.sqlite)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options that `run` and `drill` share: output, logging, and where the service is."""
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument(
        "--log-level",
        default=None,
        choices=("debug", "info", "warning", "error"),
        help="log level (stderr)",
    )
    g = p.add_argument_group("service")
    g.add_argument(
        "--endpoint",
        metavar="URL",
        help="the service (or a simulator) instead of the file's endpoint",
    )
    g.add_argument("--region", metavar="R", help="a region instead of an endpoint")


def _add_endpoint_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("service")
    g.add_argument(
        "--endpoint",
        metavar="URL",
        help="SMS endpoint, e.g. https://sms.cn-north-4.myhuaweicloud.com or a simulator's URL "
        "(default: $SMS_FLOW_ENDPOINT)",
    )
    g.add_argument(
        "--region",
        metavar="R",
        help="region instead of an endpoint, e.g. cn-north-4 (default: $SMS_FLOW_REGION)",
    )
    g.add_argument(
        "--attempts",
        type=int,
        default=5,
        metavar="N",
        help="attempts per request, retries included (default 5)",
    )
    g.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per attempt (default 10)"
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates (only for a test endpoint)",
    )


_CREDENTIALS_HELP = """credentials come from the environment: SMS_FLOW_TOKEN (an IAM token), or
CLOUD_SDK_AK, CLOUD_SDK_SK and CLOUD_SDK_PROJECT_ID (AK/SK signing, as the SDK samples)."""


# -- the parser ---------------------------------------------------------------------------

_EPILOG = (
    """exit codes: 0 done/allowed, 1 rejected by the chart (or a source failed),
2 bad input, 3 API or network error, 4 not applied (frozen, or read-back disagrees),
130 a wave or drill stopped by Ctrl-C (run it again to resume)

"""
    + _CREDENTIALS_HELP
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sms-flow",
        description=(
            "Validate, plan, push and orchestrate Huawei Cloud SMS source-server state changes "
            "(PUT /v3/sources/{id}/changestate) through a statechart."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sms-flow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    chart_help = "statechart YAML file to use instead of the default one"

    p = sub.add_parser(
        "check",
        help="may a source go from FROM to TO? (exit 0 allowed, 1 rejected)",
        description=(
            "Check one requested change against the statechart. FROM is COPYSTATE/CYCLE; TO is "
            "COPYSTATE/CYCLE, COPYSTATE or /CYCLE (a part left out is not requested). Values "
            "are case-insensitive. Allowed: exit 0 and the trigger. Rejected: exit 1, every "
            "reason, and the shortest legal path when one exists. Bad input: exit 2."
        ),
        epilog="example: sms-flow check SYNCING/syncing CUTOVERING",
    )
    p.add_argument("current", metavar="FROM", help="current state, e.g. SYNCING/syncing")
    p.add_argument("requested", metavar="TO", help="requested state, e.g. CUTOVERING/cutovering")
    p.add_argument("--chart", metavar="FILE", help=chart_help)
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(handler=_cmd_check)

    p = sub.add_parser(
        "plan",
        help="the shortest legal sequence of moves from FROM to TO",
        description=(
            "Plan the shortest legal sequence of moves from FROM to TO. Steps the service makes "
            "itself are marked; a driver waits for them instead of pushing. Exit 1 when no "
            "sequence exists."
        ),
        epilog="example: sms-flow plan WAITING/checking FINISHED/cutovered",
    )
    p.add_argument("current", metavar="FROM", help="current state, e.g. WAITING/checking")
    p.add_argument("requested", metavar="TO", help="target state, e.g. FINISHED/cutovered")
    p.add_argument("--chart", metavar="FILE", help=chart_help)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(handler=_cmd_plan)

    p = sub.add_parser(
        "diagram",
        help="draw the statechart (Mermaid, Markdown page, or Graphviz dot)",
        description="Render the statechart as a Mermaid state diagram, a Markdown page around it, or Graphviz dot.",
    )
    p.add_argument(
        "--format",
        choices=("mermaid", "markdown", "dot"),
        default="mermaid",
        help="mermaid (default): the diagram; markdown: a page with the diagram and tables; dot: Graphviz",
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE instead of standard output"
    )
    p.add_argument("--chart", metavar="FILE", help=chart_help)
    p.set_defaults(handler=_cmd_diagram)

    p = sub.add_parser(
        "get",
        help="read a source server's state from the service",
        description="Read a source server (GET /v3/sources/{id}) and show its state and the moves the chart permits.",
        epilog=_CREDENTIALS_HELP,
    )
    p.add_argument("source_id", metavar="SOURCE_ID", help="the source server's id in SMS")
    p.add_argument(
        "--json", action="store_true", help="print the source as the service returned it"
    )
    p.add_argument("--chart", metavar="FILE", help=chart_help)
    _add_endpoint_options(p)
    p.set_defaults(handler=_cmd_get)

    p = sub.add_parser(
        "set",
        help="check, push, verify and journal a state change",
        description=(
            "Read the source's current state, check the requested change against the chart, push it "
            "(PUT /v3/sources/{id}/changestate), read it back, and say what happened. Exit 0 applied, "
            "1 rejected by the chart, 2 bad input, 3 API or network error, 4 not applied (frozen, or "
            "the read-back disagrees)."
        ),
        epilog=_CREDENTIALS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source_id", metavar="SOURCE_ID", help="the source server's id in SMS")
    p.add_argument("--copystate", metavar="X", help="the copystate to set, e.g. REPLICATE")
    p.add_argument(
        "--migrationcycle", metavar="Y", help="the migration cycle to set, e.g. replicating"
    )
    p.add_argument(
        "--path",
        action="store_true",
        help="when the change is not one permitted move, push the shortest legal path step by step",
    )
    p.add_argument(
        "--force", action="store_true", help="push even from a frozen state (needs --reason)"
    )
    p.add_argument(
        "--reason", metavar="TEXT", help="why; journalled with the change (required with --force)"
    )
    p.add_argument(
        "--actor", default="cli", metavar="NAME", help="who asks, for the journal (default: cli)"
    )
    p.add_argument(
        "--no-verify", action="store_true", help="do not read the source back after the push"
    )
    _add_journal_option(p)
    p.add_argument("--no-journal", action="store_true", help="do not write the change to a journal")
    p.add_argument("--json", action="store_true", help="print the applied steps as JSON")
    p.add_argument("--chart", metavar="FILE", help=chart_help)
    _add_endpoint_options(p)
    p.set_defaults(handler=_cmd_set)

    p = sub.add_parser(
        "run",
        help="drive a wave of sources to a target state (examples/wave.yaml)",
        description=(
            "Drive every source of a wave file along its shortest legal path to the target, with "
            "bounded concurrency, a rate limit and a failure policy; every step journalled. Runs "
            "against the embedded simulator unless the file or --endpoint/--region name a service. "
            "Ctrl-C stops cleanly (steps in flight finish and are journalled); run the same command "
            "again to resume, also after a crash. Exit 0 when every source is at the target, 1 when "
            "any failed, 130 when stopped early."
        ),
        epilog=_CREDENTIALS_HELP,
    )
    p.add_argument("wave", metavar="WAVE.yaml", help="the wave file")
    _add_journal_option(p)
    p.add_argument(
        "--report",
        metavar="PATH",
        help="JSON report (default: beside the journal, reports/WAVE.json)",
    )
    p.add_argument(
        "--concurrency", type=int, metavar="N", help="sources driven at once (overrides the file)"
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        metavar="R",
        help="requests per second towards the service (overrides the file)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="embedded simulator only: start over with new simulated sources (the journal keeps its history)",
    )
    _add_run_options(p)
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser(
        "drill",
        help="run a migration drill on syncing sources (premig*, with a check)",
        description=(
            "Run a migration drill on sources in SYNCING: premigready → premiging → the check → "
            "premiged or premigfailed → back to SYNCING, with a report per source. The check is a "
            "shell command run with SMS_FLOW_SOURCE_ID and SMS_FLOW_DRILL in its environment; exit "
            "status 0 passes; one still running at its timeout is killed and fails. Give a drill file "
            "(a wave file with a check), or --ids and --check. Exit 0 when every drill passed, 1 when "
            "any failed or a source failed, 130 when stopped early; run it again to resume."
        ),
        epilog=_CREDENTIALS_HELP,
    )
    p.add_argument(
        "drill", nargs="?", metavar="DRILL.yaml", help="the drill file (examples/drill.yaml)"
    )
    p.add_argument("--ids", metavar="ID,ID", help="sources to drill, without a drill file")
    p.add_argument(
        "--name",
        default="drill",
        help="the drill's name in the journal, without a drill file (default: drill)",
    )
    p.add_argument(
        "--check", metavar="COMMAND", help="the check's shell command (overrides the file's)"
    )
    p.add_argument(
        "--check-timeout",
        type=float,
        metavar="S",
        help="seconds before a check counts as failed (default 60)",
    )
    _add_journal_option(p)
    p.add_argument(
        "--report",
        metavar="PATH",
        help="JSON report (default: beside the journal, reports/NAME.json)",
    )
    p.add_argument("--concurrency", type=int, metavar="N", help="sources drilled at once")
    p.add_argument(
        "--rate-limit", type=float, metavar="R", help="requests per second towards the service"
    )
    _add_run_options(p)
    p.set_defaults(handler=_cmd_drill)

    p = sub.add_parser(
        "history",
        help="what the journal says happened to a source or a wave",
        description="Show the journal's entries for one source, or for every source of a wave, oldest first.",
    )
    p.add_argument("source_id", nargs="?", metavar="SOURCE_ID", help="a source server's id")
    p.add_argument("--wave", metavar="NAME", help="every entry of this wave")
    _add_journal_option(p)
    p.add_argument("--limit", type=int, metavar="N", help="only the last N entries")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(handler=_cmd_history)

    from sms_flow.simulator import cli as simulator_cli

    p = sub.add_parser(
        "simulator",
        help="run an SMS-compatible simulator (first line of output: its base URL)",
        description=(
            "Serve an SMS-compatible API on loopback for tests and demos: changestate, the read side, "
            "registration, AK/SK or token auth, frozen states, the service's own moves, faults on demand. "
            "Its first line of output is its base URL; it serves until interrupted."
        ),
    )
    simulator_cli.add_arguments(p)
    p.set_defaults(handler=simulator_cli.run)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    configure_logging(level=getattr(args, "log_level", None))
    try:
        return handler(args)
    except ChartError as exc:
        _err(f"sms-flow: chart error: {exc}")
        return EXIT_BAD_INPUT
    except InputError as exc:
        _err(f"sms-flow: {exc}")
        return EXIT_BAD_INPUT
    except SmsFlowError as exc:
        _err(f"sms-flow: {exc}")
        return EXIT_API
    except KeyboardInterrupt:
        _err("sms-flow: interrupted")
        return 130
