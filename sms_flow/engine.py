"""The engine: validate, claim, journal, look, push, verify, commit, one source at a time.

Firing a trigger for a source:

1. **validate** it against the chart (refused: :class:`~sms_flow.errors.TransitionRejected`,
   journalled as ``rejected``, nothing sent). From a frozen state, or for a move only the
   service makes, the engine refuses unless the caller forces it with a reason. Then the
   shared ``transitions`` machine begins the step: the conditions registered on it are a
   gate (refused: ``TransitionRejected`` with reason ``condition``, journalled as
   ``rejected``, nothing sent), and its ``before`` callbacks run (one that raises stops the
   step: journalled as ``failed``, nothing sent);
2. **claim**: with a journal, the engine pushes only sources its run holds
   (:mod:`sms_flow.journal`: runs and claims). An engine given no run (a :class:`Lease`)
   starts one of its own, not exclusive, on its first push, and claims sources as it goes;
   :meth:`Engine.aclose` ends it. A source another live driver holds is refused
   (:class:`~sms_flow.errors.OwnedError`, nothing sent);
3. **journal** the intent, durably, before anything goes out; the journal writes it only
   if the run still holds the source's claim (fencing; else
   :class:`~sms_flow.errors.ClaimLostError`, nothing sent);
4. **look** before pushing (on by default): the engine knows the source's state from a read
   made after its last push of it, either that push's read-back or a read at most
   ``max_age`` seconds old; else it reads now. A source found elsewhere than where the step
   starts is a conflict: journalled as ``conflict``, not pushed, left as it is
   (:class:`~sms_flow.errors.ConflictError`);
5. **push** ``PUT /v3/sources/{id}/changestate`` with both fields of the destination,
   unless the run's lease guard says its lease may have lapsed (a process paused past its
   lease pushes nothing when it wakes; a push in flight when it trips is cut off);
6. **verify** by reading the source back (on by default): the pushed pair, or a typed
   error (:class:`~sms_flow.errors.IgnoredByServiceError` when nothing changed,
   :class:`~sms_flow.errors.ReadBackMismatchError` when a third state shows);
7. **commit**: the journal entry is settled as applied, then the state changes through the
   machine (which decides the new state) and its ``after`` callbacks run.

Outcomes say only what is known. A push that failed in a way that may have been carried out
(a 5xx, a timeout, a dropped connection, a retry of one ending on 429), or any final error
after a push, is read back: the change shows → applied; the origin shows → failed; a third
state → conflict. When that read fails too, or a 2xx push cannot be read back, the entry is
``unverified`` (:class:`~sms_flow.errors.UnverifiedError`): open, and settled once by the
next read of the source (the next step's look, a wait, :meth:`Engine.settle_unverified`,
recovery). A step refused or failed leaves the tracked state at the last state known.

A callback that raises in step 7 cannot undo what the service did: the journal says
``applied``, the engine tracks the new state, and the callback's exception reaches the
caller with a note saying so. :mod:`sms_flow.machine` describes the callbacks in full.

Transitions for one source are serialized (first come, first served); different sources run
concurrently. Moves the service makes itself (``by: service`` or ``by: action`` edges) are
waited for by polling, never pushed; when one is seen, its state change and ``after``
callbacks run through the machine too (there is nothing to gate: it has happened). A move
only another API call makes (``by: action``) is not waited for on a path unless the caller
asks (:meth:`Engine.take`): nothing would make it by itself, so the step fails at once with
:class:`~sms_flow.errors.ActionNeededError`, which says what to call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from sms_flow._guard import guarded
from sms_flow._locks import KeyedLocks
from sms_flow.chart import By, Chart, Edge, default_chart
from sms_flow.errors import (
    ActionNeededError,
    ApiError,
    ClaimLostError,
    ConfigError,
    ConflictError,
    IgnoredByServiceError,
    InputError,
    JournalError,
    LeaseLostError,
    NotAppliedError,
    NotFoundError,
    OwnedError,
    ReadBackMismatchError,
    SmsFlowError,
    SupersededError,
    TransitionRejected,
    TransportError,
    UnverifiedError,
    WaitTimeoutError,
    truncate,
)
from sms_flow.journal import DEFAULT_LEASE, Claimed, Entry, Intent, Journal, Lease, Outcome
from sms_flow.log import enabled as log_enabled
from sms_flow.log import get_logger
from sms_flow.machine import Firing, LifecycleMachine
from sms_flow.planner import Planner, Reason, ReasonCode, RequestLike, Verdict
from sms_flow.states import StatePair, StateRequest, parse_pair
from sms_flow.wire import SourceServer

__all__ = [
    "DEFAULT_MAX_AGE",
    "Engine",
    "Resettled",
    "SmsApi",
    "StepResult",
    "WaitPolicy",
    "what_to_call",
]

_log = get_logger("sms_flow.engine")

DEFAULT_MAX_AGE: Final = 5.0
"""Seconds a read of a source stays good enough to push from (when it is not the read-back
of the engine's last push of it)."""
_ERROR_MAX: Final = 1000  # characters of an error kept in a journal entry


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
    note: str


@dataclass(frozen=True, slots=True)
class _Open:
    """A push of this engine whose outcome is unverified: settled by the next read."""

    entry_id: int | None
    trigger: str | None
    origin: StatePair
    dest: StatePair
    request_id: str | None
    attempts: int
    error: str
    wave: str | None
    forced: bool


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
    result: Literal[
        "applied", "pushed again", "ignored", "conflict", "failed", "gone", "unread", "held"
    ]
    """``applied``: the source shows the change; settled. ``pushed again``: a pending entry's
    source still showed the origin; pushed (and verified) now, settled applied.
    ``ignored``: an unverified entry's source still shows the origin: the push did not
    take; settled ignored. ``conflict``: it shows a third state; settled as a conflict and
    left alone. ``failed``: pushed again and failed; settled failed. ``gone``: the source no
    longer exists; settled failed. ``unread``: it could not be read (or the push again has
    no known outcome); the entry stays open for the next recovery. ``held``: another live
    driver holds the source; the entry is left to it."""
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


def _check_text(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise InputError(
            f"{what} must be a string, not {type(value).__name__}: {truncate(repr(value), 80)}"
        )


def _why(exc: BaseException) -> str:
    return truncate(str(exc), 400)


class Engine:
    """Validates, claims, journals, pushes, verifies and commits transitions for many sources.

    ``client`` talks to the service (an :class:`~sms_flow.client.SmsClient`, or anything
    with its ``change_state`` and ``get_source``). ``journal`` is optional: without one,
    nothing is written down and nothing is claimed. ``verify`` reads each change back before
    committing it. ``look`` reads a source before pushing when the engine's last read of it
    is not fresh (see the module's docstring); ``max_age`` is how old a read may be.
    ``endpoint`` names the service in the journal and in claims (default: the client's
    ``endpoint``); ``project`` the project, when known. ``lease`` is the run the engine
    pushes under (a started :class:`~sms_flow.journal.Lease`, which its owner ends); without
    one, an engine with a journal starts its own on its first push, with a lease of
    ``lease_seconds``, ended by :meth:`aclose` (or ``async with engine``). ``machine`` is
    the shared ``transitions`` machine every step goes through (made from ``chart`` when not
    given; give one to share it, and its callbacks, among engines: building one costs about
    4 ms); callbacks registered on ``machine.machine`` run for every step (see
    :mod:`sms_flow.machine`). The engine does
    not configure logging: an application does (the CLI does).
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
        look: bool = True,
        max_age: float = DEFAULT_MAX_AGE,
        endpoint: str | None = None,
        project: str | None = None,
        lease: Lease | None = None,
        lease_seconds: float = DEFAULT_LEASE,
        machine: LifecycleMachine | None = None,
    ) -> None:
        if not _finite(max_age) or max_age < 0:
            raise ConfigError(f"max_age is {max_age!r}; give 0 or more seconds")
        if machine is not None and chart is not None and machine.chart is not chart:
            raise ConfigError(
                "the machine given was built for another chart; give the machine alone (the "
                "engine takes its chart), or a chart alone"
            )
        self.client = client
        if machine is not None:  # shared: engines made often (one a request) build none
            self.chart, self.planner, self.machine = machine.chart, machine.planner, machine
        else:
            self.chart = chart or default_chart()
            self.planner = Planner(self.chart)
            self.machine = LifecycleMachine(self.chart, planner=self.planner)
        self.journal = journal
        self.verify = verify
        self.actor = actor
        self.wait_policy = wait or WaitPolicy()
        self.look = look
        self.max_age = max_age
        self.endpoint: str = endpoint or getattr(client, "endpoint", None) or "unknown endpoint"
        self.project = project
        self.lease = lease
        self.lease_seconds = lease_seconds
        self._own_lease = False
        self._starting: asyncio.Lock | None = None
        self._claims: dict[str, int] = {}
        """Sources the engine's run holds, with their fencing tokens."""
        self._states: dict[str, StatePair] = {}
        self._seen: dict[str, tuple[float, bool]] = {}
        """When each source was last read (monotonic), and whether that read is the read-back
        of the engine's last push of it; dropped when a push goes out."""
        self._open: dict[str, _Open] = {}
        """Sources with an unverified push of this engine, settled by their next read."""
        self._settled: dict[str, StepResult] = {}
        self._locks = KeyedLocks()

    # -- the run and its claims -----------------------------------------------------------

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the run the engine started for itself (its claims are freed at once).

        A run given to the engine (``lease=``) is its owner's to end. Harmless twice.
        """
        lease = self.lease
        if lease is not None and self._own_lease:
            self.lease = None
            self._own_lease = False
            self._claims.clear()
            await lease.end()

    async def _run(self) -> Lease | None:
        """The run pushes go out under: given, or started on first use; None without a journal."""
        if self.lease is not None or self.journal is None:
            return self.lease
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.lease is None:
                lease = Lease(
                    self.journal,
                    "engine",
                    actor=self.actor,
                    endpoint=self.endpoint,
                    project=self.project,
                    seconds=self.lease_seconds,
                )
                await lease.start()
                self.lease, self._own_lease = lease, True
        return self.lease

    async def claim(
        self, source_ids: Iterable[str], *, steal: bool = False, reason: str | None = None
    ) -> Claimed:
        """Claim sources for the engine's run (starting it when it has none).

        Returns what :meth:`Journal.claim <sms_flow.journal.Journal.claim>` did: granted,
        refused (with their owners) and taken over. With ``steal``, sources another live run
        holds are taken from it, ``reason`` recorded; the engine then waits (up to that
        run's lease) for the intents that run has in flight on them to be settled, so that
        its last push lands before the next one is decided. Without a journal, nothing is
        claimed: everything is granted.
        """
        ids = list(dict.fromkeys(source_ids))
        for source_id in ids:
            _check_text(source_id, "source_id")
        lease = await self._run()
        if lease is None:
            return Claimed(granted=dict.fromkeys(ids, 0))
        claimed = await lease.claim(self.endpoint, ids, steal=steal, reason=reason)
        self._claims.update(claimed.granted)
        if steal:
            victims = {r.run_id: r for r in claimed.taken_from.values() if r.ended_at is None}
            if victims:
                await self._await_in_flight(
                    [s for s, r in claimed.taken_from.items() if r.run_id in victims], victims
                )
        return claimed

    def hold(self, granted: Mapping[str, int]) -> None:
        """Note sources the engine's run was granted outside :meth:`claim` (a joined
        worker's batch, :meth:`Journal.claim_work <sms_flow.journal.Journal.claim_work>`),
        with their fencing tokens, so that pushing them claims nothing again."""
        self._claims.update(granted)

    async def _await_in_flight(self, source_ids: list[str], victims: dict[str, Any]) -> None:
        """Wait until the intents the runs ``victims`` had begun on the sources are settled."""
        journal = self.journal
        assert journal is not None
        wanted = set(source_ids)
        deadline = max(r.expires_at for r in victims.values())
        delay = 0.02
        while time.time() < deadline:
            in_flight = [
                e
                for e in await journal.open_intents(endpoint=self.endpoint)
                if e.source_id in wanted and e.run_id in victims and e.outcome is Outcome.PENDING
            ]
            if not in_flight:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _owned(self, source_id: str) -> Lease | None:
        """The run a push of ``source_id`` goes out under, its claim held (None: no journal)."""
        lease = await self._run()
        if lease is None:
            return None
        lease.check()
        if source_id not in self._claims:
            claimed = await lease.claim(self.endpoint, [source_id])
            owner = claimed.refused.get(source_id)
            if owner is not None:
                raise OwnedError(
                    f"source {source_id} on {self.endpoint} is driven by another live run: "
                    f"{owner.describe()}; nothing was sent. Wait for it to finish, or take "
                    "the source from it (sms-flow set ... --force --reason TEXT)",
                    owner=owner,
                )
            self._claims.update(claimed.granted)
        return lease

    def _lost(self, source_id: str) -> None:
        self._claims.pop(source_id, None)

    # -- tracking -----------------------------------------------------------------------

    @property
    def states(self) -> Mapping[str, StatePair]:
        """The tracked sources and their last known states (read-only view)."""
        return self._states

    def track(self, source_id: str, state: StatePair, *, read_at: float | None = None) -> None:
        """Start tracking ``source_id`` in ``state`` (not sent anywhere).

        ``read_at``: when ``state`` was read from the service (:func:`time.monotonic`), so
        that looking before the first push need not read it again while it is fresh; without
        it, the first push of the source reads it first.
        """
        self._states[source_id] = self._intern(state)
        if read_at is not None:
            self._seen[source_id] = (read_at, False)
        else:
            self._seen.pop(source_id, None)

    def track_many(
        self,
        states: Mapping[str, StatePair] | Iterable[tuple[str, StatePair]],
        *,
        read_at: float | None = None,
    ) -> None:
        """Track many sources at once; states are stored as the chart's shared pairs.

        ``read_at`` as for :meth:`track`, the same for all.
        """
        items = states.items() if isinstance(states, Mapping) else states
        pair = self.chart.pair
        table = self._states
        seen = self._seen
        mark = (read_at, False) if read_at is not None else None
        for source_id, state in items:
            shared = pair(state[0], state[1])
            table[source_id] = shared if shared is not None else StatePair(*state)
            if mark is not None:
                seen[source_id] = mark
            elif seen:
                seen.pop(source_id, None)

    def read_at(self, source_id: str) -> tuple[float, bool] | None:
        """When the engine last read ``source_id`` (:func:`time.monotonic`), and whether that
        read is the read-back of its last push of it; None when it has not read it since its
        last push."""
        return self._seen.get(source_id)

    def _intern(self, state: StatePair) -> StatePair:
        return self.chart.pair(state.copystate, state.migrationcycle) or state

    async def refresh(self, source_id: str) -> StatePair:
        """Read the source from the service and track what it says.

        Like every read of the engine, it settles an unverified push of the source first.
        """
        pair = await self._read(source_id)
        self._states[source_id] = pair
        return pair

    async def _read(self, source_id: str, *, read_back: bool = False) -> StatePair:
        """Read the source: its pair (TransitionRejected for a state sms-flow does not know).

        Settles the engine's unverified push of it, if any, by what it shows.
        """
        src = await self.client.get_source(source_id)
        self._seen[source_id] = (time.monotonic(), read_back)
        if source_id in self._open:
            await self._settle_open(source_id, src)
        return self._pair_of(source_id, src)

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

    def _fresh(self, source_id: str) -> bool:
        """Whether the last read of the source is good enough to push from without looking."""
        seen = self._seen.get(source_id)
        if seen is None:
            return False
        return seen[1] or time.monotonic() - seen[0] <= self.max_age

    # -- unverified pushes -------------------------------------------------------------------

    async def _settle_open(self, source_id: str, src: SourceServer) -> StepResult:
        """Settle the unverified push of the source by what a read of it shows; once."""
        held = self._open.pop(source_id)
        observed = src.pair
        shown = str(observed) if observed is not None else src.describe_state()
        if observed == held.dest:
            outcome, note = Outcome.APPLIED, "settled by a later read: the source shows the change"
            self._states[source_id] = held.dest
        elif observed == held.origin:
            outcome = Outcome.IGNORED
            note = f"settled by a later read: the source still shows {shown}; it did not take"
            self._states[source_id] = held.origin
        else:
            outcome = Outcome.CONFLICT
            note = (
                f"settled by a later read: the source shows {shown}, neither {held.origin} nor "
                f"{held.dest}; someone else changed it"
            )
            if observed is not None and self.chart.is_permitted(observed):
                self._states[source_id] = self._intern(observed)
        if self.journal is not None and held.entry_id is not None:
            await self.journal.settle(
                held.entry_id,
                outcome,
                request_id=held.request_id,
                attempts=held.attempts,
                error=f"{held.error}; {note}"[-_ERROR_MAX:],
            )
        _log.info("unverified settled", source_id=source_id, outcome=outcome.value)
        result = StepResult(
            source_id=source_id,
            trigger=held.trigger,
            from_state=held.origin,
            to_state=held.dest if outcome is Outcome.APPLIED else self._states[source_id],
            outcome=outcome,
            request_id=held.request_id,
            attempts=held.attempts,
            forced=held.forced,
            journal_id=held.entry_id,
            note=note,
        )
        self._settled[source_id] = result
        return result

    async def settle_unverified(self, source_id: str) -> StepResult | None:
        """Read the source to settle this engine's unverified push of it, if one is open.

        Returns what it settled as (``applied``: the change shows; ``ignored``: the origin
        shows; ``conflict``: a third state), or ``None`` when nothing was open. Raises what
        reading raises (the entry then stays open).
        """
        await self._locks.acquire(source_id)
        try:
            if source_id not in self._open:
                return None
            self._settled.pop(source_id, None)
            await self.refresh(source_id)
            return self._settled.pop(source_id, None)
        finally:
            self._locks.release(source_id)

    @property
    def unverified(self) -> Mapping[str, int | None]:
        """Sources with an unverified push of this engine, and its journal entry."""
        return {source_id: held.entry_id for source_id, held in self._open.items()}

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
        """Push one trigger for one source: validate, claim, journal, look, push, verify, commit.

        Returns the :class:`StepResult` of an applied step; raises
        :class:`~sms_flow.errors.TransitionRejected` (refused by the chart or by a condition
        on the machine; nothing sent), :class:`~sms_flow.errors.OwnedError` (another live
        driver holds the source, the claim was taken, or the run's lease lapsed; nothing
        sent), :class:`~sms_flow.errors.NotAppliedError` (a conflict found before the push,
        nothing sent; or sent, and did not take), :class:`~sms_flow.errors.UnverifiedError`
        (sent, outcome unknown), :class:`~sms_flow.errors.ApiError` or
        :class:`~sms_flow.errors.TransportError`, or what a callback on the machine raises
        (from a ``before`` callback: nothing sent; from one after the change: applied all the
        same, and the exception carries a note saying so). The local state changes only when
        the step was applied, or a read showed where the source is.
        """
        _check_text(source_id, "source_id")
        _check_text(trigger, "trigger")
        if force and not (reason and reason.strip()):
            raise InputError("a forced change needs a reason (who asked and why); give reason=")
        locks = self._locks
        await locks.acquire(source_id)
        try:
            if source_id in self._open:
                await self._settle_before(source_id)
            current = await self._current(source_id)
            return await self._fire_locked(
                source_id, current, trigger, actor=actor, reason=reason, force=force, wave=wave
            )
        finally:
            locks.release(source_id)

    async def _settle_before(self, source_id: str) -> None:
        """Settle an unverified push of the source before deciding the next step from it."""
        held = self._open[source_id]
        try:
            await self.refresh(source_id)
        except (ApiError, TransportError) as exc:
            raise UnverifiedError(
                f"source {source_id}: nothing sent: an earlier push ({held.trigger} to "
                f"{held.dest}, journal entry {held.entry_id}) is still unverified and reading "
                f"the source failed ({_why(exc)}); try again once the service answers",
                source_id=source_id,
                entry_id=held.entry_id,
            ) from exc

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

    def _intent(
        self,
        source_id: str,
        trigger: str | None,
        origin: str,
        dest: str,
        actor: str,
        reason: str | None,
        forced: bool,
        wave: str | None,
    ) -> Intent:
        lease = self.lease
        return Intent(
            source_id=source_id,
            trigger=trigger,
            from_state=origin,
            to_state=dest,
            actor=actor,
            reason=reason,
            forced=forced,
            wave=wave,
            endpoint=self.endpoint,
            project=self.project,
            run_id=lease.run.run_id if lease is not None and lease.run is not None else None,
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
            intent = self._intent(
                source_id,
                trigger,
                str(current),
                str(dest) if dest is not None else str(verdict.requested or "?"),
                actor,
                reason,
                forced,
                wave,
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
        lease = await self._owned(source_id)
        intent = self._intent(
            source_id, edge.trigger, str(current), str(edge.dest), actor, reason, forced, wave
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
            if journal is not None:
                await journal.record(
                    intent,
                    Outcome.FAILED,
                    error=f"not sent: a callback before the push raised {type(exc).__name__}: "
                    f"{exc}"[:_ERROR_MAX],
                )
            raise
        entry_id = None
        if journal is not None:
            try:
                entry_id = await journal.begin(intent)
            except ClaimLostError:
                self._lost(source_id)
                raise
        if self.look and not self._fresh(source_id):
            await self._look(source_id, current, edge, entry_id)
        pushed = await self._deliver(
            source_id, current, edge.dest, edge.trigger, entry_id, lease, wave, forced
        )
        note = pushed.note if isinstance(pushed, _Landed) else None
        if journal is not None and entry_id is not None:
            # wait=False: this returns once the outcome is queued. The journal's writer commits
            # it before anything queued later (so before this source's next intent), and an
            # outcome lost to a crash is settled by recovery, which reads the source back.
            await journal.settle(
                entry_id,
                Outcome.APPLIED,
                request_id=pushed.request_id,
                attempts=pushed.attempts,
                error=note,
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
            note=note,
        )

    async def _look(
        self, source_id: str, expected: StatePair, edge: Edge, entry_id: int | None
    ) -> None:
        """Read the source before pushing; not where the step starts: a conflict, not sent."""
        try:
            src = await self.client.get_source(source_id)
        except (ApiError, TransportError) as exc:
            await self._settle(
                entry_id, Outcome.FAILED, error=f"not sent: reading the source first failed: {exc}"
            )
            raise
        self._seen[source_id] = (time.monotonic(), False)
        observed = src.pair
        if observed == expected:
            return
        shown = str(observed) if observed is not None else src.describe_state()
        message = (
            f"source {source_id}: not pushed: {edge.trigger} starts from {expected}, but the "
            f"service shows {shown}: someone else moved it since sms-flow last read it; it is "
            "left as it is (read it, sms-flow get, and decide)"
        )
        await self._settle(entry_id, Outcome.CONFLICT, error=message)
        if observed is not None and self.chart.is_permitted(observed):
            self._states[source_id] = self._intern(observed)
        _log.info("conflict", source_id=source_id, expected=str(expected), observed=shown)
        raise ConflictError(message, source_id=source_id, expected=str(expected), observed=shown)

    async def _settle(
        self,
        entry_id: int | None,
        outcome: Outcome,
        *,
        error: str,
        request_id: str | None = None,
        attempts: int = 0,
        quiet: bool = False,
    ) -> None:
        """Settle an entry by what is known; ``quiet``: a journal error is logged, not raised
        (after the run lost its lease, another run may have settled it already)."""
        if self.journal is None or entry_id is None:
            return
        try:
            await self.journal.settle(
                entry_id,
                outcome,
                request_id=request_id,
                attempts=attempts,
                error=error[:_ERROR_MAX],
            )
        except JournalError as exc:
            if quiet:
                _log.warning("not settled", entry=entry_id, error=str(exc))
                return
            if self.lease is not None:
                # A run that lost its lease (paused past it, or taken over) finds its entries
                # settled by the run that took over: it is the lease that is lost, not the
                # journal that failed.
                try:
                    self.lease.check()
                except OwnedError as lost:
                    _log.warning("not settled", entry=entry_id, error=str(exc))
                    raise lost from None
            raise

    async def _deliver(
        self,
        source_id: str,
        origin: StatePair,
        dest: StatePair,
        trigger: str | None,
        entry_id: int | None,
        lease: Lease | None,
        wave: str | None,
        forced: bool,
    ) -> _Pushed:
        """Push ``dest`` and read it back: the push's result (or proof that it landed).

        Every way it can fail settles the entry (``entry_id``) by what is known and raises;
        the caller settles success. Cancelled while the push was out, the entry stays open,
        for recovery to settle by reading the source back.
        """
        self._seen.pop(source_id, None)  # what was known is older than this push
        pushed: _Pushed
        try:
            if lease is not None:
                # The watch cuts a push off when the lease lapses while it is out; the guard
                # checks the lease once more just before each attempt leaves (a process
                # paused between its check and the send must not send on waking).
                with guarded(lease.check):
                    async with lease.watch():
                        pushed = await self.client.change_state(
                            source_id, dest.copystate, dest.migrationcycle
                        )
            else:
                pushed = await self.client.change_state(
                    source_id, dest.copystate, dest.migrationcycle
                )
        except InputError as exc:  # refused before anything was sent
            await self._settle(entry_id, Outcome.FAILED, error=f"not sent: {exc}")
            raise
        except LeaseLostError as exc:
            await self._settle(entry_id, Outcome.UNVERIFIED, error=str(exc), quiet=True)
            raise
        except (ApiError, TransportError, SupersededError) as exc:
            return await self._after_error(
                source_id, origin, dest, trigger, entry_id, exc, wave, forced
            )
        except (SmsFlowError, OSError) as exc:
            await self._settle(entry_id, Outcome.FAILED, error=str(exc))
            raise
        if not self.verify:
            return pushed
        try:
            await self.verify_applied(source_id, origin, dest, pushed.request_id)
        except (IgnoredByServiceError, ReadBackMismatchError) as exc:
            # Ignored: frozen, the service took no notice; a mismatch: someone else's state.
            ignored = isinstance(exc, IgnoredByServiceError)
            await self._settle(
                entry_id,
                Outcome.IGNORED if ignored else Outcome.CONFLICT,
                error=str(exc),
                request_id=pushed.request_id,
                attempts=pushed.attempts,
            )
            raise
        except (ApiError, TransportError) as exc:
            raise await self._unverified(
                source_id,
                origin,
                dest,
                trigger,
                entry_id,
                f"answered {_pushed_status(pushed)}, then reading it back failed: {_why(exc)}",
                pushed.request_id,
                pushed.attempts,
                wave,
                forced,
            ) from exc
        return pushed

    async def _after_error(
        self,
        source_id: str,
        origin: StatePair,
        dest: StatePair,
        trigger: str | None,
        entry_id: int | None,
        exc: ApiError | TransportError | SupersededError,
        wave: str | None,
        forced: bool,
    ) -> _Landed:
        """After a push ended in an error: read the source back and say what is known."""
        request_id = getattr(exc, "request_id", None)
        attempts = getattr(exc, "attempts", 0) or 0
        maybe = getattr(exc, "maybe_applied", True)
        try:
            src = await self.client.get_source(source_id)
        except (ApiError, TransportError) as read_exc:
            if not maybe:  # no attempt reached the service: it surely did not take
                await self._settle(
                    entry_id,
                    Outcome.FAILED,
                    error=str(exc),
                    request_id=request_id,
                    attempts=attempts,
                )
                raise exc from None
            raise await self._unverified(
                source_id,
                origin,
                dest,
                trigger,
                entry_id,
                f"{_why(exc)}; then reading it back failed: {_why(read_exc)}",
                request_id,
                attempts,
                wave,
                forced,
            ) from exc
        self._seen[source_id] = (time.monotonic(), True)
        observed = src.pair
        if observed == dest:
            _log.info(
                "applied despite an error answer",
                source_id=source_id,
                trigger=trigger,
                error=type(exc).__name__,
            )
            return _Landed(
                request_id,
                attempts,
                f"the push ended in an error, but reading it back shows the change: {_why(exc)}",
            )
        if observed == origin:
            await self._settle(
                entry_id, Outcome.FAILED, error=str(exc), request_id=request_id, attempts=attempts
            )
            raise exc
        shown = str(observed) if observed is not None else src.describe_state()
        message = (
            f"source {source_id}: not applied: pushed {dest}, the push ended in an error "
            f"({_why(exc)}), and reading it back shows {shown}; someone else may have changed "
            "it: read it again (sms-flow get) before deciding"
        )
        await self._settle(
            entry_id, Outcome.CONFLICT, error=message, request_id=request_id, attempts=attempts
        )
        if observed is not None and self.chart.is_permitted(observed):
            self._states[source_id] = self._intern(observed)
        raise ReadBackMismatchError(
            message,
            source_id=source_id,
            expected=str(dest),
            observed=shown,
            request_id=request_id,
        ) from exc

    async def _unverified(
        self,
        source_id: str,
        origin: StatePair,
        dest: StatePair,
        trigger: str | None,
        entry_id: int | None,
        what: str,
        request_id: str | None,
        attempts: int,
        wave: str | None,
        forced: bool,
    ) -> UnverifiedError:
        """Journal a push as unverified and remember it for the next read; the error to raise."""
        await self._settle(
            entry_id, Outcome.UNVERIFIED, error=what, request_id=request_id, attempts=attempts
        )
        self._open[source_id] = _Open(
            entry_id, trigger, origin, dest, request_id, attempts, what, wave, forced
        )
        where = f"journal entry {entry_id}" if entry_id is not None else "no journal"
        _log.warning("unverified", source_id=source_id, trigger=trigger, entry=entry_id)
        return UnverifiedError(
            f"source {source_id}: pushed {dest} ({trigger}); it may have landed, but nothing "
            f"proves it: {what}. The {where} stays open as unverified; the next read of the "
            f"source settles it (the next step, a wave run again, or sms-flow recover --source "
            f"{source_id})",
            source_id=source_id,
            entry_id=entry_id,
        )

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

    async def verify_applied(
        self, source_id: str, before: StatePair, expected: StatePair, request_id: str | None
    ) -> None:
        """Read the source back: it must show ``expected``.

        Raises :class:`~sms_flow.errors.IgnoredByServiceError` when it still shows
        ``before``, :class:`~sms_flow.errors.ReadBackMismatchError` when it shows another state.
        """
        src = await self.client.get_source(source_id)
        self._seen[source_id] = (time.monotonic(), True)
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

    # -- waiting for the service ----------------------------------------------------------

    async def wait_for_service(
        self,
        source_id: str,
        edge: Edge | None = None,
        *,
        wave: str | None = None,
        within: float | None = None,
        wait_for_action: bool = True,
    ) -> StepResult:
        """Poll the source, with backoff, until the service moves it out of its state.

        ``edge`` is the move expected (for the message); any move is accepted and recorded
        as ``observed`` in the journal. A move the chart does not permit is recorded too,
        with a note saying so. Raises :class:`~sms_flow.errors.WaitTimeoutError` after
        ``within`` seconds (default: the wait policy's timeout).

        With ``wait_for_action=False`` and a ``by: action`` edge (a move only another API call
        makes), the source is read once: moved, it is recorded as above; else
        :class:`~sms_flow.errors.ActionNeededError` says at once what to call.
        """
        await self._locks.acquire(source_id)
        try:
            current = await self._current(source_id)
            policy = self.wait_policy
            limit = policy.timeout if within is None else within
            started = time.monotonic()
            delay = policy.first_delay
            while True:
                observed = await self._read(source_id)
                if observed != current:
                    return await self._observed(source_id, current, observed, edge, wave, started)
                if edge is not None and edge.by is By.ACTION and not wait_for_action:
                    raise _action_needed(source_id, current, edge)
                left = limit - (time.monotonic() - started)
                if left <= 0:
                    expected = f" ({edge.trigger} → {edge.dest})" if edge is not None else ""
                    raise WaitTimeoutError(
                        f"source {source_id}: waited {limit:.0f}s for the service to move it out of "
                        f"{current}{expected}; it did not. "
                        + (
                            f"This move happens when another API is called: {edge.note}; "
                            f"call {what_to_call(edge, source_id)}"
                            if edge is not None and edge.by is By.ACTION
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
                self._intent(
                    source_id,
                    edge.trigger if edge else None,
                    str(current),
                    str(observed),
                    "service",
                    note,
                    False,
                    wave,
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
        origin → a pending entry's push did not land: make the entry this run's (fenced by
        the source's claim, :meth:`Journal.adopt <sms_flow.journal.Journal.adopt>`), push
        the same absolute state again under it, verify it (when the engine verifies) and
        settle it by what happens; an unverified entry's push did not take: settle it as
        ignored; it shows anything else → someone else changed it: settle it as a conflict
        and leave the source alone. A source that cannot be read leaves the entry open
        (``unread``). No callback of the machine runs: the step was decided, and begun,
        before the crash.
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
        self._open.pop(source_id, None)  # this entry is settled here, by this read
        self._seen[source_id] = (time.monotonic(), False)
        observed = src.pair
        shown = str(observed) if observed is not None else src.describe_state()
        before = f"{entry.error}; " if entry.error else ""
        if shown == entry.to_state:
            await journal.settle(
                entry.id,
                Outcome.APPLIED,
                request_id=entry.request_id,
                attempts=entry.attempts,
                error=f"{before}settled by recovery: the source shows the change"[-_ERROR_MAX:],
            )
            if observed is not None:
                self.track(source_id, observed, read_at=time.monotonic())
            return Resettled(entry.id, source_id, "applied")
        if shown != entry.from_state:
            await journal.settle(
                entry.id,
                Outcome.CONFLICT,
                request_id=entry.request_id,
                attempts=entry.attempts,
                error=f"{before}recovery: the source is {shown}, neither {entry.from_state} nor "
                f"{entry.to_state}; someone else changed it (left as it is)"[-_ERROR_MAX:],
            )
            if observed is not None and self.chart.is_permitted(observed):
                self.track(source_id, observed, read_at=time.monotonic())
            return Resettled(entry.id, source_id, "conflict", observed=shown)
        if entry.outcome is Outcome.UNVERIFIED:
            await journal.settle(
                entry.id,
                Outcome.IGNORED,
                request_id=entry.request_id,
                attempts=entry.attempts,
                error=f"{before}settled by recovery: the source still shows {shown}; the push "
                "did not take"[-_ERROR_MAX:],
            )
            if observed is not None:
                self.track(source_id, observed, read_at=time.monotonic())
            return Resettled(entry.id, source_id, "ignored")
        # Not applied: push the same absolute state again, under the same journal entry.
        try:
            lease = await self._owned(source_id)
            if lease is not None:
                await journal.adopt(entry.id, lease.run_id)
        except ClaimLostError as exc:
            self._lost(source_id)
            return Resettled(entry.id, source_id, "held", error=str(exc))
        except OwnedError as exc:
            return Resettled(entry.id, source_id, "held", error=str(exc))
        origin, dest = parse_pair(entry.from_state), parse_pair(entry.to_state)
        try:
            pushed = await self._deliver(
                source_id, origin, dest, entry.trigger, entry.id, lease, entry.wave, entry.forced
            )
        except UnverifiedError as exc:
            return Resettled(entry.id, source_id, "unread", error=str(exc))
        except (ApiError, TransportError, NotAppliedError) as exc:
            if isinstance(exc, ReadBackMismatchError):
                return Resettled(entry.id, source_id, "conflict", observed=exc.observed)
            # _deliver settled it (failed or ignored); say so in recovery's words.
            return Resettled(entry.id, source_id, "failed", error=str(exc))
        note = pushed.note if isinstance(pushed, _Landed) else None
        await journal.settle(
            entry.id,
            Outcome.APPLIED,
            request_id=pushed.request_id,
            attempts=pushed.attempts,
            error="settled by recovery: pushed again" + (f" ({note})" if note else ""),
        )
        self._states[source_id] = self._intern(dest)
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
        within: float | None = None,
        wait_for_actions: bool = False,
    ) -> list[StepResult]:
        """Move a source to a requested state (``StateRequest``, pair or ``"COPYSTATE/cycle"``).

        Without ``follow_path`` the change must be one permitted move, else
        :class:`~sms_flow.errors.TransitionRejected` carries the reasons and the shortest
        legal path. With it, that path is taken step by step (:meth:`take`): pushed, or
        waited for where the service makes a move by itself (``within`` seconds at most,
        default the wait policy's); a move only another API call makes (``by: action``)
        raises :class:`~sms_flow.errors.ActionNeededError` saying what to call, unless
        ``wait_for_actions``. Returns the steps done (empty when already there).
        """
        _check_text(source_id, "source_id")
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
            results.append(
                await self.take(
                    source_id,
                    step,
                    actor=actor,
                    reason=reason,
                    wave=wave,
                    within=within,
                    wait_for_action=wait_for_actions,
                )
            )
        return results

    async def take(
        self,
        source_id: str,
        step: Edge,
        *,
        actor: str | None = None,
        reason: str | None = None,
        wave: str | None = None,
        within: float | None = None,
        wait_for_action: bool = False,
    ) -> StepResult:
        """Make one step of a path: push it, or wait for the service to make it.

        A ``by: client`` step out of a state that is not frozen is pushed (:meth:`fire`);
        any other is waited for (:meth:`wait_for_service`, ``within`` seconds at most), and
        one only another API call makes (``by: action``) only with ``wait_for_action``:
        else the source is read once and, unmoved,
        :class:`~sms_flow.errors.ActionNeededError` says what to call.
        """
        if step.pushable and not self.chart.is_frozen(step.source):
            return await self.fire(source_id, step.trigger, actor=actor, reason=reason, wave=wave)
        return await self.wait_for_service(
            source_id, step, wave=wave, within=within, wait_for_action=wait_for_action
        )


def what_to_call(edge: Edge, source_id: str) -> str:
    """The chart's ``call`` for ``edge``, the source's id filled in, with where a task id is."""
    if edge.call is None:
        return "another API call (the chart does not say which)"
    call = edge.call.replace("{source_id}", source_id).replace("{id}", source_id)
    if "{task_id}" in call:
        call += f" (the task of the source: GET /v3/tasks?source_server_id={source_id})"
    return call


def _action_needed(source_id: str, current: StatePair, edge: Edge) -> ActionNeededError:
    call = what_to_call(edge, source_id)
    return ActionNeededError(
        f"source {source_id} is {current}: the next step, {edge.trigger} → {edge.dest}"
        + (f" ({edge.note})" if edge.note else "")
        + ", is made by the service when another API is called, not by changestate; nothing "
        "was sent and "
        f"sms-flow did not wait. Call {call}, then run this again (it carries on from where the "
        "source is); or ask sms-flow to wait while someone calls it (set --wait-for-action, "
        "wait_for_actions: true in a wave file)",
        source_id=source_id,
        trigger=edge.trigger,
        state=str(current),
        call=edge.call,
    )


def _pushed_status(pushed: _Pushed) -> str:
    status = getattr(pushed, "status", None)
    return f"HTTP {status}" if status is not None else "with success"
