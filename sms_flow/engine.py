"""The engine: validate, journal, push, verify, commit, one source at a time.

Firing a trigger for a source:

1. **validate** it against the chart (refused: :class:`~sms_flow.errors.TransitionRejected`,
   journalled as ``rejected``, nothing sent). From a frozen state, or for a move only the
   service makes, the engine refuses unless the caller forces it with a reason. Then the
   shared ``transitions`` machine begins the step: the conditions registered on it are a
   gate (refused: ``TransitionRejected`` with reason ``condition``, journalled as
   ``rejected``, nothing sent), and its ``before`` callbacks run (one that raises stops the
   step: journalled as ``failed``, nothing sent);
2. **journal** the intent, durably, before anything goes out;
3. **push** ``PUT /v3/sources/{id}/changestate`` with both fields of the destination;
4. **verify** by reading the source back (on by default): the pushed pair, or a typed
   error (:class:`~sms_flow.errors.IgnoredByServiceError` when nothing changed,
   :class:`~sms_flow.errors.ReadBackMismatchError` when a third state shows);
5. **commit**: the journal entry is settled as applied, then the state changes through the
   machine (which decides the new state) and its ``after`` callbacks run.

A failure in steps 2-4 settles the entry by what happened and leaves the state unchanged.
A callback that raises in step 5 cannot undo what the service did: the journal says
``applied``, the engine tracks the new state, and the callback's exception reaches the
caller with a note saying so. :mod:`sms_flow.machine` describes the callbacks in full.

Transitions for one source are serialized (first come, first served); different sources run
concurrently. Moves the service makes itself (``by: service`` or ``by: action`` edges) are
waited for by polling, never pushed; when one is seen, its state change and ``after``
callbacks run through the machine too (there is nothing to gate: it has happened).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sms_flow.chart import Chart, Edge, default_chart
from sms_flow.errors import (
    ApiError,
    ConfigError,
    IgnoredByServiceError,
    InputError,
    NotAppliedError,
    NotFoundError,
    ReadBackMismatchError,
    ServerError,
    SmsFlowError,
    TransitionRejected,
    TransportError,
    WaitTimeoutError,
)
from sms_flow.journal import Entry, Intent, Journal, Outcome
from sms_flow.log import enabled as log_enabled
from sms_flow.log import get_logger
from sms_flow.machine import Firing, LifecycleMachine
from sms_flow.planner import Planner, Reason, ReasonCode, RequestLike, Verdict
from sms_flow.states import StatePair, StateRequest, parse_pair
from sms_flow.wire import SourceServer

__all__ = ["Engine", "Resettled", "SmsApi", "StepResult", "WaitPolicy"]

_log = get_logger("sms_flow.engine")


class _Pushed(Protocol):
    @property
    def request_id(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...


class SmsApi(Protocol):
    """What the engine needs of a client (``SmsClient`` is one)."""

    async def change_state(
        self, source_id: str, copystate: Any = None, migrationcycle: Any = None
    ) -> _Pushed: ...

    async def get_source(self, source_id: str) -> SourceServer: ...


@dataclass(frozen=True, slots=True)
class _Landed:
    """A push whose answer was an error, but whose change the read-back shows."""

    request_id: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How long and how often to poll while the service makes a move itself.

    ``timeout`` bounds the wait. The source is read at once, then again after ``first_delay``
    seconds, each delay ``factor`` times the last, up to ``max_delay``. Every field is a
    finite number above 0, and ``factor`` is at least 1 (a shrinking delay would end up
    polling without pause): anything else raises :class:`~sms_flow.errors.ConfigError`.
    """

    timeout: float = 300.0
    first_delay: float = 0.2
    factor: float = 1.5
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        for name in ("timeout", "first_delay", "max_delay"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ConfigError(f"WaitPolicy.{name} is {value!r}; give more than 0 seconds")
        if not _finite(self.factor) or self.factor < 1:
            raise ConfigError(
                f"WaitPolicy.factor is {self.factor!r}; give 1 or more (1 = poll at a steady pace)"
            )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Resettled:
    """What :meth:`Engine.resettle` did with one open journal entry."""

    entry_id: int
    source_id: str
    result: Literal["applied", "pushed again", "conflict", "failed", "gone", "unread"]
    """``applied``: the source shows the change; settled. ``pushed again``: it still showed
    the origin; pushed (and verified) now, settled applied. ``conflict``: it shows a third
    state; settled as a conflict and left alone. ``failed``: pushed again and failed; settled
    failed. ``gone``: the source no longer exists; settled failed. ``unread``: it could not
    be read; the entry stays open for the next recovery."""
    observed: str | None = None
    """The state the source showed (``conflict``)."""
    error: str | None = None
    """What went wrong (``failed``, ``gone``, ``unread``)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """What became of one step for one source."""

    source_id: str
    trigger: str | None
    from_state: StatePair
    to_state: StatePair
    outcome: Outcome
    request_id: str | None = None
    attempts: int = 0
    forced: bool = False
    journal_id: int | None = None
    elapsed: float = 0.0
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "trigger": self.trigger,
            "from": str(self.from_state),
            "to": str(self.to_state),
            "outcome": self.outcome.value,
            "request_id": self.request_id,
            "attempts": self.attempts,
            "forced": self.forced,
            "journal_id": self.journal_id,
            "elapsed": round(self.elapsed, 6),
            "note": self.note,
        }


def _note_applied(exc: BaseException, source_id: str, edge: Edge) -> None:
    exc.add_note(
        f"source {source_id}: {edge.trigger} to {edge.dest} happened all the same: the service "
        "shows it, the journal has it and the engine tracks it; this error came from a callback "
        "registered on the state machine, after the change"
    )


class _Locks:
    """One FIFO lock per source with work in flight; entries go when nobody holds them.

    ``await acquire(id)`` ... ``release(id)`` (in a ``finally``) rather than a context
    manager: this runs for every step, and the generator an ``asynccontextmanager`` needs
    costs more than the lock.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, list[Any]] = {}

    async def acquire(self, source_id: str) -> None:
        entry = self._held.get(source_id)
        if entry is None:
            entry = self._held[source_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:
            self._leave(source_id, entry)
            raise

    def release(self, source_id: str) -> None:
        entry = self._held[source_id]
        entry[0].release()
        self._leave(source_id, entry)

    def _leave(self, source_id: str, entry: list[Any]) -> None:
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[source_id]

    def __len__(self) -> int:
        return len(self._held)


class Engine:
    """Validates, journals, pushes, verifies and commits transitions for many sources.

    ``client`` talks to the service (an :class:`~sms_flow.client.SmsClient`, or anything
    with its ``change_state`` and ``get_source``). ``journal`` is optional: without one,
    nothing is written down. ``verify`` reads each change back before committing it.
    ``machine`` is the shared ``transitions`` machine every step goes through; callbacks
    registered on ``machine.machine`` run for every step (see :mod:`sms_flow.machine`).
    The engine does not configure logging: an application does (the CLI does).
    """

    def __init__(
        self,
        client: SmsApi,
        *,
        chart: Chart | None = None,
        journal: Journal | None = None,
        verify: bool = True,
        actor: str = "sms-flow",
        wait: WaitPolicy | None = None,
    ) -> None:
        self.client = client
        self.chart = chart or default_chart()
        self.planner = Planner(self.chart)
        self.machine = LifecycleMachine(self.chart, planner=self.planner)
        self.journal = journal
        self.verify = verify
        self.actor = actor
        self.wait_policy = wait or WaitPolicy()
        self._states: dict[str, StatePair] = {}
        self._locks = _Locks()

    # -- tracking -----------------------------------------------------------------------

    @property
    def states(self) -> Mapping[str, StatePair]:
        """The tracked sources and their last committed states (read-only view)."""
        return self._states

    def track(self, source_id: str, state: StatePair) -> None:
        """Start tracking ``source_id`` in ``state`` (not sent anywhere)."""
        self._states[source_id] = self._intern(state)

    def track_many(self, states: Mapping[str, StatePair] | Iterable[tuple[str, StatePair]]) -> None:
        """Track many sources at once; states are stored as the chart's shared pairs."""
        items = states.items() if isinstance(states, Mapping) else states
        pair = self.chart.pair
        table = self._states
        for source_id, state in items:
            shared = pair(state[0], state[1])
            table[source_id] = shared if shared is not None else StatePair(*state)

    def _intern(self, state: StatePair) -> StatePair:
        return self.chart.pair(state.copystate, state.migrationcycle) or state

    async def refresh(self, source_id: str) -> StatePair:
        """Read the source from the service and track what it says."""
        src = await self.client.get_source(source_id)
        pair = self._pair_of(source_id, src)
        self._states[source_id] = pair
        return pair

    def _pair_of(self, source_id: str, src: SourceServer) -> StatePair:
        pair = src.pair
        if pair is None:
            raise TransitionRejected(
                source_id,
                Verdict(
                    False,
                    None,
                    None,
                    reasons=(
                        Reason(
                            ReasonCode.INVALID_CURRENT,
                            f"the service reports state {src.describe_state()}, which sms-flow "
                            "does not know; nothing can be planned from it",
                        ),
                    ),
                ),
            )
        return self._intern(pair)

    async def _current(self, source_id: str) -> StatePair:
        state = self._states.get(source_id)
        if state is None:
            state = await self.refresh(source_id)
        return state

    # -- one step -----------------------------------------------------------------------

    async def fire(
        self,
        source_id: str,
        trigger: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        force: bool = False,
        wave: str | None = None,
    ) -> StepResult:
        """Push one trigger for one source: validate, journal, push, verify, commit.

        Returns the :class:`StepResult` of an applied step; raises
        :class:`~sms_flow.errors.TransitionRejected` (refused by the chart or by a condition
        on the machine; nothing sent), :class:`~sms_flow.errors.NotAppliedError` (sent, did
        not take), :class:`~sms_flow.errors.ApiError` or
        :class:`~sms_flow.errors.TransportError`, or what a callback on the machine raises
        (from a ``before`` callback: nothing sent; from one after the change: applied all the
        same, and the exception carries a note saying so). The local state changes only when
        the step was applied.
        """
        if force and not (reason and reason.strip()):
            raise InputError("a forced change needs a reason (who asked and why); give reason=")
        locks = self._locks
        await locks.acquire(source_id)
        try:
            current = await self._current(source_id)
            return await self._fire_locked(
                source_id, current, trigger, actor=actor, reason=reason, force=force, wave=wave
            )
        finally:
            locks.release(source_id)

    async def _fire_locked(
        self,
        source_id: str,
        current: StatePair,
        trigger: str,
        *,
        actor: str | None,
        reason: str | None,
        force: bool,
        wave: str | None,
    ) -> StepResult:
        edge = self.chart.edge(current, trigger)
        who = actor or self.actor
        if edge is None:
            verdict = self.machine.explain_trigger(current, trigger)
            await self._record_rejection(
                source_id, current, None, trigger, who, reason, force, wave, verdict
            )
            raise TransitionRejected(source_id, verdict)
        frozen = self.chart.is_frozen(current)
        if (frozen or not edge.pushable) and not force:
            verdict = self.planner.check(
                current, StateRequest(edge.dest.copystate, edge.dest.migrationcycle)
            )
            await self._record_rejection(
                source_id, current, edge.dest, trigger, who, reason, force, wave, verdict
            )
            raise TransitionRejected(source_id, verdict)
        return await self._push(
            source_id, current, edge, actor=who, reason=reason, forced=force, wave=wave
        )

    async def _record_rejection(
        self,
        source_id: str,
        current: StatePair,
        dest: StatePair | None,
        trigger: str | None,
        actor: str,
        reason: str | None,
        forced: bool,
        wave: str | None,
        verdict: Verdict,
    ) -> None:
        _log.info(
            "rejected",
            source_id=source_id,
            trigger=trigger,
            state=str(current),
            reasons=[r.code.value for r in verdict.reasons],
        )
        if self.journal is not None:
            intent = Intent(
                source_id=source_id,
                trigger=trigger,
                from_state=str(current),
                to_state=str(dest) if dest is not None else str(verdict.requested or "?"),
                actor=actor,
                reason=reason,
                forced=forced,
                wave=wave,
            )
            await self.journal.record(
                intent, Outcome.REJECTED, error="; ".join(r.message for r in verdict.reasons)
            )

    async def _push(
        self,
        source_id: str,
        current: StatePair,
        edge: Edge,
        *,
        actor: str,
        reason: str | None,
        forced: bool,
        wave: str | None,
    ) -> StepResult:
        started = time.monotonic()
        journal = self.journal
        intent = None
        if journal is not None:
            intent = Intent(
                source_id=source_id,
                trigger=edge.trigger,
                from_state=str(current),
                to_state=str(edge.dest),
                actor=actor,
                reason=reason,
                forced=forced,
                wave=wave,
            )
        try:
            firing = self.machine.begin(
                current,
                edge.trigger,
                source_id=source_id,
                actor=actor,
                reason=reason,
                forced=forced,
                wave=wave,
            )
        except TransitionRejected as exc:  # a condition registered on the machine says no
            await self._record_rejection(
                source_id,
                current,
                edge.dest,
                edge.trigger,
                actor,
                reason,
                forced,
                wave,
                exc.verdict,
            )
            raise
        except Exception as exc:  # a before callback raised: nothing was sent
            _log.info(
                "not sent", source_id=source_id, trigger=edge.trigger, error=type(exc).__name__
            )
            if journal is not None and intent is not None:
                await journal.record(
                    intent,
                    Outcome.FAILED,
                    error=f"not sent: a callback before the push raised {type(exc).__name__}: "
                    f"{exc}"[:1000],
                )
            raise
        entry_id = None
        if journal is not None and intent is not None:
            entry_id = await journal.begin(intent)
        pushed: _Pushed | None = None
        try:
            pushed = await self._send(source_id, edge)
            if self.verify and not isinstance(pushed, _Landed):
                await self.verify_applied(source_id, current, edge.dest, pushed.request_id)
        except BaseException as exc:
            await self._settle_failure(entry_id, exc, pushed)
            _log.info(
                "not applied",
                source_id=source_id,
                trigger=edge.trigger,
                error=type(exc).__name__,
                request_id=pushed.request_id if pushed else getattr(exc, "request_id", None),
            )
            raise
        if journal is not None and entry_id is not None:
            # wait=False: this returns once the outcome is queued. The journal's writer commits
            # it before anything queued later (so before this source's next intent), and an
            # outcome lost to a crash is settled by recovery, which reads the source back.
            await journal.settle(
                entry_id,
                Outcome.APPLIED,
                request_id=pushed.request_id,
                attempts=pushed.attempts,
                wait=False,
            )
        new = self._commit(source_id, firing)
        if log_enabled(logging.INFO):
            _log.info(
                "applied",
                source_id=source_id,
                trigger=edge.trigger,
                request_id=pushed.request_id,
                attempt=pushed.attempts,
                state=str(new),
            )
        self._finish(source_id, firing)
        return StepResult(
            source_id=source_id,
            trigger=edge.trigger,
            from_state=current,
            to_state=new,
            outcome=Outcome.APPLIED,
            request_id=pushed.request_id,
            attempts=pushed.attempts,
            forced=forced,
            journal_id=entry_id,
            elapsed=time.monotonic() - started,
        )

    async def _send(self, source_id: str, edge: Edge) -> _Pushed:
        """Push the edge's destination; the push's result (or proof that it landed)."""
        try:
            return await self.client.change_state(
                source_id, edge.dest.copystate, edge.dest.migrationcycle
            )
        except (ServerError, TransportError) as exc:
            # The service may have applied the change and then failed to answer (a 5xx
            # after the write, a dropped connection): read it back before calling it failed.
            if not self.verify or not await self._landed(source_id, edge.dest):
                raise
            _log.info(
                "applied despite an error answer",
                source_id=source_id,
                trigger=edge.trigger,
                error=type(exc).__name__,
            )
            return _Landed(getattr(exc, "request_id", None), exc.attempts)

    def _commit(self, source_id: str, firing: Firing) -> StatePair:
        """The applied step's state change, through the machine; the engine tracks its result."""
        try:
            new = firing.commit()
        except BaseException as exc:
            # An on_exit or on_enter callback raised; the service has the change all the same.
            self._states[source_id] = firing.edge.dest
            _note_applied(exc, source_id, firing.edge)
            raise
        self._states[source_id] = new
        return new

    def _finish(self, source_id: str, firing: Firing) -> None:
        try:
            firing.finish()
        except BaseException as exc:
            _note_applied(exc, source_id, firing.edge)
            raise

    async def _landed(self, source_id: str, expected: StatePair) -> bool:
        try:
            src = await self.client.get_source(source_id)
        except SmsFlowError:
            return False
        return src.pair == expected

    async def verify_applied(
        self, source_id: str, before: StatePair, expected: StatePair, request_id: str | None
    ) -> None:
        """Read the source back: it must show ``expected``.

        Raises :class:`~sms_flow.errors.IgnoredByServiceError` when it still shows
        ``before``, :class:`~sms_flow.errors.ReadBackMismatchError` when it shows another state.
        """
        src = await self.client.get_source(source_id)
        observed = src.pair
        if observed == expected:
            return
        shown = str(observed) if observed is not None else src.describe_state()
        if observed == before:
            why = f"the service answered 200 but the source is still {before}" + (
                f" (it ignores changestate while the source is {before.copystate.value})"
                if self.chart.is_frozen(before)
                else ""
            )
            raise IgnoredByServiceError(
                f"source {source_id}: not applied: {why}; pushed {expected}",
                source_id=source_id,
                request_id=request_id,
            )
        raise ReadBackMismatchError(
            f"source {source_id}: not applied: pushed {expected} but reading it back shows {shown}; "
            "someone else may have changed it: read it again (sms-flow get) before deciding",
            source_id=source_id,
            expected=str(expected),
            observed=shown,
            request_id=request_id,
        )

    async def _settle_failure(
        self, entry_id: int | None, exc: BaseException, pushed: _Pushed | None
    ) -> None:
        if self.journal is None or entry_id is None:
            return
        if isinstance(exc, IgnoredByServiceError):
            outcome = Outcome.IGNORED
        elif isinstance(exc, ReadBackMismatchError):
            outcome = Outcome.CONFLICT
        elif isinstance(exc, SmsFlowError | OSError):
            outcome = Outcome.FAILED
        else:
            # Cancelled or interrupted while the push was out: leave the intent open, so that
            # recovery settles it by reading the source back.
            return
        request_id = pushed.request_id if pushed else getattr(exc, "request_id", None)
        attempts = pushed.attempts if pushed else getattr(exc, "attempts", 0)
        await self.journal.settle(
            entry_id, outcome, request_id=request_id, attempts=attempts or 0, error=str(exc)[:1000]
        )

    # -- waiting for the service ----------------------------------------------------------

    async def wait_for_service(
        self,
        source_id: str,
        edge: Edge | None = None,
        *,
        wave: str | None = None,
        within: float | None = None,
    ) -> StepResult:
        """Poll the source, with backoff, until the service moves it out of its state.

        ``edge`` is the move expected (for the message); any move is accepted and recorded
        as ``observed`` in the journal. A move the chart does not permit is recorded too,
        with a note saying so. Raises :class:`~sms_flow.errors.WaitTimeoutError`.
        """
        await self._locks.acquire(source_id)
        try:
            current = await self._current(source_id)
            policy = self.wait_policy
            limit = policy.timeout if within is None else within
            started = time.monotonic()
            delay = policy.first_delay
            while True:
                src = await self.client.get_source(source_id)
                observed = self._pair_of(source_id, src)
                if observed != current:
                    return await self._observed(source_id, current, observed, edge, wave, started)
                left = limit - (time.monotonic() - started)
                if left <= 0:
                    expected = f" ({edge.trigger} → {edge.dest})" if edge is not None else ""
                    raise WaitTimeoutError(
                        f"source {source_id}: waited {limit:.0f}s for the service to move it out of "
                        f"{current}{expected}; it did not. "
                        + (
                            f"This move happens when another API is called: {edge.note}"
                            if edge and edge.note
                            else ""
                        ),
                        source_id=source_id,
                    )
                await asyncio.sleep(min(delay, left))
                delay = min(delay * policy.factor, policy.max_delay)
        finally:
            self._locks.release(source_id)

    async def _observed(
        self,
        source_id: str,
        current: StatePair,
        observed: StatePair,
        expected: Edge | None,
        wave: str | None,
        started: float,
    ) -> StepResult:
        moves = [e for e in self.chart.edges_from(current) if e.dest == observed]
        edge = moves[0] if moves else None
        note = None
        if edge is None:
            note = f"observed a jump the chart does not permit: {current} → {observed}"
            _log.warning(
                "unexpected move", source_id=source_id, state=str(current), observed=str(observed)
            )
        elif expected is not None and edge != expected:
            note = f"expected {expected.trigger} → {expected.dest}, the service made {edge.trigger}"
        entry_id = None
        if self.journal is not None:
            entry_id = await self.journal.record(
                Intent(
                    source_id=source_id,
                    trigger=edge.trigger if edge else None,
                    from_state=str(current),
                    to_state=str(observed),
                    actor="service",
                    reason=note,
                    wave=wave,
                ),
                Outcome.OBSERVED,
                error=note if edge is None else None,
            )
        if edge is None:
            # No transition of the machine leads there; track what the service shows.
            self._states[source_id] = observed
        else:
            firing = self.machine.follow(
                current,
                edge.trigger,
                source_id=source_id,
                actor="service",
                reason=note,
                forced=False,
                wave=wave,
            )
            observed = self._commit(source_id, firing)
            self._finish(source_id, firing)
        return StepResult(
            source_id=source_id,
            trigger=edge.trigger if edge else None,
            from_state=current,
            to_state=observed,
            outcome=Outcome.OBSERVED,
            journal_id=entry_id,
            elapsed=time.monotonic() - started,
            note=note,
        )

    # -- recovery -------------------------------------------------------------------------

    async def resettle(self, entry: Entry, source: SourceServer | None = None) -> Resettled:
        """Settle one open journal entry (an intent whose outcome was lost) by the service's word.

        Runs under the source's lock. The source is read back (``source``, when given, is a
        reading made just before, taken instead of a first read): it shows the entry's
        destination → the push was applied: settle it so and track the state; it shows the
        origin → the push did not land: push the same absolute state again under the same
        entry, verify it (when the engine verifies) and settle it by what happens; it shows
        anything else → someone else changed it: settle it as a conflict and leave the source
        alone. A source that cannot be read leaves the entry open (``unread``). No callback of
        the machine runs: the step was decided, and begun, before the crash.
        """
        source_id = entry.source_id
        await self._locks.acquire(source_id)
        try:
            return await self._resettle_locked(entry, source)
        finally:
            self._locks.release(source_id)

    async def _resettle_locked(self, entry: Entry, src: SourceServer | None) -> Resettled:
        journal = self.journal
        if journal is None:
            raise ConfigError(
                f"entry {entry.id}: resettle writes the outcome to the journal, and this engine "
                "has none; give Engine(..., journal=...)"
            )
        source_id = entry.source_id
        if src is None:
            try:
                src = await self.client.get_source(source_id)
            except NotFoundError as exc:
                await journal.settle(
                    entry.id, Outcome.FAILED, error=f"recovery: the source no longer exists ({exc})"
                )
                return Resettled(entry.id, source_id, "gone", error=str(exc))
            except (ApiError, TransportError) as exc:
                return Resettled(entry.id, source_id, "unread", error=str(exc))
        observed = src.pair
        shown = str(observed) if observed is not None else src.describe_state()
        if shown == entry.to_state:
            await journal.settle(
                entry.id, Outcome.APPLIED, error="settled by recovery: the source shows the change"
            )
            if observed is not None:
                self.track(source_id, observed)
            return Resettled(entry.id, source_id, "applied")
        if shown != entry.from_state:
            await journal.settle(
                entry.id,
                Outcome.CONFLICT,
                error=f"recovery: the source is {shown}, neither {entry.from_state} nor "
                f"{entry.to_state}; someone else changed it (left as it is)",
            )
            if observed is not None and self.chart.is_permitted(observed):
                self.track(source_id, observed)
            return Resettled(entry.id, source_id, "conflict", observed=shown)
        # Not applied: push the same absolute state again, under the same journal entry.
        dest = parse_pair(entry.to_state)
        try:
            pushed = await self.client.change_state(source_id, dest.copystate, dest.migrationcycle)
            if self.verify:
                await self.verify_applied(
                    source_id, parse_pair(entry.from_state), dest, pushed.request_id
                )
        except (ApiError, TransportError, NotAppliedError) as exc:
            await journal.settle(
                entry.id, Outcome.FAILED, error=f"recovery: pushed again and failed: {exc}"[:1000]
            )
            return Resettled(entry.id, source_id, "failed", error=str(exc))
        await journal.settle(
            entry.id,
            Outcome.APPLIED,
            request_id=pushed.request_id,
            attempts=pushed.attempts,
            error="settled by recovery: pushed again",
        )
        self.track(source_id, dest)
        return Resettled(entry.id, source_id, "pushed again")

    # -- a target instead of a trigger ------------------------------------------------------

    def check(self, source_id: str, requested: RequestLike) -> Verdict:
        """Check a requested change for a tracked source (nothing is sent)."""
        return self.planner.check(self._states[source_id], requested)

    async def change(
        self,
        source_id: str,
        requested: RequestLike,
        *,
        follow_path: bool = False,
        actor: str | None = None,
        reason: str | None = None,
        force: bool = False,
        wave: str | None = None,
    ) -> list[StepResult]:
        """Move a source to a requested state (``StateRequest``, pair or ``"COPYSTATE/cycle"``).

        Without ``follow_path`` the change must be one permitted move, else
        :class:`~sms_flow.errors.TransitionRejected` carries the reasons and the shortest
        legal path. With it, that path is pushed step by step, waiting for the service
        where it makes a move. Returns the steps done (empty when already there).
        """
        current = await self._current(source_id)
        verdict = self.planner.check(current, requested)
        if verdict.allowed:
            if verdict.edge is None:
                return []
            return [
                await self.fire(
                    source_id,
                    verdict.edge.trigger,
                    actor=actor,
                    reason=reason,
                    force=force,
                    wave=wave,
                )
            ]
        if (
            verdict.edge is not None
            and force
            and verdict.codes <= {ReasonCode.FROZEN, ReasonCode.NOT_BY_CLIENT}
        ):
            return [
                await self.fire(
                    source_id,
                    verdict.edge.trigger,
                    actor=actor,
                    reason=reason,
                    force=True,
                    wave=wave,
                )
            ]
        if not follow_path or not verdict.path:
            await self._record_rejection(
                source_id,
                current,
                verdict.target,
                None,
                actor or self.actor,
                reason,
                force,
                wave,
                verdict,
            )
            raise TransitionRejected(source_id, verdict)
        results: list[StepResult] = []
        for step in verdict.path:
            state = await self._current(source_id)
            if state != step.source:
                raise NotAppliedError(
                    f"source {source_id}: expected {step.source} before {step.trigger}, found {state}; "
                    "it was changed meanwhile",
                    source_id=source_id,
                )
            if step.pushable and not self.chart.is_frozen(step.source):
                results.append(
                    await self.fire(source_id, step.trigger, actor=actor, reason=reason, wave=wave)
                )
            else:
                results.append(await self.wait_for_service(source_id, step, wave=wave))
        return results
