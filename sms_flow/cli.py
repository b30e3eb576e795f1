"""The ``sms-flow`` command line.

Exit codes, the same for every command:

* 0 - done (allowed, applied, planned, finished)
* 1 - rejected by the chart (or a wave/drill in which a source failed)
* 2 - bad input: an unknown value, a bad option, an unusable file or credentials
* 3 - the API or the network failed (status, error_code, error_msg, request_id printed)
* 4 - not applied: the service ignored the change (frozen) or the read-back disagrees
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from sms_flow import __version__
from sms_flow.chart import Chart, default_chart, load_chart
from sms_flow.errors import ChartError, InputError
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


# -- the parser ---------------------------------------------------------------------------

_EPILOG = """exit codes: 0 done/allowed, 1 rejected by the chart (or a source failed),
2 bad input, 3 API or network error, 4 not applied (frozen, or read-back disagrees)"""


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

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ChartError as exc:
        _err(f"sms-flow: chart error: {exc}")
        return EXIT_BAD_INPUT
    except InputError as exc:
        _err(f"sms-flow: {exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("sms-flow: interrupted")
        return 130
