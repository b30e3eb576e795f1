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

One thread, group commit
    :class:`SqliteJournal` keeps its SQLite connection on one dedicated thread (a connection
    must not be shared between threads, and no SQLite call may block the event loop). A
    coroutine puts its operation on a queue and awaits a future. The thread takes every
    operation queued so far, runs them in one transaction, commits once, and resolves all of
    their futures with one ``call_soon_threadsafe`` per batch. Under load one commit (one
    fsync with ``synchronous="FULL"``) serves many transitions, so the journal keeps up with
    a wave of thousands of transitions a second; when idle, a lone operation commits at once,
    with no timer to wait for. Each write runs in its own savepoint, so an operation that
    fails (settling an unknown entry, say) fails for its caller alone while the rest of the
    batch commits.

Durability
    The file is in WAL mode. With ``synchronous="NORMAL"`` (the default) a committed entry
    survives the process being killed (``SIGKILL``, OOM killer, a crash) but not necessarily a
    power loss or kernel panic, which may take the last few commits. With
    ``synchronous="FULL"`` every commit is fsynced and survives both, at the cost of one fsync
    per batch.

Storage sits behind the small :class:`Journal` protocol so that a PostgreSQL journal shared by
several workers can follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, Literal, Protocol, Self, TypeVar

from sms_flow.errors import ConfigError, JournalError
from sms_flow.log import get_logger

_log = get_logger("sms_flow.journal")

__all__ = [
    "Entry",
    "Intent",
    "Journal",
    "JournalError",
    "JournalStats",
    "Outcome",
    "SqliteJournal",
    "default_journal_path",
]

SCHEMA_VERSION: Final = 1
"""The schema this module writes, stored in ``PRAGMA user_version``."""

_APPLICATION_ID: Final = 0x534D5346  # "SMSF": marks the file as an sms-flow journal
_BUSY_TIMEOUT_MS: Final = 10_000
_MAX_BATCH: Final = 4096
_CHUNK: Final = 500  # source ids per statement in last_applied (bound-parameter limits)
_ENV_PATH: Final = "SMS_FLOW_JOURNAL"

_T = TypeVar("_T")


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
    """A move the service made by itself, seen by polling; recorded for the history."""


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


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry: an intent, its outcome, and when both happened.

    ``id`` grows monotonically across the whole journal, so it gives the global order.
    Times are unix seconds from :func:`time.time`.
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
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON output (``outcome`` as its string value)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["outcome"] = self.outcome.value
        return data


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters of a :class:`SqliteJournal`: how well group commit is batching.

    ``batches`` is the number of transactions committed (or attempted); ``operations /
    batches`` is the mean batch size. ``in_flight`` is the size of the batch the thread is
    running right now (0 when idle).
    """

    operations: int
    batches: int
    largest_batch: int
    in_flight: int


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
        """Write ``intent`` as pending; durable when this returns. Returns the entry id."""
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
        """Write the outcome of a pending entry; durable when this returns.

        Settling an unknown entry, an already settled one, or with ``Outcome.PENDING``
        raises :class:`JournalError`. With ``wait=False`` it returns once the write is
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
        """Write an entry born settled (a rejection, an observed move). Returns its id."""
        ...

    async def open_intents(self, *, wave: str | None = None) -> list[Entry]:
        """Pending entries (intent without outcome), oldest first."""
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

    async def last_applied(self, source_ids: Sequence[str]) -> dict[str, Entry]:
        """For each source, its latest APPLIED or OBSERVED entry (sources without one are absent)."""
        ...

    async def add_members(self, wave: str, source_ids: Sequence[str]) -> None:
        """Add sources to a wave; idempotent, and the first insertion fixes the order."""
        ...

    async def members(self, wave: str) -> list[str]:
        """The sources of a wave in insertion order (empty for an unknown wave)."""
        ...

    async def remove_members(self, wave: str) -> int:
        """Forget a wave's membership (its history entries stay); returns how many went."""
        ...

    async def waves(self) -> list[str]:
        """Every wave named by members or entries, in order of first appearance."""
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
    """``$SMS_FLOW_JOURNAL`` if set, else ``.sms-flow/journal.sqlite`` under the current directory.

    The result is absolute, so that messages name the full path.
    """
    configured = os.environ.get(_ENV_PATH)
    if configured:
        return Path(configured).expanduser().absolute()
    return Path.cwd() / ".sms-flow" / "journal.sqlite"


