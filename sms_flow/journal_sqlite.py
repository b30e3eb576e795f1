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
    ``begin`` and ``record`` are one write (an INSERT), ``settle`` another (an UPDATE of an
    open entry). Each is defined once, for every such write queued together (a lone write
    is a group of one), and the two commute, so a batch's settles are written with one
    ``executemany`` whatever their order among its begins. A fenced ``begin`` (an intent
    with a ``run_id``) reads the source's claim in the same transaction as its INSERT; one
    refused is written not at all and its caller alone gets the error.

Runs and claims
    Tables ``runs`` (one row a driver, with its lease) and ``claims`` (one row a source,
    ``(endpoint, source_id)``, naming the run that last took it and the fencing token of that
    grant). A claim is held while its run is live, so a heartbeat renews one row, and ending
    a run frees all it held at once. The journal is on one machine: the clock is
    :func:`time.time`, given to each query as a parameter and compared with the stored
    expiries in SQL.

The file
    The journal remembers its file (device and inode of the file, its ``-wal`` and its
    ``-shm``) and checks them on the thread before every batch: deleted or replaced while
    open, every later call fails with a :class:`~sms_flow.errors.JournalError` saying so, so
    nothing more is pushed unrecorded. Opening runs ``PRAGMA quick_check``: a file with
    damaged pages is refused (``sms-flow journal check`` runs the full ``integrity_check``).

Durability
    The file is in WAL mode. With ``synchronous="NORMAL"`` (the default) a committed entry
    survives the process being killed (``SIGKILL``, OOM killer, a crash) but not necessarily a
    power loss or kernel panic, which may take the last few commits. With
    ``synchronous="FULL"`` every commit is fsynced and survives both, at the cost of one fsync
    per batch.

Copying
    :meth:`SqliteJournal.dump` reads tables in one read transaction (one snapshot of the
    file) and :meth:`SqliteJournal.loading` writes rows in one write transaction, committed
    at the end or rolled back whole (``sms-flow journal copy``). Each is one operation of the
    journal's thread that holds its transaction open while the event loop hands it work a
    batch of rows at a time (:class:`_Held`), so a journal of any size is never in memory.

Schema
    The file carries an application id (``PRAGMA application_id``, "SMSF") and its schema
    version (``PRAGMA user_version``). Opening a file of an older version migrates it, step
    by step, in one transaction (:data:`_MIGRATIONS`); a newer version is refused. Version 2
    added each entry's endpoint, project, run and fencing token (``NULL``, unknown, in
    entries written before), the ``unverified`` outcome and the runs and claims. Version 3
    keys a wave's members by endpoint. Version 5 keeps each source's latest entry (table
    ``latest``) and counts of sources by state, of each wave's members by state and of each
    wave's entries, all written by triggers in the transaction of the entry or member they
    follow, which :meth:`SqliteJournal.census` and :meth:`SqliteJournal.wave_status` read
    instead of grouping the entries (a copy rebuilds them as it writes the entries).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import queue
import sqlite3
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from sms_flow._sqlite import Operation, SqliteWorker, each
from sms_flow.errors import (
    ClaimLostError,
    ConfigError,
    JournalError,
    LeaseLostError,
    OwnedError,
    SmsFlowError,
)
from sms_flow.journal import (
    DEFAULT_LEASE,
    HOST,
    Census,
    Claimed,
    Entry,
    Intent,
    Journal,
    JournalCheck,
    JournalStats,
    Outcome,
    Run,
    RunStart,
    StuckSource,
    WaveStatus,
    Work,
    Worker,
    born_settled,
    check_join,
    check_request_rate,
    check_work_limit,
    driven_elsewhere,
    final_outcome,
    history_filters,
    not_live,
    process_alive,
    source_id_list,
)
from sms_flow.log import get_logger

_log = get_logger("sms_flow.journal")

_T = TypeVar("_T")

__all__ = ["SCHEMA_VERSION", "SqliteJournal", "SqliteLoader"]

_APPLICATION_ID: Final = 0x534D5346  # "SMSF": marks the file as an sms-flow journal
_BUSY_TIMEOUT_MS: Final = 10_000
_CHUNK: Final = 500  # source ids per statement (bound-parameter limits)
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

_SCHEMA_2: Final = """
ALTER TABLE entries ADD COLUMN endpoint TEXT;
ALTER TABLE entries ADD COLUMN project TEXT;
ALTER TABLE entries ADD COLUMN run_id TEXT;
ALTER TABLE entries ADD COLUMN fence INTEGER;
DROP INDEX entries_pending;
CREATE INDEX entries_open ON entries (outcome) WHERE outcome IN ('pending', 'unverified');
CREATE TABLE runs (
    run_id       TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    name         TEXT,
    endpoint     TEXT,
    project      TEXT,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    exclusive    INTEGER NOT NULL,
    started_at   REAL    NOT NULL,
    heartbeat_at REAL    NOT NULL,
    expires_at   REAL    NOT NULL,
    ended_at     REAL,
    end_reason   TEXT
) WITHOUT ROWID;
CREATE INDEX runs_open ON runs (kind, name, endpoint) WHERE ended_at IS NULL;
CREATE TABLE claims (
    endpoint    TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    token       INTEGER NOT NULL,
    claimed_at  REAL    NOT NULL,
    reason      TEXT,
    taken_from  TEXT,
    PRIMARY KEY (endpoint, source_id)
) WITHOUT ROWID;
CREATE INDEX claims_run ON claims (run_id);
CREATE TABLE fencing (last INTEGER NOT NULL);
INSERT INTO fencing (last) VALUES (0);
"""
# Version 1 files keep their entries: the new columns are NULL (unknown endpoint, project and
# run), and their pending entries stay open under the new index.

_SCHEMA_3: Final = """
CREATE TABLE wave_members_3 (
    seq         INTEGER PRIMARY KEY,
    wave        TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    UNIQUE (wave, endpoint, source_id)
);
WITH last AS (
    SELECT wave, endpoint FROM entries WHERE id IN (
        SELECT max(id) FROM entries
        WHERE wave IS NOT NULL AND endpoint IS NOT NULL GROUP BY wave
    )
)
INSERT INTO wave_members_3 (seq, wave, endpoint, source_id)
    SELECT m.seq, m.wave, COALESCE(last.endpoint, ''), m.source_id
    FROM wave_members AS m LEFT JOIN last ON last.wave = m.wave;
DROP TABLE wave_members;
ALTER TABLE wave_members_3 RENAME TO wave_members
"""
# Version 3 keys a wave's members by endpoint too: the sources of a wave run on one endpoint
# are never taken for its sources on another. Version 2 members get the endpoint of their
# wave's last entry that names one, else '' (unknown: the next run of the wave adopts them).

_SCHEMA_4: Final = """
CREATE TABLE wave_sessions (
    session_id  TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    started_at  REAL    NOT NULL,
    rate_at     REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX wave_sessions_key ON wave_sessions (name, endpoint, started_at);
CREATE TABLE wave_workers (
    run_id      TEXT    PRIMARY KEY,
    session_id  TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX wave_workers_session ON wave_workers (session_id);
CREATE TABLE wave_done (
    session_id  TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    done_at     REAL    NOT NULL,
    PRIMARY KEY (session_id, source_id)
) WITHOUT ROWID
"""
# Version 4 adds the sessions of joined workers (``run --join``): a session is the workers
# of one wave on one endpoint that ran together; ``wave_done`` the members they finished in
# it, so that no worker takes a finished source again; ``rate_at`` the session's shared
# request-rate limit (the time its next request may go).

_FAILING: Final = "('failed', 'ignored', 'conflict', 'unverified')"
"""The outcomes of an entry that make its source fail while it is the latest."""
_FAILS: Final = f"IN {_FAILING}"

