"""Orchestration: drive a wave of source servers to a target state, and resume after a crash.

A wave names its sources (ids, a listing query, or — against the simulator — a number to
register), a target pair, a concurrency, a request-rate limit and a failure policy. The
runner drives every source along its shortest legal path, one step at a time through the
:class:`~sms_flow.engine.Engine` (validate, journal, push, verify, commit), re-planning after
each step; it waits, polling, where the service makes a move itself. A failed source does
not stop the others unless the failure policy says so.

Nothing is lost when the process dies: the journal holds every intent before its push, and
:func:`recover` settles the open ones at the next start by reading the sources back
(applied → settled; not applied → pushed again; changed by someone else → a conflict,
not overwritten). The wave's members are journalled too, so a second run drives the same
sources. A stop request (Ctrl-C) lets every in-flight step finish and be journalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sms_flow.chart import Chart, Edge
from sms_flow.engine import Engine, StepResult
from sms_flow.errors import (
    ApiError,
    ConfigError,
    NotAppliedError,
    NotFoundError,
    SmsFlowError,
    TransitionRejected,
    TransportError,
)
from sms_flow.journal import Entry, Journal, Outcome
from sms_flow.log import get_logger
from sms_flow.states import StatePair, StateRequest, parse_pair, parse_request
from sms_flow.wire import SourceServer, validate_source_id

__all__ = [
    "Event",
    "EventKind",
    "FailurePolicy",
    "RateLimiter",
    "RecoveryReport",
    "SourceOutcome",
    "SourceSelector",
    "WaveReport",
    "WaveRunner",
    "WaveSpec",
    "load_wave",
    "recover",
]

_log = get_logger("sms_flow.orchestrator")

SIMULATOR = "simulator"


# -- the wave file ----------------------------------------------------------------------------


class SourceQuery(BaseModel):
    """A listing query against the service (``GET /v3/sources``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: str | None = None
    migration_cycle: str | None = None
    name: str | None = None
    limit: int | None = Field(None, ge=1, description="Take at most this many sources.")


class SourceSelector(BaseModel):
    """Which sources a wave drives: exactly one of ``ids``, ``query`` and ``count``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: list[str] | None = Field(None, min_length=1)
    query: SourceQuery | None = None
    count: int | None = Field(
        None, ge=1, le=100_000, description="Simulator only: register this many."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSelector:
        given = [n for n in ("ids", "query", "count") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "name the sources with exactly one of ids (a list), query (a listing query) "
                f"or count (simulator only); got {', '.join(given) or 'none'}"
            )
        return self

    @field_validator("ids")
    @classmethod
    def _valid_ids(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None:
            for source_id in ids:
                validate_source_id(source_id)
            ids = list(dict.fromkeys(ids))
        return ids


class FailurePolicy(BaseModel):
    """What a failed source does to the rest: carry on, or halt after ``halt_after`` failed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    halt_after: int | None = Field(
        None,
        ge=1,
        description="Stop starting new work once this many sources failed; None carries on.",
    )


class SimulatorOptions(BaseModel):
    """Settings of the embedded simulator (used when ``endpoint: simulator``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_file: str | None = Field(
        None,
        description="Where the simulated sources live across runs (default .sms-flow/simulator.sqlite).",
    )
    service_delay: float = Field(0.2, ge=0)
    seed: int | None = None
    latency: float = Field(0.0, ge=0)
    latency_jitter: float = Field(0.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    throttle_rate: float = Field(0.0, ge=0, le=1)
    retry_after: float = Field(0.05, ge=0)
    drop_rate: float = Field(0.0, ge=0, le=1)
    apply_then_fail_rate: float = Field(0.0, ge=0, le=1)


_FAULT_FIELDS: set[str] = set(
    {
        "latency",
        "latency_jitter",
        "error_rate",
        "throttle_rate",
        "retry_after",
        "drop_rate",
        "apply_then_fail_rate",
    }
)


class WaveSpec(BaseModel):
    """A wave file (YAML); ``examples/wave.yaml`` is the reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    endpoint: str = Field(SIMULATOR, description="'simulator' (embedded) or the service's URL.")
    region: str | None = Field(None, description="A region instead of an endpoint URL.")
    sources: SourceSelector
    target: str = "FINISHED/cutovered"
    concurrency: int = Field(32, ge=1, le=4096)
    rate_limit: float | None = Field(
        None, gt=0, description="Requests per second towards the service."
    )
    failure_policy: FailurePolicy | Literal["continue"] = "continue"
    verify: bool = True
    service_wait: float = Field(
        300.0, gt=0, description="Seconds to wait for a move the service makes."
    )
    report: str | None = Field(None, description="Where the JSON report goes.")
    chart: str | None = Field(None, description="A statechart file instead of the default one.")
    simulator: SimulatorOptions = Field(default_factory=SimulatorOptions)

    @field_validator("target")
    @classmethod
    def _target_parses(cls, value: str) -> str:
        parse_request(value)
        return value

    @model_validator(mode="after")
    def _count_needs_simulator(self) -> WaveSpec:
        if self.sources.count is not None and not self.uses_simulator:
            raise ValueError(
                "sources.count registers new sources, which only the simulator allows; "
                "against a real endpoint name the sources with ids or a query"
            )
        return self

    @property
    def uses_simulator(self) -> bool:
        return self.endpoint == SIMULATOR and self.region is None

    @property
    def halt_after(self) -> int | None:
        return None if isinstance(self.failure_policy, str) else self.failure_policy.halt_after

    @property
    def target_request(self) -> StateRequest:
        return parse_request(self.target)


def load_wave(path: str | Path, **overrides: Any) -> WaveSpec:
    """Read and check a wave file; ``overrides`` replace its top-level fields.

    Raises :class:`~sms_flow.errors.ConfigError` naming the file and the offending field.
    """
    return load_spec(path, WaveSpec, "wave", overrides)


_SpecT = TypeVar("_SpecT", bound=BaseModel)


def load_spec(
    path: str | Path,
    model: type[_SpecT],
    kind: str,
    overrides: Mapping[str, Any],
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> _SpecT:
    """Read a YAML file of ``kind`` (wave, drill) into ``model``; ``adjust`` may rewrite the raw
    mapping first. Every problem is a :class:`~sms_flow.errors.ConfigError` naming the file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{kind} file {p} does not exist; give the path of a {kind} YAML file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{kind} file {p} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{kind} file {p} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind} file {p}: a {kind} is a mapping with name, sources ...")
    if adjust is not None:
        adjust(raw)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '(file)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{kind} file {p}: {problems}") from None
    except SmsFlowError as exc:
        raise ConfigError(f"{kind} file {p}: {exc}") from None


# -- rate limit ----------------------------------------------------------------------------------


class RateLimiter:
    """Spaces calls to at most ``rate`` a second, first come first served, with a small burst."""

    __slots__ = ("_interval", "_next", "_slack")

    def __init__(self, rate: float, *, burst: int = 1) -> None:
        if rate <= 0:
            raise ConfigError(f"rate limit {rate!r} must be above 0 requests per second")
        self._interval = 1.0 / rate
        self._slack = max(0, burst - 1) * self._interval
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(self._next, now - self._slack)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _LimitedApi:
    """An SMS client whose calls wait for the rate limiter first."""

    def __init__(self, client: Any, limiter: RateLimiter) -> None:
        self._client = client
        self._limiter = limiter

    async def change_state(
        self, source_id: str, copystate: Any = None, migrationcycle: Any = None
    ) -> Any:
        await self._limiter.acquire()
        return await self._client.change_state(source_id, copystate, migrationcycle)

    async def get_source(self, source_id: str) -> SourceServer:
        await self._limiter.acquire()
        result: SourceServer = await self._client.get_source(source_id)
        return result

    async def iter_sources(self, **filters: Any) -> AsyncIterator[SourceServer]:
        async for src in self._client.iter_sources(**filters):
            yield src

    async def register_source(self, name: str, **fields: Any) -> str:
        await self._limiter.acquire()
        result: str = await self._client.register_source(name, **fields)
        return result


# -- recovery ------------------------------------------------------------------------------------


@dataclass
class RecoveryReport:
    """What recovery found for the open intents."""

    applied: int = 0
    pushed_again: int = 0
    conflicts: int = 0
    failed: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.applied + self.pushed_again + self.conflicts + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "pushed_again": self.pushed_again,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "details": self.details,
        }


async def _read_states(
    api: Any, source_ids: Sequence[str], concurrency: int
) -> dict[str, SourceServer | None]:
    """Read many sources: page through the listing when there are many, else one GET each."""
    wanted = set(source_ids)
    found: dict[str, SourceServer | None] = {}
    if len(wanted) > 50 and hasattr(api, "iter_sources"):
        async for src in api.iter_sources():
            if src.id in wanted:
                found[src.id] = src
    missing = [s for s in source_ids if s not in found]
    gate = asyncio.Semaphore(concurrency)

    async def one(source_id: str) -> None:
        async with gate:
            try:
                found[source_id] = await api.get_source(source_id)
            except NotFoundError:
                found[source_id] = None

    await asyncio.gather(*(one(s) for s in missing))
    return found


async def recover(
    engine: Engine,
    journal: Journal,
    *,
    wave: str | None = None,
    concurrency: int = 32,
) -> RecoveryReport:
    """Settle every open intent (of ``wave``, or all) by reading its source back.

    The source shows the intent's destination: the push was applied; settle it. It shows
    the origin: the push did not land; push it again (it sets an absolute state, so that is
    safe) and settle it by what happens. Anything else: someone else changed it; settle as
    a conflict and leave the source alone. Intents of one source are settled in order.
    """
    report = RecoveryReport()
    intents = await journal.open_intents(wave=wave)
    if not intents:
        return report
    by_source: dict[str, list[Entry]] = {}
    for entry in intents:
        by_source.setdefault(entry.source_id, []).append(entry)
    states = await _read_states(engine.client, list(by_source), concurrency)
    gate = asyncio.Semaphore(concurrency)

    async def settle_source(source_id: str, entries: list[Entry]) -> None:
        async with gate:
            src = states.get(source_id)
            for entry in entries:
                await _settle_one(engine, journal, entry, src, report)
                src = None  # after the first, read again

    await asyncio.gather(*(settle_source(s, es) for s, es in by_source.items()))
    _log.info(
        "recovered", wave=wave, **{k: v for k, v in report.to_dict().items() if k != "details"}
    )
    return report


async def _settle_one(
    engine: Engine, journal: Journal, entry: Entry, src: SourceServer | None, report: RecoveryReport
) -> None:
    source_id = entry.source_id
    if src is None:
        try:
            src = await engine.client.get_source(source_id)
        except NotFoundError as exc:
            await journal.settle(
                entry.id, Outcome.FAILED, error=f"recovery: the source no longer exists ({exc})"
            )
            report.failed += 1
            report.details.append({"source_id": source_id, "entry": entry.id, "result": "gone"})
            return
        except (ApiError, TransportError) as exc:
            # Leave it open: the next start tries again.
            report.details.append(
                {"source_id": source_id, "entry": entry.id, "result": f"unread: {exc}"}
            )
            return
    observed = src.pair
    shown = str(observed) if observed is not None else src.describe_state()
    if shown == entry.to_state:
        await journal.settle(
            entry.id, Outcome.APPLIED, error="settled by recovery: the source shows the change"
        )
        if observed is not None:
            engine.track(source_id, observed)
        report.applied += 1
        report.details.append({"source_id": source_id, "entry": entry.id, "result": "applied"})
        return
    if shown != entry.from_state:
        await journal.settle(
            entry.id,
            Outcome.CONFLICT,
            error=f"recovery: the source is {shown}, neither {entry.from_state} nor {entry.to_state}; "
            "someone else changed it (left as it is)",
        )
        if observed is not None and engine.chart.is_permitted(observed):
            engine.track(source_id, observed)
        report.conflicts += 1
        report.details.append(
            {"source_id": source_id, "entry": entry.id, "result": "conflict", "observed": shown}
        )
        return
    # Not applied: push the same absolute state again, under the same journal entry.
    dest = parse_pair(entry.to_state)
    try:
        pushed = await engine.client.change_state(source_id, dest.copystate, dest.migrationcycle)
        if engine.verify:
            await engine.verify_applied(
                source_id, parse_pair(entry.from_state), dest, pushed.request_id
            )
    except (ApiError, TransportError, NotAppliedError) as exc:
        await journal.settle(
            entry.id, Outcome.FAILED, error=f"recovery: pushed again and failed: {exc}"[:1000]
        )
        report.failed += 1
        report.details.append(
            {"source_id": source_id, "entry": entry.id, "result": "failed", "error": str(exc)}
        )
        return
    await journal.settle(
        entry.id,
        Outcome.APPLIED,
        request_id=pushed.request_id,
        attempts=pushed.attempts,
        error="settled by recovery: pushed again",
    )
    engine.track(source_id, dest)
    report.pushed_again += 1
    report.details.append({"source_id": source_id, "entry": entry.id, "result": "pushed again"})


# -- events ----------------------------------------------------------------------------------------


class EventKind(StrEnum):
    WAVE_STARTED = "wave_started"
    SOURCE_STARTED = "source_started"
    STEP = "step"
    WAITING = "waiting"
    CHECK = "check"
    SOURCE_DONE = "source_done"
    STOPPING = "stopping"
    WAVE_DONE = "wave_done"


class SourceOutcome(StrEnum):
    FINISHED = "finished"
    """Reached the target in this run."""
    ALREADY = "already"
    """Was at the target before this run did anything."""
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not eligible (a drill on a source that is not syncing)."""
    STOPPED = "stopped"
    """Not finished because the run was stopped (Ctrl-C, or the failure policy)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in a wave; callbacks and :meth:`WaveRunner.events` get these."""

    kind: EventKind
    wave: str
    source_id: str | None = None
    step: StepResult | None = None
    edge: Edge | None = None
    state: StatePair | None = None
    outcome: SourceOutcome | None = None
    error: str | None = None
    report: WaveReport | None = None


@dataclass
class SourceRecord:
    """One source in a wave report."""

    source_id: str
    start: str | None = None
    state: str | None = None
    outcome: SourceOutcome | None = None
    steps: int = 0
    error: str | None = None
    error_type: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class WaveReport:
    """The result of a wave run; :meth:`to_dict` is the JSON report."""

    wave: str
    target: str
    endpoint: str
    started_at: float
    finished_at: float = 0.0
    sources: dict[str, SourceRecord] = field(default_factory=dict)
    applied: int = 0
    observed: int = 0
    halted: bool = False
    interrupted: bool = False
    recovery: RecoveryReport | None = None

    def count(self, outcome: SourceOutcome) -> int:
        return sum(1 for r in self.sources.values() if r.outcome is outcome)

    @property
    def failed(self) -> list[SourceRecord]:
        return [r for r in self.sources.values() if r.outcome is SourceOutcome.FAILED]

    @property
    def ok(self) -> bool:
        """True when every source is at the target."""
        return all(
            r.outcome in (SourceOutcome.FINISHED, SourceOutcome.ALREADY)
            for r in self.sources.values()
        )

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "target": self.target,
            "endpoint": self.endpoint,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_seconds": round(self.elapsed, 3),
            "totals": {
                "sources": len(self.sources),
                **{o.value: self.count(o) for o in SourceOutcome},
                "transitions_applied": self.applied,
                "moves_observed": self.observed,
                "transitions_per_second": round(self.applied / self.elapsed, 1)
                if self.elapsed > 0
                else None,
            },
            "halted": self.halted,
            "interrupted": self.interrupted,
            "recovery": self.recovery.to_dict() if self.recovery else None,
            "failures": [
                {
                    "source_id": r.source_id,
                    "state": r.state,
                    "error": r.error,
                    "error_type": r.error_type,
                }
                for r in self.failed
            ],
            "sources": [
                {
                    "source_id": r.source_id,
                    "start": r.start,
                    "state": r.state,
                    "outcome": r.outcome.value if r.outcome else None,
                    "steps": r.steps,
                    "error": r.error,
                    **r.detail,
                }
                for r in self.sources.values()
            ],
        }


# -- the runner -------------------------------------------------------------------------------------


class WaveRunner:
    """Drives the sources of a wave to its target with bounded concurrency.

    ``engine`` pushes (its client should already be rate limited, see :func:`limited`);
    ``journal`` keeps the wave's members and every step. ``on_event`` is called for every
    :class:`Event`; :meth:`events` gives them as an async iterator.
    """

    def __init__(
        self,
        spec: WaveSpec,
        engine: Engine,
        journal: Journal,
        *,
        endpoint: str = "",
        on_event: Callable[[Event], None] | None = None,
        simulator: Any = None,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.simulator = simulator
        self.journal = journal
        self.target = spec.target_request
        self.endpoint = endpoint or spec.endpoint
        self._callbacks: list[Callable[[Event], None]] = [on_event] if on_event else []
        self._queues: list[asyncio.Queue[Event | None]] = []
        self._stop = asyncio.Event()
        self.report = WaveReport(spec.name, spec.target, self.endpoint, time.time())
        self.members: list[str] = []
        self.actor = f"wave:{spec.name}"
        self._failed = 0

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        self._callbacks.append(callback)

    def events(self) -> AsyncIterator[Event]:
        """Every event from now on, ending after ``wave_done``."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queues.append(queue)

        async def iterate() -> AsyncIterator[Event]:
            while (event := await queue.get()) is not None:
                yield event

        return iterate()

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        event = Event(kind, self.spec.name, **fields)
        for callback in self._callbacks:
            callback(event)
        for queue in self._queues:
            queue.put_nowait(event)

    def stop(self) -> None:
        """Start no new step; let the steps in flight finish and be journalled."""
        if not self._stop.is_set():
            self._stop.set()
            self.report.interrupted = True
            self._emit(EventKind.STOPPING)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- membership ---------------------------------------------------------------------------

    async def resolve_members(self) -> list[str]:
        """The wave's sources.

        ``ids``: the file's list. ``query``: what the first run's query found (kept in the
        journal, since the sources it moved no longer match it). ``count``: the sources
        registered for this wave in the simulator.
        """
        sel = self.spec.sources
        if sel.ids is not None:
            self.members = list(sel.ids)
            await self.journal.add_members(self.spec.name, self.members)
            return self.members
        known = await self.journal.members(self.spec.name)
        if sel.query is not None:
            if not known:
                q = sel.query
                api: Any = self.engine.client
                found: list[str] = []
                async for src in api.iter_sources(
                    state=q.state, migration_cycle=q.migration_cycle, name=q.name
                ):
                    found.append(src.id)
                    if q.limit is not None and len(found) >= q.limit:
                        break
                await self.journal.add_members(self.spec.name, found)
                known = await self.journal.members(self.spec.name)
            self.members = known
            return known
        ids = await self._register(known, sel.count or 0)
        await self.journal.add_members(self.spec.name, ids)
        self.members = ids
        return ids

    async def _register(self, known: list[str], count: int) -> list[str]:
        """Against the simulator: make sure ``count`` sources named ``{wave}-NNNNN`` exist.

        Registration goes straight to the embedded simulator (the agent's job in real life,
        never subject to the simulated faults); names make it idempotent across crashes.
        """
        if len(known) >= count:
            return known[:count]
        sim = self.simulator
        if sim is None:
            raise ConfigError(
                "sources.count registers sources in the embedded simulator; none is running"
            )
        prefix = f"{self.spec.name}-"
        by_name: dict[str, str] = {}
        for src in sim.sources():
            if src.name.startswith(prefix):
                by_name.setdefault(src.name, src.id)
        for i in range(1, count + 1):
            name = f"{prefix}{i:05d}"
            if name not in by_name:
                by_name[name] = await sim.register(name, os_type="LINUX")
        return [by_name[f"{prefix}{i:05d}"] for i in range(1, count + 1)]

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> WaveReport:
        """Recover, resolve the members, read their states, and drive them all."""
        report = self.report
        report.recovery = await recover(
            self.engine, self.journal, wave=self.spec.name, concurrency=self.spec.concurrency
        )
        conflicts = {
            d["source_id"] for d in report.recovery.details if d.get("result") == "conflict"
        }
        members = await self.resolve_members()
        self._emit(EventKind.WAVE_STARTED)
        states = await _read_states(self.engine.client, members, self.spec.concurrency)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for source_id in members:
            record = report.sources[source_id] = SourceRecord(source_id)
            src = states.get(source_id)
            if src is None:
                self._finish(
                    record,
                    SourceOutcome.FAILED,
                    "the service does not know this source (404)",
                    "NotFoundError",
                )
                continue
            pair = src.pair
            if pair is None or not self.engine.chart.is_permitted(pair):
                self._finish(
                    record,
                    SourceOutcome.FAILED,
                    f"the service reports {src.describe_state()}, not a state of the chart",
                    "InvalidState",
                )
                continue
            self.engine.track(source_id, pair)
            record.start = record.state = str(pair)
            if source_id in conflicts:
                self._finish(
                    record,
                    SourceOutcome.FAILED,
                    f"conflict: while the last run was stopped someone else moved it to {pair}; "
                    "it is left alone: check it, then run again to drive it on",
                    "Conflict",
                )
                continue
            queue.put_nowait(source_id)

        async def worker() -> None:
            while not self._stop.is_set():
                try:
                    source_id = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self._drive(report.sources[source_id])

        workers = [
            asyncio.create_task(worker())
            for _ in range(min(self.spec.concurrency, max(1, queue.qsize())))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            for record in report.sources.values():
                if record.outcome is None:
                    record.outcome = SourceOutcome.STOPPED
            report.finished_at = time.time()
            self._emit(EventKind.WAVE_DONE, report=report)
            for q in self._queues:
                q.put_nowait(None)
        return report

    def _finish(
        self,
        record: SourceRecord,
        outcome: SourceOutcome,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None:
        record.outcome = outcome
        record.error = error
        record.error_type = error_type
        if outcome is SourceOutcome.FAILED:
            self._failed += 1
            halt = self.spec.halt_after
            if halt is not None and self._failed >= halt and not self.report.halted:
                self.report.halted = True
                _log.warning("halting", wave=self.spec.name, failed=self._failed)
                self.stop()
        self._emit(EventKind.SOURCE_DONE, source_id=record.source_id, outcome=outcome, error=error)

    async def _drive(self, record: SourceRecord) -> None:
        """Take one source to the wave's target."""
        state = self.engine.states[record.source_id]
        first = self.engine.planner.plan(state, self.target)
        if first.found and not first.steps:
            self._finish(record, SourceOutcome.ALREADY)
            return
        if await self._walk(record, self.target):
            self._finish(record, SourceOutcome.FINISHED)

    async def _walk(self, record: SourceRecord, target: StateRequest) -> bool:
        """Walk a source to ``target`` one step at a time, re-planning after each.

        True when it is there. False when it failed (the record is finished as failed) or
        the run is stopping (the record is left for the next run).
        """
        engine = self.engine
        source_id = record.source_id
        started = False
        budget: int | None = None
        while True:
            state = engine.states[source_id]
            record.state = str(state)
            plan = engine.planner.plan(state, target)
            if not plan.found:
                self._finish(
                    record,
                    SourceOutcome.FAILED,
                    "; ".join(r.message for r in plan.reasons),
                    "NoPath",
                )
                return False
            if not plan.steps:
                return True
            if budget is None:
                budget = 4 * len(plan.steps) + 8
            if self._stop.is_set():
                return False
            budget -= 1
            if budget < 0:
                self._finish(
                    record,
                    SourceOutcome.FAILED,
                    f"gave up: too many steps, last at {state}",
                    "Loop",
                )
                return False
            if not started:
                started = True
                self._emit(EventKind.SOURCE_STARTED, source_id=source_id, state=state)
            if not await self._step(record, plan.steps[0]):
                return False

    async def _step(self, record: SourceRecord, step: Edge) -> bool:
        """Make one step (push it, or wait for the service); False when it failed."""
        engine = self.engine
        source_id = record.source_id
        state = engine.states[source_id]
        try:
            if step.pushable and not engine.chart.is_frozen(step.source):
                result = await engine.fire(
                    source_id, step.trigger, actor=self.actor, wave=self.spec.name
                )
                self.report.applied += 1
            else:
                self._emit(EventKind.WAITING, source_id=source_id, edge=step, state=state)
                waiting = asyncio.ensure_future(
                    engine.wait_for_service(
                        source_id, step, wave=self.spec.name, within=self.spec.service_wait
                    )
                )
                stopping = asyncio.ensure_future(self._stop.wait())
                try:
                    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                if not waiting.done():
                    waiting.cancel()  # nothing was sent; the next run waits again
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
                    return False
                result = waiting.result()
                self.report.observed += 1
        except (TransitionRejected, NotAppliedError, ApiError, TransportError) as exc:
            record.state = str(engine.states.get(source_id, state))
            self._finish(record, SourceOutcome.FAILED, str(exc), type(exc).__name__)
            return False
        record.steps += 1
        record.state = str(result.to_state)
        self._emit(EventKind.STEP, source_id=source_id, step=result)
        return True


def state_counts(engine: Engine, members: Iterable[str]) -> Counter[str]:
    """How many of ``members`` are in each copystate now (for a progress display)."""
    states = engine.states
    counts: Counter[str] = Counter()
    for source_id in members:
        pair = states.get(source_id)
        counts[pair.copystate.value if pair is not None else "?"] += 1
    return counts


def limited(client: Any, rate_limit: float | None) -> Any:
    """``client`` itself, or a wrapper that spaces its calls to ``rate_limit`` a second."""
    if rate_limit is None:
        return client
    return _LimitedApi(client, RateLimiter(rate_limit, burst=max(1, int(rate_limit // 10))))


def chart_of(spec: WaveSpec, base: Path | None = None) -> Chart | None:
    """The wave's own chart, if it names one (relative to the wave file's folder)."""
    if spec.chart is None:
        return None
    from sms_flow.chart import load_chart

    path = Path(spec.chart)
    if base is not None and not path.is_absolute():
        path = base / path
    return load_chart(path)


# -- wiring: simulator, client, journal, engine ------------------------------------------------------


class WaveSession:
    """Everything a wave run needs, opened together and closed together.

    ``async with WaveSession(spec) as session: report = await session.runner.run()``.
    With ``endpoint: simulator`` an embedded simulator runs in this process, its sources
    kept in a state file beside the journal so that a second run finds them.
    """

    def __init__(
        self,
        spec: WaveSpec,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        journal_path: str | Path | None = None,
        base_dir: Path | None = None,
        fresh: bool = False,
        on_event: Callable[[Event], None] | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        from sms_flow.journal import default_journal_path

        self.spec = spec
        self._endpoint = endpoint
        self._region = region
        self.journal_path = Path(journal_path) if journal_path else default_journal_path()
        self._base_dir = base_dir
        self._fresh = fresh
        self._on_event = on_event
        self._client_options = dict(client_options or {})
        self.simulator: Any = None
        self.client: Any = None
        self.journal: Any = None
        self.runner: WaveRunner = None  # type: ignore[assignment]  # set in __aenter__

    @property
    def embedded(self) -> bool:
        return self._endpoint is None and self._region is None and self.spec.uses_simulator

    @property
    def simulator_state_file(self) -> Path:
        configured = self.spec.simulator.state_file
        return Path(configured) if configured else self.journal_path.parent / "simulator.sqlite"

    @property
    def report_path(self) -> Path:
        if self.spec.report:
            return Path(self.spec.report)
        return self.journal_path.parent / "reports" / f"{self.spec.name}.json"

    async def __aenter__(self) -> WaveSession:
        from sms_flow.client import SmsClient
        from sms_flow.journal import SqliteJournal

        spec = self.spec
        if self._fresh and not self.embedded:
            raise ConfigError(
                "--fresh starts the embedded simulator over; it cannot be used with a real endpoint"
            )
        try:
            if self.embedded:
                from sms_flow.simulator import Faults, Simulator, SimulatorConfig

                state_file = self.simulator_state_file
                state_file.parent.mkdir(parents=True, exist_ok=True)
                if self._fresh:
                    _wipe_sqlite(state_file)
                opts = spec.simulator
                self.simulator = Simulator(
                    SimulatorConfig(
                        state_file=state_file,
                        service_delay=opts.service_delay,
                        seed=opts.seed,
                        faults=Faults(**opts.model_dump(include=_FAULT_FIELDS)),
                    )
                )
                await self.simulator.start()
                self.client = SmsClient(self.simulator.url, **self._client_options)
                shown_endpoint = f"embedded simulator ({state_file})"
            else:
                endpoint = self._endpoint or (None if spec.endpoint == SIMULATOR else spec.endpoint)
                region = self._region or spec.region
                overrides: dict[str, Any] = dict(self._client_options)
                if endpoint:
                    overrides["endpoint"] = endpoint
                elif region:
                    overrides["region"] = region
                self.client = SmsClient.from_env(**overrides)
                shown_endpoint = self.client.endpoint
            await self.client.open()
            self.journal = SqliteJournal(self.journal_path)
            await self.journal.open()
            if self._fresh:
                await self.journal.remove_members(spec.name)
            chart = chart_of(spec, self._base_dir)
            engine = Engine(
                limited(self.client, spec.rate_limit),
                chart=chart,
                journal=self.journal,
                verify=spec.verify,
                actor=f"wave:{spec.name}",
            )
            self.runner = WaveRunner(
                spec,
                engine,
                self.journal,
                endpoint=shown_endpoint,
                on_event=self._on_event,
                simulator=self.simulator,
            )
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.journal is not None:
            await self.journal.close()
            self.journal = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self.simulator is not None:
            await self.simulator.stop()
            self.simulator = None

    def write_report(self, report: WaveReport) -> Path:
        import json

        path = self.report_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _wipe_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _folder_of(path: str | Path) -> Path:
    return Path(path).resolve().parent


async def run_wave(
    spec: WaveSpec | str | Path,
    *,
    endpoint: str | None = None,
    journal_path: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
    fresh: bool = False,
) -> WaveReport:
    """Run a wave from Python: recover, drive every source, write the JSON report.

    ``spec`` is a :class:`WaveSpec` or the path of a wave file. ``on_event`` sees every
    :class:`Event`. For an async iterator of events, or to stop a run, use
    :class:`WaveSession` and its ``runner``.
    """
    base_dir = None
    if not isinstance(spec, WaveSpec):
        base_dir = _folder_of(spec)
        spec = load_wave(spec)
    return await run_session(
        WaveSession(
            spec,
            endpoint=endpoint,
            journal_path=journal_path,
            base_dir=base_dir,
            fresh=fresh,
            on_event=on_event,
        )
    )


async def run_session(session: WaveSession) -> WaveReport:
    """Open ``session``, run its runner to the end, write the JSON report, close."""
    async with session:
        report = await session.runner.run()
        session.write_report(report)
        return report
