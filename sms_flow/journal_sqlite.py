"""The SQLite journal: one file, written by one dedicated thread with group commit.

One thread, group commit
    :class:`SqliteJournal` runs its SQLite connection on the private worker of
    :mod:`sms_flow._sqlite` (a connection must not be shared between threads, and no SQLite
    call may block the event loop). Every operation queued in one turn of the event loop is
    handed to the worker's thread at once; the thread runs all that is queued in one
    transaction and commits once. Under load one commit (one fsync with
    ``synchronous="FULL"``) serves many transitions; when idle, a lone operation commits at
    once, with no timer to wait for. An operation that fails (settling an unknown entry, say)
    fails for its caller alone while the rest of its batch commits.

Each write defined once
    ``begin`` and ``record`` are one write (an INSERT), ``settle`` another (an UPDATE of a
    pending entry). Each is defined once, for every such write queued together (a lone write
    is a group of one), and the two commute, so a batch's settles are written with one
    ``executemany`` whatever their order among its begins.

Durability
    The file is in WAL mode. With ``synchronous="NORMAL"`` (the default) a committed entry
    survives the process being killed (``SIGKILL``, OOM killer, a crash) but not necessarily a
    power loss or kernel panic, which may take the last few commits. With
    ``synchronous="FULL"`` every commit is fsynced and survives both, at the cost of one fsync
    per batch.

Schema
    The file carries an application id (``PRAGMA application_id``, "SMSF") and its schema
    version (``PRAGMA user_version``). Opening a file of an older version migrates it, step
    by step, in one transaction (:data:`_MIGRATIONS`); a newer version is refused.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

from sms_flow._sqlite import Operation, SqliteWorker, each
from sms_flow.errors import ConfigError, JournalError
from sms_flow.journal import (
    Entry,
    Intent,
    Journal,
    JournalStats,
    Outcome,
    final_outcome,
    source_id_list,
)
from sms_flow.log import get_logger

_log = get_logger("sms_flow.journal")

__all__ = ["SCHEMA_VERSION", "SqliteJournal"]

_APPLICATION_ID: Final = 0x534D5346  # "SMSF": marks the file as an sms-flow journal
_BUSY_TIMEOUT_MS: Final = 10_000
_CHUNK: Final = 500  # source ids per statement in last_applied (bound-parameter limits)
_FIX: Final = "choose another path with --journal or SMS_FLOW_JOURNAL"

# --- schema --------------------------------------------------------------------------------

_SCHEMA_1: Final = """
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

_MIGRATIONS: Final[tuple[str, ...]] = (_SCHEMA_1,)
"""``_MIGRATIONS[v]`` takes a journal from schema version ``v`` to ``v + 1`` (version 0 is a
new, empty file). Statements are separated by ``;``."""

SCHEMA_VERSION: Final = len(_MIGRATIONS)
"""The schema this module writes, stored in ``PRAGMA user_version``."""

# --- statements ----------------------------------------------------------------------------

_COLUMNS: Final = (
    "id, source_id, trigger, from_state, to_state, actor, reason, forced, wave, "
    "outcome, request_id, attempts, error, created_at, settled_at"
)
_WAVE: Final = 7  # the index of the wave in a row (the columns of _INSERT)
_INSERT: Final = (
    "INSERT INTO entries (source_id, trigger, from_state, to_state, actor, reason, forced, "
    "wave, outcome, request_id, attempts, error, created_at, settled_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SETTLE_SQL: Final = (
    "UPDATE entries SET outcome = ?, request_id = ?, attempts = ?, error = ?, settled_at = ? "
    "WHERE id = ? AND outcome = 'pending'"
)
_ADD_WAVE: Final = "INSERT OR IGNORE INTO waves (name) VALUES (?)"

