"""Validation and planning: may a source server go from here to there, and how?

:meth:`Planner.check` answers a requested change with a :class:`Verdict`: allowed (with the
trigger that does it) or rejected with every reason and, when one exists, the shortest legal
sequence of moves that does reach the requested state. :meth:`Planner.plan` gives that
sequence. Either field of a request may be left out, as in the API: a request matches every
pair of the chart that has the fields it names, and where several could follow, the one that
keeps the current value of the field left out wins.

Answers depend only on the chart, so they are computed once per ``(current, requested)`` and
kept: a repeated check costs one dictionary lookup.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

from sms_flow.chart import By, Chart, Edge, default_chart
from sms_flow.errors import InputError, UnknownValueError, truncate
from sms_flow.states import (
    StatePair,
    StateRequest,
    parse_copystate,
    parse_cycle,
    parse_pair,
    parse_request,
)

__all__ = [
    "Plan",
    "Planner",
    "Reason",
    "ReasonCode",
    "Verdict",
    "check",
    "default_planner",
    "plan",
    "step_dict",
    "unasked_irreversible",
]

# Costs for the shortest path: a step costs _STEP, and a step sms-flow cannot push itself
# costs one more, so among paths of equal length the one with fewest waits wins.
_STEP = 1000
_WAIT = 1
_MAX_MEMO = 100_000


class ReasonCode(StrEnum):
    """Why a requested change is refused."""

    UNKNOWN_VALUE = "unknown_value"
    """A value that is not a copystate or migration cycle."""
    EMPTY_REQUEST = "empty_request"
    """The request names neither field, so it would change nothing."""
    INVALID_CURRENT = "invalid_current"
    """The current pair is not a state of the chart (so no move from it is known)."""
    CYCLE_NOT_PERMITTED = "cycle_not_permitted"
    """The requested copystate cannot be paired with the requested cycle."""
    FROZEN = "frozen"
    """The service ignores changestate in the current state."""
    NOT_BY_CLIENT = "not_by_client"
    """The move exists, but the service makes it, not a changestate call."""
    NO_TRANSITION = "no_transition"
    """No permitted move leads from the current state to the requested one."""
    UNREACHABLE = "unreachable"
    """No sequence of permitted moves leads there at all."""
    CONDITION = "condition"
    """The chart permits the move, but a condition registered on the state machine refuses it."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason a request is refused, in words a person can act on."""

    code: ReasonCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


def step_dict(edge: Edge) -> dict[str, Any]:
    """One step of a path as JSON: trigger, from, to, by, basis, irreversible, call."""
    return {
        "trigger": edge.trigger,
        "from": str(edge.source),
        "to": str(edge.dest),
        "by": edge.by.value,
        "basis": edge.basis.value,
        "irreversible": edge.irreversible,
        "call": edge.call,
    }


def _describe_path(path: tuple[Edge, ...]) -> str:
    steps = []
    for edge in path:
        marks = [] if edge.pushable else [f"by {edge.by.value}: wait for it"]
        if edge.irreversible:
            marks.append("irreversible")
        steps.append(f"{edge.trigger} → {edge.dest}" + (f" [{'; '.join(marks)}]" if marks else ""))
    return ", ".join(steps)