# --- SQLite ------------------------------------------------------------------------------

_SCHEMA: Final = """
CREATE TABLE entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id   TEXT    NOT NULL,
    trigger     TEXT,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    reason      TEXT,
    forced      INTEGER NOT NULL,
    wave        TEXT,
    outcome     TEXT    NOT NULL,
    request_id  TEXT,
    attempts    INTEGER NOT NULL,
    error       TEXT,
    created_at  REAL    NOT NULL,
    settled_at  REAL
);
CREATE INDEX entries_source ON entries (source_id);
CREATE INDEX entries_wave ON entries (wave) WHERE wave IS NOT NULL;
CREATE INDEX entries_pending ON entries (outcome) WHERE outcome = 'pending';
CREATE TABLE waves (
    seq         INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE
);
CREATE TABLE wave_members (
    seq         INTEGER PRIMARY KEY,
    wave        TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    UNIQUE (wave, source_id)
);
"""

_COLUMNS: Final = (
    "id, source_id, trigger, from_state, to_state, actor, reason, forced, wave, "
    "outcome, request_id, attempts, error, created_at, settled_at"
)
_INSERT: Final = (
    "INSERT INTO entries (source_id, trigger, from_state, to_state, actor, reason, forced, "
    "wave, outcome, request_id, attempts, error, created_at, settled_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SETTLE: Final = (
    "UPDATE entries SET outcome = ?, request_id = ?, attempts = ?, error = ?, settled_at = ? "
    "WHERE id = ? AND outcome = 'pending'"
)
_ADD_WAVE: Final = "INSERT OR IGNORE INTO waves (name) VALUES (?)"
# The bulk forms: a multi-row INSERT with the ids given, and one UPDATE for many outcomes.
_INSERT_ROWS: Final = (
    "INSERT INTO entries (id, source_id, trigger, from_state, to_state, actor, reason, forced, "
    "wave, outcome, request_id, attempts, error, created_at, settled_at) VALUES "
)
_ROW_SLOTS: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SETTLE_ROWS: Final = (
    "UPDATE entries SET outcome = v.column1, request_id = v.column2, attempts = v.column3, "
    "error = v.column4, settled_at = v.column5 FROM (VALUES {}) AS v "
    "WHERE entries.id = v.column6 AND entries.outcome = 'pending'"
)
_SETTLE_SLOTS: Final = "(?, ?, ?, ?, ?, ?)"
_ROWS_PER_STATEMENT: Final = 500  # 15 parameters a row: well under SQLite's 32,766


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        bool(row[7]),
        row[8],
        Outcome(row[9]),
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
    )


def _row(
    intent: Intent,
    outcome: Outcome,
    request_id: str | None,
    attempts: int,
    error: str | None,
    created_at: float,
    settled_at: float | None,
) -> tuple[Any, ...]:
    """The values of _INSERT for an entry."""
    return (
        intent.source_id,
        intent.trigger,
        intent.from_state,
        intent.to_state,
        intent.actor,
        intent.reason,
        int(intent.forced),
        intent.wave,
        outcome.value,
        request_id,
        attempts,
        error,
        created_at,
        settled_at,
    )


def _insert(
    conn: sqlite3.Connection,
    intent: Intent,
    outcome: Outcome,
    request_id: str | None,
    attempts: int,
    error: str | None,
    created_at: float,
    settled_at: float | None,
) -> int:
    if intent.wave is not None:
        conn.execute(_ADD_WAVE, (intent.wave,))
    cursor = conn.execute(
        _INSERT, _row(intent, outcome, request_id, attempts, error, created_at, settled_at)
    )
    entry_id = cursor.lastrowid
    assert entry_id is not None
    return entry_id