_SCHEMA_5: Final = f"""
CREATE TABLE latest (
    source_id   TEXT    PRIMARY KEY,
    last_id     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    wave        TEXT,
    endpoint    TEXT,
    from_state  TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    at_id       INTEGER,
    at_state    TEXT,
    at_since    REAL,
    state       TEXT    GENERATED ALWAYS AS (coalesce(at_state, from_state)) STORED,
    since       REAL    GENERATED ALWAYS AS (coalesce(at_since, created_at)) STORED
) WITHOUT ROWID;
WITH s AS (SELECT source_id, max(id) AS last_id,
    max(CASE WHEN outcome IN ('applied', 'observed') THEN id END) AS at_id
    FROM entries GROUP BY source_id)
INSERT INTO latest (source_id, last_id, outcome, wave, endpoint, from_state, created_at,
    at_id, at_state, at_since)
SELECT s.source_id, s.last_id, l.outcome, l.wave, l.endpoint, l.from_state, l.created_at,
    a.id, a.to_state, coalesce(a.settled_at, a.created_at)
FROM s JOIN entries AS l ON l.id = s.last_id LEFT JOIN entries AS a ON a.id = s.at_id;
CREATE INDEX latest_since ON latest (since, source_id, state);
CREATE INDEX latest_failing ON latest (last_id) WHERE outcome {_FAILS};
CREATE INDEX wave_members_source ON wave_members (source_id, wave);
CREATE TABLE latest_counts (
    state       TEXT    NOT NULL,
    failing     INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (state, failing)
) WITHOUT ROWID;
INSERT INTO latest_counts (state, failing, n)
    SELECT state, outcome {_FAILS}, count(*) FROM latest GROUP BY 1, 2;
CREATE TABLE wave_counts (
    wave        TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    failing     INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (wave, state, failing)
) WITHOUT ROWID;
INSERT INTO wave_counts (wave, state, failing, n)
    SELECT m.wave, coalesce(l.state, 'unknown'), coalesce(l.outcome {_FAILS}, 0), count(*)
    FROM wave_members AS m LEFT JOIN latest AS l ON l.source_id = m.source_id
    GROUP BY 1, 2, 3;
CREATE TABLE wave_tally (
    wave        TEXT    PRIMARY KEY,
    entries     INTEGER NOT NULL,
    last_at     REAL    NOT NULL
) WITHOUT ROWID;
INSERT INTO wave_tally (wave, entries, last_at)
    SELECT wave, count(*), max(created_at) FROM entries WHERE wave IS NOT NULL GROUP BY wave;
CREATE TRIGGER entries_latest_insert AFTER INSERT ON entries BEGIN
    INSERT INTO latest (source_id, last_id, outcome, wave, endpoint, from_state, created_at,
        at_id, at_state, at_since)
    VALUES (NEW.source_id, NEW.id, NEW.outcome, NEW.wave, NEW.endpoint, NEW.from_state,
        NEW.created_at,
        CASE WHEN NEW.outcome IN ('applied', 'observed') THEN NEW.id END,
        CASE WHEN NEW.outcome IN ('applied', 'observed') THEN NEW.to_state END,
        CASE WHEN NEW.outcome IN ('applied', 'observed')
            THEN coalesce(NEW.settled_at, NEW.created_at) END)
    ON CONFLICT (source_id) DO UPDATE SET
        last_id = max(last_id, excluded.last_id),
        outcome = iif(excluded.last_id > last_id, excluded.outcome, outcome),
        wave = iif(excluded.last_id > last_id, excluded.wave, wave),
        endpoint = iif(excluded.last_id > last_id, excluded.endpoint, endpoint),
        from_state = iif(excluded.last_id > last_id, excluded.from_state, from_state),
        created_at = iif(excluded.last_id > last_id, excluded.created_at, created_at),
        at_id = iif(excluded.at_id > coalesce(at_id, 0), excluded.at_id, at_id),
        at_state = iif(excluded.at_id > coalesce(at_id, 0), excluded.at_state, at_state),
        at_since = iif(excluded.at_id > coalesce(at_id, 0), excluded.at_since, at_since);
    INSERT INTO wave_tally (wave, entries, last_at)
        SELECT NEW.wave, 1, NEW.created_at WHERE NEW.wave IS NOT NULL
        ON CONFLICT (wave) DO UPDATE SET
            entries = entries + 1, last_at = max(last_at, excluded.last_at);
END;
CREATE TRIGGER entries_latest_settle AFTER UPDATE OF outcome ON entries
WHEN NEW.outcome <> OLD.outcome BEGIN
    UPDATE latest SET
        outcome = iif(last_id = NEW.id, NEW.outcome, outcome),
        at_id = iif(NEW.outcome IN ('applied', 'observed') AND NEW.id > coalesce(at_id, 0),
            NEW.id, at_id),
        at_state = iif(NEW.outcome IN ('applied', 'observed') AND NEW.id > coalesce(at_id, 0),
            NEW.to_state, at_state),
        at_since = iif(NEW.outcome IN ('applied', 'observed') AND NEW.id > coalesce(at_id, 0),
            coalesce(NEW.settled_at, NEW.created_at), at_since)
    WHERE source_id = NEW.source_id;
END;
CREATE TRIGGER entries_latest_rewritten
AFTER UPDATE OF created_at, settled_at, from_state, to_state ON entries
WHEN NEW.outcome = OLD.outcome AND (NEW.created_at IS NOT OLD.created_at
    OR NEW.settled_at IS NOT OLD.settled_at OR NEW.from_state IS NOT OLD.from_state
    OR NEW.to_state IS NOT OLD.to_state) BEGIN
    UPDATE latest SET
        from_state = (SELECT e.from_state FROM entries AS e WHERE e.id = latest.last_id),
        created_at = (SELECT e.created_at FROM entries AS e WHERE e.id = latest.last_id),
        at_state = (SELECT e.to_state FROM entries AS e WHERE e.id = latest.at_id),
        at_since = (SELECT coalesce(e.settled_at, e.created_at) FROM entries AS e
            WHERE e.id = latest.at_id)
    WHERE source_id = NEW.source_id AND NEW.id IN (last_id, at_id);
    UPDATE wave_tally SET last_at = (SELECT max(created_at) FROM entries WHERE wave = NEW.wave)
    WHERE wave = NEW.wave AND NEW.created_at IS NOT OLD.created_at;
END;
CREATE TRIGGER latest_counted AFTER INSERT ON latest BEGIN
    INSERT INTO latest_counts (state, failing, n) VALUES (NEW.state, NEW.outcome {_FAILS}, 1)
        ON CONFLICT (state, failing) DO UPDATE SET n = n + 1;
    UPDATE wave_counts SET n = n - (SELECT count(*) FROM wave_members AS m
            WHERE m.source_id = NEW.source_id AND m.wave = wave_counts.wave)
        WHERE state = 'unknown' AND failing = 0
        AND wave IN (SELECT wave FROM wave_members WHERE source_id = NEW.source_id);
    INSERT INTO wave_counts (wave, state, failing, n)
        SELECT wave, NEW.state, NEW.outcome {_FAILS}, count(*) FROM wave_members
        WHERE source_id = NEW.source_id GROUP BY wave
        ON CONFLICT (wave, state, failing) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER latest_recounted AFTER UPDATE ON latest
WHEN NEW.state IS NOT OLD.state OR (NEW.outcome {_FAILS}) <> (OLD.outcome {_FAILS}) BEGIN
    UPDATE latest_counts SET n = n - 1
        WHERE state = OLD.state AND failing = (OLD.outcome {_FAILS});
    INSERT INTO latest_counts (state, failing, n) VALUES (NEW.state, NEW.outcome {_FAILS}, 1)
        ON CONFLICT (state, failing) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER latest_wave_recounted AFTER UPDATE ON latest
WHEN (NEW.state IS NOT OLD.state OR (NEW.outcome {_FAILS}) <> (OLD.outcome {_FAILS}))
AND EXISTS (SELECT 1 FROM wave_members WHERE source_id = NEW.source_id) BEGIN
    UPDATE wave_counts SET n = n - (SELECT count(*) FROM wave_members AS m
            WHERE m.source_id = NEW.source_id AND m.wave = wave_counts.wave)
        WHERE state = OLD.state
        AND failing = (OLD.outcome {_FAILS})
        AND wave IN (SELECT wave FROM wave_members WHERE source_id = NEW.source_id);
    INSERT INTO wave_counts (wave, state, failing, n)
        SELECT wave, NEW.state, NEW.outcome {_FAILS}, count(*) FROM wave_members
        WHERE source_id = NEW.source_id GROUP BY wave
        ON CONFLICT (wave, state, failing) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER wave_members_counted AFTER INSERT ON wave_members BEGIN
    INSERT INTO wave_counts (wave, state, failing, n)
        SELECT NEW.wave, coalesce(l.state, 'unknown'), coalesce(l.outcome {_FAILS}, 0), 1
        FROM (SELECT NEW.source_id AS source_id) AS m
        LEFT JOIN latest AS l ON l.source_id = m.source_id WHERE true
        ON CONFLICT (wave, state, failing) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER wave_members_uncounted AFTER DELETE ON wave_members BEGIN
    UPDATE wave_counts SET n = n - 1 WHERE wave = OLD.wave
        AND (state, failing) = (SELECT coalesce(l.state, 'unknown'), coalesce(l.outcome {_FAILS}, 0)
            FROM (SELECT OLD.source_id AS source_id) AS m
            LEFT JOIN latest AS l ON l.source_id = m.source_id);
END
"""
# Version 5 keeps each source's latest entry in ``latest``, one row a source, written by
# triggers on ``entries`` in the transaction of the entry (every insert and every change of
# outcome), so that the census and a wave's status read it instead of grouping the entries.
# ``last_id`` is the source's latest entry (its outcome, wave, endpoint, origin and time are
# copied beside it), ``at_id`` its latest applied or observed entry (its destination and
# since when); ``state`` and ``since`` are as :class:`~sms_flow.journal.Census` defines them.
# An entry's times or states rewritten in place (by hand: sms-flow never does) are copied
# again.
# Triggers on ``latest`` and ``wave_members`` keep the counts of sources by state and
# failing (``latest_counts``) and of each wave's members likewise (``wave_counts``, a member
# the journal holds nothing of counted ``unknown``), and each wave's entries and latest
# write (``wave_tally``). Counts that reach 0 stay as rows of 0. Existing entries and members
# fill them all on migration.

_MIGRATIONS: Final[tuple[str, ...]] = (_SCHEMA_1, _SCHEMA_2, _SCHEMA_3, _SCHEMA_4, _SCHEMA_5)
"""``_MIGRATIONS[v]`` takes a journal from schema version ``v`` to ``v + 1`` (version 0 is a
new, empty file). Statements are separated by ``;`` (a trigger is one statement, its body
and all)."""

SCHEMA_VERSION: Final = len(_MIGRATIONS)
"""The schema this module writes, stored in ``PRAGMA user_version``."""