# No hand-batched SQL (a multi-row INSERT with the ids given under the write lock, one
# UPDATE ... FROM (VALUES ...) for a batch's outcomes): measured against these plain
# statements, interleaved on the project's 2-core machine on 2026-12-02, it made no
# difference beyond the run-to-run noise. Medians, hand-batched / plain:
#   B3, sms-flow's side alone (python -m benchmarks.b3_push): 1,668 / 1,700 requests/s
#     (4 runs each, no other benchmark running); 1,554 / 1,533 (5-6 runs, others running)
#   B4 (python -m benchmarks.b4_wave): 935 / 914 transitions/s (3 runs, none running);
#     414 / 482 (5 runs, others running)
#   B5 (python -m benchmarks --only B5): 4.59 / 4.77 s (3 runs, none running)
# SQLite's own work is a small part of a transition; one commit per batch is what counts.

_Row = tuple[Any, ...]
"""An entry to insert: the values of _INSERT."""
_Settlement = tuple[str, str | None, int, str | None, float, int]
"""An outcome to write: outcome, request_id, attempts, error, settled_at, entry id."""


def _row(
    intent: Intent,
    outcome: Outcome,
    request_id: str | None,
    attempts: int,
    error: str | None,
    created_at: float,
    settled_at: float | None,
) -> _Row:
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


# --- operations ----------------------------------------------------------------------------


def _settle_entries(conn: sqlite3.Connection, settlements: list[_Settlement]) -> list[None]:
    """Write outcomes of pending entries (every one queued together: one ``executemany``)."""
    if conn.executemany(_SETTLE_SQL, settlements).rowcount != len(settlements):
        raise _not_pending(conn, settlements)
    return [None] * len(settlements)


def _not_pending(conn: sqlite3.Connection, settlements: list[_Settlement]) -> JournalError:
    if len(settlements) > 1:  # the batch is replayed write by write, each saying what is wrong
        return JournalError(f"{len(settlements)} outcomes include an unknown or settled entry")
    outcome, entry_id = settlements[0][0], settlements[0][5]
    row = conn.execute("SELECT outcome FROM entries WHERE id = ?", (entry_id,)).fetchone()
    if row is None:
        return JournalError(
            f"cannot settle journal entry {entry_id}: no such entry; "
            "settle the id that begin() returned"
        )
    return JournalError(
        f"cannot settle journal entry {entry_id} as {outcome!r}: it is already "
        f"settled as {row[0]!r}; an entry is settled exactly once"
    )


_SETTLE: Final = Operation("settle", _settle_entries, writes=True, commutes=True)


def _open_intents(conn: sqlite3.Connection, wave: str | None) -> list[Entry]:
    # The literal 'pending' (not a parameter) lets SQLite use the partial index.
    sql = f"SELECT {_COLUMNS} FROM entries WHERE outcome = 'pending'"
    params: tuple[str, ...] = ()
    if wave is not None:
        sql += " AND wave = ?"
        params = (wave,)
    return [_entry(row) for row in conn.execute(sql + " ORDER BY id", params)]


def _history(
    conn: sqlite3.Connection, query: tuple[str | None, str | None, int | None]
) -> list[Entry]:
    source_id, wave, limit = query
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


def _add_members(conn: sqlite3.Connection, members: tuple[str, list[str]]) -> None:
    wave, source_ids = members
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


def _waves(conn: sqlite3.Connection, _: None) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM waves ORDER BY seq")]


_OPEN_INTENTS: Final = each("open_intents", _open_intents, writes=False)
_HISTORY: Final = each("history", _history, writes=False)
_LAST_APPLIED: Final = each("last_applied", _last_applied, writes=False)
_MEMBERS: Final = each("members", _members, writes=False)
_WAVES: Final = each("waves", _waves, writes=False)
_ADD_MEMBERS: Final = each("add_members", _add_members, writes=True)
_REMOVE_MEMBERS: Final = each("remove_members", _remove_members, writes=True)


# --- the journal ---------------------------------------------------------------------------


class SqliteJournal(Journal):
    """A journal in one SQLite file (WAL mode), written by one dedicated thread.

    ``synchronous="NORMAL"`` (default): a committed entry survives the process being
    killed (``SIGKILL``) but not necessarily a power loss. ``synchronous="FULL"``: it
    survives both; every batch costs an fsync.

    Missing parent directories are created. A path that is a directory, is not writable, or
    holds something other than an sms-flow journal (or one of a newer schema) raises
    :class:`~sms_flow.errors.ConfigError` from :meth:`open`. An instance is opened once;
    after :meth:`close` every call raises :class:`~sms_flow.errors.JournalError`.

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
        self._state: Literal["new", "opening", "open", "closed"] = "new"
        self._worker: SqliteWorker | None = None
        self._waves_known: set[str] = set()
        """Waves known to be in the waves table: added once a write naming them committed."""
        self._insert: Operation[_Row, int] = Operation(
            "insert", self._insert_entries, writes=True, commutes=True
        )

    @property
    def path(self) -> Path:
        """The journal file (absolute)."""
        return self._path

    def __repr__(self) -> str:
        return f"SqliteJournal({str(self._path)!r}, synchronous={self._synchronous!r})"

    def stats(self) -> JournalStats:
        """Counters since open: operations, batches (commits), largest batch, in flight."""
        worker = self._worker
        if worker is None:
            return JournalStats(0, 0, 0, 0)
        return JournalStats(
            worker.operations, worker.batches, worker.largest_batch, worker.in_flight
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise JournalError(f"journal {self._path} is already {self._state}; open it once")
        worker = SqliteWorker(
            lambda: _connect(self._path, self._synchronous),
            name=f"sms-flow-journal:{self._path.name}",
            explain=lambda exc, doing: _explain(self._path, exc, doing),
            closed=lambda: JournalError(
                f"journal {self._path} is closed; open a new SqliteJournal to use it again"
            ),
            lost=_log_lost,
        )
        self._state = "opening"
        try:
            await worker.start()
        except BaseException:
            self._state = "new"  # the path may be fixed and open() called again
            raise
        self._worker = worker
        self._state = "open"

    async def close(self) -> None:
        if self._state != "open" or self._worker is None:
            return
        self._state = "closed"
        await self._worker.close()

    def _live(self) -> SqliteWorker:
        worker = self._worker
        if worker is None:
            raise JournalError(
                f"journal {self._path} is not open; use 'async with journal:' or await open()"
            )
        return worker

    # --- writes ------------------------------------------------------------------------

    async def begin(self, intent: Intent) -> int:
        row = _row(intent, Outcome.PENDING, None, 0, None, time.time(), None)
        entry_id = await self._live().submit(self._insert, row)
        if intent.wave is not None:
            self._waves_known.add(intent.wave)
        return entry_id

    async def record(
        self,
        intent: Intent,
        outcome: Outcome,
        *,
        request_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> int:
        outcome = final_outcome(outcome, f"record a transition of {intent.source_id}")
        now = time.time()
        row = _row(intent, outcome, request_id, attempts, error, now, now)
        entry_id = await self._live().submit(self._insert, row)
        if intent.wave is not None:
            self._waves_known.add(intent.wave)
        return entry_id

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
        outcome = final_outcome(outcome, f"settle entry {entry_id}")
        settlement = (outcome.value, request_id, attempts, error, time.time(), entry_id)
        if wait:
            await self._live().submit(_SETTLE, settlement)
        else:
            self._live().submit_nowait(_SETTLE, settlement)

    def _insert_entries(self, conn: sqlite3.Connection, rows: list[_Row]) -> list[int]:
        """Insert entries (intents and entries born settled); return their ids, in order.

        A wave not yet known is added to the waves table first.
        """
        known = self._waves_known
        waves = [
            (wave,)
            for wave in dict.fromkeys(row[_WAVE] for row in rows)
            if wave is not None and wave not in known
        ]
        if waves:
            conn.executemany(_ADD_WAVE, waves)
        ids = []
        for row in rows:
            entry_id = conn.execute(_INSERT, row).lastrowid
            assert entry_id is not None  # set by every INSERT
            ids.append(entry_id)
        return ids

    # --- reads and membership ----------------------------------------------------------

    async def open_intents(self, *, wave: str | None = None) -> list[Entry]:
        return await self._live().submit(_OPEN_INTENTS, wave)

    async def history(
        self,
        *,
        source_id: str | None = None,
        wave: str | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        if limit is not None and limit < 0:
            raise JournalError(f"history limit must be 0 or more, got {limit}")
        return await self._live().submit(_HISTORY, (source_id, wave, limit))

    async def last_applied(self, source_ids: Sequence[str]) -> dict[str, Entry]:
        ids = list(dict.fromkeys(source_id_list(source_ids, "last_applied")))
        if not ids:
            return {}
        return await self._live().submit(_LAST_APPLIED, ids)

    async def add_members(self, wave: str, source_ids: Sequence[str]) -> None:
        ids = source_id_list(source_ids, "add_members")
        await self._live().submit(_ADD_MEMBERS, (wave, ids))

    async def members(self, wave: str) -> list[str]:
        return await self._live().submit(_MEMBERS, wave)

    async def remove_members(self, wave: str) -> int:
        return await self._live().submit(_REMOVE_MEMBERS, wave)

    async def waves(self) -> list[str]:
        return await self._live().submit(_WAVES, None)


def _log_lost(exc: BaseException) -> None:
    _log.error("journal write failed", error=str(exc))


# --- opening the file ----------------------------------------------------------------------


def _explain(path: Path, exc: sqlite3.Error, doing: str) -> JournalError:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        hint = "; another process holds the journal's write lock, retry when it is done"
    else:
        hint = f"; check free disk space and permissions under {path.parent}"
    error = JournalError(f"journal {path}: could not {doing}: {exc}{hint}")
    error.__cause__ = exc
    return error


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open (or create) the file and check its schema; runs on the journal's thread."""
    if path.is_dir():
        raise ConfigError(
            f"journal path {path} is a directory; give a file path such as "
            f"{path / 'journal.sqlite'} ({_FIX})"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the journal directory {path.parent}: {exc.strerror or exc}; "
            f"create it yourself or {_FIX}"
        ) from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"journal directory {path.parent} is not writable (SQLite keeps -wal and -shm "
            f"files beside the journal); fix its permissions or {_FIX}"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(
            f"journal file {path} is not readable and writable; fix its permissions or {_FIX}"
        )
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=True, cached_statements=256
        )
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open journal {path}: {exc}; {_FIX}") from exc
    try:
        _prepare(conn, path, synchronous)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorname", None) == "SQLITE_NOTADB":
            raise ConfigError(
                f"journal {path} exists but is not an SQLite database ({exc}); "
                f"move it away or {_FIX}"
            ) from exc
        raise _explain(path, exc, "open the journal") from exc
    if str(mode).lower() != "wal":
        raise ConfigError(
            f"journal {path} cannot use WAL mode (got {mode!r}); the file system may not "
            f"support it (network shares often do not); {_FIX}"
        )
    try:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            _check_schema(conn, path)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise _explain(path, exc, "set up the journal") from exc


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not a journal or is too new; create or migrate the schema."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute(
        "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'"
    ).fetchone()[0]
    if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and tables):
        raise ConfigError(f"{path} is an SQLite database but not an sms-flow journal; {_FIX}")
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"journal {path} has schema version {version}, newer than this sms-flow "
            f"reads (up to {SCHEMA_VERSION}); upgrade sms-flow, or use another journal path"
        )
    if version == SCHEMA_VERSION:
        return
    for step in range(version, SCHEMA_VERSION):
        for statement in _MIGRATIONS[step].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
