"""The runner: drive every source of a wave to its target, with bounded concurrency.

Each source goes along its shortest legal path, one step at a time through the
:class:`~sms_flow.engine.Engine` (validate, claim, journal, look, push, verify, commit),
re-planned after each step; where the service makes a move itself, the runner waits for it,
polling. A move only another API call makes (``by: action``) is not waited for unless the
wave file says ``wait_for_actions: true``: the source fails at once for this run, the error
saying what to call, and a later run carries on from where the source is. A failed source does not stop the others unless the failure policy says so. A stop
request (Ctrl-C) lets every in-flight step finish and be journalled.

A run first claims the wave's members for its run in the journal: a source another live
driver holds is not driven (``owned``, with whose it is). Then recovery
(:func:`~sms_flow.wave.recovery.recover`) settles the intents a dead run of the wave left
open on its endpoint, and the wave's members are journalled, so a second run drives the same
sources on from where they are. A source found moved since the journal last knew it gets an
``observed`` entry before it is driven. A source the service does not know (404), or whose
first read fails (a 5xx or 403 after the client's retries, no usable answer), fails alone,
with its error and its last state the journal knows; when every read fails, the service
is not usable and the run raises that error. During the run, a source taken over by another
driver (``set --force``) is left to it (``taken``, by whom and why); a push whose outcome is
unknown is settled by reading the source again, or reported ``unverified``; a run that loses
its lease stops at once. A run whose sources in a row cannot reach the service (each after
the client's retries) stops rather than take the others through their retries too
(``WaveReport.unreachable``).

A joined worker (``run --join``) does not claim the whole wave: it takes batch after batch of
the members its session has not done (:meth:`WaveRunner._run_joined`), settling a dead
worker's open intents on each batch first, and records what it finished in the session, so
that several workers share one wave, its rate limit and its failure policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from sms_flow.chart import Edge
from sms_flow.engine import Engine, StepResult
from sms_flow.errors import (
    ApiError,
    ClaimLostError,
    ConfigError,
    ConflictError,
    InputError,
    LeaseLostError,
    NotAppliedError,
    NotFoundError,
    OwnedError,
    TransitionRejected,
    TransportError,
    UnverifiedError,
)
from sms_flow.journal import Intent, Journal, Lease, Outcome
from sms_flow.log import get_logger
from sms_flow.states import StateRequest, parse_pair
from sms_flow.wave.recovery import RecoveryReport, SourceReader, read_states, recover
from sms_flow.wave.report import Event, EventKind, SourceOutcome, SourceRecord, WaveReport
from sms_flow.wave.spec import WaveSpec
from sms_flow.wire import SourceServer

__all__ = ["WaveRunner"]

_log = get_logger("sms_flow.wave.runner")

_DONE_IN_SESSION: Final = frozenset(
    {
        SourceOutcome.FINISHED,
        SourceOutcome.ALREADY,
        SourceOutcome.FAILED,
        SourceOutcome.SKIPPED,
        SourceOutcome.TAKEN,
        SourceOutcome.UNVERIFIED,
    }
)
"""The outcomes a joined worker records as done in its session (no worker of the session
takes the source again); a stopped source is handed back instead."""


class WaveRunner:
    """Drives the sources of a wave to its target with bounded concurrency.

    ``engine`` pushes; ``client`` is what the runner reads sources and lists them with
    (give the engine's own client, rate limited the same way: see
    :func:`~sms_flow.wave.ratelimit.limited`); ``journal`` (the engine's) keeps the wave's
    members and every step. ``on_event`` is called for every :class:`Event`; :meth:`events`
    gives them as an async iterator. ``simulator`` is the embedded simulator that
    ``sources: {count: N}`` registers sources in.

    A subclass changes what is done with each source by overriding :meth:`drive`, built
    from :meth:`walk`, :meth:`take_step`, :meth:`finish` and :meth:`emit` (the drill runner
    does).
    """

    def __init__(
        self,
        spec: WaveSpec,
        engine: Engine,
        journal: Journal,
        *,
        client: SourceReader,
        endpoint: str = "",
        on_event: Callable[[Event], None] | None = None,
        simulator: Any = None,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.client = client
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
        self._unreached = 0  # sources in a row that failed to reach the service

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

    def emit(self, kind: EventKind, **fields: Any) -> None:
        """Tell every subscriber: an :class:`Event` of ``kind`` with ``fields``."""
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
            self.emit(EventKind.STOPPING)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- membership ---------------------------------------------------------------------------

    async def resolve_members(self) -> list[str]:
        """The wave's sources.

        ``ids``: the file's list. ``query``: what the first run's query found (kept in the
        journal, since the sources it moved no longer match it). ``count``: the sources
        registered for this wave in the simulator. The journal keeps them by wave and
        endpoint (the engine's): the members found on one endpoint are never another's.
        """
        sel = self.spec.sources
        where = self.engine.endpoint
        if sel.ids is not None:
            self.members = list(sel.ids)
            await self.journal.add_members(self.spec.name, self.members, endpoint=where)
            return self.members
        known = await self.journal.members(self.spec.name, endpoint=where)
        if sel.query is not None:
            if not known:
                q = sel.query
                api: Any = self.client
                found: list[str] = []
                async for src in api.iter_sources(
                    state=q.state, migration_cycle=q.migration_cycle, name=q.name
                ):
                    found.append(src.id)
                    if q.limit is not None and len(found) >= q.limit:
                        break
                await self.journal.add_members(self.spec.name, found, endpoint=where)
                known = await self.journal.members(self.spec.name, endpoint=where)
            self.members = known
            return known
        ids = await self._register(known, sel.count or 0)
        await self.journal.add_members(self.spec.name, ids, endpoint=where)
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
        """Claim, recover, read the members' states, and drive them all (a joined worker:
        batch after batch of those its session has not done, see :meth:`_run_joined`)."""
        report = self.report
        engine = self.engine
        counted: Any = getattr(self.client, "stats", None)
        retries_before = counted() if callable(counted) else None
        if retries_before is not None:
            report.counting = lambda: _retries_since(retries_before, counted())
        lease = engine.lease
        if lease is not None:
            report.took_over = [run.describe() for run in lease.took_over]
        members = await self.resolve_members()
        try:
            if lease is not None and lease.session is not None:
                await self._run_joined(lease, lease.session)
            else:
                await self._run_alone(members)
        finally:
            for record in report.sources.values():
                if record.outcome is None:
                    record.outcome = SourceOutcome.STOPPED
            report.finished_at = time.time()
            if retries_before is not None:
                report.retries = _retries_since(retries_before, counted())
                report.counting = None
            self.emit(EventKind.WAVE_DONE, report=report)
            for q in self._queues:
                q.put_nowait(None)
        return report

    async def _run_alone(self, members: list[str]) -> None:
        report = self.report
        claimed = await self.engine.claim(members)
        report.recovery = await recover(
            self.engine,
            self.journal,
            client=self.client,
            wave=self.spec.name,
            concurrency=self.spec.concurrency,
        )
        self.emit(EventKind.WAVE_STARTED, report=report)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for source_id in await self._prepare(members, claimed.refused, report.recovery):
            queue.put_nowait(source_id)
        self.emit(EventKind.QUEUED, report=report)

        async def worker() -> None:
            while not self._stop.is_set():
                try:
                    source_id = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self.drive(report.sources[source_id])

        workers = [
            asyncio.create_task(worker())
            for _ in range(min(self.spec.concurrency, max(1, queue.qsize())))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()

    async def _run_joined(self, lease: Lease, session: str) -> None:
        """Drive the wave as one of its session's workers (``run --join``).

        A feeder claims the next batch of members the session has not done and no live
        worker holds (:meth:`Journal.claim_work <sms_flow.journal.Journal.claim_work>`),
        settles the open intents on them (a dead worker's), reads them and queues them; the
        drivers, ``concurrency`` of them, take them one by one. Each claim also records the
        sources finished since the last one as done in the session, and returns the
        session's failures, so that the failure policy counts every worker's. When nothing
        is left to claim but other workers still hold sources, the feeder waits and asks
        again: a dead worker's sources come free when its lease ends. The run ends when
        every member is done in the session.
        """
        report = self.report
        engine = self.engine
        report.session = session
        report.recovery = recovered = RecoveryReport()
        self.emit(EventKind.WAVE_STARTED, report=report)
        drivers = max(1, self.spec.concurrency)
        limit = max(8, drivers)
        poll = min(2.0, max(0.2, lease.seconds / 6))
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        holding: set[str] = set()
        done: dict[str, str] = {}
        wake = asyncio.Event()
        halt_after = self.spec.halt_after

        def settled(source_id: str) -> None:
            holding.discard(source_id)
            outcome = report.sources[source_id].outcome
            if outcome is not None and outcome in _DONE_IN_SESSION:
                done[source_id] = outcome.value
            wake.set()

        async def drive() -> None:
            while (source_id := await queue.get()) is not None:
                if self._stop.is_set():
                    holding.discard(source_id)
                    continue  # left STOPPED, not done: the session's next claim takes it
                try:
                    await self.drive(report.sources[source_id])
                finally:
                    settled(source_id)

        async def feed() -> None:
            while not self._stop.is_set():
                failing = any(v == SourceOutcome.FAILED.value for v in done.values())
                if queue.qsize() >= drivers and not failing:
                    wake.clear()
                    await self._until(wake, None)
                    continue
                sent = dict(done)
                try:
                    work = await self.journal.claim_work(
                        lease.run_id,
                        session,
                        wave=self.spec.name,
                        endpoint=engine.endpoint,
                        limit=0 if queue.qsize() >= drivers else limit,
                        done=sent,
                        holding=sorted(holding),
                    )
                except LeaseLostError as exc:
                    self.lose(exc)
                    return
                for source_id in sent:
                    done.pop(source_id, None)
                granted = work.claimed.granted
                engine.hold(granted)
                if halt_after is not None and work.failures >= halt_after:
                    if not report.halted:
                        report.halted = True
                        _log.warning("halting", wave=self.spec.name, failed=work.failures)
                    self.stop()
                    return
                if granted:
                    ids = list(granted)
                    holding.update(ids)
                    report.taken_over += len(work.claimed.taken_from)
                    recovery = await recover(
                        engine,
                        self.journal,
                        client=self.client,
                        wave=self.spec.name,
                        concurrency=self.spec.concurrency,
                        source_ids=ids,
                    )
                    recovered.merge(recovery)
                    queued = await self._prepare(ids, {}, recovery)
                    for source_id in ids:
                        if source_id not in queued:
                            settled(source_id)  # finished without driving (unreadable...)
                    for source_id in queued:
                        queue.put_nowait(source_id)
                    self.emit(EventKind.QUEUED, report=report)
                    continue
                if work.undone == 0:
                    return  # every member is done in the session
                wake.clear()
                await self._until(wake, poll)

        tasks = [asyncio.create_task(drive()) for _ in range(drivers)]
        try:
            await feed()
            for _ in tasks:
                queue.put_nowait(None)
            await asyncio.gather(*tasks)
            if done:  # the last ones done, stopping or not: no worker takes them again
                with contextlib.suppress(LeaseLostError):
                    await self.journal.claim_work(
                        lease.run_id,
                        session,
                        wave=self.spec.name,
                        endpoint=engine.endpoint,
                        limit=0,
                        done=done,
                    )
        finally:
            for task in tasks:
                task.cancel()

    async def _until(self, event: asyncio.Event, timeout: float | None) -> None:
        """Wait for ``event``, the run's stop, or ``timeout`` seconds, whichever is first."""
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stop.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _prepare(
        self, ids: list[str], refused: dict[str, Any], recovery: RecoveryReport
    ) -> list[str]:
        """Read ``ids`` and make their records: those to drive (returned, in order), and
        those finished at once (held by another driver (``refused``), unreadable, unknown to
        the service, in no state of the chart, in conflict after ``recovery``)."""
        report = self.report
        engine = self.engine
        conflicts = {d["source_id"] for d in recovery.details if d.get("result") == "conflict"}
        mine = [s for s in ids if s not in refused]
        read_at = time.monotonic()
        first = _FirstRead(self.client)
        states = await read_states(first, mine, self.spec.concurrency)
        if first.failed and len(first.failed) == len(mine):
            raise next(iter(first.failed.values()))  # the service is not usable: no wave
        last_known = (
            await self.journal.last_applied(list(first.failed), endpoint=engine.endpoint)
            if first.failed
            else {}
        )
        moved = await self._moved_elsewhere(states)
        queued: list[str] = []
        for source_id in ids:
            record = report.sources[source_id] = SourceRecord(source_id)
            owner = refused.get(source_id)
            if owner is not None:
                self.finish(
                    record,
                    SourceOutcome.OWNED,
                    f"held by another live driver: {owner.describe()}; not driven: run this "
                    "wave again once it is done",
                    "OwnedError",
                )
                continue
            unread = first.failed.get(source_id)
            if unread is not None:
                known = last_known.get(source_id)
                record.state = known.to_state if known is not None else None
                if known is not None:
                    record.detail["state_from"] = f"journal entry {known.id}"
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    f"could not be read: {unread}; not driven: run the wave again once the "
                    "service answers for it",
                    type(unread).__name__,
                    unread,
                )
                continue
            src = states.get(source_id)
            if src is None:
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    "the service does not know this source (404)",
                    "NotFoundError",
                )
                continue
            pair = src.pair
            if pair is None or not engine.chart.is_permitted(pair):
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    f"the service reports {src.describe_state()}, not a state of the chart",
                    "InvalidState",
                )
                continue
            engine.track(source_id, pair, read_at=read_at)
            record.start = record.state = str(pair)
            if source_id in moved:
                record.detail["moved"] = moved[source_id]
            if source_id in conflicts:
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    f"conflict: while the last run was stopped someone else moved it to {pair}; "
                    "it is left alone: check it, then run again to drive it on",
                    "Conflict",
                )
                continue
            queued.append(source_id)
        return queued

    async def _moved_elsewhere(self, states: dict[str, Any]) -> dict[str, str]:
        """Record an ``observed`` entry for each source found elsewhere than the journal's last
        known state of it (on this endpoint): moved by the service, or outside sms-flow."""
        engine = self.engine
        known = await self.journal.last_applied(
            [s for s, src in states.items() if src is not None], endpoint=engine.endpoint
        )
        moved: dict[str, str] = {}
        for source_id, entry in known.items():
            src = states[source_id]
            shown = str(src.pair) if src.pair is not None else src.describe_state()
            if shown == entry.to_state:
                continue
            service = any(
                e.dest == src.pair and not e.pushable for e in self._edges_from(entry.to_state)
            )
            actor = "service" if service else "unknown"
            note = (
                f"found at {shown}; the journal last knew {entry.to_state} (entry {entry.id}): "
                + ("a move the service makes itself" if service else "moved outside sms-flow")
            )
            await self.journal.record(
                Intent(
                    source_id,
                    None,
                    entry.to_state,
                    shown,
                    actor,
                    note,
                    wave=self.spec.name,
                    endpoint=engine.endpoint,
                    project=engine.project,
                    run_id=engine.lease.run_id if engine.lease is not None else None,
                ),
                Outcome.OBSERVED,
            )
            moved[source_id] = f"{entry.to_state} → {shown} ({actor})"
        return moved

    def _edges_from(self, state: str) -> tuple[Edge, ...]:
        try:
            pair = parse_pair(state)
        except InputError:
            return ()
        return self.engine.chart.edges_from(pair) if self.engine.chart.is_permitted(pair) else ()

    def lose(self, error: LeaseLostError) -> None:
        """The run lost its lease: push nothing more, stop."""
        if self.report.lease_lost is None:
            self.report.lease_lost = str(error)
            _log.warning("lease lost", wave=self.spec.name, error=str(error))
        self.stop()

    def finish(
        self,
        record: SourceRecord,
        outcome: SourceOutcome,
        error: str | None = None,
        error_type: str | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """Record a source's outcome (and halt the run when the failure policy says so);
        ``exc``, the error that ended it, gives the request id and attempts of its call."""
        record.outcome = outcome
        record.error = error
        record.error_type = error_type
        if exc is not None:
            record.note_error(exc)
        self._count_unreached(outcome, exc)
        if outcome is SourceOutcome.FAILED:
            self._failed += 1
            halt = self.spec.halt_after
            if halt is not None and self._failed >= halt and not self.report.halted:
                self.report.halted = True
                _log.warning("halting", wave=self.spec.name, failed=self._failed)
                self.stop()
        self.emit(EventKind.SOURCE_DONE, source_id=record.source_id, outcome=outcome, error=error)

    async def drive(self, record: SourceRecord) -> None:
        """Take one source to the wave's target."""
        state = self.engine.states[record.source_id]
        first = self.engine.planner.plan(state, self.target)
        if first.found and not first.steps:
            self.finish(record, SourceOutcome.ALREADY)
            return
        if await self.walk(record, self.target):
            self.finish(record, SourceOutcome.FINISHED)

    async def walk(self, record: SourceRecord, target: StateRequest) -> bool:
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
                self.finish(
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
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    f"gave up: too many steps, last at {state}",
                    "Loop",
                )
                return False
            if not started:
                started = True
                self.emit(EventKind.SOURCE_STARTED, source_id=source_id, state=state)
            if not await self.take_step(record, plan.steps[0]):
                return False

    async def take_step(self, record: SourceRecord, step: Edge) -> bool:
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
                self.emit(EventKind.WAITING, source_id=source_id, edge=step, state=state)
                waiting = asyncio.ensure_future(
                    engine.wait_for_service(
                        source_id,
                        step,
                        wave=self.spec.name,
                        within=self.spec.service_wait,
                        wait_for_action=self.spec.wait_for_actions,
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
        except LeaseLostError as exc:
            self.lose(exc)
            return False
        except ClaimLostError as exc:
            await self._read_state(record)
            self.finish(record, SourceOutcome.TAKEN, str(exc), "ClaimLostError", exc)
            return False
        except OwnedError as exc:
            self.finish(record, SourceOutcome.OWNED, str(exc), "OwnedError", exc)
            return False
        except UnverifiedError as exc:
            return await self._unverified(record, exc)
        except ConflictError as exc:
            record.state = exc.observed
            whose = await self.whose_move(source_id, exc.observed)
            self.finish(record, SourceOutcome.FAILED, f"{exc}; {whose}", "Conflict", exc)
            return False
        except (TransitionRejected, NotAppliedError, ApiError, TransportError) as exc:
            record.state = str(engine.states.get(source_id, state))
            self.finish(record, SourceOutcome.FAILED, str(exc), type(exc).__name__, exc)
            return False
        self._stepped(record, result)
        return True

    def _count_unreached(self, outcome: SourceOutcome, exc: BaseException | None) -> None:
        """Stop the run once enough sources in a row failed to reach the service (each after
        the client's retries, ``total_time``): a service that is down would otherwise take
        every source of the wave through its retries, one after another."""
        # A push whose outcome is unknown could not be read back either.
        unreached = isinstance(exc, TransportError | UnverifiedError)
        if outcome not in (SourceOutcome.FAILED, SourceOutcome.UNVERIFIED) or not unreached:
            return
        self._unreached += 1
        limit = max(3, min(self.spec.concurrency, 16))
        if self._unreached >= limit and self.report.unreachable is None:
            self.report.unreachable = (
                f"{self._unreached} sources in a row could not reach the service ({exc}); "
                "the run stopped rather than wait for each one: run it again once the service "
                "answers (it carries on from where every source is)"
            )
            _log.warning("service unreachable", wave=self.spec.name, error=str(exc))
            self.stop()

    def _stepped(self, record: SourceRecord, result: StepResult) -> None:
        self._unreached = 0
        record.steps += 1
        record.count_attempts(result.attempts)
        record.state = str(result.to_state)
        self.emit(EventKind.STEP, source_id=record.source_id, step=result)

    async def _unverified(self, record: SourceRecord, exc: UnverifiedError) -> bool:
        """A push whose outcome is unknown: read the source again to settle it, then go on."""
        engine = self.engine
        source_id = record.source_id
        try:
            settled = await engine.settle_unverified(source_id)
        except (ApiError, TransportError, TransitionRejected) as read_exc:
            record.state = str(engine.states[source_id])
            record.detail["unverified"] = {"entry": exc.entry_id, "read": str(read_exc)}
            self.finish(record, SourceOutcome.UNVERIFIED, str(exc), "UnverifiedError", exc)
            return False
        if settled is not None and settled.outcome is Outcome.APPLIED:
            self.report.applied += 1
            self._stepped(record, settled)
        elif settled is not None and settled.outcome is Outcome.CONFLICT:
            record.state = str(engine.states[source_id])
            whose = await self.whose_move(source_id, record.state)
            self.finish(record, SourceOutcome.FAILED, f"{settled.note}; {whose}", "Conflict")
            return False
        return True  # applied, or did not take: the walk goes on from what the read showed

    async def _read_state(self, record: SourceRecord) -> None:
        """Show the source's true state in the report (it is no longer this run's)."""
        with contextlib.suppress(ApiError, TransportError, TransitionRejected):
            record.state = str(await self.engine.refresh(record.source_id))

    async def whose_move(self, source_id: str, observed: str) -> str:
        """Whose move a source's state seems to be, from the journal, for a person."""
        for entry in reversed(await self.journal.history(source_id=source_id, limit=20)):
            if entry.outcome in (Outcome.APPLIED, Outcome.OBSERVED) and entry.to_state == observed:
                if entry.actor == self.actor and entry.wave == self.spec.name:
                    continue
                why = f", reason: {entry.reason}" if entry.reason else ""
                return f"it seems to be {entry.actor}'s move (journal entry {entry.id}{why})"
        return (
            "no journal entry shows that move: someone outside sms-flow made it (the console, "
            "another tool)"
        )


def _retries_since(before: Any, after: Any) -> dict[str, int]:
    """The retries between two :class:`~sms_flow.client.ClientStats`, by cause and in all."""
    then = before.by_cause()
    counts = {cause: n - then.get(cause, 0) for cause, n in after.by_cause().items()}
    return {**counts, "total": sum(counts.values())}


class _FirstRead:
    """A reader for the wave's first read of its sources that keeps each source's failure.

    A source the service answers for with an error other than 404 (a 5xx or 403 after the
    client's retries, no usable answer) is kept in :attr:`failed` and handed on as not found,
    so that reading the others goes on; the runner then fails that source alone, with its
    error. A wait interrupted by a stop passes through.
    """

    iter_sources: Callable[..., AsyncIterator[SourceServer]]
    """The wrapped reader's listing, when it has one (set in ``__init__``)."""

    def __init__(self, reader: SourceReader) -> None:
        self._reader = reader
        self.failed: dict[str, ApiError | TransportError] = {}
        listing = getattr(reader, "iter_sources", None)
        if listing is not None:
            self.iter_sources = listing

    async def get_source(self, source_id: str) -> SourceServer:
        try:
            return await self._reader.get_source(source_id)
        except NotFoundError:
            raise
        except (ApiError, TransportError) as exc:
            self.failed[source_id] = exc
            raise NotFoundError(status=404, error_msg="kept as unread") from exc
