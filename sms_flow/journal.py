"""The journal: every transition written down before it is pushed, then its outcome.

Write-ahead intent, then outcome
    The engine calls :meth:`Journal.begin` *before* it sends ``PUT .../changestate``, and only
    sends once ``begin`` has returned, because by then the intent is committed. When the push
    is over it calls :meth:`Journal.settle` with the :class:`Outcome`. A process killed at any
    moment therefore leaves, for every change it may have sent, an entry whose outcome is
    :attr:`Outcome.PENDING`: :meth:`Journal.open_intents` lists them, and a restarted process
    settles each one by reading the source back from the service. A change refused by the
    local chart, or a move the service made by itself, is never pushed and is written already
    settled with :meth:`Journal.record`.

Outcomes that say only what is known
    An entry is open while its outcome is not known: :attr:`Outcome.PENDING` (the intent is
    written, the push may or may not have gone out) or :attr:`Outcome.UNVERIFIED` (pushed,
    and it may have landed, but reading the source back failed). Both are listed by
    :meth:`Journal.open_intents`, and the next read of the source settles them, once.

Identity
    A source is ``(endpoint, source_id)``: the same id on two endpoints are two sources.
    Entries record the ``endpoint`` and ``project`` they were pushed to (``None``: unknown,
    an entry written before sms-flow recorded them) and the ``run_id`` of the driver.

Runs and claims: who drives what
    A *run* is one driver (a wave, a drill, one ``set``, a ``recover``, an engine used as a
    library) with a lease it renews by :meth:`Journal.heartbeat`. It *claims* the sources it
    drives (:meth:`Journal.claim`); a claim is held as long as its run is live: not ended,
    lease not expired, and, on this host, its process still there. A run that is not live
    is dead, and what it held is free. :meth:`Journal.begin` with the intent's ``run_id``
    is *fenced*: in the same transaction as the insert it checks that the run holds the
    source's claim, and else writes nothing and raises
    :class:`~sms_flow.errors.ClaimLostError` (or :class:`~sms_flow.errors.LeaseLostError`
    when it is the run's own lease that lapsed). Every grant of a claim takes a new fencing
    token, recorded in the entries written under it. Times are unix seconds; a back end
    compares expiries in its own query, with its own clock (SQLite: this machine's
    :func:`time.time`, PostgreSQL: the database's ``now()``).

Back ends
    This module holds the :class:`Journal` protocol and the types every back end shares.
    Two back ends keep it, with the same semantics (the contract tests,
    ``tests/test_journal.py``, run against both):
    :class:`~sms_flow.journal_sqlite.SqliteJournal`, one SQLite file (WAL mode) written by
    one dedicated thread with group commit, and
    :class:`~sms_flow.journal_postgres.PostgresJournal`, a PostgreSQL database that workers
    on several machines share (``pip install 'sms-flow[postgres]'``); :func:`is_dsn` tells
    which one a journal location names (:func:`sms_flow.journals.open_journal` opens it).
    Importing the types loads neither :mod:`sqlite3`, a thread, nor a database driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sms_flow.errors import (
    InputError,
    JournalError,
    LeaseLostError,
    OwnedError,
    did_you_mean,
    truncate,
)
from sms_flow.log import get_logger

__all__ = [
    "DEFAULT_LEASE",
    "HOST",
    "OPEN_OUTCOMES",
    "Census",
    "Claimed",
    "Entry",
    "Intent",
    "Journal",
    "JournalCheck",
    "JournalError",
    "JournalStats",
    "Lease",
    "Outcome",
    "Run",
    "RunStart",
    "StuckSource",
    "WaveStatus",
    "Work",
    "Worker",
    "born_settled",
    "check_join",
    "check_request_rate",
    "check_work_limit",
    "default_journal_path",
    "driven_elsewhere",
    "final_outcome",
    "history_filters",
    "is_dsn",
    "iso_utc",
    "not_live",
    "parse_moment",
    "parse_outcomes",
    "process_alive",
    "redact_dsn",
    "source_id_list",
]

_ENV_PATH: Final = "SMS_FLOW_JOURNAL"
_ENV_HOME: Final = "SMS_FLOW_HOME"
_log = get_logger("sms_flow.journal")

DEFAULT_LEASE: Final = 30.0
"""Seconds a run's lease lasts unless renewed; its heartbeat renews it every third of that."""

HOST: Final = os.environ.get("SMS_FLOW_HOST", "").strip()[:255] or os.uname().nodename
"""This machine's name, as runs record it (a dead process is known only on its own host):
``$SMS_FLOW_HOST``, else the host name. Set ``SMS_FLOW_HOST`` where host names are not
unique (containers made from one image with a fixed host name): two machines recorded
under one name would each take the other's live processes for dead ones."""


