"""B1: ``Planner.check`` throughput on parsed values, requests mixed allowed and rejected.

What is measured: checks per second of ``planner.check(current, requested)`` over a
pre-built list of ``(StatePair, StateRequest)`` drawn from the default chart's pairs, half of
them allowed (a pushable move from a state the service does not ignore changestate in) and
half rejected (no move of the chart leads there directly). The planner is warmed first, so the
figure is the steady state of a long-running process; every figure is the best of ``repeat``
passes over the same list, timed with ``time.perf_counter``.

Baselines, on the same inputs (each request turned into ``(state, trigger)``: the trigger of
the chart's move for an allowed request, a trigger the chart does not permit from that state
for a rejected one):

* **dict** (the limit): ``table[state, trigger]`` on a dict holding every ``(pair, trigger)``
  of the chart, the cheapest yes/no answer Python can give;
* **transitions may_**: a ``transitions.Machine`` built from the chart's states and
  transitions (the configuration :class:`~sms_flow.machine.LifecycleMachine` uses), shared by
  one model whose ``state`` is set before each ``model.may_<trigger>()`` call (the bound
  ``may_`` methods are looked up beforehand, so the baseline pays for the check alone).

The three answers are compared once: they must agree on every request.

Target: at least 1,000,000 checks/s, and at least 10x the ``may_`` baseline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions import Machine

from benchmarks._common import Baseline, Figure, ratio
from sms_flow.chart import Chart, default_chart
from sms_flow.planner import Planner
from sms_flow.states import StatePair, StateRequest

TARGET_RATE = 1_000_000
TARGET_VS_MAY = 10.0


@dataclass(frozen=True, slots=True)
class Workload:
    requests: list[tuple[StatePair, StateRequest]]
    """What ``check`` gets."""
    questions: list[tuple[StatePair, str]]
    """The same requests as ``(state, trigger)``, for the baselines."""
    allowed: list[bool]


def workload(chart: Chart, n: int, seed: int = 20261128) -> Workload:
    """``n`` requests, half allowed and half rejected, drawn from the chart's pairs."""
    rng = random.Random(seed)
    pairs = list(chart.pairs)
    allowed_moves = [
        (p, e) for p in pairs if not chart.is_frozen(p) for e in chart.edges_from(p) if e.pushable
    ]
    requests: list[tuple[StatePair, StateRequest]] = []
    questions: list[tuple[StatePair, str]] = []
    allowed: list[bool] = []
    while len(requests) < n:
        if len(requests) % 2 == 0:
            cur, edge = rng.choice(allowed_moves)
            dest, trigger, ok = edge.dest, edge.trigger, True
        else:
            cur = rng.choice(pairs)
            direct = {e.dest for e in chart.edges_from(cur)}
            choices = [p for p in pairs if p not in direct and p != cur]
            not_here = [t for t in chart.triggers if chart.edge(cur, t) is None]
            if not choices or not not_here:
                continue
            dest, trigger, ok = rng.choice(choices), rng.choice(not_here), False
        requests.append((cur, StateRequest(dest.copystate, dest.migrationcycle)))
        questions.append((cur, trigger))
        allowed.append(ok)
    return Workload(requests, questions, allowed)


def _rate(run: Callable[[], None], n: int, repeat: int) -> float:
    run()  # warm up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


class _Model:
    """A bare model for the shared ``transitions`` machine."""

    state: str


def _may_machine(chart: Chart) -> tuple[_Model, dict[str, Callable[[], bool]]]:
    machine = Machine(
        model=None,
        states=[str(p) for p in chart.pairs],
        initial=None,
        auto_transitions=False,
        send_event=True,
    )
    for edge in chart.edges:
        machine.add_transition(edge.trigger, str(edge.source), str(edge.dest))
    model = _Model()
    machine.add_model(model, initial=str(chart.initial))
    may = {t: getattr(model, f"may_{t}") for t in chart.triggers}
    return model, may


def run(*, checks: int = 200_000, repeat: int = 5, **_unused: Any) -> list[Figure]:
    chart = default_chart()
    planner = Planner(chart)
    work = workload(chart, checks)
    requests = work.requests

    # The baselines' inputs, built once: the dict keys and the bound may_ methods.
    table = {(p, t): chart.edge(p, t) is not None for p in chart.pairs for t in chart.triggers}
    model, may = _may_machine(chart)
    names = {p: str(p) for p in chart.pairs}
    may_calls = [(names[s], may[t]) for s, t in work.questions]
    questions = work.questions

    check = planner.check
    ours = [check(cur, req).allowed for cur, req in requests]
    by_dict = [table[s, t] for s, t in questions]
    by_may = []
    for name, may_fn in may_calls:
        model.state = name
        by_may.append(may_fn())
    if not (ours == by_dict == by_may == work.allowed):
        raise AssertionError("B1: check, the dict and may_ disagree on some request")

    def ours_loop() -> None:
        for cur, req in requests:
            check(cur, req)

    def dict_loop() -> None:
        for s, t in questions:
            table[s, t]

    def may_loop() -> None:
        m = model
        for name, may_fn in may_calls:
            m.state = name
            may_fn()

    n = len(requests)
    ours_rate = _rate(ours_loop, n, repeat)
    dict_rate = _rate(dict_loop, n, repeat)
    # may_ is slow: time a slice of the list so the pass stays short.
    may_n = min(n, 20_000)
    may_calls_all = may_calls
    may_calls = may_calls_all[:may_n]
    may_rate = _rate(may_loop, may_n, max(2, repeat // 2))

    vs_may = ratio(ours_rate, may_rate)
    share = sum(work.allowed) / n
    return [
        Figure(
            id="B1",
            what="Planner.check on parsed values",
            value=ours_rate,
            unit="checks/s",
            better="higher",
            target=f">= {TARGET_RATE:,} checks/s and >= {TARGET_VS_MAY:g}x may_",
            met=ours_rate >= TARGET_RATE and (vs_may or 0) >= TARGET_VS_MAY,
            baselines=[
                Baseline("dict lookup (limit)", dict_rate, ratio(ours_rate, dict_rate)),
                Baseline("transitions may_<trigger>", may_rate, vs_may),
            ],
            note=f"{n:,} requests, {share:.0%} allowed; best of {repeat}",
            details={"requests": n, "allowed_share": share, "may_requests": may_n},
        )
    ]