def _settle(
    conn: sqlite3.Connection,
    entry_id: int,
    outcome: Outcome,
    request_id: str | None,
    attempts: int,
    error: str | None,
    settled_at: float,
) -> None:
    cursor = conn.execute(
        _SETTLE, (outcome.value, request_id, attempts, error, settled_at, entry_id)
    )
    if cursor.rowcount == 1:
        return
    row = conn.execute("SELECT outcome FROM entries WHERE id = ?", (entry_id,)).fetchone()
    if row is None:
        raise JournalError(
            f"cannot settle journal entry {entry_id}: no such entry; "
            "settle the id that begin() returned"
        )
    raise JournalError(
        f"cannot settle journal entry {entry_id} as {outcome.value!r}: it is already "
        f"settled as {row[0]!r}; an entry is settled exactly once"
    )


def _open_intents(conn: sqlite3.Connection, wave: str | None) -> list[Entry]:
    # The literal 'pending' (not a parameter) lets SQLite use the partial index.
    sql = f"SELECT {_COLUMNS} FROM entries WHERE outcome = 'pending'"
    params: tuple[str, ...] = ()
    if wave is not None:
        sql += " AND wave = ?"
        params = (wave,)
    return [_entry(row) for row in conn.execute(sql + " ORDER BY id", params)]


def _history(
    conn: sqlite3.Connection, source_id: str | None, wave: str | None, limit: int | None
) -> list[Entry]:
    where: list[str] = []
    params: list[Any] = []
    if source_id is not None:
        where.append("source_id = ?")
        params.append(source_id)
    if wave is not None:
        where.append("wave = ?")
        params.append(wave)
    sql = f"SELECT {_COLUMNS} FROM entries"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit is None:
        return [_entry(row) for row in conn.execute(sql + " ORDER BY id", params)]
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
    return [_entry(row) for row in reversed(rows)]


def _last_applied(conn: sqlite3.Connection, source_ids: list[str]) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for start in range(0, len(source_ids), _CHUNK):
        chunk = source_ids[start : start + _CHUNK]
        values = ", ".join("(?)" for _ in chunk)
        # One index probe per source: walk its entries newest first, stop at the first hit.
        sql = (
            f"SELECT {_COLUMNS} FROM entries WHERE id IN ("
            "SELECT (SELECT e.id FROM entries AS e WHERE e.source_id = v.column1 "
            "AND e.outcome IN ('applied', 'observed') ORDER BY e.id DESC LIMIT 1) "
            f"FROM (VALUES {values}) AS v)"
        )
        for row in conn.execute(sql, chunk):
            entry = _entry(row)
            found[entry.source_id] = entry
    return found


def _add_members(conn: sqlite3.Connection, wave: str, source_ids: list[str]) -> None:
    conn.execute(_ADD_WAVE, (wave,))
    conn.executemany(
        "INSERT OR IGNORE INTO wave_members (wave, source_id) VALUES (?, ?)",
        [(wave, source_id) for source_id in source_ids],
    )


def _remove_members(conn: sqlite3.Connection, wave: str) -> int:
    return conn.execute("DELETE FROM wave_members WHERE wave = ?", (wave,)).rowcount


def _members(conn: sqlite3.Connection, wave: str) -> list[str]:
    sql = "SELECT source_id FROM wave_members WHERE wave = ? ORDER BY seq"
    return [row[0] for row in conn.execute(sql, (wave,))]


def _waves(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM waves ORDER BY seq")]


class _Op(Generic[_T]):
    """One queued operation: what to run on the thread, and where to send the answer."""

    __slots__ = ("fn", "future", "loop", "row", "settle", "wave", "writes")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], _T],
        future: asyncio.Future[_T] | None,
        loop: asyncio.AbstractEventLoop,
        writes: bool,
        *,
        row: tuple[Any, ...] | None = None,
        wave: str | None = None,
        settle: tuple[Any, ...] | None = None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop
        self.writes = writes
        # Set for the two hot operations, so that a batch of them is written in bulk:
        self.row = row  # an entry to insert (the columns of _INSERT)
        self.wave = wave  # its wave
        self.settle = settle  # an outcome to write (the parameters of _SETTLE)


