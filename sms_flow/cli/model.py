"""``sms-flow check``, ``plan`` and ``diagram``: questions to the statechart, answered locally.

Nothing here talks to the service: these commands import the chart, the planner and the
diagram renderers, and nothing of aiohttp, SQLite, rich or the simulator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sms_flow.chart import By, Chart, default_chart, load_chart
from sms_flow.cli import EXIT_OK, EXIT_REJECTED
from sms_flow.cli._output import err, out, print_json, print_steps, print_verdict
from sms_flow.errors import InputError
from sms_flow.planner import Plan, Planner
from sms_flow.states import parse_pair, parse_request

__all__ = ["chart_from", "check", "diagram", "plan"]


def chart_from(args: argparse.Namespace) -> Chart:
    """The chart ``--chart`` names, else the default one."""
    path = getattr(args, "chart", None)
    return load_chart(path) if path else default_chart()


def check(args: argparse.Namespace) -> int:
    """May a source go from FROM to TO? Exit 0 allowed, 1 rejected."""
    chart = chart_from(args)
    current = parse_pair(args.current)
    requested = parse_request(args.requested)
    verdict = Planner(chart).check(current, requested)
    code = EXIT_OK if verdict.allowed else EXIT_REJECTED
    if args.json:
        status = "allowed" if verdict.allowed else "rejected"
        print_json({"status": status, "exit_code": code, **verdict.to_dict()})
    else:
        print_verdict(verdict)
    return code


def _print_plan(plan: Plan) -> None:
    if not plan.found:
        out(f"no plan: {plan.current} → {plan.requested}")
        for reason in plan.reasons:
            out(f"  - {reason.message} [{reason.code.value}]")
        return
    if not plan.steps:
        out(f"{plan.current} is already {plan.requested}; nothing to do")
        return
    n = len(plan.steps)
    out(f"plan: {plan.current} → {plan.target} in {n} step{'s' if n != 1 else ''}")
    print_steps(plan.steps)
    service = sum(1 for e in plan.waits if e.by is By.SERVICE)
    action = len(plan.waits) - service
    if service:
        out(f"{service} made by the service by itself; a driver waits for those")
    if action:
        out(
            f"{action} made by the service when another API is called: sms-flow stops there and "
            "says what to call (or waits, when asked to: set --wait-for-action, a wave's "
            "wait_for_actions)"
        )
    irreversible = sum(1 for e in plan.steps if e.irreversible)
    if irreversible:
        out(f"{irreversible} cannot be undone (⚠ irreversible)")


def plan(args: argparse.Namespace) -> int:
    """The shortest legal sequence of moves from FROM to TO; exit 1 when there is none."""
    chart = chart_from(args)
    found = Planner(chart).plan(parse_pair(args.current), parse_request(args.requested))
    code = EXIT_OK if found.found else EXIT_REJECTED
    if args.json:
        status = "planned" if found.found else "no_plan"
        print_json({"status": status, "exit_code": code, **found.to_dict()})
    else:
        _print_plan(found)
    return code


def diagram(args: argparse.Namespace) -> int:
    """The chart as Mermaid, a Markdown page or Graphviz dot, to stdout or ``--output``."""
    from sms_flow.diagram import select_view, to_dot, to_markdown, to_mermaid

    chart = chart_from(args)
    fmt = args.format
    if fmt == "markdown":
        if args.view is not None:
            raise InputError(
                "--view draws one view as mermaid or dot; the markdown page has every view"
            )
        text = to_markdown(chart)
    else:
        view = select_view(chart, args.view)
        text = (to_mermaid if fmt == "mermaid" else to_dot)(chart, view)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        err(f"wrote {fmt} diagram of chart {chart.name!r} to {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK
