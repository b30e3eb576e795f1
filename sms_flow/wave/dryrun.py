"""A wave's or drill's dry run: where each source is, and what a run would do with it.

:func:`dry_run` reads the sources' states (``GET`` only) and plans each one against the
wave's chart: nothing is pushed, nothing is journalled, nothing is claimed and no run is
started (the journal, when it exists, is only read, for the members a query or a count found
before). Each source gets its plan: the steps a run would push, those it would wait for (the
service's own moves), those only another API call makes (a run stops the source there unless
the file says ``wait_for_actions: true``; the plan says what to call), and those that cannot
be undone. :meth:`DryRun.shapes` groups sources that share a plan, for big waves.

A drill's plan is the drill's steps (``drill_ready``, ``drill_start``, the check,
``drill_pass`` or ``drill_fail``, ``drill_done``), after the path to ``SYNCING/syncing`` when
the drill file says ``prepare: true``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sms_flow.chart import By, Chart, Edge, default_chart
from sms_flow.journals import Location
from sms_flow.planner import Planner, step_dict
from sms_flow.states import CopyState, MigrationCycle, StatePair, StateRequest
from sms_flow.wave.spec import WaveSpec, chart_of

__all__ = ["DryRun", "SourcePlan", "dry_run"]

_DRILL_STATES = (
    CopyState.PREMIGREADY,
    CopyState.PREMIGING,
    CopyState.PREMIGED,
    CopyState.PREMIGFAILED,
)
_SYNCING = StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """What a run would do with one source."""

    source_id: str
    state: str | None
    """Where the source is (``None``: not read, unknown to the service, or not registered)."""
    steps: tuple[Edge, ...] = ()
    problem: str | None = None
    """Why a run would not take this source to the target (no legal path, unknown source,
    skipped by a drill); ``None`` when it would."""
    check_after: int | None = None
    """For a drill: the number of steps before the check runs."""
    registered: bool = True
    """False for a source ``sources.count`` would register first (it starts at the chart's
    initial state)."""
    skipped: str | None = None
    """For a drill: why a run would leave this source alone (not a failure)."""

    @property
    def pushed(self) -> tuple[Edge, ...]:
        return tuple(e for e in self.steps if e.pushable)

    @property
    def waited(self) -> tuple[Edge, ...]:
        """Moves the service makes by itself: a run waits for them."""
        return tuple(e for e in self.steps if e.by is By.SERVICE)

    @property
    def actions(self) -> tuple[Edge, ...]:
        """Moves only another API call makes."""
        return tuple(e for e in self.steps if e.by is By.ACTION)

    @property
    def irreversible(self) -> tuple[Edge, ...]:
        return tuple(e for e in self.steps if e.irreversible)

    @property
    def shape(self) -> str:
        """The plan in one line: from where, and the triggers in order (sources that share it
        share a plan)."""
        where = self.state if self.registered else f"new at {self.state}"
        where = where or "unknown"
        if self.problem is not None:
            return f"{where}: {self.problem}"
        if self.skipped is not None:
            return f"{where}: skipped, {self.skipped}"
        if not self.steps:
            return f"{where}: already there"
        triggers = [
            e.trigger
            + {"push": "", "wait": " [wait]", "action": " [action]"}[_made_by(e)]
            + (" ⚠" if e.irreversible else "")
            for e in self.steps
        ]
        if self.check_after is not None:
            triggers.insert(self.check_after, "(check)")
        return f"{where}: " + " → ".join(triggers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "state": self.state,
            "registered": self.registered,
            "steps": [{**step_dict(e), "made_by": _made_by(e)} for e in self.steps],
            "check_after": self.check_after,
            "pushed": len(self.pushed),
            "waited": len(self.waited),
            "actions": len(self.actions),
            "irreversible": [e.trigger for e in self.irreversible],
            "problem": self.problem,
            "skipped": self.skipped,
        }


def _made_by(edge: Edge) -> str:
    if edge.pushable:
        return "push"
    return "wait" if edge.by is By.SERVICE else "action"


@dataclass(slots=True)
class DryRun:
    """Every source of a wave or drill and its plan; nothing was sent."""

    wave: str
    kind: str
    target: str
    endpoint: str
    wait_for_actions: bool
    sources: list[SourcePlan] = field(default_factory=list)

    @property
    def plannable(self) -> bool:
        """True when a run would find a legal way for every source (there or already there)."""
        return all(p.problem is None for p in self.sources)

    def shapes(self) -> list[tuple[str, int]]:
        """The plans, each with how many sources share it, the most common first."""
        return Counter(p.shape for p in self.sources).most_common()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "wave": self.wave,
            "kind": self.kind,
            "target": self.target,
            "endpoint": self.endpoint,
            "wait_for_actions": self.wait_for_actions,
            "totals": {
                "sources": len(self.sources),
                "already": sum(
                    1
                    for p in self.sources
                    if p.problem is None and p.skipped is None and not p.steps
                ),
                "to_move": sum(1 for p in self.sources if p.problem is None and p.steps),
                "cannot": sum(1 for p in self.sources if p.problem is not None),
                "pushes": sum(len(p.pushed) for p in self.sources),
                "waits": sum(len(p.waited) for p in self.sources),
                "actions": sum(len(p.actions) for p in self.sources),
                "irreversible": sum(len(p.irreversible) for p in self.sources),
                "to_register": sum(1 for p in self.sources if not p.registered),
                "skipped": sum(1 for p in self.sources if p.skipped is not None),
            },
            "shapes": [{"plan": shape, "sources": n} for shape, n in self.shapes()],
            "sources": [p.to_dict() for p in self.sources],
        }


def plan_source(
    planner: Planner,
    source_id: str,
    state: StatePair | None,
    target: StateRequest,
    *,
    drill: bool = False,
    prepare: bool = False,
    registered: bool = True,
) -> SourcePlan:
    """The plan of one source in ``state`` (``None``: the service does not know it)."""
    if state is None:
        return SourcePlan(source_id, None, problem="unknown to the service (404): a run fails it")
    shown = str(state)
    if not planner.chart.is_permitted(state):
        return SourcePlan(source_id, shown, problem=f"{shown} is not a state of the chart")
    if not drill:
        found = planner.plan(state, target)
        if not found.found:
            return SourcePlan(source_id, shown, problem="; ".join(r.message for r in found.reasons))
        return SourcePlan(source_id, shown, found.steps, registered=registered)
    steps: list[Edge] = []
    here = state
    if here != _SYNCING and here.copystate not in _DRILL_STATES:
        if not prepare:
            return SourcePlan(
                source_id,
                shown,
                skipped=f"not syncing (a drill starts from {_SYNCING}; prepare: true takes it there)",
            )
        found = planner.plan(here, _SYNCING)
        if not found.found:
            return SourcePlan(source_id, shown, problem="; ".join(r.message for r in found.reasons))
        steps.extend(found.steps)
        here = _SYNCING
    check_after: int | None = None
    chart = planner.chart
    order = {
        CopyState.SYNCING: "drill_ready",
        CopyState.PREMIGREADY: "drill_start",
        CopyState.PREMIGING: "drill_pass",
        CopyState.PREMIGED: "drill_done",
        CopyState.PREMIGFAILED: "drill_done",
    }
    while True:
        if here.copystate is CopyState.PREMIGING:
            check_after = len(steps)
        edge = chart.edge(here, order[here.copystate])
        if edge is None:
            return SourcePlan(
                source_id, shown, problem=f"the chart has no {order[here.copystate]} from {here}"
            )
        steps.append(edge)
        here = edge.dest
        if here.copystate is CopyState.SYNCING:
            break
    return SourcePlan(source_id, shown, tuple(steps), check_after=check_after)


async def dry_run(
    spec: WaveSpec,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    journal_path: str | Path | None = None,
    base_dir: Path | None = None,
    client_options: dict[str, Any] | None = None,
) -> DryRun:
    """Plan every source of ``spec`` (a wave or a drill) from where the service shows it.

    The sources are those a run would drive: ``ids``; for ``query``, the members the journal
    keeps from an earlier run, else what the listing query finds now; for ``count``, the
    sources registered for the wave in the embedded simulator, and as not registered (at the
    chart's initial state) those a run would register. Only reads: no push, no journal
    entry, no claim, no run.
    """
    from sms_flow.client import SmsClient, read_sources
    from sms_flow.wave.drill import DrillSpec
    from sms_flow.wave.ratelimit import limited
    from sms_flow.wave.session import WaveSession

    chart: Chart = chart_of(spec, base_dir) or default_chart()
    planner = Planner(chart)
    drill = isinstance(spec, DrillSpec)
    prepare = bool(getattr(spec, "prepare", False))
    # A session object says where things are (the journal, the embedded simulator's state);
    # it is never opened, so nothing is claimed and no run starts.
    where = WaveSession(spec, endpoint=endpoint, region=region, journal_path=journal_path)
    known = await _known_members(where.journal_location, spec.name)
    simulator: Any = None
    client: Any = None
    try:
        if where.embedded:
            state_file = where.simulator_state_file
            shown = f"embedded simulator ({state_file})"
            if await asyncio.to_thread(state_file.exists):
                from sms_flow.simulator import Simulator, SimulatorConfig

                simulator = Simulator(
                    SimulatorConfig(
                        state_file=state_file, service_delay=spec.simulator.service_delay
                    )
                )
                await simulator.start()
                client = SmsClient(simulator.url, **dict(client_options or {}))
        else:
            overrides: dict[str, Any] = dict(client_options or {})
            chosen = endpoint or (None if spec.uses_simulator else spec.endpoint)
            if chosen:
                overrides["endpoint"] = chosen
            elif region or spec.region:
                overrides["region"] = region or spec.region
            client = SmsClient.from_env(**overrides)
            shown = client.endpoint
        if client is not None:
            await client.open()
        members, unregistered = await _members(spec, known, client, simulator)
        result = DryRun(
            wave=spec.name,
            kind="drill" if drill else "wave",
            target=spec.target,
            endpoint=shown,
            wait_for_actions=spec.wait_for_actions,
        )
        states: dict[str, StatePair | None] = {}
        if members and client is not None:
            api = limited(client, spec.rate_limit)
            async for source_id, src in read_sources(api, members, concurrency=spec.concurrency):
                states[source_id] = None if src is None else src.pair
        target = spec.target_request
        for source_id in members:
            result.sources.append(
                plan_source(
                    planner, source_id, states.get(source_id), target, drill=drill, prepare=prepare
                )
            )
        for i in range(unregistered):
            result.sources.append(
                plan_source(
                    planner,
                    f"(new {spec.name}-{len(members) + i + 1:05d})",
                    chart.initial,
                    target,
                    drill=drill,
                    prepare=prepare,
                    registered=False,
                )
            )
        return result
    finally:
        if client is not None:
            await client.aclose()
        if simulator is not None:
            await simulator.stop()


async def _known_members(location: Location, wave: str) -> list[str]:
    """The members an earlier run journalled for ``wave``; the journal is only read, and an
    SQLite file is not created when it does not exist (a database's schema is created on
    first use, as by any command)."""
    if isinstance(location, Path) and not await asyncio.to_thread(location.exists):
        return []
    from sms_flow.journals import open_journal

    async with open_journal(location) as journal:
        return list(await journal.members(wave))


async def _members(
    spec: WaveSpec, known: list[str], client: Any, simulator: Any
) -> tuple[list[str], int]:
    """The sources a run would drive, and how many more it would register (``count``)."""
    sel = spec.sources
    if sel.ids is not None:
        return list(sel.ids), 0
    if sel.query is not None:
        if known or client is None:
            return known, 0
        q = sel.query
        found: list[str] = []
        async for src in client.iter_sources(
            state=q.state, migration_cycle=q.migration_cycle, name=q.name
        ):
            found.append(src.id)
            if q.limit is not None and len(found) >= q.limit:
                break
        return found, 0
    count = sel.count or 0
    if len(known) >= count:
        return known[:count], 0
    prefix = f"{spec.name}-"
    by_name: dict[str, str] = {}
    if simulator is not None:
        for src in simulator.sources():
            if src.name.startswith(prefix):
                by_name.setdefault(src.name, src.id)
    ids = [by_name[n] for n in (f"{prefix}{i:05d}" for i in range(1, count + 1)) if n in by_name]
    return ids, count - len(ids)