class _Stop:
    """Queued by close(): finish what came before, close the connection, end the thread."""

    __slots__ = ("future", "loop")

    def __init__(self, future: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        self.future = future
        self.loop = loop


_Result = tuple["asyncio.Future[Any] | None", BaseException | None, Any]
_Queue = queue.SimpleQueue[list[_Op[Any]] | _Stop]


def _deliver(results: list[_Result]) -> None:
    """Resolve the futures of one batch; runs on the event loop."""
    for future, exc, value in results:
        if future is None:  # nobody waits (settle(wait=False)): report a failure in the log
            if exc is not None:
                _log.error("journal write failed", error=str(exc))
            continue
        if future.done():  # the caller was cancelled; the operation happened all the same
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


def _post(results: list[tuple[asyncio.AbstractEventLoop, _Result]]) -> None:
    """Hand results to their loops: one ``call_soon_threadsafe`` per loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
    for loop, result in results:
        by_loop.setdefault(loop, []).append(result)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_deliver, items)


class _Replay(Exception):
    """A bulk batch met something only the operation-by-operation path reports properly."""


class _Aborted(Exception):
    """The whole transaction of a batch is lost; every operation in it fails."""

    def __init__(self, error: JournalError) -> None:
        self.error = error


class SqliteJournal(Journal):
    """A journal in one SQLite file (WAL mode), written by one dedicated thread.

    ``synchronous="NORMAL"`` (default): a committed entry survives the process being
    killed (``SIGKILL``) but not necessarily a power loss. ``synchronous="FULL"``: it
    survives both; every batch costs an fsync.

    Missing parent directories are created. A path that is a directory, is not writable, or
    holds something other than an sms-flow journal (or one of a newer schema) raises
    :class:`~sms_flow.errors.ConfigError` from :meth:`open`. An instance is opened once;
    after :meth:`close` every call raises :class:`JournalError`.

    A caller cancelled while awaiting ``begin`` does not withdraw the intent: it may still be
    committed, and then shows in :meth:`open_intents`, to be settled like any other.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(
                f"unknown journal synchronous mode {synchronous!r}; use 'NORMAL' or 'FULL'"
            )
        self._path = Path(os.fspath(path)).absolute()
        self._synchronous = synchronous
        self._queue: _Queue = queue.SimpleQueue()  # replaced by each open()
        self._pending: list[_Op[Any]] = []
        self._waves_known: set[str] = (
            set()
        )  # in the waves table already (writer thread only)  # queued this turn of the loop, not yet handed over
        self._thread: threading.Thread | None = None
        self._state: Literal["new", "opening", "open", "closing", "closed"] = "new"
        self._operations = 0
        self._batches = 0
        self._largest = 0
        self._in_flight = 0

    @property
    def path(self) -> Path:
        """The journal file (absolute)."""
        return self._path

    def __repr__(self) -> str:
        return f"SqliteJournal({str(self._path)!r}, synchronous={self._synchronous!r})"

    def stats(self) -> JournalStats:
        """Counters since open: operations, batches (commits), largest batch, in flight."""
        return JournalStats(self._operations, self._batches, self._largest, self._in_flight)

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise JournalError(f"journal {self._path} is already {self._state}; open it once")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        requests: _Queue = queue.SimpleQueue()
        thread = threading.Thread(
            target=self._run,
            args=(requests, loop, ready),
            name=f"sms-flow-journal:{self._path.name}",
            daemon=True,  # an unclosed journal must not hang interpreter exit
        )
        self._state = "opening"
        thread.start()
        try:
            await ready
        except BaseException:
            # Failed (the thread has ended) or cancelled (it may still connect): stop it.
            requests.put(_Stop(loop.create_future(), loop))
            self._state = "new"
            await asyncio.to_thread(thread.join)
            raise
        self._queue, self._thread = requests, thread
        self._state = "open"

    async def close(self) -> None:
        if self._state != "open":
            return
        self._state = "closing"
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._flush()
        self._queue.put(_Stop(done, loop))
        try:
            await done
        finally:
            self._state = "closed"
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)

    # --- operations --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            if self._state in ("closing", "closed"):
                raise JournalError(
                    f"journal {self._path} is closed; open a new SqliteJournal to use it again"
                )
            raise JournalError(
                f"journal {self._path} is not open; use 'async with journal:' or await open()"
            )

    def _submit(
        self,
        fn: Callable[[sqlite3.Connection], _T],
        *,
        writes: bool,
        row: tuple[Any, ...] | None = None,
        wave: str | None = None,
        settle: tuple[Any, ...] | None = None,
    ) -> asyncio.Future[_T]:
        self._check_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._pending.append(_Op(fn, future, loop, writes, row=row, wave=wave, settle=settle))
        if len(self._pending) == 1:
            # Hand everything queued in this turn of the event loop to the thread at once:
            # one wake-up of the thread for many operations, not one each.
            loop.call_soon(self._flush)
        return future

    def _submit_nowait(
        self, fn: Callable[[sqlite3.Connection], Any], *, settle: tuple[Any, ...] | None = None
    ) -> None:
        """Queue a write nobody waits for; a failure is logged (see settle(wait=False))."""
        self._check_open()
        loop = asyncio.get_running_loop()
        self._pending.append(_Op(fn, None, loop, True, settle=settle))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._pending:
            ops, self._pending = self._pending, []
            self._queue.put(ops)

    async def begin(self, intent: Intent) -> int:
        now = time.time()
        return await self._submit(
            lambda c: _insert(c, intent, Outcome.PENDING, None, 0, None, now, None),
            writes=True,
            row=_row(intent, Outcome.PENDING, None, 0, None, now, None),
            wave=intent.wave,
        )

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
        outcome = _final(outcome, f"settle entry {entry_id}")
        now = time.time()
        op = lambda c: _settle(c, entry_id, outcome, request_id, attempts, error, now)  # noqa: E731
        params = (outcome.value, request_id, attempts, error, now, entry_id)
        if wait:
            await self._submit(op, writes=True, settle=params)
        else:
            self._submit_nowait(op, settle=params)

    async def record(
        self,
        intent: Intent,
        outcome: Outcome,
        *,
        request_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> int:
        outcome = _final(outcome, f"record a transition of {intent.source_id}")
        now = time.time()
        return await self._submit(
            lambda c: _insert(c, intent, outcome, request_id, attempts, error, now, now),
            writes=True,
            row=_row(intent, outcome, request_id, attempts, error, now, now),
            wave=intent.wave,
        )

    async def open_intents(self, *, wave: str | None = None) -> list[Entry]:
        return await self._submit(lambda c: _open_intents(c, wave), writes=False)

    async def history(
        self,
        *,
        source_id: str | None = None,
        wave: str | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        if limit is not None and limit < 0:
            raise JournalError(f"history limit must be 0 or more, got {limit}")
        return await self._submit(lambda c: _history(c, source_id, wave, limit), writes=False)

    async def last_applied(self, source_ids: Sequence[str]) -> dict[str, Entry]:
        ids = list(dict.fromkeys(_ids(source_ids, "last_applied")))
        if not ids:
            return {}
        return await self._submit(lambda c: _last_applied(c, ids), writes=False)

    async def add_members(self, wave: str, source_ids: Sequence[str]) -> None:
        ids = _ids(source_ids, "add_members")
        await self._submit(lambda c: _add_members(c, wave, ids), writes=True)

    async def members(self, wave: str) -> list[str]:
        return await self._submit(lambda c: _members(c, wave), writes=False)

    async def remove_members(self, wave: str) -> int:
        return await self._submit(lambda c: _remove_members(c, wave), writes=True)

    async def waves(self) -> list[str]:
        return await self._submit(_waves, writes=False)

    # --- the thread --------------------------------------------------------------------

    def _run(
        self, requests: _Queue, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]
    ) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            _post([(loop, (ready, exc, None))])
            return
        _post([(loop, (ready, None, None))])
        stop: _Stop | None = None
        try:
            while stop is None:
                batch: list[_Op[Any]] = []
                item = requests.get()
                while True:
                    if isinstance(item, _Stop):
                        stop = item
                        break
                    batch.extend(item)
                    if len(batch) >= _MAX_BATCH:
                        break
                    try:
                        item = requests.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._in_flight = len(batch)
                    try:
                        results = self._execute(conn, batch)
                    except Exception as exc:  # a bug here must not leave callers waiting
                        results = [(op.loop, (op.future, exc, None)) for op in batch]
                    self._operations += len(batch)
                    self._batches += 1
                    self._largest = max(self._largest, len(batch))
                    self._in_flight = 0
                    _post(results)
        finally:
            close_error: BaseException | None = None
            try:
                conn.close()
            except sqlite3.Error as exc:
                close_error = self._wrap(exc, "close")
            # Anything queued after close() began has no connection to run on.
            late: list[tuple[asyncio.AbstractEventLoop, _Result]] = []
            while True:
                try:
                    item = requests.get_nowait()
                except queue.Empty:
                    break
                for op in [item] if isinstance(item, _Stop) else item:
                    late.append(
                        (
                            op.loop,
                            (op.future, JournalError(f"journal {self._path} is closed"), None),
                        )
                    )
            if stop is not None:
                late.append((stop.loop, (stop.future, close_error, None)))
            _post(late)

    def _execute(
        self, conn: sqlite3.Connection, batch: list[_Op[Any]]
    ) -> list[tuple[asyncio.AbstractEventLoop, _Result]]:
        """Run a batch in one transaction.

        First as a whole, which is the common case and the cheap one. If any operation
        fails, the transaction is rolled back and the batch runs again with each write in a
        savepoint of its own, so that only the failed operation's caller gets the error.
        """
        writes = any(op.writes for op in batch)
        if all(op.row is not None or op.settle is not None for op in batch):
            try:
                return self._execute_bulk(conn, batch)
            except Exception:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                return self._execute_each(conn, batch)
        try:
            conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            values = [op.fn(conn) for op in batch]
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return self._execute_each(conn, batch)
        return [
            (op.loop, (op.future, None, value)) for op, value in zip(batch, values, strict=True)
        ]

    def _execute_bulk(
        self, conn: sqlite3.Connection, batch: list[_Op[Any]]
    ) -> list[tuple[asyncio.AbstractEventLoop, _Result]]:
        """Write a batch of begins, records and settles with a few statements in all.

        Every SQLite call hands the GIL back and forth with the event loop's thread, and
        that, more than SQLite's own work, is what the journal cost the engine: so entries
        go in with one multi-row INSERT (ids given here, in order, under the write lock)
        and outcomes with one UPDATE ... FROM (VALUES ...). If anything is off (an
        unknown or already settled entry), the caller rolls back and replays the batch
        operation by operation.
        """
        conn.execute("BEGIN IMMEDIATE")
        inserts = [op for op in batch if op.row is not None]
        settles = [op for op in batch if op.settle is not None]
        ids: dict[int, int] = {}
        if inserts:
            waves = sorted({op.wave for op in inserts if op.wave is not None} - self._waves_known)
            if waves:
                conn.execute(
                    "INSERT OR IGNORE INTO waves (name) VALUES " + ",".join(["(?)"] * len(waves)),
                    waves,
                )
            found = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'entries'"
            ).fetchone()
            next_id = (found[0] if found else 0) + 1
            for chunk in _chunks(inserts, _ROWS_PER_STATEMENT):
                params: list[Any] = []
                for op in chunk:
                    ids[id(op)] = next_id
                    params.append(next_id)
                    params.extend(op.row)  # type: ignore[arg-type]  # set: chosen above
                    next_id += 1
                conn.execute(_INSERT_ROWS + ",".join([_ROW_SLOTS] * len(chunk)), params)
        for chunk in _chunks(settles, _ROWS_PER_STATEMENT):
            params = [value for op in chunk for value in op.settle]  # type: ignore[union-attr]
            cursor = conn.execute(
                _SETTLE_ROWS.format(",".join([_SETTLE_SLOTS] * len(chunk))), params
            )
            if cursor.rowcount != len(chunk):
                raise _Replay("an outcome for an unknown or settled entry")
        conn.execute("COMMIT")
        self._waves_known.update(op.wave for op in inserts if op.wave is not None)
        return [(op.loop, (op.future, None, ids.get(id(op)))) for op in batch]

    def _execute_each(
        self, conn: sqlite3.Connection, batch: list[_Op[Any]]
    ) -> list[tuple[asyncio.AbstractEventLoop, _Result]]:
        """Run a batch in one transaction; each write in a savepoint of its own."""
        outcomes: list[tuple[BaseException | None, Any]] = []
        writes = any(op.writes for op in batch)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            except sqlite3.Error as exc:
                raise _Aborted(self._wrap(exc, "start a transaction")) from exc
            for op in batch:
                outcomes.append(self._one(conn, op))
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _Aborted(self._wrap(exc, "commit")) from exc
        except _Aborted as aborted:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                    conn.execute("ROLLBACK")
            return [(op.loop, (op.future, aborted.error, None)) for op in batch]
        return [
            (op.loop, (op.future, exc, value))
            for op, (exc, value) in zip(batch, outcomes, strict=True)
        ]

    def _one(self, conn: sqlite3.Connection, op: _Op[Any]) -> tuple[BaseException | None, Any]:
        """Run one operation; a failed write is undone alone (its savepoint), not the batch."""
        if not op.writes:
            try:
                return None, op.fn(conn)
            except sqlite3.Error as exc:
                return self._wrap(exc, "read"), None
            except Exception as exc:
                return exc, None
        try:
            conn.execute("SAVEPOINT op")
        except sqlite3.Error as exc:
            raise _Aborted(self._wrap(exc, "write")) from exc
        try:
            value = op.fn(conn)
        except Exception as exc:
            error = self._wrap(exc, "write") if isinstance(exc, sqlite3.Error) else exc
            try:
                # Fails when SQLite already rolled the whole transaction back (disk full, I/O).
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            except sqlite3.Error as undo:
                raise _Aborted(self._wrap(exc, "write")) from undo
            return error, None
        try:
            conn.execute("RELEASE op")
        except sqlite3.Error as exc:
            raise _Aborted(self._wrap(exc, "write")) from exc
        return None, value

    def _wrap(self, exc: BaseException, doing: str) -> JournalError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            hint = "; another process holds the journal's write lock, retry when it is done"
        else:
            hint = f"; check free disk space and permissions under {self._path.parent}"
        error = JournalError(f"journal {self._path}: could not {doing}: {exc}{hint}")
        error.__cause__ = exc
        return error

    def _connect(self) -> sqlite3.Connection:
        """Open (or create) the file and check its schema; runs on the journal's thread."""
        path = self._path
        fix = "choose another path with --journal or SMS_FLOW_JOURNAL"
        if path.is_dir():
            raise ConfigError(
                f"journal path {path} is a directory; give a file path such as "
                f"{path / 'journal.sqlite'} ({fix})"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the journal directory {path.parent}: {exc.strerror or exc}; "
                f"create it yourself or {fix}"
            ) from exc
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"journal directory {path.parent} is not writable (SQLite keeps -wal and -shm "
                f"files beside the journal); fix its permissions or {fix}"
            )
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(
                f"journal file {path} is not readable and writable; fix its permissions or {fix}"
            )
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=True, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open journal {path}: {exc}; {fix}") from exc
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        path = self._path
        fix = "choose another path with --journal or SMS_FLOW_JOURNAL"
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", None) == "SQLITE_NOTADB":
                raise ConfigError(
                    f"journal {path} exists but is not an SQLite database ({exc}); "
                    f"move it away or {fix}"
                ) from exc
            raise self._wrap(exc, "open the journal") from exc
        if str(mode).lower() != "wal":
            raise ConfigError(
                f"journal {path} cannot use WAL mode (got {mode!r}); the file system may not "
                f"support it (network shares often do not); {fix}"
            )
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_schema(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._wrap(exc, "set up the journal") from exc

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        path = self._path
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
        if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and tables):
            raise ConfigError(
                f"{path} is an SQLite database but not an sms-flow journal; "
                "choose another path with --journal or SMS_FLOW_JOURNAL"
            )
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"journal {path} has schema version {version}, newer than this sms-flow "
                f"reads (up to {SCHEMA_VERSION}); upgrade sms-flow, or use another journal path"
            )
        if version == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _final(outcome: Outcome, doing: str) -> Outcome:
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


def _ids(source_ids: Sequence[str], doing: str) -> list[str]:
    if isinstance(source_ids, str):
        raise JournalError(
            f"{doing} takes a sequence of source ids, not the string {source_ids!r}; "
            f"wrap it in a list: [{source_ids!r}]"
        )
    return list(source_ids)