# --- statements ----------------------------------------------------------------------------

_COLUMNS: Final = (
    "id, source_id, trigger, from_state, to_state, actor, reason, forced, wave, "
    "outcome, request_id, attempts, error, created_at, settled_at, endpoint, project, run_id, "
    "fence"
)
_SOURCE: Final = 0  # the indexes of a row's fields (the columns of _INSERT)
_WAVE: Final = 7
_ENDPOINT: Final = 14
_RUN: Final = 16
_FENCE: Final = 17
_UNFENCED: Final = -1  # in a row's fence: an entry born settled, never fenced (stored as NULL)
_INSERT: Final = (
    "INSERT INTO entries (source_id, trigger, from_state, to_state, actor, reason, forced, "
    "wave, outcome, request_id, attempts, error, created_at, settled_at, endpoint, project, "
    "run_id, fence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# An open entry is settled once by a final outcome; a pending one may first be marked
# unverified (still open). The outcome is given twice: to set it, and to test it.
_SETTLE_SQL: Final = (
    "UPDATE entries SET outcome = ?, request_id = ?, attempts = ?, error = ?, settled_at = ? "
    "WHERE id = ? AND (outcome = 'pending' OR (outcome = 'unverified' AND ? <> 'unverified'))"
)
_ADD_WAVE: Final = "INSERT OR IGNORE INTO waves (name) VALUES (?)"
_RUN_COLUMNS: Final = (
    "run_id, kind, name, endpoint, project, host, pid, actor, exclusive, started_at, "
    "heartbeat_at, expires_at, ended_at, end_reason"
)
# The claim of one source with its holder's liveness, the expiry compared in SQL at ``now``.
_CLAIM_OF: Final = (
    "SELECT c.run_id, c.token, c.reason, "
    "(r.ended_at IS NULL AND r.expires_at > ?) AS live "
    "FROM claims AS c LEFT JOIN runs AS r ON r.run_id = c.run_id "
    "WHERE c.endpoint = ? AND c.source_id = ?"
)
_FREE_THEN_OURS: Final = (
    "INSERT INTO claims (endpoint, source_id, run_id, token, claimed_at, reason, taken_from) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, source_id) DO UPDATE SET "
    "run_id = excluded.run_id, token = excluded.token, claimed_at = excluded.claimed_at, "
    "reason = excluded.reason, taken_from = excluded.taken_from"
)

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

_Row = list[Any]
"""An entry to insert: the values of _INSERT (the fence filled in when the claim is read)."""
_Settlement = tuple[str, str | None, int, str | None, float, int, str]
"""An outcome to write: outcome, request_id, attempts, error, settled_at, entry id, outcome."""


def _row(
    intent: Intent,
    outcome: Outcome,
    request_id: str | None,
    attempts: int,
    error: str | None,
    created_at: float,
    settled_at: float | None,
) -> _Row:
    return [
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
        intent.endpoint,
        intent.project,
        intent.run_id,
        None,
    ]


_OUTCOME_OF: Final = {o.value: o for o in Outcome}


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
        _OUTCOME_OF[row[9]],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
        row[16],
        row[17],
        row[18],
    )


def _run(row: tuple[Any, ...]) -> Run:
    return Run(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        bool(row[8]),
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
    )