class Outcome(StrEnum):
    """What became of a transition."""

    PENDING = "pending"
    """Intent written, no outcome yet: it may or may not have been pushed."""
    APPLIED = "applied"
    """Pushed, and reading the source back shows the new state."""
    REJECTED = "rejected"
    """Refused by the local statechart; never sent."""
    FAILED = "failed"
    """The API answered with an error, or no usable answer came back."""
    IGNORED = "ignored"
    """The service answered, but the change did not take (frozen state, old state read back)."""
    CONFLICT = "conflict"
    """Reading back shows a third state: someone else changed the source; not overwritten."""
    OBSERVED = "observed"
    """A move seen by reading the source: the service's own, or one made outside this journal."""
    UNVERIFIED = "unverified"
    """Pushed, and it may have landed, but nothing proves it (reading it back failed); open:
    the next read of the source settles it as applied, ignored or conflict."""


OPEN_OUTCOMES: Final = frozenset({Outcome.PENDING, Outcome.UNVERIFIED})
"""Outcomes of an entry whose outcome is not known yet: listed by ``open_intents``."""


@dataclass(frozen=True, slots=True)
class Intent:
    """A transition about to be pushed (or recorded): who asked for what, and why."""

    source_id: str
    trigger: str | None
    from_state: str
    """The state before, as ``"COPYSTATE/cycle"``, e.g. ``"WAITING/checking"``."""
    to_state: str
    actor: str
    """Who asked, e.g. ``"cli:alice"`` or ``"wave:w1"``."""
    reason: str | None
    forced: bool = False
    wave: str | None = None
    endpoint: str | None = None
    """Where it is pushed: the service's base URL (``None``: unknown)."""
    project: str | None = None
    """The project it is pushed in, when known (AK/SK signing names it)."""
    run_id: str | None = None
    """The run writing it; with one, :meth:`Journal.begin` is fenced by the run's claim."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry: an intent, its outcome, and when both happened.

    ``id`` grows monotonically across the whole journal, so it gives the global order.
    Times are unix seconds from :func:`time.time`. ``endpoint``, ``project`` and ``run_id``
    are ``None`` for entries written before sms-flow recorded them (unknown); ``fence`` is
    the fencing token of the claim an intent was written under.
    """

    id: int
    source_id: str
    trigger: str | None
    from_state: str
    to_state: str
    actor: str
    reason: str | None
    forced: bool
    wave: str | None
    outcome: Outcome
    request_id: str | None
    attempts: int
    error: str | None
    created_at: float
    settled_at: float | None
    endpoint: str | None = None
    project: str | None = None
    run_id: str | None = None
    fence: int | None = None

    @property
    def intent(self) -> Intent:
        """The intent this entry records."""
        return Intent(
            source_id=self.source_id,
            trigger=self.trigger,
            from_state=self.from_state,
            to_state=self.to_state,
            actor=self.actor,
            reason=self.reason,
            forced=self.forced,
            wave=self.wave,
            endpoint=self.endpoint,
            project=self.project,
            run_id=self.run_id,
        )

    @property
    def open(self) -> bool:
        """True while its outcome is not known (pending or unverified)."""
        return self.outcome in OPEN_OUTCOMES

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON output (``outcome`` as its string value)."""
        data = {name: getattr(self, name) for name in _ENTRY_FIELDS}
        data["outcome"] = self.outcome.value
        return data


_ENTRY_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Entry))


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters of a journal that group-commits: how well it is batching.

    ``batches`` is the number of transactions committed (or attempted); ``operations /
    batches`` is the mean batch size. ``in_flight`` is the size of the batch the thread is
    running right now (0 when idle).
    """

    operations: int
    batches: int
    largest_batch: int
    in_flight: int
    batch_seconds: float = 0.0
    """Time spent writing batches (each one transaction, its commit included; on
    PostgreSQL, retries after a lost connection too): ``batch_seconds / batches`` is the mean
    commit time."""


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (``os.kill(pid, 0)``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


def iso_utc(t: float) -> str:
    """Unix seconds as ISO-8601 in UTC, to the millisecond: ``2026-12-02T04:40:12.345Z``
    (how reports, ``status`` and ``history --format csv`` write times)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Run:
    """One driver as the journal records it: who, where, since when, and its lease.

    ``kind`` is ``wave``, ``drill``, ``set``, ``recover`` or ``engine`` (a library's
    implicit run); ``name`` the wave's or drill's. ``exclusive``: a second live run of the
    same kind, name and endpoint is refused. ``ended_at`` and ``end_reason`` are set when it
    ended (``ended``) or was found dead (``dead: lease expired``, ``dead: process gone``).
    """

    run_id: str
    kind: str
    name: str | None
    endpoint: str | None
    project: str | None
    host: str
    pid: int
    actor: str
    exclusive: bool
    started_at: float
    heartbeat_at: float
    expires_at: float
    ended_at: float | None = None
    end_reason: str | None = None

    def live(self, now: float | None = None) -> bool:
        """Not ended, lease not expired at ``now`` (default: now), and not gone on this host."""
        if self.ended_at is not None:
            return False
        if self.expires_at <= (time.time() if now is None else now):
            return False
        return not (self.host == HOST and not process_alive(self.pid))

    def describe(self, now: float | None = None) -> str:
        """The run for a person: what, who, where, since when, its last heartbeat."""
        now = time.time() if now is None else now
        what = f"{self.kind} {self.name}" if self.name else self.kind
        parts = [
            f"run {self.run_id[:8]}",
            f"actor {self.actor}",
            f"pid {self.pid} on host {self.host}",
            f"since {_when(self.started_at)}",
            f"last heartbeat {max(0.0, now - self.heartbeat_at):.0f} s ago",
        ]
        if self.ended_at is not None:
            parts.append(f"{self.end_reason or 'ended'} {max(0.0, now - self.ended_at):.0f} s ago")
        else:
            parts.append(f"lease until {_when(self.expires_at)}")
        return f"{what} ({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class RunStart:
    """What :meth:`Journal.start_run` did: the new run, and the dead runs it took over."""

    run: Run
    took_over: list[Run] = field(default_factory=list)
    """Runs of the same kind, name and endpoint found dead (lease expired or process gone),
    marked so; their open intents are the new run's to settle."""
    session: str | None = None
    """A joined run (``join=True``): the session of workers it joined, or started."""


@dataclass(frozen=True, slots=True)
class Work:
    """What :meth:`Journal.claim_work` did: the next batch of a joined wave's sources."""

    claimed: Claimed
    """The batch: sources now this run's (``granted``; ``taken_from`` the dead runs
    they were taken from)."""
    undone: int
    """Members of the wave not yet done in the session (the batch and those other workers,
    or this one, hold included). 0: the session's work is over."""
    failures: int
    """Members of the session done as ``failed``, by every worker."""


@dataclass(frozen=True, slots=True)
class Worker:
    """One worker of a joined wave (:meth:`Journal.workers`)."""

    run: Run
    session: str
    claims: int
    """Sources it holds now and has not done (0 once it ended or was found dead)."""
    done: int
    """Sources it marked done in its session."""

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        run = self.run
        return {
            "run_id": run.run_id,
            "session": self.session,
            "host": run.host,
            "pid": run.pid,
            "actor": run.actor,
            "live": run.live(now),
            "started_at": iso_utc(run.started_at),
            "heartbeat_at": iso_utc(run.heartbeat_at),
            "expires_at": iso_utc(run.expires_at),
            "ended_at": iso_utc(run.ended_at) if run.ended_at is not None else None,
            "end_reason": run.end_reason,
            "claims": self.claims,
            "done": self.done,
        }


@dataclass(frozen=True, slots=True)
class Claimed:
    """What :meth:`Journal.claim` did with each source asked for."""

    granted: dict[str, int] = field(default_factory=dict)
    """Sources now held by the run, each with the fencing token of its grant."""
    refused: dict[str, Run] = field(default_factory=dict)
    """Sources held by another live run, each with that run (its owner)."""
    taken_from: dict[str, Run] = field(default_factory=dict)
    """Granted sources another run held before: a dead one, or (``steal``) a live one."""


@dataclass(frozen=True, slots=True)
class JournalCheck:
    """What :meth:`Journal.check` found: is the storage sound, and what does it hold."""

    location: str
    ok: bool
    problems: list[str]
    schema_version: int
    entries: int
    open_intents: int
    live_runs: list[Run]
    claims: int
    """Sources held by live runs. A count the damage made unreadable is -1."""


@dataclass(frozen=True, slots=True)
class WaveStatus:
    """Where a wave's sources are, as its journal knows it (:meth:`Journal.wave_status`).

    A member's state is the destination of its latest applied or observed entry, else the
    origin of its latest entry (where it was when a step was tried), else ``"unknown"`` (the
    journal holds nothing of it yet). A member *fails* while its latest entry is failed,
    ignored, conflict or unverified.
    """

    wave: str
    members: int
    states: dict[str, int]
    """How many members are in each state (``COPYSTATE/cycle``, or ``unknown``)."""
    failed: int
    failures: list[Entry]
    """The latest entry of each failing member (the first ones, oldest first)."""
    open_intents: int
    open: list[Entry]
    """The wave's open entries (the first ones, oldest first)."""
    entries: int
    last_activity: float | None
    """When the wave's latest entry was written (unix seconds), if any."""


@dataclass(frozen=True, slots=True)
class StuckSource:
    """A source that has stayed in one state since ``since`` (:attr:`Census.stuck`)."""

    source_id: str
    state: str
    since: float
    """When it entered ``state``: the latest applied or observed entry (settled, else
    written), else when its latest entry was written (unix seconds)."""
    outcome: Outcome
    """The outcome of its latest entry (failed, pending, ... when a step out was tried)."""
    wave: str | None


@dataclass(frozen=True, slots=True)
class Census:
    """Where every source of the journal is (:meth:`Journal.census`), counted in storage.

    A source's state is as in :class:`WaveStatus` (its latest applied or observed entry's
    destination, else its latest entry's origin); it *fails* while its latest entry is
    failed, ignored, conflict or unverified.
    """

    sources: int
    states: dict[str, int]
    """How many sources are in each state (``COPYSTATE/cycle``)."""
    failing: dict[str, int]
    """How many of each state's sources fail (states with none are absent)."""
    stuck_count: int
    stuck: list[StuckSource]
    """Sources in a state since before the census' ``stuck_before``, longest first (the
    first ones)."""


class Journal(Protocol):
    """Where transitions are written down. Every method is a coroutine.

    Use it as ``async with journal: ...`` or call :meth:`open` and :meth:`close`.
    """

    async def open(self) -> None:
        """Make the journal ready (create the storage on first use)."""
        ...

    async def close(self) -> None:
        """Finish queued work and release the storage; later calls raise JournalError."""
        ...

    async def begin(self, intent: Intent) -> int:
        """Write ``intent`` as pending; durable when this returns. Returns the entry id.

        With ``intent.run_id`` (and its ``endpoint``), fenced: written only if that run holds
        the source's claim and is live, checked in the same transaction; else nothing is
        written and :class:`~sms_flow.errors.ClaimLostError` (another run holds it, or
        nobody) or :class:`~sms_flow.errors.LeaseLostError` (the run itself is no longer
        live) is raised.
        """
        ...

    async def settle(
        self,
        entry_id: int,
        outcome: Outcome,
        *,
        request_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
        wait: bool = True,
    ) -> None:
        """Write the outcome of an open entry; durable when this returns.

        ``Outcome.UNVERIFIED`` marks a pending entry as pushed but unproven: it stays open,
        and is settled once more, by a final outcome. Settling an unknown entry, one already
        settled, an unverified one as unverified again, or with ``Outcome.PENDING`` raises
        :class:`JournalError`. With ``wait=False`` it returns once the write is
        queued: it is made in order with everything queued before and after it (so before
        the next ``begin``), and a failure is logged instead of raised. An outcome lost to
        a crash is found again by recovery, which reads the source back.
        """
        ...

    async def record(
        self,
        intent: Intent,
        outcome: Outcome,
        *,
        request_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> int:
        """Write an entry born settled (a rejection, an observed move). Returns its id.

        Not fenced: it records what was seen or refused, never a push.
        """
        ...

    async def open_intents(
        self, *, wave: str | None = None, endpoint: str | None = None
    ) -> list[Entry]:
        """Open entries (pending or unverified), oldest first; of ``wave``, pushed to
        ``endpoint``, when given."""
        ...

    async def history(
        self,
        *,
        source_id: str | None = None,
        wave: str | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Entries, oldest first; with ``limit``, the last ``limit`` of them (oldest first)."""
        ...

    def iter_history(
        self,
        *,
        source_id: str | None = None,
        wave: str | None = None,
        since: float | None = None,
        until: float | None = None,
        outcomes: Sequence[Outcome] | None = None,
        actor: str | None = None,
        last: int | None = None,
        page: int = 1000,
    ) -> AsyncIterator[Entry]:
        """Entries matching every filter given, oldest first, read ``page`` at a time.

        ``since`` and ``until`` bound when an entry was written (unix seconds; ``until``
        excluded); ``outcomes`` keeps those outcomes; ``actor`` that actor. With ``last``,
        only the last ``last`` matching entries. Filters and pages run in the storage, so
        the first entries come at once and memory stays flat however many match.
        """
        ...

    async def wave_status(self, wave: str, *, shown: int = 50) -> WaveStatus:
        """Where the wave's members are, what failed, what is open (up to ``shown`` each)."""
        ...

    async def last_applied(
        self, source_ids: Sequence[str], *, endpoint: str | None = None
    ) -> dict[str, Entry]:
        """For each source, its latest APPLIED or OBSERVED entry (sources without one are absent).

        With ``endpoint``, only entries pushed to (or seen on) that endpoint count.
        """
        ...

    async def add_members(
        self, wave: str, source_ids: Sequence[str], *, endpoint: str = ""
    ) -> None:
        """Add sources to a wave on ``endpoint`` (as the journal names it; ``""``: unknown);
        idempotent, and the first insertion fixes the order.

        Membership is keyed by wave and endpoint: a wave's sources on one endpoint are never
        its sources on another.
        """
        ...

    async def members(self, wave: str, *, endpoint: str | None = None) -> list[str]:
        """The sources of a wave on ``endpoint`` in insertion order (empty when none);
        ``None``: on every endpoint, each source once."""
        ...

    async def remove_members(self, wave: str, *, endpoint: str | None = None) -> int:
        """Forget a wave's membership on ``endpoint`` (``None``: on every endpoint); its
        history entries stay. Returns how many went."""
        ...

    async def member_endpoints(self, wave: str) -> list[str]:
        """The endpoints a wave has members on, in order of first membership (``""`` for
        members whose endpoint is unknown, from a journal written before it was recorded)."""
        ...

    async def adopt_members(self, wave: str, *, endpoint: str) -> int:
        """Give a wave's members of unknown endpoint (``""``) to ``endpoint``; how many."""
        ...

    async def waves(self) -> list[str]:
        """Every wave named by members or entries, in order of first appearance."""
        ...

    # --- runs and claims -----------------------------------------------------------------

    async def start_run(
        self,
        kind: str,
        *,
        name: str | None,
        endpoint: str | None,
        actor: str,
        lease: float = DEFAULT_LEASE,
        exclusive: bool = False,
        project: str | None = None,
        join: bool = False,
    ) -> RunStart:
        """Start a run of this process on this host, its lease ``lease`` seconds from now.

        With ``exclusive``, a live run of the same ``kind``, ``name`` and ``endpoint``
        refuses it: :class:`~sms_flow.errors.OwnedError` naming that run; a live exclusive
        run refuses any other of its key. Runs of that key found dead are marked so and
        returned in :attr:`RunStart.took_over`, for the new run to settle their open intents
        by reading back.

        ``join`` (not exclusive; ``kind`` ``wave`` or ``drill``, ``name`` and ``endpoint``
        given) makes the run a worker of the key's session: the session of its live workers,
        or a new one (:attr:`RunStart.session`) when none is live. Workers share the wave's
        members through :meth:`claim_work`.
        """
        ...

    async def claim_work(
        self,
        run_id: str,
        session: str,
        *,
        wave: str,
        endpoint: str,
        limit: int,
        done: Mapping[str, str] | None = None,
        holding: Sequence[str] = (),
    ) -> Work:
        """Mark ``done`` (source id → outcome) done in the session, then claim up to
        ``limit`` members of ``wave`` on ``endpoint`` not done in it and held by no live run
        (free, or a dead run's), in membership order; in one transaction. On PostgreSQL,
        concurrent workers skip each other's rows (``FOR UPDATE SKIP LOCKED``). A source is
        marked done only while this run holds its claim, or another took it from this run
        (``set --force``: the session leaves it to them). ``limit`` 0 marks done and
        counts, claiming nothing. ``holding``: the sources the
        caller is driving now; others this run holds but is not driving (a batch whose
        answer was lost with the connection) are claimable again, by it. Raises
        :class:`~sms_flow.errors.LeaseLostError` when the run is not live.
        """
        ...

    async def reserve_requests(self, session: str, count: int, rate: float) -> float:
        """Reserve ``count`` requests of the session's shared rate limit (``rate`` a second,
        for all its workers): the seconds from now until the first of them may go; the rest
        follow at ``1 / rate`` intervals. Measured on the journal's clock."""
        ...

    async def workers(self, wave: str, *, endpoint: str | None = None) -> list[Worker]:
        """The workers of ``wave``'s latest session (on ``endpoint``, or each endpoint's),
        oldest first: live, ended and dead."""
        ...

    async def heartbeat(self, run_id: str, lease: float = DEFAULT_LEASE) -> Run:
        """Renew the run's lease (and so its claims) to ``lease`` seconds from now.

        Raises :class:`~sms_flow.errors.LeaseLostError` when the run is not live any more
        (its lease expired, it was found dead, or it ended): a lease is never revived.
        """
        ...

    async def end_run(self, run_id: str, *, reason: str = "ended") -> None:
        """End the run: every claim it holds is free at once. Ending it twice is harmless."""
        ...

    async def claim(
        self,
        run_id: str,
        endpoint: str,
        source_ids: Sequence[str],
        *,
        steal: bool = False,
        reason: str | None = None,
    ) -> Claimed:
        """Claim sources on ``endpoint`` for the run: free ones, and those of dead runs.

        A source another live run holds is refused (:attr:`Claimed.refused` names its
        owner), unless ``steal``: then it is taken from that run, with ``reason`` recorded
        on the claim (the owner's next fenced write names the taker and the reason). Every
        grant takes a new fencing token. Raises :class:`~sms_flow.errors.LeaseLostError` if
        the run itself is not live.
        """
        ...

    async def release(self, run_id: str, endpoint: str, source_ids: Sequence[str]) -> int:
        """Free the run's claims of ``source_ids`` on ``endpoint`` now (a long-lived run done
        with them: ``sms-flow serve`` after each change); how many it held. Claims it does
        not hold are left alone."""
        ...

    async def adopt(self, entry_id: int, run_id: str) -> None:
        """Make an open entry the run's own before pushing it again (recovery); fenced like
        :meth:`begin`: the run must hold the source's claim, checked in the same transaction.

        An entry of unknown endpoint (written before endpoints were recorded) takes the run's.
        """
        ...

    async def state_ages(self) -> list[tuple[str, int, float]]:
        """``(state, sources, since)`` for each state some source's latest applied or
        observed entry took it to: how many are there, and since when the one there longest
        has been (unix seconds); counted in storage (the metrics' per-state gauges)."""
        ...

    async def runs(self, *, live: bool = True) -> list[Run]:
        """Runs, oldest first: those not ended (``live``; some may be dead, see
        :meth:`Run.live`), or all."""
        ...

    async def check(self) -> JournalCheck:
        """Check the storage in full (SQLite: ``integrity_check``) and count what it holds."""
        ...

    async def census(
        self, *, stuck_before: float, settled: Sequence[str] = (), shown: int = 50
    ) -> Census:
        """Every source's state counted (and its failures), and the sources in a state since
        before ``stuck_before`` (unix seconds), longest first, up to ``shown``; sources in a
        state of ``settled`` (e.g. the chart's final states) are never stuck."""
        ...

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def default_journal_path() -> Path:
    """``$SMS_FLOW_JOURNAL`` if set, else ``journal.sqlite`` in the state folder:
    ``$SMS_FLOW_HOME`` if set, else ``.sms-flow`` under the current directory.

    The result is absolute, so that messages name the full path. (Reports and the embedded
    simulator's states go beside the journal: the state folder is the journal's folder.) A
    ``$SMS_FLOW_JOURNAL`` that is a PostgreSQL DSN is no path: :func:`sms_flow.journals.resolve`
    tells the two apart.
    """
    configured = os.environ.get(_ENV_PATH)
    if configured:
        return Path(configured).expanduser().absolute()
    home = os.environ.get(_ENV_HOME)
    folder = Path(home).expanduser().absolute() if home else Path.cwd() / ".sms-flow"
    return folder / "journal.sqlite"


# --- argument checks every back end makes --------------------------------------------------


def final_outcome(outcome: Outcome, doing: str) -> Outcome:
    """``outcome`` as an :class:`Outcome` that settles an entry; JournalError if it cannot.

    ``doing`` names the call for the message, e.g. ``"settle entry 7"``.
    """
    try:
        outcome = Outcome(outcome)
    except ValueError:
        raise JournalError(
            f"cannot {doing}: unknown outcome {outcome!r}; "
            f"valid: {', '.join(o.value for o in Outcome if o is not Outcome.PENDING)}"
        ) from None
    if outcome is Outcome.PENDING:
        raise JournalError(
            f"cannot {doing} as 'pending': that is not an outcome; use begin() to write an intent"
        )
    return outcome


def born_settled(outcome: Outcome, doing: str) -> Outcome:
    """``outcome`` for an entry written already settled (``record``): not an open one."""
    outcome = final_outcome(outcome, doing)
    if outcome is Outcome.UNVERIFIED:
        raise JournalError(
            f"cannot {doing} as 'unverified': only a pushed intent can be unverified; "
            "begin() it, then settle it"
        )
    return outcome


def driven_elsewhere(
    kind: str, name: str | None, endpoint: str | None, other: Run, now: float, *, join: bool
) -> OwnedError:
    """The refusal of a run start while ``other``, a live run of its key, drives it."""
    what = f"{kind} {name}" if name else kind
    if join and other.exclusive:
        why = (
            "; it runs alone (started without --join), and workers join only runs started "
            "with --join"
        )
    elif not other.exclusive and other.kind in ("wave", "drill"):
        why = f"; it is a worker of the {kind} (--join): add --join to be another one"
    else:
        why = ""
    return OwnedError(
        f"{what} on {endpoint} is driven by another live run: {other.describe(now)}{why}; "
        f"wait for it to finish or stop it (Ctrl-C in its terminal, or kill {other.pid} on "
        f"{other.host}); if it is stuck, its lease ends at the time shown and the next run "
        "takes over",
        owner=other,
    )


def history_filters(
    source_id: str | None,
    wave: str | None,
    since: float | None,
    until: float | None,
    actor: str | None,
) -> list[tuple[str, str, Any]]:
    """The ``(column, operator, value)`` conditions of a history read's filters that are
    given (:meth:`Journal.iter_history`); each back end writes them in its own SQL."""
    conditions = (
        ("source_id", "=", source_id),
        ("wave", "=", wave),
        ("created_at", ">=", since),
        ("created_at", "<", until),
        ("actor", "=", actor),
    )
    return [(column, op, value) for column, op, value in conditions if value is not None]


def not_live(run_id: str, run: Run | None, now: float) -> LeaseLostError:
    """The refusal of a claim by a run that is not live (``run``: its record, if any)."""
    return LeaseLostError(
        f"run {run_id[:8]} cannot claim sources: it is not live ("
        + (run.describe(now) if run is not None else "unknown to this journal")
        + "); run it again",
        owner=run,
    )


def check_join(
    join: bool, exclusive: bool, kind: str, name: str | None, endpoint: str | None
) -> None:
    """Refuse a ``join`` start that cannot be one (see :meth:`Journal.start_run`)."""
    if not join:
        return
    if exclusive:
        raise JournalError("a joined run shares its wave with other workers: it is not exclusive")
    if not name or not endpoint:
        raise JournalError(
            f"a joined {kind} run needs the name and endpoint of what it joins, got name "
            f"{name!r} and endpoint {endpoint!r}"
        )


def check_work_limit(limit: int) -> None:
    """Refuse a batch size :meth:`Journal.claim_work` cannot take."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 100_000:
        raise JournalError(f"claim_work: a batch of {limit!r} sources; give 0 to 100000")


def check_request_rate(count: int, rate: float) -> None:
    """Refuse a reservation :meth:`Journal.reserve_requests` cannot take."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
        raise JournalError(f"reserve_requests: {count!r} requests; give 1 to 100000")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate < 1e9:
        raise JournalError(f"reserve_requests: a rate of {rate!r} a second; give a number above 0")


def source_id_list(source_ids: Sequence[str], doing: str) -> list[str]:
    """``source_ids`` as a list; JournalError for a lone string (a common slip)."""
    if isinstance(source_ids, str):
        raise JournalError(
            f"{doing} takes a sequence of source ids, not the string {source_ids!r}; "
            f"wrap it in a list: [{source_ids!r}]"
        )
    return list(source_ids)


# --- a run held by this process ----------------------------------------------------------

_LEASE_SHARE: Final = 5 / 6
"""The share of the lease a run may go without a heartbeat reaching the journal before it
stops pushing (25 s of 30): heartbeats come every third, so two may be late."""

if hasattr(time, "CLOCK_BOOTTIME"):  # Linux: counts a suspended machine's time, as the lease does

    def _clock() -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

else:  # pragma: no cover - other systems
    _clock = time.monotonic


class Lease:
    """A run of this process on a journal: started, kept alive, guarded, ended.

    :meth:`start` starts the run (:meth:`Journal.start_run`) and a heartbeat task that
    renews its lease every third of ``seconds``. :meth:`check` is the local guard: it raises
    :class:`~sms_flow.errors.LeaseLostError` once the journal refused a heartbeat, or once
    no heartbeat reached it for 5/6 of the lease (measured on this machine's monotonic
    clock, suspended time included), so that a process paused past its lease (``SIGSTOP``,
    a long GC pause, a suspended laptop) pushes nothing when it wakes: another run may have
    taken its sources over. :meth:`watch` guards a push in flight the same way: it is
    cancelled when the guard trips before it ends. :meth:`end` ends the run and frees every
    claim at once. With ``join``, the run is a worker of its wave's session
    (:attr:`session`; see :meth:`Journal.start_run`).
    """

    def __init__(
        self,
        journal: Journal,
        kind: str,
        *,
        actor: str,
        name: str | None = None,
        endpoint: str | None = None,
        project: str | None = None,
        seconds: float = DEFAULT_LEASE,
        exclusive: bool = False,
        join: bool = False,
    ) -> None:
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise JournalError(f"a lease of {seconds!r} seconds; give a number above 0")
        self.journal = journal
        self.kind = kind
        self.actor = actor
        self.name = name
        self.endpoint = endpoint
        self.project = project
        self.seconds = float(seconds)
        self.exclusive = exclusive
        self.join = join
        self.session: str | None = None
        """The session of workers a joined run is one of (``join``), once started."""
        self.limit = self.seconds * _LEASE_SHARE
        """Seconds without a heartbeat after which this process stops pushing."""
        self.run: Run | None = None
        self.took_over: list[Run] = []
        self.lost: OwnedError | None = None
        """Why this run may push no more, once it may not."""
        self._ok = 0.0  # _clock() when the last heartbeat that succeeded was sent
        self._ok_loop = 0.0  # the same on the event loop's clock
        self._beat: asyncio.Task[None] | None = None
        self._watches: set[asyncio.Timeout] = set()
        self._ended = False

    @property
    def run_id(self) -> str:
        if self.run is None:
            raise JournalError("the lease is not started; await lease.start() first")
        return self.run.run_id

    def __repr__(self) -> str:
        run = self.run.run_id[:8] if self.run is not None else "not started"
        return f"Lease({self.kind} {self.name or ''}, run {run}, {self.seconds:g} s)"

    async def start(self) -> RunStart:
        """Start the run (:class:`~sms_flow.errors.OwnedError` when exclusive and another is
        live) and its heartbeat."""
        loop = asyncio.get_running_loop()
        sent, sent_loop = _clock(), loop.time()
        started = await self.journal.start_run(
            self.kind,
            name=self.name,
            endpoint=self.endpoint,
            actor=self.actor,
            lease=self.seconds,
            exclusive=self.exclusive,
            project=self.project,
            join=self.join,
        )
        self.run = started.run
        self.session = started.session
        self.took_over = started.took_over
        self._ok, self._ok_loop = sent, sent_loop
        self._beat = asyncio.create_task(self._heartbeat(), name=f"sms-flow-heartbeat:{self}")
        return started

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.seconds / 3)
            sent, sent_loop = _clock(), loop.time()
            try:
                await self.journal.heartbeat(self.run_id, self.seconds)
            except LeaseLostError as exc:
                self._lose(exc)
                return
            except Exception as exc:  # the journal failed this time; the guard decides
                _log_heartbeat(self, exc)
                continue
            self._ok, self._ok_loop = sent, sent_loop
            deadline = sent_loop + self.limit
            for watch in list(self._watches):
                _reschedule(watch, deadline)

    def _lose(self, error: OwnedError) -> OwnedError:
        if self.lost is None:
            self.lost = error
            now = asyncio.get_running_loop().time()
            for watch in list(self._watches):  # cancel the pushes in flight
                _reschedule(watch, now)
        return self.lost

    def check(self) -> None:
        """Raise :class:`~sms_flow.errors.LeaseLostError` if this run may push no more."""
        if self.lost is not None:
            raise self.lost
        if self.run is None:
            raise JournalError("the lease is not started; await lease.start() first")
        quiet = _clock() - self._ok
        if quiet > self.limit:
            raise self._lose(
                LeaseLostError(
                    f"run {self.run.run_id[:8]} ({self.kind} {self.name or ''}) went "
                    f"{quiet:.1f} s without renewing its lease of {self.seconds:g} s (the "
                    "process was paused, or the journal did not answer): another run may "
                    "have taken its sources over, so it pushes nothing more; run it again "
                    "to resume",
                    owner=self.run,
                )
            )

    def watch(self) -> _Watch:
        """``async with lease.watch(): push``: cancelled (and :class:`LeaseLostError`
        raised) if the guard trips while the push is in flight."""
        return _Watch(self)

    async def claim(
        self,
        endpoint: str,
        source_ids: Sequence[str],
        *,
        steal: bool = False,
        reason: str | None = None,
    ) -> Claimed:
        """Claim sources for this run (:meth:`Journal.claim`)."""
        self.check()
        try:
            return await self.journal.claim(
                self.run_id, endpoint, source_ids, steal=steal, reason=reason
            )
        except LeaseLostError as exc:
            raise self._lose(exc) from None

    async def release(self, endpoint: str, source_ids: Sequence[str]) -> int:
        """Free this run's claims of ``source_ids`` now (:meth:`Journal.release`)."""
        return await self.journal.release(self.run_id, endpoint, source_ids)

    async def end(self, reason: str = "ended") -> None:
        """Stop the heartbeat and end the run, freeing its claims; harmless twice."""
        if self._ended or self.run is None:
            return
        self._ended = True
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        try:
            await self.journal.end_run(self.run.run_id, reason=reason)
        except JournalError as exc:  # its lease runs out all the same
            _log_heartbeat(self, exc)


class _Watch:
    __slots__ = ("_lease", "_timeout")

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        lease = self._lease
        lease.check()
        self._timeout = timeout = asyncio.timeout_at(lease._ok_loop + lease.limit)
        await timeout.__aenter__()
        lease._watches.add(timeout)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout = self._timeout
        assert timeout is not None
        lease = self._lease
        lease._watches.discard(timeout)
        try:
            await timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            try:
                lease.check()
                why = f"run {lease.run_id[:8]} renewed its lease too late"
            except LeaseLostError as lost:
                why = str(lost)
            cut = LeaseLostError(
                f"{why}; a push was in flight and was cut off: it may have landed, and the "
                "run that takes over reads it back",
                owner=lease.run,
            )
            lease._lose(cut)
            raise cut from None


def _reschedule(watch: asyncio.Timeout, when: float) -> None:
    with contextlib.suppress(RuntimeError):  # it is expiring already: it cancels all the same
        watch.reschedule(when)


def _log_heartbeat(lease: Lease, exc: BaseException) -> None:
    _log.warning("heartbeat failed", run=lease.run.run_id if lease.run else None, error=str(exc))


# --- where a journal is ----------------------------------------------------------------------

DSN_SCHEMES: Final = ("postgresql://", "postgres://")
"""How a journal location that is a PostgreSQL DSN begins; any other location is a path."""


def is_dsn(location: str | os.PathLike[str]) -> bool:
    """Whether a journal location (``--journal``, ``SMS_FLOW_JOURNAL``) is a PostgreSQL DSN,
    for :class:`~sms_flow.journal_postgres.PostgresJournal`, rather than the path of an
    SQLite file."""
    return isinstance(location, str) and location.startswith(DSN_SCHEMES)


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password (in the user part or a ``password`` parameter)."""
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, hosts = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}@{hosts}"
        query = urlencode(
            [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "the PostgreSQL DSN given (unreadable, shown without it)"


# --- reading filters of the history (the CLI's options, the API's query) -------------------

_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_moment(text: str, name: str) -> float:
    """A point in time as unix seconds: ISO-8601 (UTC unless it names an offset), or a
    duration ago (``90s``, ``30m``, ``2h``, ``7d``, ``1w``); ``name`` names it in the
    :class:`~sms_flow.errors.InputError` for anything else."""
    raw = text.strip()
    unit = _DURATION_UNITS.get(raw[-1:].lower())
    if unit is not None and raw[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(raw[:-1]) * unit
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(
            f"{name} {truncate(text, 60)!r} is neither an ISO-8601 time (2026-12-02, "
            "2026-12-02T04:30, 2026-12-02T04:30:00+08:00; UTC unless an offset is given) nor "
            "a duration ago (90s, 30m, 2h, 7d, 1w)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def parse_outcomes(given: Sequence[str]) -> list[Outcome]:
    """Outcomes named in ``given`` (each one or several, comma-separated); an unknown one is an
    :class:`~sms_flow.errors.InputError` that suggests the closest."""
    valid = [o.value for o in Outcome]
    found: list[Outcome] = []
    for name in (part.strip().lower() for text in given for part in text.split(",")):
        if not name:
            continue
        if name not in valid:
            raise InputError(
                f"unknown outcome {truncate(name, 40)!r}{did_you_mean(name, valid)}; valid: "
                f"{', '.join(valid)}"
            )
        found.append(Outcome(name))
    return found