def unasked_irreversible(path: Sequence[Edge], requested: StateRequest) -> tuple[Edge, ...]:
    """The irreversible steps of ``path`` that ``requested`` did not ask for.

    A step is asked for when its destination is the requested state (every field the
    request names matches it); any other irreversible step is one the path would take on the
    way, which a person should consent to by name before anything is pushed.
    """
    return tuple(
        e
        for e in path
        if e.irreversible
        and not (
            (requested.copystate is None or e.dest.copystate == requested.copystate)
            and (
                requested.migrationcycle is None
                or e.dest.migrationcycle == requested.migrationcycle
            )
        )
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "may this source go from ``current`` to ``requested``?"."""

    allowed: bool
    current: StatePair | None
    requested: StateRequest | None
    target: StatePair | None = None
    """The full pair the change leads to (both fields), when it is known."""
    edge: Edge | None = None
    """The move that does it; also set when the move exists but sms-flow may not push it."""
    reasons: tuple[Reason, ...] = ()
    path: tuple[Edge, ...] = ()
    """When refused: the shortest legal sequence of moves to the requested state, if any."""

    @property
    def trigger(self) -> str | None:
        """The trigger of the move, when there is one."""
        return self.edge.trigger if self.edge is not None else None

    @property
    def noop(self) -> bool:
        """True when the source is already in the requested state: nothing to send."""
        return self.allowed and self.edge is None

    @property
    def codes(self) -> frozenset[ReasonCode]:
        return frozenset(r.code for r in self.reasons)

    def explain(self) -> str:
        """One paragraph for a person: what was asked, the answer, why, and what to do."""
        cur = str(self.current) if self.current is not None else None
        req = str(self.requested) if self.requested is not None else None
        if self.allowed:
            if self.edge is None:
                return f"allowed: {cur} is already {req}; nothing to send"
            return f"allowed: {self.edge.trigger}: {cur} → {self.target}"
        head = " → ".join(x for x in (cur, req) if x is not None)
        text = "rejected: " + (f"{head}: " if head else "")
        text += "; ".join(r.message for r in self.reasons)
        if self.path:
            steps = "1 step" if len(self.path) == 1 else f"{len(self.path)} steps"
            text += f". Shortest legal path ({steps}): {_describe_path(self.path)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "current": str(self.current) if self.current is not None else None,
            "requested": str(self.requested) if self.requested is not None else None,
            "target": str(self.target) if self.target is not None else None,
            "trigger": self.trigger,
            "noop": self.noop,
            "reasons": [r.to_dict() for r in self.reasons],
            "path": [step_dict(e) for e in self.path],
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """The shortest legal sequence of moves from ``current`` to ``requested``."""

    current: StatePair | None
    requested: StateRequest | None
    target: StatePair | None
    steps: tuple[Edge, ...]
    reasons: tuple[Reason, ...] = field(default=())

    @property
    def found(self) -> bool:
        """True when a legal sequence exists (an empty one when already there)."""
        return not self.reasons

    @property
    def waits(self) -> tuple[Edge, ...]:
        """Steps the service makes, for which a driver waits instead of pushing."""
        return tuple(e for e in self.steps if not e.pushable)

    def explain(self) -> str:
        cur = str(self.current) if self.current is not None else "?"
        req = str(self.requested) if self.requested is not None else "?"
        if self.reasons:
            return f"no plan: {cur} → {req}: " + "; ".join(r.message for r in self.reasons)
        if not self.steps:
            return f"{cur} is already {req}; nothing to do"
        return f"{cur} → {self.target} in {len(self.steps)} steps: {_describe_path(self.steps)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "current": str(self.current) if self.current is not None else None,
            "requested": str(self.requested) if self.requested is not None else None,
            "target": str(self.target) if self.target is not None else None,
            "steps": [step_dict(e) for e in self.steps],
            "reasons": [r.to_dict() for r in self.reasons],
        }


CurrentLike = StatePair | tuple[Any, Any] | str
RequestLike = StateRequest | StatePair | tuple[Any, Any] | str


class Planner:
    """Checks and plans changes against one chart; answers are computed once and kept."""

    __slots__ = ("_memo", "_plans", "_routes", "chart")

    def __init__(self, chart: Chart) -> None:
        self.chart = chart
        self._memo: dict[tuple[Any, Any], Verdict] = {}
        self._plans: dict[tuple[Any, Any], Plan] = {}
        self._routes: dict[StatePair, tuple[dict[StatePair, int], dict[StatePair, Edge]]] = {}

    # -- check ----------------------------------------------------------------------------

    def check(self, current: CurrentLike, requested: RequestLike) -> Verdict:
        """May a source in ``current`` be changed to ``requested``?

        ``current`` is a :class:`StatePair` (or ``"COPYSTATE/cycle"``, or a
        ``(copystate, migrationcycle)`` tuple); ``requested`` a :class:`StateRequest`, a pair,
        or text such as ``"CUTOVERING"``. An unknown value is a reason in the verdict, never
        raised; a value of another type (``None``, a number, bytes, a dict, a list) raises
        :class:`~sms_flow.errors.InputError` naming it.
        """
        try:
            return self._memo[current, requested]
        except (KeyError, TypeError):
            pass
        try:
            cur = _as_pair(current)
        except UnknownValueError as exc:
            return Verdict(False, None, None, reasons=(Reason(ReasonCode.UNKNOWN_VALUE, str(exc)),))
        try:
            req = _as_request(requested)
        except UnknownValueError as exc:
            return Verdict(False, cur, None, reasons=(Reason(ReasonCode.UNKNOWN_VALUE, str(exc)),))
        key = (cur, req)
        verdict = self._memo.get(key)
        if verdict is None:
            verdict = self._decide(cur, req)
            if len(self._memo) < _MAX_MEMO:
                self._memo[key] = verdict
        return verdict

    def _decide(self, cur: StatePair, req: StateRequest) -> Verdict:
        chart = self.chart
        if req.empty:
            return Verdict(
                False,
                cur,
                req,
                reasons=(
                    Reason(
                        ReasonCode.EMPTY_REQUEST,
                        "the request names neither copystate nor migrationcycle, so it changes "
                        "nothing; give at least one",
                    ),
                ),
            )
        if not chart.is_permitted(cur):
            return Verdict(
                False,
                cur,
                req,
                reasons=(
                    Reason(
                        ReasonCode.INVALID_CURRENT,
                        _invalid_pair_message(chart, cur, "current state"),
                    ),
                ),
            )
        cur = chart.pair(cur.copystate, cur.migrationcycle) or cur
        targets = self._targets(req)
        if not targets:
            return Verdict(False, cur, req, reasons=(self._not_permitted(req),))
        if cur in targets:
            return Verdict(True, cur, req, target=cur)

        direct = [e for e in chart.edges_from(cur) if e.dest in targets]
        direct.sort(key=lambda e: (not e.pushable, not _keeps_unnamed(e, cur, req)))
        edge = direct[0] if direct else None
        frozen = chart.is_frozen(cur)
        if edge is not None and edge.pushable and not frozen:
            return Verdict(True, cur, req, target=edge.dest, edge=edge)

        reasons: list[Reason] = []
        if frozen:
            reasons.append(
                Reason(
                    ReasonCode.FROZEN,
                    f"the service ignores changestate while the source is {cur.copystate.value} "
                    f"(it answers 200 and changes nothing); wait for the service to move it",
                )
            )
        if edge is not None and not edge.pushable:
            what = (
                "the service makes it by itself"
                if edge.by is By.SERVICE
                else "the service makes it when another API is called"
            )
            reasons.append(
                Reason(
                    ReasonCode.NOT_BY_CLIENT,
                    f"{edge.trigger} ({cur} → {edge.dest}) is not a changestate call: {what}"
                    + (f" ({edge.note})" if edge.note else ""),
                )
            )
        elif edge is None:
            reasons.append(
                Reason(
                    ReasonCode.NO_TRANSITION,
                    f"no permitted transition leads from {cur} to {req}" + _moves_from(chart, cur),
                )
            )
        path, target = self._shortest(cur, targets)
        if target is None:
            reasons.append(
                Reason(
                    ReasonCode.UNREACHABLE,
                    f"no sequence of permitted moves leads from {cur} to {req}",
                )
            )
        return Verdict(
            False,
            cur,
            req,
            target=edge.dest if edge is not None else target,
            edge=edge,
            reasons=tuple(reasons),
            path=path,
        )

    # -- plan -----------------------------------------------------------------------------

    def plan(self, current: CurrentLike, requested: RequestLike) -> Plan:
        """The shortest legal sequence of moves from ``current`` to ``requested``.

        Among sequences of equal length, the one with fewest moves the service must make
        wins, then the one that comes first in the chart. Steps made by the service are
        part of the plan: a driver waits for them instead of pushing. ``current`` and
        ``requested`` take what :meth:`check` takes; an unknown value is a reason in the
        plan, a value of another type raises :class:`~sms_flow.errors.InputError`.
        """
        try:
            return self._plans[current, requested]
        except (KeyError, TypeError):
            pass
        try:
            cur = _as_pair(current)
            req = _as_request(requested)
        except UnknownValueError as exc:
            return Plan(None, None, None, (), (Reason(ReasonCode.UNKNOWN_VALUE, str(exc)),))
        key = (cur, req)
        found = self._plans.get(key)
        if found is None:
            found = self._plan(cur, req)
            if len(self._plans) < _MAX_MEMO:
                self._plans[key] = found
        return found

    def _plan(self, cur: StatePair, req: StateRequest) -> Plan:
        if req.empty:
            verdict = self._decide(cur, req)
            return Plan(cur, req, None, (), verdict.reasons)
        if not self.chart.is_permitted(cur):
            reason = Reason(
                ReasonCode.INVALID_CURRENT, _invalid_pair_message(self.chart, cur, "current state")
            )
            return Plan(cur, req, None, (), (reason,))
        cur = self.chart.pair(cur.copystate, cur.migrationcycle) or cur
        targets = self._targets(req)
        if not targets:
            return Plan(cur, req, None, (), (self._not_permitted(req),))
        if cur in targets:
            return Plan(cur, req, cur, ())
        path, target = self._shortest(cur, targets)
        if target is None:
            reason = Reason(
                ReasonCode.UNREACHABLE, f"no sequence of permitted moves leads from {cur} to {req}"
            )
            return Plan(cur, req, None, (), (reason,))
        return Plan(cur, req, target, path)

    # -- internals ----------------------------------------------------------------------

    def _targets(self, req: StateRequest) -> list[StatePair]:
        return [
            p
            for p in self.chart.pairs
            if (req.copystate is None or p.copystate == req.copystate)
            and (req.migrationcycle is None or p.migrationcycle == req.migrationcycle)
        ]

    def _not_permitted(self, req: StateRequest) -> Reason:
        chart = self.chart
        if req.copystate is not None:
            info = chart.info(req.copystate)
            if info is None:
                return Reason(
                    ReasonCode.CYCLE_NOT_PERMITTED,
                    f"{req.copystate.value} has no place in chart {chart.name!r}",
                )
            allowed = ", ".join(c.value for c in info.cycles)
            return Reason(
                ReasonCode.CYCLE_NOT_PERMITTED,
                f"{req.copystate.value} cannot be paired with migrationcycle "
                f"{req.migrationcycle.value if req.migrationcycle else '?'}; it takes: {allowed}",
            )
        return Reason(
            ReasonCode.CYCLE_NOT_PERMITTED,
            f"no state of chart {chart.name!r} has migrationcycle "
            f"{req.migrationcycle.value if req.migrationcycle else '?'}",
        )

    def _route(self, start: StatePair) -> tuple[dict[StatePair, int], dict[StatePair, Edge]]:
        route = self._routes.get(start)
        if route is not None:
            return route
        order = {p: i for i, p in enumerate(self.chart.pairs)}
        dist: dict[StatePair, int] = {start: 0}
        prev: dict[StatePair, Edge] = {}
        heap: list[tuple[int, int, StatePair]] = [(0, order.get(start, -1), start)]
        while heap:
            cost, _, pair = heapq.heappop(heap)
            if cost > dist.get(pair, cost):
                continue
            for edge in self.chart.edges_from(pair):
                new = cost + _STEP + (0 if edge.pushable else _WAIT)
                if new < dist.get(edge.dest, new + 1):
                    dist[edge.dest] = new
                    prev[edge.dest] = edge
                    heapq.heappush(heap, (new, order[edge.dest], edge.dest))
        self._routes[start] = (dist, prev)
        return dist, prev

    def _shortest(
        self, start: StatePair, targets: list[StatePair]
    ) -> tuple[tuple[Edge, ...], StatePair | None]:
        dist, prev = self._route(start)
        best: StatePair | None = None
        for t in targets:  # chart order breaks ties
            if t in dist and (best is None or dist[t] < dist[best]):
                best = t
        if best is None:
            return (), None
        path: list[Edge] = []
        node = best
        while node != start:
            edge = prev[node]
            path.append(edge)
            node = edge.source
        path.reverse()
        return tuple(path), best


def _keeps_unnamed(edge: Edge, cur: StatePair, req: StateRequest) -> bool:
    if req.copystate is None:
        return edge.dest.copystate == cur.copystate
    if req.migrationcycle is None:
        return edge.dest.migrationcycle == cur.migrationcycle
    return True


def _moves_from(chart: Chart, cur: StatePair) -> str:
    moves = [f"{e.trigger} → {e.dest}" for e in chart.edges_from(cur) if e.pushable]
    if not moves:
        return ""
    return f" (from {cur} sms-flow may push: {', '.join(moves)})"


def _invalid_pair_message(chart: Chart, pair: tuple[Any, Any], what: str) -> str:
    cs, cy = pair
    info = chart.info(cs)
    if info is None:
        return f"{what} {cs.value}/{cy.value} is not in chart {chart.name!r}"
    allowed = ", ".join(c.value for c in info.cycles)
    return (
        f"{what} {cs.value}/{cy.value} is not a state of chart {chart.name!r}: "
        f"{cs.value} takes migrationcycle {allowed}"
    )


def _as_pair(value: CurrentLike) -> StatePair:
    if isinstance(value, StatePair):
        return value
    if isinstance(value, str):
        return parse_pair(value)
    cs, cy = _two_parts(value, "current state", "a StatePair, 'COPYSTATE/cycle'")
    return StatePair(parse_copystate(cs), parse_cycle(cy))


def _as_request(value: RequestLike) -> StateRequest:
    if isinstance(value, StateRequest):
        return value
    if isinstance(value, str):
        return parse_request(value)
    cs, cy = _two_parts(
        value, "requested state", "a StateRequest, a StatePair, 'COPYSTATE/cycle', 'COPYSTATE'"
    )
    return StateRequest(
        None if cs is None else parse_copystate(cs),
        None if cy is None else parse_cycle(cy),
    )


def _two_parts(value: object, what: str, forms: str) -> tuple[Any, Any]:
    """The two parts of a ``(copystate, migrationcycle)`` tuple, else an InputError naming it."""
    if isinstance(value, tuple) and len(value) == 2:
        return value[0], value[1]
    raise InputError(
        f"{what} {truncate(repr(value), 80)} ({type(value).__name__}) is not a state: give "
        f"{forms} or a (copystate, migrationcycle) tuple"
    )


@cache
def default_planner() -> Planner:
    """The planner of the default chart, built once per process."""
    return Planner(default_chart())


def check(current: CurrentLike, requested: RequestLike, *, chart: Chart | None = None) -> Verdict:
    """Check a requested change against ``chart`` (the default chart when not given)."""
    planner = default_planner() if chart is None else Planner(chart)
    return planner.check(current, requested)


def plan(current: CurrentLike, requested: RequestLike, *, chart: Chart | None = None) -> Plan:
    """The shortest legal sequence of moves, against ``chart`` (default when not given)."""
    planner = default_planner() if chart is None else Planner(chart)
    return planner.plan(current, requested)