def _run_of(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else _run(row)


# Whether a run not ended is past its lease, compared in SQL at ``now`` (the query's clock).
_EXPIRED: Final = "(expires_at <= ?)"


def _dead(run: Run, expired: bool) -> str | None:
    """Why a run not ended is dead: its lease expired (as the query found), or, on this
    host, its process is gone; ``None`` while it is live."""
    if expired:
        return "dead: lease expired"
    if run.host == HOST and not process_alive(run.pid):
        return "dead: process gone"
    return None


def _mark_dead(conn: sqlite3.Connection, run: Run, now: float, reason: str) -> Run:
    conn.execute(
        "UPDATE runs SET ended_at = ?, end_reason = ? WHERE run_id = ? AND ended_at IS NULL",
        (now, reason, run.run_id),
    )
    return dataclasses.replace(run, ended_at=now, end_reason=reason)


def _fields(run: Run) -> dict[str, Any]:
    return {name: getattr(run, name) for name in Run.__dataclass_fields__}


# --- fencing -------------------------------------------------------------------------------


def _fence(
    conn: sqlite3.Connection, run_id: str, endpoint: str | None, source_id: str, now: float
) -> int | OwnedError:
    """The fencing token of ``run_id``'s live claim on the source, or the error to raise."""
    if endpoint is None:
        return ClaimLostError(
            f"source {source_id}: an intent of run {run_id[:8]} names no endpoint; a fenced "
            "intent needs the endpoint its claim is on",
            source_id=source_id,
        )
    row = conn.execute(_CLAIM_OF, (now, endpoint, source_id)).fetchone()
    if row is not None and row[0] == run_id:
        if row[3]:
            token: int = row[1]
            return token
        run = _run_of(conn, run_id)
        return LeaseLostError(
            f"run {run_id[:8]} is no longer live ("
            + (run.describe(now) if run is not None else "unknown to this journal")
            + f"); nothing was written or pushed for source {source_id}; run it again to resume",
            owner=run,
        )
    holder = _run_of(conn, row[0]) if row is not None else None
    reason = row[2] if row is not None else None
    if holder is None:
        why = "no run holds it (it was never claimed by this run, or its claim was released)"
    else:
        why = f"it was taken by {holder.describe(now)}" + (f": {reason!r}" if reason else "")
    return ClaimLostError(
        f"source {source_id} on {endpoint} is no longer this run's: {why}; nothing was "
        "written or pushed for it, and this run leaves it alone",
        source_id=source_id,
        owner=holder,
        reason=reason,
    )


# --- operations ----------------------------------------------------------------------------


def _settle_entries(conn: sqlite3.Connection, settlements: list[_Settlement]) -> list[None]:
    """Write outcomes of open entries (every one queued together: one ``executemany``)."""
    if conn.executemany(_SETTLE_SQL, settlements).rowcount != len(settlements):
        raise _not_open(conn, settlements)
    return [None] * len(settlements)


def _not_open(conn: sqlite3.Connection, settlements: list[_Settlement]) -> JournalError:
    if len(settlements) > 1:  # the batch is replayed write by write, each saying what is wrong
        return JournalError(f"{len(settlements)} outcomes include an unknown or settled entry")
    outcome, entry_id = settlements[0][0], settlements[0][5]
    row = conn.execute("SELECT outcome FROM entries WHERE id = ?", (entry_id,)).fetchone()
    if row is None:
        return JournalError(
            f"cannot settle journal entry {entry_id}: no such entry; "
            "settle the id that begin() returned"
        )
    if row[0] == "unverified":
        return JournalError(
            f"cannot settle journal entry {entry_id} as 'unverified': it already is; settle "
            "it by what reading the source shows (applied, ignored or conflict)"
        )
    return JournalError(
        f"cannot settle journal entry {entry_id} as {outcome!r}: it is already "
        f"settled as {row[0]!r}; an entry is settled exactly once"
    )


_SETTLE: Final = Operation("settle", _settle_entries, writes=True, commutes=True)


def _open_intents(conn: sqlite3.Connection, query: tuple[str | None, str | None]) -> list[Entry]:
    wave, endpoint = query
    # The literal list (not parameters) lets SQLite use the partial index.
    sql = f"SELECT {_COLUMNS} FROM entries WHERE outcome IN ('pending', 'unverified')"
    params: list[str] = []
    if wave is not None:
        sql += " AND wave = ?"
        params.append(wave)
    if endpoint is not None:
        sql += " AND endpoint = ?"
        params.append(endpoint)
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


_HistoryWhere = tuple[str, list[Any]]
"""The filters of a history read: `` AND ...`` conditions and their parameters."""


def _history_where(
    source_id: str | None,
    wave: str | None,
    since: float | None,
    until: float | None,
    outcomes: Sequence[Outcome] | None,
    actor: str | None,
) -> _HistoryWhere:
    sql = ""
    params: list[Any] = []
    for column, op, value in history_filters(source_id, wave, since, until, actor):
        sql += f" AND {column} {op} ?"
        params.append(value)
    if outcomes is not None:
        sql += f" AND outcome IN ({', '.join('?' * len(outcomes))})"
        params.extend(Outcome(o).value for o in outcomes)
    return sql, params


def _history_page(conn: sqlite3.Connection, query: tuple[_HistoryWhere, int, int]) -> list[Entry]:
    """The next page of a history read: up to ``size`` entries after entry ``after``.

    Keyed on the id (never an OFFSET): each page starts where the last one ended, through
    the source's or the wave's index (whose keys end with the id) when one is filtered on.
    """
    (where, params), after, size = query
    sql = f"SELECT {_COLUMNS} FROM entries WHERE id > ?{where} ORDER BY id LIMIT ?"
    return [_entry(row) for row in conn.execute(sql, [after, *params, size])]


def _history_start(conn: sqlite3.Connection, query: tuple[_HistoryWhere, int]) -> int:
    """The id after which the last ``last`` matching entries begin (0: from the start)."""
    (where, params), last = query
    sql = f"SELECT id FROM entries WHERE 1{where} ORDER BY id DESC LIMIT 1 OFFSET ?"
    row = conn.execute(sql, [*params, last - 1]).fetchone()
    return int(row[0]) - 1 if row is not None else 0


def _wave_status(conn: sqlite3.Connection, query: tuple[str, int]) -> WaveStatus:
    wave, shown = query
    states = {
        state: count
        for state, count in conn.execute(
            "SELECT state, sum(n) FROM wave_counts WHERE wave = ? GROUP BY state "
            "HAVING sum(n) > 0 ORDER BY state",
            (wave,),
        )
    }
    # The wave's failing sources, each once, walked on the partial index latest_failing.
    failing = (
        f"FROM latest AS l WHERE l.outcome IN {_FAILING} AND EXISTS (SELECT 1 FROM "
        "wave_members AS m WHERE m.source_id = l.source_id AND m.wave = ?)"
    )
    failed = conn.execute(f"SELECT count(*) {failing}", (wave,)).fetchone()[0]
    failures = [
        _entry(row)
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE id IN (SELECT l.last_id {failing} "
            "ORDER BY l.last_id LIMIT ?) ORDER BY id",
            (wave, shown),
        )
    ]
    # ``+wave``: walk the few open entries (index entries_open), not the wave's entries.
    opened = "FROM entries WHERE outcome IN ('pending', 'unverified') AND +wave = ?"
    open_count = conn.execute(f"SELECT count(*) {opened}", (wave,)).fetchone()[0]
    open_entries = [
        _entry(row)
        for row in conn.execute(f"SELECT {_COLUMNS} {opened} ORDER BY id LIMIT ?", (wave, shown))
    ]
    tally = conn.execute("SELECT entries, last_at FROM wave_tally WHERE wave = ?", (wave,))
    entries, last = tally.fetchone() or (0, None)
    return WaveStatus(
        wave,
        sum(states.values()),
        states,
        failed,
        failures,
        open_count,
        open_entries,
        entries,
        last,
    )


def _census(
    conn: sqlite3.Connection, query: tuple[float, list[str], int]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    stuck_before, settled, shown = query
    marks = ", ".join("?" * len(settled))
    # The counts kept in latest_counts; of a state's sources, those stuck are all but the
    # ones in it since ``stuck_before`` or later (walked on the index latest_since).
    counts = conn.execute(
        "SELECT 0, c.state, c.n, c.failing, c.n - coalesce(r.recent, 0), NULL, NULL FROM "
        "(SELECT state, sum(n) AS n, sum(iif(failing, n, 0)) AS failing FROM latest_counts "
        "GROUP BY state HAVING sum(n) > 0) AS c LEFT JOIN (SELECT state, count(*) AS recent "
        "FROM latest WHERE since >= ? GROUP BY state) AS r ON r.state = c.state",
        [stuck_before],
    ).fetchall()
    counts = [(*row[:4], 0 if row[1] in settled else row[4], *row[5:]) for row in counts]
    rows = conn.execute(
        f"SELECT 1, state, source_id, since, outcome, wave, NULL FROM latest "
        f"WHERE since < ? AND state NOT IN ({marks}) ORDER BY since, source_id LIMIT ?",
        [stuck_before, *settled, shown],
    ).fetchall()
    return counts, rows


def _last_applied(
    conn: sqlite3.Connection, query: tuple[list[str], str | None]
) -> dict[str, Entry]:
    source_ids, endpoint = query
    found: dict[str, Entry] = {}
    on_endpoint = "AND e.endpoint = ? " if endpoint is not None else ""
    for start in range(0, len(source_ids), _CHUNK):
        chunk = source_ids[start : start + _CHUNK]
        values = ", ".join("(?)" for _ in chunk)
        # One index probe per source: walk its entries newest first, stop at the first hit.
        sql = (
            f"SELECT {_COLUMNS} FROM entries WHERE id IN ("
            "SELECT (SELECT e.id FROM entries AS e WHERE e.source_id = v.column1 "
            f"AND e.outcome IN ('applied', 'observed') {on_endpoint}ORDER BY e.id DESC LIMIT 1) "
            f"FROM (VALUES {values}) AS v)"
        )
        params = [endpoint, *chunk] if endpoint is not None else chunk
        for row in conn.execute(sql, params):
            entry = _entry(row)
            found[entry.source_id] = entry
    return found


def _add_members(conn: sqlite3.Connection, members: tuple[str, str, list[str]]) -> None:
    wave, endpoint, source_ids = members
    conn.execute(_ADD_WAVE, (wave,))
    conn.executemany(
        "INSERT OR IGNORE INTO wave_members (wave, endpoint, source_id) VALUES (?, ?, ?)",
        [(wave, endpoint, source_id) for source_id in source_ids],
    )


def _remove_members(conn: sqlite3.Connection, which: tuple[str, str | None]) -> int:
    wave, endpoint = which
    if endpoint is None:
        return conn.execute("DELETE FROM wave_members WHERE wave = ?", (wave,)).rowcount
    sql = "DELETE FROM wave_members WHERE wave = ? AND endpoint = ?"
    return conn.execute(sql, (wave, endpoint)).rowcount


def _members(conn: sqlite3.Connection, which: tuple[str, str | None]) -> list[str]:
    wave, endpoint = which
    if endpoint is None:  # on every endpoint: each source once, where it first appeared
        sql = (
            "SELECT source_id FROM wave_members WHERE wave = ? GROUP BY source_id ORDER BY min(seq)"
        )
        return [row[0] for row in conn.execute(sql, (wave,))]
    sql = "SELECT source_id FROM wave_members WHERE wave = ? AND endpoint = ? ORDER BY seq"
    return [row[0] for row in conn.execute(sql, (wave, endpoint))]


def _member_endpoints(conn: sqlite3.Connection, wave: str) -> list[str]:
    sql = "SELECT endpoint FROM wave_members WHERE wave = ? GROUP BY endpoint ORDER BY min(seq)"
    return [row[0] for row in conn.execute(sql, (wave,))]


def _adopt_members(conn: sqlite3.Connection, which: tuple[str, str]) -> int:
    wave, endpoint = which
    conn.execute(
        "INSERT OR IGNORE INTO wave_members (wave, endpoint, source_id) SELECT wave, ?, "
        "source_id FROM wave_members WHERE wave = ? AND endpoint = '' ORDER BY seq",
        (endpoint, wave),
    )
    sql = "DELETE FROM wave_members WHERE wave = ? AND endpoint = ''"
    return conn.execute(sql, (wave,)).rowcount


def _waves(conn: sqlite3.Connection, _: None) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM waves ORDER BY seq")]


# --- runs and claims -----------------------------------------------------------------------

_Start = tuple[str, str, str | None, str | None, str | None, str, float, bool, bool]
"""start_run's arguments: run id, kind, name, endpoint, project, actor, lease, exclusive,
join."""


def _start_run(conn: sqlite3.Connection, start: _Start) -> RunStart | OwnedError:
    run_id, kind, name, endpoint, project, actor, lease, exclusive, join = start
    now = time.time()
    took_over: list[Run] = []
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS}, {_EXPIRED} FROM runs WHERE kind = ? AND name IS ? "
        "AND endpoint IS ? AND ended_at IS NULL ORDER BY started_at",
        (now, kind, name, endpoint),
    ).fetchall()
    for row in rows:
        other = _run(row)
        dead = _dead(other, bool(row[-1]))
        if dead is not None:
            took_over.append(_mark_dead(conn, other, now, dead))
        elif exclusive or other.exclusive:
            return driven_elsewhere(kind, name, endpoint, other, now, join=join)
    run = Run(
        run_id,
        kind,
        name,
        endpoint,
        project,
        HOST,
        os.getpid(),
        actor,
        exclusive,
        now,
        now,
        now + lease,
    )
    conn.execute(
        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 14)})",
        tuple(_fields(run).values()),
    )
    if not join:
        return RunStart(run, took_over)
    # Dead runs of the key were marked ended above: a session with a run not ended is live.
    found = conn.execute(
        "SELECT w.session_id FROM wave_workers AS w JOIN runs AS r ON r.run_id = w.run_id "
        "WHERE r.kind = ? AND r.name IS ? AND r.endpoint IS ? AND r.ended_at IS NULL "
        "AND r.run_id <> ? ORDER BY r.started_at LIMIT 1",
        (kind, name, endpoint, run_id),
    ).fetchone()
    session = found[0] if found is not None else run_id
    if found is None:
        conn.execute(
            "INSERT INTO wave_sessions (session_id, kind, name, endpoint, started_at, rate_at) "
            "VALUES (?, ?, ?, ?, ?, 0)",
            (session, kind, name or "", endpoint or "", now),
        )
    conn.execute("INSERT INTO wave_workers (run_id, session_id) VALUES (?, ?)", (run_id, session))
    return RunStart(run, took_over, session)


_STATE_AGES_SQL: Final = (
    "SELECT at_state, count(*), min(at_since) FROM latest WHERE at_state IS NOT NULL "
    "GROUP BY at_state"
)


def _state_ages(conn: sqlite3.Connection, _: None) -> list[tuple[str, int, float]]:
    return [
        (str(state), int(n), float(since))
        for state, n, since in conn.execute(_STATE_AGES_SQL).fetchall()
    ]


def _release(conn: sqlite3.Connection, release: tuple[str, str, list[str]]) -> int:
    run_id, endpoint, source_ids = release
    freed = 0
    for start in range(0, len(source_ids), _CHUNK):
        chunk = source_ids[start : start + _CHUNK]
        freed += conn.execute(
            "DELETE FROM claims WHERE endpoint = ? AND run_id = ? AND source_id IN "
            f"({', '.join('?' * len(chunk))})",
            (endpoint, run_id, *chunk),
        ).rowcount
    return freed


_Work = tuple[str, str, str, str, int, list[tuple[str, str]], str]
"""claim_work's arguments: run id, session, wave, endpoint, limit, done (source, outcome),
holding (a JSON list of source ids)."""


def _claim_work(conn: sqlite3.Connection, work: _Work) -> Work | LeaseLostError:
    run_id, session, wave, endpoint, limit, done, holding = work
    now = time.time()
    if done:
        conn.executemany(
            "INSERT OR IGNORE INTO wave_done (session_id, source_id, outcome, run_id, done_at) "
            "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM claims "
            "WHERE endpoint = ? AND source_id = ? AND (run_id = ? OR taken_from = ?))",
            [(session, s, o, run_id, now, endpoint, s, run_id, run_id) for s, o in done],
        )
    # Workers of the session on this host whose process is gone are dead now, not at the
    # end of their lease: their sources are free at once.
    for row in conn.execute(
        f"SELECT {_RUN_COLUMNS}, {_EXPIRED} FROM runs WHERE ended_at IS NULL AND host = ? "
        "AND run_id IN (SELECT run_id FROM wave_workers WHERE session_id = ?)",
        (now, HOST, session),
    ).fetchall():
        other = _run(row)
        dead = _dead(other, bool(row[-1]))
        if dead is not None and other.run_id != run_id:
            _mark_dead(conn, other, now, dead)
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT m.source_id FROM wave_members AS m WHERE m.wave = ? AND m.endpoint = ? "
            "AND NOT EXISTS (SELECT 1 FROM wave_done AS d "
            "WHERE d.session_id = ? AND d.source_id = m.source_id) "
            "AND NOT EXISTS (SELECT 1 FROM claims AS c JOIN runs AS r ON r.run_id = c.run_id "
            "WHERE c.endpoint = m.endpoint AND c.source_id = m.source_id "
            "AND r.ended_at IS NULL AND r.expires_at > ? AND (c.run_id <> ? "
            "OR c.source_id IN (SELECT value FROM json_each(?)))) "
            "ORDER BY m.seq LIMIT ?",
            (wave, endpoint, session, now, run_id, holding, limit),
        ).fetchall()
    ]
    claimed = _claim(conn, (run_id, endpoint, ids, False, None)) if ids else None
    if isinstance(claimed, LeaseLostError):
        return claimed
    if claimed is None:  # nothing to claim: the run must still be live to be told so
        refused = _unless_live(conn, run_id, now)
        if refused is not None:
            return refused
        claimed = Claimed()
    (undone,) = conn.execute(
        "SELECT count(*) FROM wave_members AS m WHERE m.wave = ? AND m.endpoint = ? "
        "AND NOT EXISTS (SELECT 1 FROM wave_done AS d "
        "WHERE d.session_id = ? AND d.source_id = m.source_id)",
        (wave, endpoint, session),
    ).fetchone()
    (failures,) = conn.execute(
        "SELECT count(*) FROM wave_done WHERE session_id = ? AND outcome = 'failed'", (session,)
    ).fetchone()
    return Work(claimed, undone, failures)


def _reserve_requests(conn: sqlite3.Connection, ask: tuple[str, int, float]) -> float:
    session, count, rate = ask
    now = time.time()
    row = conn.execute(
        "SELECT rate_at FROM wave_sessions WHERE session_id = ?", (session,)
    ).fetchone()
    start = max(row[0] if row is not None else 0.0, now)
    conn.execute(
        "UPDATE wave_sessions SET rate_at = ? WHERE session_id = ?", (start + count / rate, session)
    )
    return start - now


def _workers(conn: sqlite3.Connection, key: tuple[str, str | None]) -> list[Worker]:
    wave, endpoint = key
    sessions = [
        r[0]
        for r in conn.execute(
            "SELECT s.session_id FROM wave_sessions AS s WHERE s.name = ? "
            "AND (? IS NULL OR s.endpoint = ?) AND s.started_at = (SELECT max(started_at) "
            "FROM wave_sessions AS t WHERE t.name = s.name AND t.endpoint = s.endpoint)",
            (wave, endpoint, endpoint),
        ).fetchall()
    ]
    found: list[Worker] = []
    now = time.time()
    for session in sessions:
        done = dict(
            conn.execute(
                "SELECT run_id, count(*) FROM wave_done WHERE session_id = ? GROUP BY run_id",
                (session,),
            ).fetchall()
        )
        for row in conn.execute(
            f"SELECT {', '.join('r.' + c for c in _RUN_COLUMNS.split(', '))}, "
            "(SELECT count(*) FROM claims AS c WHERE c.run_id = r.run_id AND NOT EXISTS "
            "(SELECT 1 FROM wave_done AS d WHERE d.session_id = w.session_id "
            "AND d.source_id = c.source_id)) "
            "FROM runs AS r JOIN wave_workers AS w ON w.run_id = r.run_id "
            "WHERE w.session_id = ? ORDER BY r.started_at",
            (session,),
        ).fetchall():
            run = _run(row)
            claims = row[-1] if run.live(now) else 0
            found.append(Worker(run, session, claims, done.get(run.run_id, 0)))
    return found


def _heartbeat(conn: sqlite3.Connection, beat: tuple[str, float]) -> Run | LeaseLostError:
    run_id, lease = beat
    now = time.time()
    renewed = conn.execute(
        "UPDATE runs SET heartbeat_at = ?, expires_at = ? "
        "WHERE run_id = ? AND ended_at IS NULL AND expires_at > ?",
        (now, now + lease, run_id, now),
    ).rowcount
    run = _run_of(conn, run_id)
    if renewed and run is not None:
        return run
    if run is None:
        why = "this journal has no such run"
    elif run.ended_at is not None:
        why = f"it ended ({run.end_reason or 'ended'})"
    else:
        why = f"its lease expired {now - run.expires_at:.1f} s ago"
    return LeaseLostError(
        f"run {run_id[:8]} lost its lease: {why}; another run may have taken its sources "
        "over, so it pushes nothing more; run it again to resume",
        owner=run,
    )


def _end_run(conn: sqlite3.Connection, end: tuple[str, str]) -> None:
    run_id, reason = end
    conn.execute(
        "UPDATE runs SET ended_at = ?, end_reason = ? WHERE run_id = ? AND ended_at IS NULL",
        (time.time(), reason, run_id),
    )


_Claim = tuple[str, str, list[str], bool, str | None]
"""claim's arguments: run id, endpoint, source ids, steal, reason."""


def _unless_live(conn: sqlite3.Connection, run_id: str, now: float) -> LeaseLostError | None:
    """None while the run is live at ``now``; else why it may claim nothing."""
    live = conn.execute(
        f"SELECT NOT {_EXPIRED} FROM runs WHERE run_id = ? AND ended_at IS NULL", (now, run_id)
    ).fetchone()
    if live is not None and live[0]:
        return None
    return not_live(run_id, _run_of(conn, run_id), now)


def _claim(conn: sqlite3.Connection, claim: _Claim) -> Claimed | LeaseLostError:
    run_id, endpoint, source_ids, steal, reason = claim
    now = time.time()
    refused = _unless_live(conn, run_id, now)
    if refused is not None:
        return refused
    result = Claimed()
    runs: dict[str, tuple[Run, bool] | None] = {}  # holder: its record, and expired
    grants: list[tuple[str, Run | None]] = []
    for start in range(0, len(source_ids), _CHUNK):
        chunk = source_ids[start : start + _CHUNK]
        held = dict(
            conn.execute(
                "SELECT source_id, run_id FROM claims WHERE endpoint = ? AND source_id IN "
                f"({', '.join('?' * len(chunk))})",
                (endpoint, *chunk),
            ).fetchall()
        )
        for source_id in chunk:
            holder_id = held.get(source_id)
            if holder_id is None:
                grants.append((source_id, None))
                continue
            if holder_id == run_id:
                continue  # already ours: keeps its token
            if holder_id not in runs:
                found = conn.execute(
                    f"SELECT {_RUN_COLUMNS}, {_EXPIRED} FROM runs WHERE run_id = ?",
                    (now, holder_id),
                ).fetchone()
                runs[holder_id] = None if found is None else (_run(found), bool(found[-1]))
            known = runs[holder_id]
            if known is None or known[0].ended_at is not None:
                grants.append((source_id, known[0] if known is not None else None))
                continue
            holder, expired = known
            dead = _dead(holder, expired)
            if dead is not None:
                holder = _mark_dead(conn, holder, now, dead)
                runs[holder_id] = (holder, True)
                grants.append((source_id, holder))
            elif steal:
                grants.append((source_id, holder))
            else:
                result.refused[source_id] = holder
    if grants:
        (last,) = conn.execute(
            "UPDATE fencing SET last = last + ? RETURNING last", (len(grants),)
        ).fetchone()
        first = last - len(grants) + 1
        rows = []
        for token, (source_id, before) in enumerate(grants, first):
            stolen = before is not None and before.ended_at is None
            rows.append(
                (
                    endpoint,
                    source_id,
                    run_id,
                    token,
                    now,
                    reason if stolen else None,
                    before.run_id if before is not None else None,
                )
            )
            result.granted[source_id] = token
            if before is not None:
                result.taken_from[source_id] = before
        conn.executemany(_FREE_THEN_OURS, rows)
    if len(result.granted) + len(result.refused) < len(source_ids):  # some were ours already
        for start in range(0, len(source_ids), _CHUNK):
            chunk = [s for s in source_ids[start : start + _CHUNK] if s not in result.granted]
            if not chunk:
                continue
            for source_id, token in conn.execute(
                "SELECT source_id, token FROM claims WHERE endpoint = ? AND run_id = ? AND "
                f"source_id IN ({', '.join('?' * len(chunk))})",
                (endpoint, run_id, *chunk),
            ):
                result.granted[source_id] = token
    return result


def _adopt(conn: sqlite3.Connection, adopt: tuple[int, str]) -> SmsFlowError | None:
    entry_id, run_id = adopt
    row = conn.execute(
        "SELECT source_id, endpoint, outcome FROM entries WHERE id = ?", (entry_id,)
    ).fetchone()
    if row is None or row[2] not in ("pending", "unverified"):
        return JournalError(
            f"cannot adopt journal entry {entry_id}: "
            + ("no such entry" if row is None else f"it is settled as {row[2]!r}")
        )
    endpoint = row[1]
    if endpoint is None:  # written before endpoints were recorded: it becomes the run's
        found = conn.execute("SELECT endpoint FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        endpoint = found[0] if found is not None else None
    fence = _fence(conn, run_id, endpoint, row[0], time.time())
    if not isinstance(fence, int):
        return fence
    conn.execute(
        "UPDATE entries SET run_id = ?, fence = ?, endpoint = ? WHERE id = ?",
        (run_id, fence, endpoint, entry_id),
    )
    return None


def _runs(conn: sqlite3.Connection, live: bool) -> list[Run]:
    where = " WHERE ended_at IS NULL" if live else ""
    rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY started_at")
    return [_run(row) for row in rows]


def _latest_problems(sources: int, latest: int, counted: int) -> list[str]:
    """What is wrong with the table of each source's latest entry, judged by its counts."""
    if -1 in (sources, latest, counted) or sources == latest == counted:
        return []
    return [
        f"the table of each source's latest entry holds {latest:,} sources (counted by state: "
        f"{counted:,}) but the entries name {sources:,}; census and wave status are wrong: "
        "copy the journal (sms-flow journal copy) to rebuild it"
    ]


def _check(conn: sqlite3.Connection, _: None) -> tuple[list[str], int, int, int, list[Run], int]:
    """The full integrity check and the counts; a count that cannot be read is -1."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems == ["ok"]:
        problems = []
    version = conn.execute("PRAGMA user_version").fetchone()[0]

    def count(sql: str) -> int:
        try:
            found: int = conn.execute(sql).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            problems.append(f"{sql}: {exc}")
            return -1
        return found

    entries = count("SELECT count(*) FROM entries")
    open_ = count("SELECT count(*) FROM entries WHERE outcome IN ('pending', 'unverified')")
    if version >= 5:
        problems.extend(
            _latest_problems(
                count("SELECT count(DISTINCT source_id) FROM entries"),
                count("SELECT count(*) FROM latest"),
                count("SELECT coalesce(sum(n), 0) FROM latest_counts"),
            )
        )
    now = time.time()
    try:
        runs = [r for r in _runs(conn, True) if r.live(now)]
        live = {r.run_id for r in runs}
        claims = sum(1 for (holder,) in conn.execute("SELECT run_id FROM claims") if holder in live)
    except sqlite3.DatabaseError as exc:
        problems.append(f"runs and claims: {exc}")
        runs, claims = [], -1
    return problems, version, entries, open_, runs, claims


_OPEN_INTENTS: Final = each("open_intents", _open_intents, writes=False)
_HISTORY: Final = each("history", _history, writes=False)
_HISTORY_PAGE: Final = each("history_page", _history_page, writes=False)
_HISTORY_START: Final = each("history_start", _history_start, writes=False)
_WAVE_STATUS: Final = each("wave_status", _wave_status, writes=False)
_LAST_APPLIED: Final = each("last_applied", _last_applied, writes=False)
_MEMBERS: Final = each("members", _members, writes=False)
_MEMBER_ENDPOINTS: Final = each("member_endpoints", _member_endpoints, writes=False)
_ADOPT_MEMBERS: Final = each("adopt_members", _adopt_members, writes=True)
_WAVES: Final = each("waves", _waves, writes=False)
_ADD_MEMBERS: Final = each("add_members", _add_members, writes=True)
_REMOVE_MEMBERS: Final = each("remove_members", _remove_members, writes=True)
_START_RUN: Final = each("start_run", _start_run, writes=True)
_HEARTBEAT: Final = each("heartbeat", _heartbeat, writes=True)
_END_RUN: Final = each("end_run", _end_run, writes=True)
_CLAIM: Final = each("claim", _claim, writes=True)
_CLAIM_WORK: Final = each("claim_work", _claim_work, writes=True)
_STATE_AGES: Final = each("state_ages", _state_ages, writes=False)
_RELEASE: Final = each("release", _release, writes=True)
_RESERVE_REQUESTS: Final = each("reserve_requests", _reserve_requests, writes=True)
_WORKERS: Final = each("workers", _workers, writes=False)
_ADOPT: Final = each("adopt", _adopt, writes=True)
_RUNS: Final = each("runs", _runs, writes=False)
_CHECK: Final = each("check", _check, writes=False)
_CENSUS: Final = each("census", _census, writes=False)


# --- copying (sms-flow journal copy) -------------------------------------------------------

_CopySpec = tuple[str, Sequence[str], Sequence[str]]
"""A table to copy: its name, the columns carried, and the columns its rows are read in order
of (none: any order). The list of them is :data:`sms_flow.journals.COPIED`."""

_COUNTER: Final = "fencing"
"""The table that holds one value, the last fencing token granted, not rows: copying it sets
the counter (never lowering it), and its size is that value."""


class _RolledBack(Exception):
    """Ends a held transaction that must not commit (the worker rolls it back)."""


_Request = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


class _Held:
    """A transaction of the journal's thread held open while the event loop hands it work.

    :meth:`serve` is a worker operation of its own (so it runs inside the transaction the
    worker began): it runs each function :meth:`run` sends, in order, each answer going back
    to the event loop, and returns (the worker commits) once :meth:`end` is called with
    ``commit=True``, or raises (the worker rolls back) once it is called with ``False``.
    """

    __slots__ = ("_loop", "_requests", "_served", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._requests: queue.SimpleQueue[_Request | bool] = queue.SimpleQueue()
        self._served = False
        self.done: asyncio.Future[None] | None = None
        """The worker operation's future: resolved once the transaction is over."""

    def serve(self, conn: sqlite3.Connection) -> None:
        """Run what is sent until the end; on the journal's thread."""
        if self._served:  # a batch replayed: this transaction was over already
            raise _RolledBack("a held transaction is served once")
        self._served = True
        while True:
            request = self._requests.get()
            if request is True:
                return
            if request is False:
                raise _RolledBack("rolled back")
            fn, future = request
            try:
                value, error = fn(conn), None
            except Exception as exc:
                value, error = None, exc
            self._loop.call_soon_threadsafe(_answer, future, error, value)

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(conn)`` on the journal's thread, inside the held transaction."""
        done = self.done
        assert done is not None
        if done.done():  # the transaction could not begin (or is over): say why
            await done
            raise JournalError("the journal's copy transaction is over")
        future: asyncio.Future[_T] = self._loop.create_future()
        self._requests.put((fn, future))
        await asyncio.wait((future, done), return_when=asyncio.FIRST_COMPLETED)
        if not future.done():
            await done
            raise JournalError("the journal's copy transaction ended early")
        return future.result()

    def end(self, *, commit: bool) -> None:
        self._requests.put(commit)


def _answer(future: asyncio.Future[Any], error: Exception | None, value: Any) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _serve(conn: sqlite3.Connection, held: _Held) -> None:
    held.serve(conn)


_HOLD_READ: Final = each("hold_read", _serve, writes=False)
_HOLD_WRITE: Final = each("hold_write", _serve, writes=True)


def _select(table: str, columns: Sequence[str], order: Sequence[str]) -> str:
    for name in (table, *columns, *order):
        if not name.isidentifier():
            raise JournalError(f"cannot copy {table}.{name}: not a column name")
    sql = f"SELECT {', '.join(columns)} FROM {table}"
    return sql + (f" ORDER BY {', '.join(order)}" if order else "")


def _sizes(conn: sqlite3.Connection, tables: list[str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for table in tables:
        if not table.isidentifier():
            raise JournalError(f"cannot count {table!r}: not a table name")
        if table == _COUNTER:
            row = conn.execute(f"SELECT max(last) FROM {_COUNTER}").fetchone()
            sizes[table] = int(row[0] or 0)
        else:
            sizes[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    return sizes


def _insert_rows(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    if table == _COUNTER:
        for (last,) in rows:
            conn.execute(f"UPDATE {_COUNTER} SET last = max(last, ?)", (int(last),))
        return
    for name in (table, *columns):
        if not name.isidentifier():
            raise JournalError(f"cannot copy into {table}.{name}: not a column name")
    marks = ", ".join("?" * len(columns))
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


_SIZES: Final = each("sizes", _sizes, writes=False)


class SqliteLoader:
    """Rows written into an SQLite journal in one transaction (:meth:`SqliteJournal.loading`)."""

    __slots__ = ("_held", "_path")

    def __init__(self, held: _Held, path: Path) -> None:
        self._held = held
        self._path = path

    async def sizes(self, tables: Sequence[str]) -> dict[str, int]:
        """The rows of each table in the transaction (of ``fencing``: its last token)."""
        wanted = list(tables)
        try:
            return await self._held.run(lambda conn: _sizes(conn, wanted))
        except sqlite3.Error as exc:
            raise _explain(self._path, exc, "count the rows of the copy") from exc

    async def load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (values of ``columns``, ids included) into ``table``; into
        ``fencing``: raise the counter to the row's value."""
        try:
            await self._held.run(lambda conn: _insert_rows(conn, table, columns, rows))
        except sqlite3.Error as exc:
            raise JournalError(
                f"journal {self._path}: could not copy rows into {table}: {exc}; nothing of "
                "the copy is written"
            ) from exc


def _raised(value: Any) -> Any:
    """An operation's result, or the error it handed back instead of raising (so that it
    failed for its caller alone, without replaying its batch)."""
    if isinstance(value, Exception):
        raise value
    return value


# --- the journal ---------------------------------------------------------------------------


class SqliteJournal(Journal):
    """A journal in one SQLite file (WAL mode), written by one dedicated thread.

    ``synchronous="NORMAL"`` (default): a committed entry survives the process being
    killed (``SIGKILL``) but not necessarily a power loss. ``synchronous="FULL"``: it
    survives both; every batch costs an fsync.

    Missing parent directories are created. A path that is a directory, is not writable, or
    holds something other than an sms-flow journal (or one of a newer schema) raises
    :class:`~sms_flow.errors.ConfigError` from :meth:`open`; a file with damaged pages
    (``PRAGMA quick_check``) raises :class:`~sms_flow.errors.JournalError`, unless
    ``quick_check=False`` (what ``sms-flow journal check`` uses, to report on it). An
    instance is opened once; after :meth:`close` every call raises
    :class:`~sms_flow.errors.JournalError`, and so does every call once the file was
    deleted or replaced while open.

    A caller cancelled while awaiting ``begin`` does not withdraw the intent: it may still be
    committed, and then shows in :meth:`open_intents`, to be settled like any other.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        quick_check: bool = True,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(
                f"unknown journal synchronous mode {synchronous!r}; use 'NORMAL' or 'FULL'"
            )
        self._path = Path(os.fspath(path)).absolute()
        self._synchronous = synchronous
        self._quick_check = quick_check
        self._state: Literal["new", "opening", "open", "closed"] = "new"
        self._worker: SqliteWorker | None = None
        self._files = _Files(self._path)
        self._waves_known: set[str] = set()
        """Waves known to be in the waves table: added once a write naming them committed."""
        self._insert: Operation[_Row, int | OwnedError] = Operation(
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
            worker.operations,
            worker.batches,
            worker.largest_batch,
            worker.in_flight,
            worker.batch_seconds,
        )

    async def stored_version(self) -> int:
        """The schema version the file holds now (0: none yet), read without opening or
        migrating it (``sms-flow journal migrate`` says from which version it goes)."""

        def read() -> int:
            if not self._path.exists():
                return 0
            try:
                conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True)
                try:
                    return int(conn.execute("PRAGMA user_version").fetchone()[0])
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                raise _explain(self._path, exc, "read the journal's schema version") from exc

        return await asyncio.to_thread(read)

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise JournalError(f"journal {self._path} is already {self._state}; open it once")
        files = self._files

        def connect() -> sqlite3.Connection:
            conn = _connect(self._path, self._synchronous, self._quick_check)
            files.remember()
            return conn

        worker = SqliteWorker(
            connect,
            name=f"sms-flow-journal:{self._path.name}",
            explain=lambda exc, doing: _explain(self._path, exc, doing),
            closed=lambda: JournalError(
                f"journal {self._path} is closed; open a new SqliteJournal to use it again"
            ),
            lost=_log_lost,
            guard=lambda conn: files.changed(),
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
        entry_id: int = _raised(await self._live().submit(self._insert, row))
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
        outcome = born_settled(outcome, f"record a transition of {intent.source_id}")
        now = time.time()
        row = _row(intent, outcome, request_id, attempts, error, now, now)
        row[_FENCE] = _UNFENCED  # it records what was seen or refused: never fenced
        entry_id: int = _raised(await self._live().submit(self._insert, row))
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
        settlement = (
            outcome.value,
            request_id,
            attempts,
            error,
            time.time(),
            entry_id,
            outcome.value,
        )
        if wait:
            await self._live().submit(_SETTLE, settlement)
        else:
            self._live().submit_nowait(_SETTLE, settlement)

    def _insert_entries(self, conn: sqlite3.Connection, rows: list[_Row]) -> list[int | OwnedError]:
        """Insert entries (intents and entries born settled); their ids, in order.

        A wave not yet known is added to the waves table first. An intent with a run is
        fenced: its source's claim is read first, and one the run does not hold gets the
        error to raise in place of an id (nothing written for it).
        """
        known = self._waves_known
        waves = [
            (wave,)
            for wave in dict.fromkeys(row[_WAVE] for row in rows)
            if wave is not None and wave not in known
        ]
        if waves:
            conn.executemany(_ADD_WAVE, waves)
        now = time.time()
        ids: list[int | OwnedError] = []
        for row in rows:
            if row[_FENCE] == _UNFENCED:
                row[_FENCE] = None
            elif row[_RUN] is not None:
                fence = _fence(conn, row[_RUN], row[_ENDPOINT], row[_SOURCE], now)
                if not isinstance(fence, int):
                    ids.append(fence)
                    continue
                row[_FENCE] = fence
            entry_id = conn.execute(_INSERT, row).lastrowid
            assert entry_id is not None  # set by every INSERT
            ids.append(entry_id)
        return ids

    # --- reads and membership ----------------------------------------------------------

    async def open_intents(
        self, *, wave: str | None = None, endpoint: str | None = None
    ) -> list[Entry]:
        return await self._live().submit(_OPEN_INTENTS, (wave, endpoint))

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

    async def iter_history(
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
        if last is not None and last < 0:
            raise JournalError(f"history: last must be 0 or more, got {last}")
        if page < 1:
            raise JournalError(f"history: page must be 1 or more, got {page}")
        try:
            where = _history_where(source_id, wave, since, until, outcomes, actor)
        except ValueError:
            raise JournalError(
                f"history: unknown outcome in {outcomes!r}; valid: "
                f"{', '.join(o.value for o in Outcome)}"
            ) from None
        if last == 0:
            return
        worker = self._live()
        after = 0 if last is None else await worker.submit(_HISTORY_START, (where, last))
        entries = await worker.submit(_HISTORY_PAGE, (where, after, page))
        while True:
            # The next page is read on the journal's thread while this one is consumed.
            following = (
                asyncio.ensure_future(worker.submit(_HISTORY_PAGE, (where, entries[-1].id, page)))
                if len(entries) == page
                else None
            )
            try:
                for entry in entries:
                    yield entry
            except BaseException:  # the reader stopped early (or failed): read no more
                if following is not None:
                    following.cancel()
                raise
            if following is None:
                return
            entries = await following

    async def wave_status(self, wave: str, *, shown: int = 50) -> WaveStatus:
        return await self._live().submit(_WAVE_STATUS, (wave, shown))

    async def last_applied(
        self, source_ids: Sequence[str], *, endpoint: str | None = None
    ) -> dict[str, Entry]:
        ids = list(dict.fromkeys(source_id_list(source_ids, "last_applied")))
        if not ids:
            return {}
        return await self._live().submit(_LAST_APPLIED, (ids, endpoint))

    async def add_members(
        self, wave: str, source_ids: Sequence[str], *, endpoint: str = ""
    ) -> None:
        ids = source_id_list(source_ids, "add_members")
        await self._live().submit(_ADD_MEMBERS, (wave, endpoint, ids))

    async def members(self, wave: str, *, endpoint: str | None = None) -> list[str]:
        return await self._live().submit(_MEMBERS, (wave, endpoint))

    async def remove_members(self, wave: str, *, endpoint: str | None = None) -> int:
        return await self._live().submit(_REMOVE_MEMBERS, (wave, endpoint))

    async def member_endpoints(self, wave: str) -> list[str]:
        return await self._live().submit(_MEMBER_ENDPOINTS, wave)

    async def adopt_members(self, wave: str, *, endpoint: str) -> int:
        return await self._live().submit(_ADOPT_MEMBERS, (wave, endpoint))

    async def waves(self) -> list[str]:
        return await self._live().submit(_WAVES, None)

    # --- runs and claims ---------------------------------------------------------------

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
        _check_lease(lease)
        check_join(join, exclusive, kind, name, endpoint)
        start = (
            uuid.uuid4().hex,
            kind,
            name,
            endpoint,
            project,
            actor,
            float(lease),
            exclusive,
            join,
        )
        started: RunStart = _raised(await self._live().submit(_START_RUN, start))
        return started

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
        check_work_limit(limit)
        finished = list((done or {}).items())
        work = (run_id, session, wave, endpoint, int(limit), finished, json.dumps(list(holding)))
        found: Work = _raised(await self._live().submit(_CLAIM_WORK, work))
        return found

    async def reserve_requests(self, session: str, count: int, rate: float) -> float:
        check_request_rate(count, rate)
        delay: float = await self._live().submit(
            _RESERVE_REQUESTS, (session, int(count), float(rate))
        )
        return delay

    async def workers(self, wave: str, *, endpoint: str | None = None) -> list[Worker]:
        return await self._live().submit(_WORKERS, (wave, endpoint))

    async def heartbeat(self, run_id: str, lease: float = DEFAULT_LEASE) -> Run:
        _check_lease(lease)
        run: Run = _raised(await self._live().submit(_HEARTBEAT, (run_id, float(lease))))
        return run

    async def end_run(self, run_id: str, *, reason: str = "ended") -> None:
        await self._live().submit(_END_RUN, (run_id, reason))

    async def claim(
        self,
        run_id: str,
        endpoint: str,
        source_ids: Sequence[str],
        *,
        steal: bool = False,
        reason: str | None = None,
    ) -> Claimed:
        ids = list(dict.fromkeys(source_id_list(source_ids, "claim")))
        if not ids:
            return Claimed()
        claimed: Claimed = _raised(
            await self._live().submit(_CLAIM, (run_id, endpoint, ids, steal, reason))
        )
        return claimed

    async def release(self, run_id: str, endpoint: str, source_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(source_id_list(source_ids, "release")))
        if not ids:
            return 0
        freed: int = await self._live().submit(_RELEASE, (run_id, endpoint, ids))
        return freed

    async def adopt(self, entry_id: int, run_id: str) -> None:
        _raised(await self._live().submit(_ADOPT, (entry_id, run_id)))

    async def state_ages(self) -> list[tuple[str, int, float]]:
        return await self._live().submit(_STATE_AGES, None)

    async def runs(self, *, live: bool = True) -> list[Run]:
        return await self._live().submit(_RUNS, live)

    async def check(self) -> JournalCheck:
        problems, version, entries, open_, runs, claims = await self._live().submit(_CHECK, None)
        return JournalCheck(
            str(self._path), not problems, problems, version, entries, open_, runs, claims
        )

    async def census(
        self, *, stuck_before: float, settled: Sequence[str] = (), shown: int = 50
    ) -> Census:
        if shown < 0:
            raise JournalError(f"census: shown must be 0 or more, got {shown}")
        counts, stuck = await self._live().submit(
            _CENSUS, (float(stuck_before), list(settled), shown)
        )
        states = {state: n for _, state, n, _, _, _, _ in counts}
        return Census(
            sources=sum(states.values()),
            states=states,
            failing={state: f for _, state, _, f, _, _, _ in counts if f},
            stuck_count=sum(s for _, _, _, _, s, _, _ in counts),
            stuck=[
                StuckSource(source_id, state, since, _OUTCOME_OF[outcome], wave)
                for _, state, source_id, since, outcome, wave, _ in stuck
            ],
        )

    # --- copying -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _holding(self, writes: bool) -> AsyncIterator[_Held]:
        """A transaction of the journal's thread held open for the block: committed when
        the block ends, rolled back when it raises."""
        worker = self._live()
        held = _Held(asyncio.get_running_loop())
        held.done = worker.submit(_HOLD_WRITE if writes else _HOLD_READ, held)
        finished = False
        try:
            yield held
            finished = True
        finally:
            held.end(commit=finished)
            try:
                await held.done
            except _RolledBack:
                pass
            except Exception:
                if finished:  # the commit failed: nothing was written
                    raise

    async def dump(
        self, tables: Sequence[_CopySpec], *, batch: int = 5000
    ) -> AsyncGenerator[tuple[str, list[tuple[Any, ...]]], None]:
        """Every row of ``tables`` (name, columns, order), table after table, as ``(table,
        rows)`` in batches of up to ``batch`` rows, all read in one transaction: one snapshot
        of the file, whatever is written meanwhile. The next batch is read on the journal's
        thread while the caller handles this one; only those two are in memory."""
        if batch < 1:
            raise JournalError(f"dump: batch must be 1 or more, got {batch}")
        async with self._holding(writes=False) as held:
            for table, columns, order in tables:
                sql = _select(table, columns, order)
                cursors: list[sqlite3.Cursor] = []

                def first(
                    conn: sqlite3.Connection, sql: str = sql, cursors: list[Any] = cursors
                ) -> list[tuple[Any, ...]]:
                    cursors.append(conn.execute(sql))
                    rows: list[tuple[Any, ...]] = cursors[-1].fetchmany(batch)
                    return rows

                def following(
                    conn: sqlite3.Connection, cursors: list[Any] = cursors
                ) -> list[tuple[Any, ...]]:
                    rows: list[tuple[Any, ...]] = cursors[-1].fetchmany(batch)
                    return rows

                try:
                    rows = await held.run(first)
                    while rows:
                        ahead = (
                            asyncio.ensure_future(held.run(following))
                            if len(rows) == batch
                            else None
                        )
                        try:
                            yield table, rows
                        except BaseException:
                            if ahead is not None:
                                ahead.cancel()
                            raise
                        if ahead is None:
                            break
                        rows = await ahead
                except sqlite3.Error as exc:
                    raise _explain(self._path, exc, f"read {table} to copy it") from exc

    @contextlib.asynccontextmanager
    async def loading(self) -> AsyncIterator[SqliteLoader]:
        """A write transaction to copy rows into (``sms-flow journal copy``): committed when
        the block ends, rolled back whole (nothing of it written) when the block raises. It
        holds the file's write lock throughout: no other writer comes in between."""
        async with self._holding(writes=True) as held:
            yield SqliteLoader(held, self._path)

    async def sizes(self, tables: Sequence[str]) -> dict[str, int]:
        """The rows of each table now (of ``fencing``: its last token)."""
        return await self._live().submit(_SIZES, list(tables))


def _check_lease(lease: float) -> None:
    if not isinstance(lease, int | float) or isinstance(lease, bool) or not 0 < lease < 86_400:
        raise JournalError(f"a lease is {lease!r}; give seconds above 0 and under a day")


def _log_lost(exc: BaseException) -> None:
    _log.error("journal write failed", error=str(exc))


# --- the file ------------------------------------------------------------------------------

_PARTS: Final = ("", "-wal", "-shm")


class _Files:
    """The journal's files as they were when it opened: device and inode of each part.

    :meth:`changed` (on the journal's thread, before every batch) says whether one was
    deleted or replaced since; a part that did not exist at open is remembered when first
    seen.
    """

    __slots__ = ("_known", "_path")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._known: dict[str, tuple[int, int] | None] = {}

    def remember(self) -> None:
        self._known = {suffix: _identity(f"{self._path}{suffix}") for suffix in _PARTS}

    def changed(self) -> JournalError | None:
        for suffix, known in self._known.items():
            now = _identity(f"{self._path}{suffix}")
            if now == known:
                continue
            if known is None:  # created since the journal opened (the -wal of a first write)
                self._known[suffix] = now
                continue
            what = f"its {suffix} file" if suffix else "the file"
            happened = "deleted" if now is None else "replaced by another file"
            return JournalError(
                f"journal {self._path} was {happened} while open ({what}); nothing more is "
                "written to it and nothing more is pushed. What this run journalled may be "
                "lost with it: the service holds the true states (sms-flow get SOURCE_ID); "
                "restore the journal from a backup, or run again with a new journal, whose "
                "first read of each source finds where it is"
            )
        return None


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


# --- opening the file ----------------------------------------------------------------------


def _explain(path: Path, exc: sqlite3.Error, doing: str) -> JournalError:
    if getattr(exc, "sqlite_errorname", None) == "SQLITE_CORRUPT":
        return _damaged(path, str(exc))
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        hint = "; another process holds the journal's write lock, retry when it is done"
    else:
        hint = f"; check free disk space and permissions under {path.parent}"
    error = JournalError(f"journal {path}: could not {doing}: {exc}{hint}")
    error.__cause__ = exc
    return error


def _damaged(path: Path, found: str) -> JournalError:
    return JournalError(
        f"journal {path} is damaged ({found}); it is refused, so that nothing is written into "
        f"it. Keep a copy of it, run sms-flow journal check --journal {path} for the full "
        "report, then restore it from a backup or recover what SQLite can read "
        f"(sqlite3 {path} .recover), or {_FIX}"
    )


def _connect(path: Path, synchronous: str, quick_check: bool) -> sqlite3.Connection:
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
        _prepare(conn, path, synchronous, quick_check)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path, synchronous: str, quick_check: bool) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = _wal(conn)
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
    if quick_check:
        try:
            found = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            raise _damaged(path, str(exc)) from exc
        if found != ["ok"]:
            raise _damaged(path, "; ".join(found))
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


def _wal(conn: sqlite3.Connection) -> str:
    """Put the file in WAL mode; its mode. Two processes opening a new file at once (workers
    of one wave started together) can find it locked while the other one switches it, and
    SQLite does not wait for that lock with the busy timeout: wait here, as long."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


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
        statement = ""
        for piece in _MIGRATIONS[step].split(";"):
            statement += piece + ";"
            if sqlite3.complete_statement(statement):  # a trigger's body holds ``;`` too
                if statement.strip(" \n;"):
                    conn.execute(statement)
                statement = ""
    conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
