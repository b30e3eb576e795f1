"""The PostgreSQL journal: one database shared by every worker, writes batched per loop turn.

Same protocol, same semantics
    :class:`PostgresJournal` keeps the :class:`~sms_flow.journal.Journal` contract of
    :class:`~sms_flow.journal_sqlite.SqliteJournal` (the contract tests run against both):
    write-ahead intents and their outcomes, open intents, history (filtered and read by
    keyset pages in SQL), wave membership by endpoint, a wave's status (counted in SQL), runs
    with leases, claims with fencing tokens. Where the SQLite journal is one file on one machine,
    this one is a database that workers on several machines share, and PostgreSQL does the
    coordination: row locks, and its own clock.

Group commit
    ``begin``, ``record`` and ``settle`` are queued; one writer task takes everything queued
    (everything submitted in one turn of the event loop, and whatever came while the last
    batch was being written) and writes it with one statement, so in one transaction and one
    round trip (:data:`_BATCH`): the fenced intents' claims read (each by its key) and
    share-locked, the waves first named, the entries as one multi-row ``INSERT``, the
    outcomes as one ``UPDATE ... FROM unnest(...)``. Under load one commit serves many
    transitions. Each statement is planned for the values it runs with (:data:`_SESSION`),
    so its cost follows the batch, not the size of the journal. A batch
    that fails is replayed one write at a time, each in a statement of its own, so that a
    bad write (a settle of an entry already settled, a text PostgreSQL cannot store) fails
    for its caller alone. Reads and the other operations wait for the writes queued before
    them, so a caller reads what it wrote.

The database's clock
    Leases are stamped and compared with the database's ``clock_timestamp()`` (as unix
    seconds), never a worker's, so workers with skewed clocks agree on who is live. An
    entry's ``created_at`` and ``settled_at`` are the writing worker's :func:`time.time`,
    as in every back end: they tell a person when, they decide nothing.

Claims made together
    Claims queued in one turn of the event loop (a wave's workers each claiming the source
    it is about to push, say) are made together: those of one run and endpoint (and the same
    ``steal`` and ``reason``) in one transaction, each caller getting the answer for its own
    sources. A source two callers of one run ask for at once is granted to both alike.

Fencing and row locks
    A fenced ``begin`` share-locks its source's claim row (``FOR SHARE``) while it checks the
    run holds it and is live and inserts the intent; a claim that takes the row over locks
    it ``FOR UPDATE``, so a takeover is ordered after the intent, and the taker finds the
    intent open and reads it back. A run's start takes a transaction-level advisory lock on
    its kind, name and endpoint, so two exclusive starts cannot both succeed. Fencing tokens
    come from one sequence.

A lost connection
    A call that loses its connection (the database restarted, the network dropped, or a
    statement went unanswered for 30 s) is retried on a new one, with growing pauses, for
    up to ``reconnect_for`` seconds (60 by default), then fails with a
    :class:`~sms_flow.errors.JournalError`. Nothing is lost or
    written twice: every entry carries a key made by this process (``write_key``), and every
    outcome another (``settle_key``), so a retry after a commit whose answer was lost finds
    what it already wrote instead of writing it again.

Schema
    The tables live in the PostgreSQL schema ``sms_flow``, created on first use. Table
    ``sms_flow.meta`` holds ``schema_version``; opening a journal of an older version
    migrates it (:data:`_MIGRATIONS`, in one transaction, under an advisory lock), and a
    newer one is refused: that database belongs to a newer sms-flow. Version 2 keys a wave's
    members by endpoint (as the SQLite journal's version 3). Version 4 keeps each source's
    latest entry in ``sms_flow.latest``, written by triggers on the entries in the same
    transaction, which :meth:`PostgresJournal.census` and :meth:`PostgresJournal.wave_status`
    read instead of grouping the entries (a copy rebuilds it as it writes the entries).

Copying
    :meth:`PostgresJournal.dump` reads tables in one read-only ``REPEATABLE READ``
    transaction (one snapshot) through cursors, a batch at a time; :meth:`PostgresJournal.loading`
    writes rows with ``COPY`` (``copy_records_to_table``) in one transaction, its tables
    locked against other writers, committed at the end or rolled back whole (``sms-flow
    journal copy``). Ids are copied as they are, and the identity sequences set past the
    largest; the fencing sequence is set to the last token copied, never lowered. An entry's
    ``write_key`` is made anew (it only serves the retries of the process that wrote it),
    ``settle_key`` left empty.

Secrets
    The DSN's password never appears in a repr, a message or a log line: the journal shows
    the DSN without it (:func:`redact_dsn`), and scrubs it from any database error it wraps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

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
    is_dsn,
    not_live,
    process_alive,
    redact_dsn,
    source_id_list,
)
from sms_flow.log import get_logger

try:
    import asyncpg  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - asyncpg is installed wherever tests run
    raise ConfigError(
        "a PostgreSQL journal needs the asyncpg package, which is not installed: "
        "pip install 'sms-flow[postgres]' (or give --journal the path of an SQLite file)"
    ) from exc

__all__ = ["SCHEMA_VERSION", "PostgresJournal", "PostgresLoader", "redact_dsn"]

_log = get_logger("sms_flow.journal")

_T = TypeVar("_T")

_UNANSWERED: Final = 30.0
"""Seconds a statement may go unanswered before its connection counts as lost (a network
that drops packets without a word); the call is then retried like any other."""

MAX_BATCH: Final = 4096
"""The most writes the writer takes into one transaction."""

_SESSION: Final = {"plan_cache_mode": "force_custom_plan"}
"""Settings of the journal's connections. Each statement is planned for the values it is
run with: asyncpg prepares a statement once a connection, and a generic plan made while the
tables were small (a new journal) stays with the connection, so that one batch's settles
joined the whole entries table by a sequential scan, a cost growing with the journal
(measured, batches of 16 intents and 16 outcomes at 40,000 entries: 94 µs of the server's
CPU a write planned each time, 205 µs with the generic plan). The batches and claims carry
arrays whose sizes vary from call to call too. ``plan_cache_mode`` needs PostgreSQL 12."""

_LOCK_SPACE: Final = 0x534D5346  # "SMSF": the first key of this journal's advisory locks
_SCHEMA_LOCK: Final = 0  # the second key of the schema's advisory lock

# --- schema --------------------------------------------------------------------------------

_SCHEMA_1: Final = """
CREATE SCHEMA IF NOT EXISTS sms_flow;
CREATE TABLE sms_flow.meta (
    key          text PRIMARY KEY,
    value        text NOT NULL
);
CREATE TABLE sms_flow.entries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id    text             NOT NULL,
    trigger      text,
    from_state   text             NOT NULL,
    to_state     text             NOT NULL,
    actor        text             NOT NULL,
    reason       text,
    forced       boolean          NOT NULL,
    wave         text,
    outcome      text             NOT NULL,
    request_id   text,
    attempts     integer          NOT NULL,
    error        text,
    created_at   double precision NOT NULL,
    settled_at   double precision,
    endpoint     text,
    project      text,
    run_id       text,
    fence        bigint,
    write_key    uuid             NOT NULL UNIQUE,
    settle_key   uuid
);
CREATE INDEX entries_source ON sms_flow.entries (source_id, id);
CREATE INDEX entries_wave ON sms_flow.entries (wave, id) WHERE wave IS NOT NULL;
CREATE INDEX entries_open ON sms_flow.entries (id) WHERE outcome IN ('pending', 'unverified');
CREATE TABLE sms_flow.waves (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE
);
CREATE TABLE sms_flow.wave_members (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wave         text NOT NULL,
    source_id    text NOT NULL,
    CONSTRAINT wave_members_wave_source_id_key UNIQUE (wave, source_id)
);
CREATE TABLE sms_flow.runs (
    run_id       text             PRIMARY KEY,
    kind         text             NOT NULL,
    name         text,
    endpoint     text,
    project      text,
    host         text             NOT NULL,
    pid          integer          NOT NULL,
    actor        text             NOT NULL,
    exclusive    boolean          NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    expires_at   double precision NOT NULL,
    ended_at     double precision,
    end_reason   text
);
CREATE INDEX runs_open ON sms_flow.runs (kind, name, endpoint) WHERE ended_at IS NULL;
CREATE TABLE sms_flow.claims (
    endpoint     text             NOT NULL,
    source_id    text             NOT NULL,
    run_id       text             NOT NULL,
    token        bigint           NOT NULL,
    claimed_at   double precision NOT NULL,
    reason       text,
    taken_from   text,
    PRIMARY KEY (endpoint, source_id)
);
CREATE INDEX claims_run ON sms_flow.claims (run_id);
CREATE SEQUENCE sms_flow.fencing;
CREATE FUNCTION sms_flow.settled(written bigint, given bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF written <> given THEN
        RAISE EXCEPTION 'sms-flow: % of % outcomes found their entry open', written, given
            USING ERRCODE = 'SMSF1';
    END IF;
    RETURN written;
END
$$;
"""

_SCHEMA_2: Final = """
ALTER TABLE sms_flow.wave_members ADD COLUMN endpoint text NOT NULL DEFAULT '';
UPDATE sms_flow.wave_members AS m SET endpoint = last.endpoint
    FROM (SELECT DISTINCT ON (wave) wave, endpoint FROM sms_flow.entries
          WHERE wave IS NOT NULL AND endpoint IS NOT NULL ORDER BY wave, id DESC) AS last
    WHERE last.wave = m.wave;
ALTER TABLE sms_flow.wave_members ALTER COLUMN endpoint DROP DEFAULT;
ALTER TABLE sms_flow.wave_members DROP CONSTRAINT wave_members_wave_source_id_key;
ALTER TABLE sms_flow.wave_members
    ADD CONSTRAINT wave_members_key UNIQUE (wave, endpoint, source_id);
"""
# Version 2 keys a wave's members by endpoint too, as the SQLite journal's version 3 does:
# the sources of a wave run on one endpoint are never taken for its sources on another.
# Version 1 members get the endpoint of their wave's last entry that names one, else ''
# (unknown: the next run of the wave adopts them).

_SCHEMA_3: Final = """
CREATE TABLE sms_flow.wave_sessions (
    session_id   text             PRIMARY KEY,
    kind         text             NOT NULL,
    name         text             NOT NULL,
    endpoint     text             NOT NULL,
    started_at   double precision NOT NULL,
    rate_at      double precision NOT NULL
);
CREATE INDEX wave_sessions_key ON sms_flow.wave_sessions (name, endpoint, started_at);
CREATE TABLE sms_flow.wave_workers (
    run_id       text             PRIMARY KEY,
    session_id   text             NOT NULL
);
CREATE INDEX wave_workers_session ON sms_flow.wave_workers (session_id);
CREATE TABLE sms_flow.wave_done (
    session_id   text             NOT NULL,
    source_id    text             NOT NULL,
    outcome      text             NOT NULL,
    run_id       text             NOT NULL,
    done_at      double precision NOT NULL,
    PRIMARY KEY (session_id, source_id)
);
"""
# Version 3 adds the sessions of joined workers (``run --join``), as the SQLite journal's
# version 4 does: a session is the workers of one wave on one endpoint that ran together;
# ``wave_done`` the members they finished in it; ``rate_at`` the session's shared
# request-rate limit (the time, on the database's clock, its next request may go).

_SCHEMA_4: Final = """
CREATE TABLE sms_flow.latest (
    source_id    text             PRIMARY KEY,
    last_id      bigint           NOT NULL,
    outcome      text             NOT NULL,
    wave         text,
    endpoint     text,
    from_state   text             NOT NULL,
    created_at   double precision NOT NULL,
    at_id        bigint,
    at_state     text,
    at_since     double precision,
    state        text GENERATED ALWAYS AS (coalesce(at_state, from_state)) STORED,
    since        double precision GENERATED ALWAYS AS (coalesce(at_since, created_at)) STORED
);
CREATE FUNCTION sms_flow.latest_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    seen boolean := NEW.outcome IN ('applied', 'observed');
BEGIN
    INSERT INTO sms_flow.latest AS l (source_id, last_id, outcome, wave, endpoint, from_state,
        created_at, at_id, at_state, at_since)
    VALUES (NEW.source_id, NEW.id, NEW.outcome, NEW.wave, NEW.endpoint, NEW.from_state,
        NEW.created_at, CASE WHEN seen THEN NEW.id END, CASE WHEN seen THEN NEW.to_state END,
        CASE WHEN seen THEN coalesce(NEW.settled_at, NEW.created_at) END)
    ON CONFLICT (source_id) DO UPDATE SET
        last_id = greatest(l.last_id, excluded.last_id),
        outcome = CASE WHEN excluded.last_id > l.last_id THEN excluded.outcome ELSE l.outcome END,
        wave = CASE WHEN excluded.last_id > l.last_id THEN excluded.wave ELSE l.wave END,
        endpoint = CASE WHEN excluded.last_id > l.last_id
            THEN excluded.endpoint ELSE l.endpoint END,
        from_state = CASE WHEN excluded.last_id > l.last_id
            THEN excluded.from_state ELSE l.from_state END,
        created_at = CASE WHEN excluded.last_id > l.last_id
            THEN excluded.created_at ELSE l.created_at END,
        at_id = CASE WHEN excluded.at_id > coalesce(l.at_id, 0)
            THEN excluded.at_id ELSE l.at_id END,
        at_state = CASE WHEN excluded.at_id > coalesce(l.at_id, 0)
            THEN excluded.at_state ELSE l.at_state END,
        at_since = CASE WHEN excluded.at_id > coalesce(l.at_id, 0)
            THEN excluded.at_since ELSE l.at_since END;
    RETURN NULL;
END
$$;
CREATE TRIGGER entries_latest_insert AFTER INSERT ON sms_flow.entries
    FOR EACH ROW EXECUTE FUNCTION sms_flow.latest_insert();
CREATE FUNCTION sms_flow.latest_settle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    seen boolean := NEW.outcome IN ('applied', 'observed');
BEGIN
    UPDATE sms_flow.latest SET
        outcome = CASE WHEN last_id = NEW.id THEN NEW.outcome ELSE outcome END,
        at_id = CASE WHEN seen AND NEW.id > coalesce(at_id, 0) THEN NEW.id ELSE at_id END,
        at_state = CASE WHEN seen AND NEW.id > coalesce(at_id, 0)
            THEN NEW.to_state ELSE at_state END,
        at_since = CASE WHEN seen AND NEW.id > coalesce(at_id, 0)
            THEN coalesce(NEW.settled_at, NEW.created_at) ELSE at_since END
    WHERE source_id = NEW.source_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER entries_latest_settle AFTER UPDATE OF outcome ON sms_flow.entries
    FOR EACH ROW WHEN (NEW.outcome IS DISTINCT FROM OLD.outcome)
    EXECUTE FUNCTION sms_flow.latest_settle();
CREATE FUNCTION sms_flow.latest_rewritten() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sms_flow.latest AS l SET
        from_state = (SELECT e.from_state FROM sms_flow.entries AS e WHERE e.id = l.last_id),
        created_at = (SELECT e.created_at FROM sms_flow.entries AS e WHERE e.id = l.last_id),
        at_state = (SELECT e.to_state FROM sms_flow.entries AS e WHERE e.id = l.at_id),
        at_since = (SELECT coalesce(e.settled_at, e.created_at) FROM sms_flow.entries AS e
            WHERE e.id = l.at_id)
    WHERE l.source_id = NEW.source_id AND NEW.id IN (l.last_id, l.at_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER entries_latest_rewritten
    AFTER UPDATE OF created_at, settled_at, from_state, to_state ON sms_flow.entries
    FOR EACH ROW WHEN (NEW.outcome = OLD.outcome AND (NEW.created_at, NEW.settled_at,
        NEW.from_state, NEW.to_state) IS DISTINCT FROM (OLD.created_at, OLD.settled_at,
        OLD.from_state, OLD.to_state))
    EXECUTE FUNCTION sms_flow.latest_rewritten();
INSERT INTO sms_flow.latest (source_id, last_id, outcome, wave, endpoint, from_state,
    created_at, at_id, at_state, at_since)
SELECT s.source_id, s.last_id, l.outcome, l.wave, l.endpoint, l.from_state, l.created_at,
    a.id, a.to_state, coalesce(a.settled_at, a.created_at)
FROM (SELECT source_id, max(id) AS last_id,
          max(id) FILTER (WHERE outcome IN ('applied', 'observed')) AS at_id
      FROM sms_flow.entries GROUP BY source_id) AS s
JOIN sms_flow.entries AS l ON l.id = s.last_id
LEFT JOIN sms_flow.entries AS a ON a.id = s.at_id;
CREATE INDEX latest_state ON sms_flow.latest (state, outcome, since);
CREATE INDEX latest_since ON sms_flow.latest (since, source_id) INCLUDE (state);
CREATE INDEX latest_failing ON sms_flow.latest (last_id)
    WHERE outcome IN ('failed', 'ignored', 'conflict', 'unverified');
CREATE INDEX wave_members_source ON sms_flow.wave_members (source_id, wave);
CREATE INDEX entries_wave_time ON sms_flow.entries (wave, created_at) WHERE wave IS NOT NULL;
"""
# Version 4 keeps each source's latest entry in ``sms_flow.latest``, as the SQLite journal's
# version 5 does: one row a source, written by triggers on ``sms_flow.entries`` in the
# transaction of the entry (every insert, the batch statement's and a copy's, and every
# change of outcome; an entry's times or states rewritten in place, by hand, are copied
# again), read by the census and a wave's status instead of grouping the entries. Existing
# entries fill it on migration. No counts are kept beside it (as SQLite's are): rows of
# counts that every write updates would serialise the writers of several processes.

_MIGRATIONS: Final[tuple[str, ...]] = (_SCHEMA_1, _SCHEMA_2, _SCHEMA_3, _SCHEMA_4)
"""``_MIGRATIONS[v]`` takes a journal from schema version ``v`` to ``v + 1`` (version 0: no
``sms_flow.meta`` table yet)."""

SCHEMA_VERSION: Final = len(_MIGRATIONS)
"""The schema this module writes, stored in ``sms_flow.meta`` as ``schema_version``."""

# --- statements ----------------------------------------------------------------------------

_NOW: Final = "extract(epoch FROM clock_timestamp())::float8"
"""The database's clock, as unix seconds."""

_COLUMNS: Final = (
    "id, source_id, trigger, from_state, to_state, actor, reason, forced, wave, "
    "outcome, request_id, attempts, error, created_at, settled_at, endpoint, project, run_id, "
    "fence"
)
_RUN_COLUMNS: Final = (
    "run_id, kind, name, endpoint, project, host, pid, actor, exclusive, started_at, "
    "heartbeat_at, expires_at, ended_at, end_reason"
)
_ADD_WAVES: Final = (
    "INSERT INTO sms_flow.waves (name) SELECT name FROM unnest($1::text[]) WITH ORDINALITY "
    "AS w(name, ord) ORDER BY ord ON CONFLICT (name) DO NOTHING"
)
# The claim of an entry adopted, share-locked until the entry is the run's: a takeover waits.
_CLAIMS_OF: Final = (
    "SELECT c.endpoint, c.source_id, c.run_id, c.token, c.reason, "
    f"(r.ended_at IS NULL AND r.expires_at > {_NOW}) AS live "
    "FROM sms_flow.claims AS c "
    "JOIN unnest($1::text[], $2::text[]) AS k(endpoint, source_id) "
    "ON c.endpoint = k.endpoint AND c.source_id = k.source_id "
    "LEFT JOIN sms_flow.runs AS r ON r.run_id = c.run_id "
    "ORDER BY c.endpoint, c.source_id FOR SHARE OF c"
)
# The claim of one source as it is now, unlocked: to say why an intent was refused.
_CLAIM_NOW: Final = (
    "SELECT run_id, token, reason FROM sms_flow.claims WHERE endpoint = $1 AND source_id = $2"
)
# A whole batch in one statement, so one round trip: each fenced intent's claim read by its
# key (a lateral lookup: never a scan of the run's claims) and share-locked, used only when
# its run holds it while live; the waves first named, the entries
# (a fenced one only with its claim's token), the outcomes. A statement is atomic: when an
# outcome finds its entry not open, sms_flow.settled raises and nothing of it is written.
# It is idempotent, for a retry after a lost connection: an entry whose key is there already
# is not inserted again (its id is looked up), and an outcome whose key is on its entry
# already is written again, the same.
_BATCH: Final = (
    "WITH i AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::text[], $6::text[], $7::bool[], $8::text[], $9::text[], $10::text[], $11::int[], "
    "$12::text[], $13::float8[], $14::float8[], $15::text[], $16::text[], $17::text[], "
    "$18::int8[], $19::uuid[], $20::bool[]) WITH ORDINALITY AS i(source_id, trigger, "
    "from_state, to_state, actor, reason, forced, wave, outcome, request_id, attempts, error, "
    "created_at, settled_at, endpoint, project, run_id, fence, write_key, fenced, ord)), "
    "c AS (SELECT k.endpoint, k.source_id, k.run_id, l.token "
    "FROM (SELECT DISTINCT endpoint, source_id, run_id FROM i WHERE fenced) AS k "
    "JOIN sms_flow.runs AS r ON r.run_id = k.run_id "
    "CROSS JOIN LATERAL (SELECT l.run_id, l.token FROM sms_flow.claims AS l "
    "WHERE l.endpoint = k.endpoint AND l.source_id = k.source_id FOR SHARE) AS l "
    f"WHERE l.run_id = k.run_id AND r.ended_at IS NULL AND r.expires_at > {_NOW}), "
    "w AS (INSERT INTO sms_flow.waves (name) SELECT name FROM unnest($21::text[]) "
    "WITH ORDINALITY AS w(name, ord) ORDER BY ord ON CONFLICT (name) DO NOTHING), "
    "ins AS (INSERT INTO sms_flow.entries (source_id, trigger, from_state, to_state, actor, "
    "reason, forced, wave, outcome, request_id, attempts, error, created_at, settled_at, "
    "endpoint, project, run_id, fence, write_key) "
    "SELECT i.source_id, i.trigger, i.from_state, i.to_state, i.actor, i.reason, i.forced, "
    "i.wave, i.outcome, i.request_id, i.attempts, i.error, i.created_at, i.settled_at, "
    "i.endpoint, i.project, i.run_id, c.token, i.write_key FROM i LEFT JOIN c "
    "ON i.fenced AND c.endpoint = i.endpoint AND c.source_id = i.source_id "
    "AND c.run_id = i.run_id WHERE NOT i.fenced OR c.token IS NOT NULL ORDER BY i.ord "
    "ON CONFLICT (write_key) DO NOTHING RETURNING id, write_key), "
    "s AS (UPDATE sms_flow.entries AS e SET outcome = s.outcome, request_id = s.request_id, "
    "attempts = s.attempts, error = s.error, settled_at = s.settled_at, "
    "settle_key = s.settle_key "
    "FROM unnest($22::int8[], $23::text[], $24::text[], $25::int[], $26::text[], "
    "$27::float8[], $28::uuid[]) AS s(id, outcome, request_id, attempts, error, settled_at, "
    "settle_key) WHERE e.id = s.id AND (e.outcome = 'pending' "
    "OR (e.outcome = 'unverified' AND s.outcome <> 'unverified') "
    "OR e.settle_key = s.settle_key) RETURNING e.id) "
    "SELECT id, write_key FROM ins UNION ALL "
    "SELECT sms_flow.settled(count(*), cardinality($22::int8[])), NULL FROM s"
)
_NOT_OPEN: Final = "SMSF1"
"""The SQLSTATE sms_flow.settled raises."""

_ENTRY_FIELDS: Final = len(dataclasses.fields(Entry))
_RUN_FIELDS: Final = len(dataclasses.fields(Run))


def _entry(row: Any) -> Entry:
    values = list(row.values())[:_ENTRY_FIELDS]
    values[9] = Outcome(values[9])
    return Entry(*values)


def _run(row: Any) -> Run:
    return Run(*list(row.values())[:_RUN_FIELDS])


_HistoryWhere = tuple[str, list[Any]]
"""The filters of a history read: `` AND ...`` conditions and their parameters ($1...)."""


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
        params.append(value)
        sql += f" AND {column} {op} ${len(params)}"
    if outcomes is not None:
        params.append([Outcome(o).value for o in outcomes])
        sql += f" AND outcome = ANY(${len(params)}::text[])"
    return sql, params


_FAILING: Final = "('failed', 'ignored', 'conflict', 'unverified')"


# --- the DSN -------------------------------------------------------------------------------


def _passwords(dsn: str) -> list[str]:
    """The DSN's password as written in it and as decoded (to scrub both)."""
    found: list[str] = []
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [value for key, value in parse_qsl(parts.query) if key == "password" and value]
    except ValueError:
        pass
    return sorted(set(found), key=len, reverse=True)


# --- errors --------------------------------------------------------------------------------

_LOST: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
"""Errors after which the same call is retried on a (new) connection."""
_CONTENDED: Final = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
"""Of those, the ones that mean another worker's transaction came in the way (not logged)."""


def _lost(exc: BaseException) -> bool:
    if isinstance(exc, _LOST) or _busy(exc):
        return True
    # asyncpg's own word for a connection that went away under it
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def _busy(exc: BaseException) -> bool:
    """A pooled connection given back with an operation still on it (one cut off by a
    restart or a cancelled call: the pool's reset sends nothing, :func:`_keep_session`, so
    it does not find out): asyncpg refuses to start another before sending anything."""
    return isinstance(exc, asyncpg.exceptions.InternalClientError) and "in progress" in str(exc)


class _Replay(Exception):
    """A batch must be written again one write at a time (one of them is refused)."""


# --- queued writes -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Write:
    """One queued write: an entry to insert, an outcome to write, or a barrier.

    ``row`` is an entry's values (the columns of :data:`_BATCH`'s entries, ``fence`` left
    ``None``: the statement takes the claim's); ``settlement`` an outcome's (id, outcome,
    request id, attempts, error, settled at, key). A barrier
    writes nothing: it is resolved once every write queued before it is done.
    """

    kind: Literal["insert", "settle", "barrier"]
    future: asyncio.Future[Any] | None
    row: list[Any] | None = None
    fenced: bool = False
    settlement: tuple[Any, ...] | None = None


_SOURCE: Final = 0
_WAVE: Final = 7
_ENDPOINT: Final = 14
_RUN: Final = 16
_KEY: Final = 18


def _row(
    intent: Intent,
    outcome: Outcome,
    request_id: str | None,
    attempts: int,
    error: str | None,
    created_at: float,
    settled_at: float | None,
) -> list[Any]:
    return [
        intent.source_id,
        intent.trigger,
        intent.from_state,
        intent.to_state,
        intent.actor,
        intent.reason,
        bool(intent.forced),
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
        uuid.uuid4(),
    ]


# --- fencing -------------------------------------------------------------------------------


async def _run_of(conn: Any, run_id: str) -> Run | None:
    row = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM sms_flow.runs WHERE run_id = $1", run_id)
    return None if row is None else _run(row)


async def _fence_error(
    conn: Any, run_id: str, endpoint: str | None, source_id: str, claim: Any, now: float
) -> OwnedError:
    """Why ``run_id`` may not write for the source, given its claim row (``None``: none)."""
    if endpoint is None:
        return ClaimLostError(
            f"source {source_id}: an intent of run {run_id[:8]} names no endpoint; a fenced "
            "intent needs the endpoint its claim is on",
            source_id=source_id,
        )
    if claim is not None and claim["run_id"] == run_id:
        run = await _run_of(conn, run_id)
        return LeaseLostError(
            f"run {run_id[:8]} is no longer live ("
            + (run.describe(now) if run is not None else "unknown to this journal")
            + f"); nothing was written or pushed for source {source_id}; run it again to resume",
            owner=run,
        )
    holder = await _run_of(conn, claim["run_id"]) if claim is not None else None
    reason = claim["reason"] if claim is not None else None
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


def _dead(run: Run, expired: bool) -> str | None:
    """Why a run not ended is dead: its lease expired (as the database found), or, on this
    host, its process is gone; ``None`` while it is live."""
    if expired:
        return "dead: lease expired"
    if run.host == HOST and not process_alive(run.pid):
        return "dead: process gone"
    return None


async def _mark_dead(conn: Any, run: Run, now: float, reason: str) -> Run:
    await conn.execute(
        "UPDATE sms_flow.runs SET ended_at = $1, end_reason = $2 "
        "WHERE run_id = $3 AND ended_at IS NULL",
        now,
        reason,
        run.run_id,
    )
    return dataclasses.replace(run, ended_at=now, end_reason=reason)


async def _clock(conn: Any) -> float:
    now: float = await conn.fetchval(f"SELECT {_NOW}")
    return now


def _check_lease(lease: float) -> None:
    if not isinstance(lease, int | float) or isinstance(lease, bool) or not 0 < lease < 86_400:
        raise JournalError(f"a lease is {lease!r}; give seconds above 0 and under a day")


async def _keep_session(conn: Any) -> None:
    """The pool's reset of a connection given back: nothing to send.

    asyncpg's default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``,
    a round trip on every release (one a batch). This journal leaves no session state to
    undo: its advisory locks are transaction-level, it opens no cursor outside a
    transaction, listens to nothing and sets nothing; and asyncpg rolls back a transaction
    left open (a call cancelled inside it) before calling this.
    """


def _raised(value: Any) -> Any:
    if isinstance(value, Exception):
        raise value
    return value


# --- copying (sms-flow journal copy) -------------------------------------------------------

_CopySpec = tuple[str, Sequence[str], Sequence[str]]
"""A table to copy: its name, the columns carried, and the columns its rows are read in order
of (none: any order). The list of them is :data:`sms_flow.journals.COPIED`."""

_COUNTER: Final = "fencing"
"""The fencing sequence, copied as a table of one row and one column, ``last``: the last token
granted (0: none yet)."""
_COUNTER_LAST: Final = "CASE WHEN is_called THEN last_value ELSE 0 END"
_MADE_ON_LOAD: Final[dict[str, dict[str, Callable[[], Any]]]] = {
    "entries": {"write_key": lambda: os.urandom(16).hex()},  # a random key, as a uuid's hex
}
"""Columns a copy does not carry but this journal needs (``NOT NULL``): made anew per row."""


def _named(*names: str) -> None:
    for name in names:
        if not name.isidentifier():
            raise JournalError(f"cannot copy {name!r}: not a table or column name")


def _select(table: str, columns: Sequence[str], order: Sequence[str]) -> str:
    _named(table, *columns, *order)
    if table == _COUNTER:
        return f"SELECT {_COUNTER_LAST} AS last FROM sms_flow.{_COUNTER}"
    sql = f"SELECT {', '.join(columns)} FROM sms_flow.{table}"
    return sql + (f" ORDER BY {', '.join(order)}" if order else "")


async def _sizes(conn: Any, tables: Sequence[str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for table in tables:
        _named(table)
        if table == _COUNTER:
            sizes[table] = int(await conn.fetchval(_select(_COUNTER, ("last",), ())))
        else:
            sizes[table] = int(await conn.fetchval(f"SELECT count(*) FROM sms_flow.{table}"))
    return sizes


class PostgresLoader:
    """Rows written into a PostgreSQL journal in one transaction
    (:meth:`PostgresJournal.loading`)."""

    __slots__ = ("_conn", "_counter", "_journal", "_types")

    def __init__(self, conn: Any, journal: PostgresJournal) -> None:
        self._conn = conn
        self._journal = journal
        self._types: dict[str, dict[str, str]] = {}
        self._counter = 0
        """The fencing token copied, set by :meth:`finish`."""

    async def sizes(self, tables: Sequence[str]) -> dict[str, int]:
        """The rows of each table in the transaction (of ``fencing``: its last token)."""
        try:
            return await _sizes(self._conn, tables)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._journal._error("count the rows of the copy", exc) from None

    async def load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (values of ``columns``, ids included) into ``table`` with ``COPY``;
        into ``fencing``: the token :meth:`finish` sets the sequence to."""
        try:
            await self._load(table, columns, rows)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._journal._error(
                f"copy rows into sms_flow.{table} (nothing of the copy is written)", exc
            ) from None

    async def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        _named(table, *columns)
        conn = self._conn
        if table == _COUNTER:  # set by finish(): a sequence is not rolled back with the rest
            self._counter = max([self._counter, *(int(last) for (last,) in rows)])
            return
        if table not in self._types:
            self._types[table] = {
                r["column_name"]: r["data_type"]
                for r in await conn.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'sms_flow' AND table_name = $1",
                    table,
                )
            }
        # SQLite keeps booleans as integers: the one type COPY does not take as it comes.
        flags = [i for i, c in enumerate(columns) if self._types[table].get(c) == "boolean"]
        made = _MADE_ON_LOAD.get(table, {})
        extra = [name for name in made if name not in columns]
        records: list[Any] = rows
        if flags or extra:
            records = []
            for row in rows:
                record = list(row)
                for i in flags:
                    if record[i] is not None:
                        record[i] = bool(record[i])
                record.extend(made[name]() for name in extra)
                records.append(record)
        await conn.copy_records_to_table(
            table, records=records, columns=[*columns, *extra], schema_name="sms_flow"
        )

    async def finish(self) -> None:
        """Set the fencing sequence to the token copied (never lowering it) and every
        identity sequence past the largest id copied: last before the commit, since a
        sequence is not rolled back with the transaction."""
        conn = self._conn
        if self._counter > 0:
            await conn.execute(
                f"SELECT setval('sms_flow.{_COUNTER}', "
                f"greatest($1::int8, (SELECT {_COUNTER_LAST} FROM sms_flow.{_COUNTER})))",
                self._counter,
            )
        for row in await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'sms_flow' AND is_identity = 'YES' ORDER BY table_name"
        ):
            table, column = row["table_name"], row["column_name"]
            _named(table, column)
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('sms_flow.{table}', '{column}'), m) "
                f"FROM (SELECT max({column}) AS m FROM sms_flow.{table}) AS s WHERE m IS NOT NULL"
            )


# --- the journal ---------------------------------------------------------------------------


class PostgresJournal(Journal):
    """A journal in a PostgreSQL database, shared by every worker that opens the same DSN.

    ``dsn`` is a ``postgresql://user:password@host:port/database`` URL (libpq's variables
    such as ``PGPASSWORD`` fill in what it leaves out). ``pool_size`` bounds the connections
    this journal opens; ``reconnect_for`` is how many seconds a call keeps retrying after
    losing its connection before it fails; ``connect_timeout`` bounds each attempt to
    connect.

    :meth:`open` connects and creates or migrates the schema: an unreachable database or
    refused credentials raise :class:`~sms_flow.errors.ConfigError`, and so does a schema of
    a newer sms-flow. An instance is opened once; after :meth:`close` every call raises
    :class:`~sms_flow.errors.JournalError`. A caller cancelled while awaiting ``begin`` does
    not withdraw the intent: it may still be committed, and is then listed open.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        reconnect_for: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if not is_dsn(dsn):
            shown = redact_dsn(dsn) if isinstance(dsn, str) else repr(dsn)
            raise ConfigError(
                f"not a PostgreSQL DSN: {shown}; give postgresql://USER@HOST:PORT/DATABASE "
                "(the password in PGPASSWORD or ~/.pgpass, or in the URL)"
            )
        if not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError(f"a pool of {pool_size!r} connections; give 1 or more")
        self._dsn = dsn
        self._shown = redact_dsn(dsn)
        self._secrets = _passwords(dsn)
        self._pool_size = pool_size
        self._reconnect_for = float(reconnect_for)
        self._connect_timeout = float(connect_timeout)
        self._state: Literal["new", "opening", "open", "closed"] = "new"
        self._pool: Any = None
        self._queue: list[_Write] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._busy = False
        self._waves_known: set[str] = set()
        self._claims: dict[tuple[str, str, bool, str | None], list[tuple[list[str], Any]]] = {}
        """Claims queued: by run, endpoint, steal and reason, each asker's sources and future."""
        self._claimer: asyncio.Task[None] | None = None
        self._operations = 0
        self._batches = 0
        self._largest_batch = 0
        self._in_flight = 0
        self._batch_seconds = 0.0

    @property
    def location(self) -> str:
        """The DSN without its password."""
        return self._shown

    def __repr__(self) -> str:
        return f"PostgresJournal({self._shown!r})"

    def stats(self) -> JournalStats:
        """Counters since open: writes, batches (transactions), largest batch, in flight."""
        return JournalStats(
            self._operations,
            self._batches,
            self._largest_batch,
            self._in_flight,
            self._batch_seconds,
        )

    def _scrub(self, text: str) -> str:
        text = text.replace(self._dsn, self._shown)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, doing: str, exc: BaseException) -> JournalError:
        error = JournalError(f"journal {self._shown}: could not {doing}: {self._scrub(str(exc))}")
        return error

    async def stored_version(self) -> int:
        """The schema version the database holds now (0: no schema ``sms_flow`` yet), read
        on a connection of its own, without opening or migrating the journal."""
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        except Exception as exc:
            raise ConfigError(
                f"cannot connect to journal {self._shown}: "
                f"{self._scrub(str(exc)) or type(exc).__name__}; check that the database "
                "is up and reachable, and the user, password and database name of the DSN"
            ) from None
        try:
            if await conn.fetchval("SELECT to_regclass('sms_flow.meta')") is None:
                return 0
            found = await conn.fetchval(
                "SELECT value FROM sms_flow.meta WHERE key = 'schema_version'"
            )
            return int(found) if found is not None else 0
        except (asyncpg.PostgresError, OSError) as exc:
            raise self._error("read the schema version", exc) from None
        finally:
            await conn.close()

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise JournalError(f"journal {self._shown} is already {self._state}; open it once")
        self._state = "opening"
        pool = asyncpg.create_pool(
            self._dsn,
            min_size=0,  # no background reconnects while the database is away
            max_size=self._pool_size,
            timeout=self._connect_timeout,
            command_timeout=_UNANSWERED,
            reset=_keep_session,
            server_settings=_SESSION,
        )
        try:
            await pool
            try:
                conn = await pool.acquire()
            except Exception as exc:
                raise ConfigError(
                    f"cannot connect to journal {self._shown}: "
                    f"{self._scrub(str(exc)) or type(exc).__name__}; check that the database "
                    "is up and reachable, and the user, password and database name of the "
                    "DSN (or choose another journal with --journal or SMS_FLOW_JOURNAL)"
                ) from None
            try:
                await self._prepare(conn)
            except (asyncpg.PostgresError, OSError) as exc:
                raise ConfigError(
                    f"journal {self._shown}: could not set up its schema: "
                    f"{self._scrub(str(exc))}; the user needs the right to create the schema "
                    "sms_flow in that database (or one made for it beforehand)"
                ) from None
            finally:
                await pool.release(conn)
        except BaseException:
            await pool.close()
            self._state = "new"
            raise
        self._pool = pool
        self._writer = asyncio.create_task(self._write_loop(), name=f"sms-flow-journal:{self}")
        self._state = "open"

    async def _prepare(self, conn: Any) -> None:
        """Create or migrate the schema; refuse one of a newer sms-flow."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_SPACE, _SCHEMA_LOCK)
            version = 0
            if await conn.fetchval("SELECT to_regclass('sms_flow.meta')") is not None:
                found = await conn.fetchval(
                    "SELECT value FROM sms_flow.meta WHERE key = 'schema_version'"
                )
                version = int(found) if found is not None else 0
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"journal {self._shown} has schema version {version}, newer than this "
                    f"sms-flow reads (up to {SCHEMA_VERSION}); upgrade sms-flow, or use "
                    "another journal"
                )
            if version < SCHEMA_VERSION:
                for step in range(version, SCHEMA_VERSION):
                    await conn.execute(_MIGRATIONS[step])
                await conn.execute(
                    "INSERT INTO sms_flow.meta (key, value) VALUES ('schema_version', $1) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    str(SCHEMA_VERSION),
                )

    async def close(self) -> None:
        if self._state != "open":
            return
        self._state = "closed"
        self._wake.set()
        if self._writer is not None:
            await self._writer  # finishes every queued write first
        if self._claimer is not None:
            await self._claimer  # and answers every claim asked before
        await self._pool.close()

    def _live(self) -> None:
        if self._state == "closed":
            raise JournalError(
                f"journal {self._shown} is closed; open a new PostgresJournal to use it again"
            )
        if self._state != "open":
            raise JournalError(
                f"journal {self._shown} is not open; use 'async with journal:' or await open()"
            )

    # --- the writer --------------------------------------------------------------------

    def _submit(self, write: _Write) -> None:
        self._live()
        self._queue.append(write)
        self._wake.set()

    async def _await(self, write: _Write) -> Any:
        self._submit(write)
        assert write.future is not None
        return _raised(await write.future)

    async def _barrier(self) -> None:
        """Wait until every write queued so far is written (at once when none is)."""
        self._live()
        if self._queue or self._busy:
            await self._await(_Write("barrier", asyncio.get_running_loop().create_future()))

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                writes = [w for w in batch if w.kind != "barrier"]
                self._busy = True
                self._in_flight = len(writes)
                began = time.perf_counter()
                try:
                    if writes:
                        await self._write(writes)
                finally:
                    self._busy = False
                    self._in_flight = 0
                    self._batch_seconds += time.perf_counter() - began
                for barrier in batch:
                    if barrier.kind == "barrier":
                        _resolve(barrier, None)
            if self._state == "closed":
                return

    async def _write(self, writes: list[_Write]) -> None:
        """Write a batch in one transaction; replay it write by write when one is refused."""
        self._operations += len(writes)
        self._batches += 1
        self._largest_batch = max(self._largest_batch, len(writes))
        try:
            results = await self._retrying(
                "write", lambda conn, retry: self._transaction(conn, writes, retry)
            )
        except Exception as exc:
            if len(writes) == 1 or isinstance(exc, JournalError):  # alone, or no connection
                error = self._wrapped(exc)
                for write in writes:
                    self._deliver(write, error)
                return
            for write in writes:  # each alone, in order: a refusal fails its caller alone
                self._deliver(write, await self._write_alone(write))
            return
        for write, result in zip(writes, results, strict=True):
            self._deliver(write, result)

    async def _write_alone(self, write: _Write) -> Any:
        async def alone(conn: Any, retry: bool) -> list[Any]:
            return await self._transaction(conn, [write], retry)

        try:
            [result] = await self._retrying("write", alone)
        except Exception as exc:
            return self._wrapped(exc)
        return result

    def _wrapped(self, exc: Exception) -> Exception:
        if isinstance(exc, SmsFlowError):
            return exc
        return self._error("write", exc)

    def _deliver(self, write: _Write, result: Any) -> None:
        if write.future is None:
            if isinstance(result, Exception):
                _log.error("journal write failed", error=str(result))
            return
        _resolve(write, result)

    async def _transaction(self, conn: Any, writes: list[_Write], retry: bool) -> list[Any]:
        """Write a batch in one statement (:data:`_BATCH`); one result (an id, None, or an
        error) a write.

        A settle that finds its entry not open raises :class:`_Replay` in a batch of several
        (each write is then replayed alone) and is given its error when alone. The statement
        is idempotent (``retry`` changes nothing): an entry already written under its key is
        found again, an outcome already written under its key counts as written.
        """
        inserts = [w for w in writes if w.kind == "insert"]
        settles = [w for w in writes if w.kind == "settle"]
        results = await self._at_once(conn, inserts, settles)
        for write in inserts:
            row = write.row
            assert row is not None
            if row[_WAVE] is not None and not isinstance(results[id(write)], Exception):
                self._waves_known.add(row[_WAVE])
        return [results[id(w)] for w in writes]

    async def _at_once(
        self, conn: Any, inserts: list[_Write], settles: list[_Write]
    ) -> dict[int, Any]:
        """The batch in one statement; a fenced intent refused gets its error."""
        rows = [w.row for w in inserts if w.row is not None]
        values = [w.settlement for w in settles if w.settlement is not None]
        columns: list[list[Any]] = (
            [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 19
        )
        waves = [
            wave
            for wave in dict.fromkeys(r[_WAVE] for r in rows)
            if wave is not None and wave not in self._waves_known
        ]
        outcomes: list[list[Any]] = (
            [list(column) for column in zip(*values, strict=True)] if values else [[]] * 7
        )
        try:
            written = await conn.fetch(
                _BATCH, *columns, [w.fenced for w in inserts], waves, *outcomes
            )
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) != _NOT_OPEN:
                raise
            if len(settles) > 1 or inserts:
                raise _Replay(str(exc)) from None
            return {id(settles[0]): await self._not_open(conn, values[0])}
        ids = {r["write_key"]: r["id"] for r in written if r["write_key"] is not None}
        missing = [r[_KEY] for r in rows if r[_KEY] not in ids]
        if missing:  # refused (fenced), or written already by an attempt that lost its answer
            ids.update(
                (r["write_key"], r["id"])
                for r in await conn.fetch(
                    "SELECT write_key, id FROM sms_flow.entries WHERE write_key = ANY($1::uuid[])",
                    missing,
                )
            )
        results: dict[int, Any] = {id(w): None for w in settles}
        now: float | None = None
        for write in inserts:
            row = write.row
            assert row is not None
            if row[_KEY] in ids:
                results[id(write)] = ids[row[_KEY]]
                continue
            # refused: its run does not hold the claim (or is not live); say why
            if now is None:
                now = await _clock(conn)
            claim = None
            if row[_ENDPOINT] is not None:
                claim = await conn.fetchrow(_CLAIM_NOW, row[_ENDPOINT], row[_SOURCE])
            results[id(write)] = await _fence_error(
                conn, row[_RUN], row[_ENDPOINT], row[_SOURCE], claim, now
            )
        return results

    @staticmethod
    async def _not_open(conn: Any, settlement: tuple[Any, ...]) -> JournalError:
        entry_id, outcome = settlement[0], settlement[1]
        found = await conn.fetchval("SELECT outcome FROM sms_flow.entries WHERE id = $1", entry_id)
        if found is None:
            return JournalError(
                f"cannot settle journal entry {entry_id}: no such entry; "
                "settle the id that begin() returned"
            )
        if found == "unverified":
            return JournalError(
                f"cannot settle journal entry {entry_id} as 'unverified': it already is; settle "
                "it by what reading the source shows (applied, ignored or conflict)"
            )
        return JournalError(
            f"cannot settle journal entry {entry_id} as {outcome!r}: it is already "
            f"settled as {found!r}; an entry is settled exactly once"
        )

    async def _retrying(self, doing: str, call: Callable[[Any, bool], Awaitable[_T]]) -> _T:
        """``call(conn, retry)`` on a pooled connection, again on a new one while the
        connection is lost, for up to ``reconnect_for`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_for
        pause = 0.05
        retry = False
        while True:
            try:
                async with self._pool.acquire() as conn:
                    try:
                        return await call(conn, retry)
                    except Exception as exc:
                        if _busy(exc):
                            conn.terminate()  # never again: the retry takes another one
                        raise
            except Exception as exc:
                if not _lost(exc):
                    raise
                if loop.time() + pause > deadline:
                    raise JournalError(
                        f"journal {self._shown}: lost the connection to the database and "
                        f"could not {doing} within {self._reconnect_for:g} s: "
                        f"{self._scrub(str(exc)) or type(exc).__name__}; check that the "
                        "database is up; what was not written is not pushed"
                    ) from None
                if not retry and not isinstance(exc, _CONTENDED):
                    _log.warning(
                        "journal connection lost, retrying",
                        journal=self._shown,
                        error=self._scrub(str(exc)) or type(exc).__name__,
                    )
                retry = True
            await asyncio.sleep(pause)  # back off while the database comes back
            pause = min(pause * 2, 1.0)

    async def _call(
        self, doing: str, call: Callable[[Any, bool], Awaitable[_T]], *, after_writes: bool = True
    ) -> _T:
        """A read or an operation outside the batches: after the writes queued before it
        (unless not ``after_writes``: a claim or a heartbeat, which none of them changes)."""
        if after_writes:
            await self._barrier()
        else:
            self._live()
        try:
            return await self._retrying(doing, call)
        except SmsFlowError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._error(doing, exc) from None

    # --- writes ------------------------------------------------------------------------

    async def begin(self, intent: Intent) -> int:
        row = _row(intent, Outcome.PENDING, None, 0, None, time.time(), None)
        future = asyncio.get_running_loop().create_future()
        entry_id: int = await self._await(
            _Write("insert", future, row=row, fenced=intent.run_id is not None)
        )
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
        future = asyncio.get_running_loop().create_future()
        entry_id: int = await self._await(_Write("insert", future, row=row))
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
            entry_id,
            outcome.value,
            request_id,
            attempts,
            error,
            time.time(),
            uuid.uuid4(),
        )
        if wait:
            future = asyncio.get_running_loop().create_future()
            await self._await(_Write("settle", future, settlement=settlement))
        else:
            self._submit(_Write("settle", None, settlement=settlement))

    # --- reads and membership ----------------------------------------------------------

    async def open_intents(
        self, *, wave: str | None = None, endpoint: str | None = None
    ) -> list[Entry]:
        sql = (
            f"SELECT {_COLUMNS} FROM sms_flow.entries "
            "WHERE outcome IN ('pending', 'unverified') "
            "AND ($1::text IS NULL OR wave = $1) AND ($2::text IS NULL OR endpoint = $2) "
            "ORDER BY id"
        )

        async def read(conn: Any, retry: bool) -> list[Entry]:
            return [_entry(r) for r in await conn.fetch(sql, wave, endpoint)]

        return await self._call("read open intents", read)

    async def history(
        self,
        *,
        source_id: str | None = None,
        wave: str | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        if limit is not None and limit < 0:
            raise JournalError(f"history limit must be 0 or more, got {limit}")
        where: list[str] = []
        params: list[Any] = []
        if source_id is not None:
            params.append(source_id)
            where.append(f"source_id = ${len(params)}")
        if wave is not None:
            params.append(wave)
            where.append(f"wave = ${len(params)}")
        sql = f"SELECT {_COLUMNS} FROM sms_flow.entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is None:
            sql += " ORDER BY id"
        else:
            params.append(limit)
            sql += f" ORDER BY id DESC LIMIT ${len(params)}"

        async def read(conn: Any, retry: bool) -> list[Entry]:
            entries = [_entry(r) for r in await conn.fetch(sql, *params)]
            return entries if limit is None else entries[::-1]

        return await self._call("read the history", read)

    async def last_applied(
        self, source_ids: Sequence[str], *, endpoint: str | None = None
    ) -> dict[str, Entry]:
        ids = list(dict.fromkeys(source_id_list(source_ids, "last_applied")))
        if not ids:
            return {}
        sql = (
            f"SELECT DISTINCT ON (source_id) {_COLUMNS} FROM sms_flow.entries "
            "WHERE source_id = ANY($1::text[]) AND outcome IN ('applied', 'observed') "
            "AND ($2::text IS NULL OR endpoint = $2) ORDER BY source_id, id DESC"
        )

        async def read(conn: Any, retry: bool) -> dict[str, Entry]:
            return {r["source_id"]: _entry(r) for r in await conn.fetch(sql, ids, endpoint)}

        return await self._call("read the last applied entries", read)

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
            where, params = _history_where(source_id, wave, since, until, outcomes, actor)
        except ValueError:
            raise JournalError(
                f"history: unknown outcome in {outcomes!r}; valid: "
                f"{', '.join(o.value for o in Outcome)}"
            ) from None
        if last == 0:
            return
        after = 0
        if last is not None:
            # The id after which the last ``last`` matching entries begin (0: from the start).
            start = (
                f"SELECT id FROM sms_flow.entries WHERE true{where} ORDER BY id DESC "
                f"LIMIT 1 OFFSET ${len(params) + 1}"
            )

            async def first(conn: Any, retry: bool) -> int:
                found = await conn.fetchval(start, *params, last - 1)
                return int(found) - 1 if found is not None else 0

            after = await self._call("read the history", first)
        # Keyed on the id (never an OFFSET): each page starts where the last one ended,
        # through the source's or the wave's index (whose keys end with the id).
        sql = (
            f"SELECT {_COLUMNS} FROM sms_flow.entries WHERE id > ${len(params) + 1}{where} "
            f"ORDER BY id LIMIT ${len(params) + 2}"
        )
        while True:

            async def read(conn: Any, retry: bool, after: int = after) -> list[Entry]:
                return [_entry(r) for r in await conn.fetch(sql, *params, after, page)]

            entries = await self._call("read the history", read)
            for entry in entries:
                yield entry
            if len(entries) < page:
                return
            after = entries[-1].id

    async def wave_status(self, wave: str, *, shown: int = 50) -> WaveStatus:
        # Each membership with its source's row of sms_flow.latest (none: the journal holds
        # nothing of it yet, ``unknown``).
        # The wave's failing sources, each once: the few failing ones (index latest_failing),
        # each looked up among the wave's members (index wave_members_source; a subquery
        # with LIMIT, so that it stays a lookup a row and never becomes a hash of the wave).
        failing = (
            f"FROM sms_flow.latest AS l WHERE l.outcome IN {_FAILING} AND (SELECT true "
            "FROM sms_flow.wave_members AS m WHERE m.source_id = l.source_id AND m.wave = $1 "
            "LIMIT 1)"
        )
        opened = "FROM sms_flow.entries WHERE outcome IN ('pending', 'unverified') AND wave = $1"

        async def read(conn: Any, retry: bool) -> WaveStatus:
            # One snapshot, so that the counts agree with each other.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                states = {
                    r["state"]: r["count"]
                    for r in await conn.fetch(
                        "SELECT coalesce(l.state, 'unknown') AS state, count(*) AS count "
                        "FROM sms_flow.wave_members AS w "
                        "LEFT JOIN sms_flow.latest AS l ON l.source_id = w.source_id "
                        "WHERE w.wave = $1 GROUP BY 1 ORDER BY 1",
                        wave,
                    )
                }
                # Found once: how many, and the first ``shown`` of them (then read by id).
                found = await conn.fetchrow(
                    f"WITH f AS MATERIALIZED (SELECT l.last_id {failing}) SELECT "
                    "(SELECT count(*) FROM f) AS n, "
                    "(SELECT array_agg(last_id) FROM "
                    "(SELECT last_id FROM f ORDER BY last_id LIMIT $2) AS s) AS ids",
                    wave,
                    shown,
                )
                failed = found["n"]
                failures = [
                    _entry(r)
                    for r in await conn.fetch(
                        f"SELECT {_COLUMNS} FROM sms_flow.entries WHERE id = ANY($1::bigint[]) "
                        "ORDER BY id",
                        found["ids"] or [],
                    )
                ]
                open_count = await conn.fetchval(f"SELECT count(*) {opened}", wave)
                open_entries = [
                    _entry(r)
                    for r in await conn.fetch(
                        f"SELECT {_COLUMNS} {opened} ORDER BY id LIMIT $2", wave, shown
                    )
                ]
                # The count on the index entries_wave, the latest time on entries_wave_time.
                counted = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM sms_flow.entries WHERE wave = $1), "
                    "(SELECT max(created_at) FROM sms_flow.entries WHERE wave = $1)",
                    wave,
                )
            return WaveStatus(
                wave,
                sum(states.values()),
                states,
                failed,
                failures,
                open_count,
                open_entries,
                counted[0],
                counted[1],
            )

        return await self._call("read the wave's status", read)

    async def census(
        self, *, stuck_before: float, settled: Sequence[str] = (), shown: int = 50
    ) -> Census:
        if shown < 0:
            raise JournalError(f"census: shown must be 0 or more, got {shown}")
        # Each source's state, as SqliteJournal counts it, from sms_flow.latest (kept by the
        # entries' triggers): the counts on the index latest_state, the stuck ones walked
        # longest first on latest_since; one snapshot.
        stuck = "since < $1 AND NOT (state = ANY($2::text[]))"

        async def read(conn: Any, retry: bool) -> Census:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                counts = await conn.fetch(
                    "SELECT state, count(*) AS n, "
                    f"count(*) FILTER (WHERE outcome IN {_FAILING}) AS failing, "
                    f"count(*) FILTER (WHERE {stuck}) AS stuck "
                    "FROM sms_flow.latest GROUP BY state",
                    float(stuck_before),
                    list(settled),
                )
                rows = await conn.fetch(
                    "SELECT source_id, state, since, outcome, wave FROM sms_flow.latest "
                    f"WHERE {stuck} ORDER BY since, source_id LIMIT $3",
                    float(stuck_before),
                    list(settled),
                    shown,
                )
            states = {r["state"]: r["n"] for r in counts}
            return Census(
                sources=sum(states.values()),
                states=states,
                failing={r["state"]: r["failing"] for r in counts if r["failing"]},
                stuck_count=sum(r["stuck"] for r in counts),
                stuck=[
                    StuckSource(
                        r["source_id"], r["state"], r["since"], Outcome(r["outcome"]), r["wave"]
                    )
                    for r in rows
                ],
            )

        return await self._call("count the sources by state", read)

    async def add_members(
        self, wave: str, source_ids: Sequence[str], *, endpoint: str = ""
    ) -> None:
        ids = source_id_list(source_ids, "add_members")

        async def write(conn: Any, retry: bool) -> None:
            async with conn.transaction():
                await conn.execute(_ADD_WAVES, [wave])
                await conn.execute(
                    "INSERT INTO sms_flow.wave_members (wave, endpoint, source_id) "
                    "SELECT $1, $2, source_id "
                    "FROM unnest($3::text[]) WITH ORDINALITY AS m(source_id, ord) ORDER BY ord "
                    "ON CONFLICT (wave, endpoint, source_id) DO NOTHING",
                    wave,
                    endpoint,
                    ids,
                )

        await self._call("add wave members", write)
        self._waves_known.add(wave)

    async def members(self, wave: str, *, endpoint: str | None = None) -> list[str]:
        if endpoint is None:  # on every endpoint: each source once, where it first appeared
            sql = (
                "SELECT source_id FROM sms_flow.wave_members WHERE wave = $1 "
                "GROUP BY source_id ORDER BY min(seq)"
            )
            params: list[Any] = [wave]
        else:
            sql = (
                "SELECT source_id FROM sms_flow.wave_members WHERE wave = $1 AND endpoint = $2 "
                "ORDER BY seq"
            )
            params = [wave, endpoint]

        async def read(conn: Any, retry: bool) -> list[str]:
            return [r[0] for r in await conn.fetch(sql, *params)]

        return await self._call("read wave members", read)

    async def remove_members(self, wave: str, *, endpoint: str | None = None) -> int:
        async def write(conn: Any, retry: bool) -> int:
            status: str = await conn.execute(
                "DELETE FROM sms_flow.wave_members WHERE wave = $1 "
                "AND ($2::text IS NULL OR endpoint = $2)",
                wave,
                endpoint,
            )
            return int(status.rsplit(" ", 1)[-1])

        return await self._call("remove wave members", write)

    async def member_endpoints(self, wave: str) -> list[str]:
        async def read(conn: Any, retry: bool) -> list[str]:
            rows = await conn.fetch(
                "SELECT endpoint FROM sms_flow.wave_members WHERE wave = $1 "
                "GROUP BY endpoint ORDER BY min(seq)",
                wave,
            )
            return [r[0] for r in rows]

        return await self._call("read wave members", read)

    async def adopt_members(self, wave: str, *, endpoint: str) -> int:
        async def write(conn: Any, retry: bool) -> int:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO sms_flow.wave_members (wave, endpoint, source_id) "
                    "SELECT wave, $2, source_id FROM sms_flow.wave_members "
                    "WHERE wave = $1 AND endpoint = '' ORDER BY seq "
                    "ON CONFLICT (wave, endpoint, source_id) DO NOTHING",
                    wave,
                    endpoint,
                )
                status: str = await conn.execute(
                    "DELETE FROM sms_flow.wave_members WHERE wave = $1 AND endpoint = ''", wave
                )
            return int(status.rsplit(" ", 1)[-1])

        return await self._call("adopt wave members", write)

    async def waves(self) -> list[str]:
        async def read(conn: Any, retry: bool) -> list[str]:
            return [r[0] for r in await conn.fetch("SELECT name FROM sms_flow.waves ORDER BY seq")]

        return await self._call("read the waves", read)

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
        run_id = uuid.uuid4().hex

        async def start(conn: Any, retry: bool) -> RunStart | OwnedError:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    _LOCK_SPACE,
                    f"{kind}\x1f{name or ''}\x1f{endpoint or ''}",
                )
                if retry and (mine := await _run_of(conn, run_id)) is not None:
                    session = await conn.fetchval(
                        "SELECT session_id FROM sms_flow.wave_workers WHERE run_id = $1", run_id
                    )
                    return RunStart(mine, [], session)  # the last attempt committed it
                now = await _clock(conn)
                took_over: list[Run] = []
                rows = await conn.fetch(
                    f"SELECT {_RUN_COLUMNS}, expires_at <= $1 AS expired FROM sms_flow.runs "
                    "WHERE kind = $2 AND name IS NOT DISTINCT FROM $3 "
                    "AND endpoint IS NOT DISTINCT FROM $4 AND ended_at IS NULL "
                    "ORDER BY started_at FOR UPDATE",
                    now,
                    kind,
                    name,
                    endpoint,
                )
                for row in rows:
                    other = _run(row)
                    dead = _dead(other, row["expired"])
                    if dead is not None:
                        took_over.append(await _mark_dead(conn, other, now, dead))
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
                    now + float(lease),
                )
                await conn.execute(
                    f"INSERT INTO sms_flow.runs ({_RUN_COLUMNS}) VALUES "
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    *dataclasses.astuple(run),
                )
                if not join:
                    return RunStart(run, took_over)
                # Dead runs of the key were marked ended above: a session with a run not
                # ended is live.
                session = await conn.fetchval(
                    "SELECT w.session_id FROM sms_flow.wave_workers AS w "
                    "JOIN sms_flow.runs AS r ON r.run_id = w.run_id WHERE r.kind = $1 "
                    "AND r.name IS NOT DISTINCT FROM $2 AND r.endpoint IS NOT DISTINCT FROM $3 "
                    "AND r.ended_at IS NULL AND r.run_id <> $4 ORDER BY r.started_at LIMIT 1",
                    kind,
                    name,
                    endpoint,
                    run_id,
                )
                if session is None:
                    session = run_id
                    await conn.execute(
                        "INSERT INTO sms_flow.wave_sessions (session_id, kind, name, endpoint, "
                        "started_at, rate_at) VALUES ($1, $2, $3, $4, $5, 0)",
                        session,
                        kind,
                        name or "",
                        endpoint or "",
                        now,
                    )
                await conn.execute(
                    "INSERT INTO sms_flow.wave_workers (run_id, session_id) VALUES ($1, $2)",
                    run_id,
                    session,
                )
                return RunStart(run, took_over, session)

        started: RunStart = _raised(await self._call("start a run", start))
        return started

    async def heartbeat(self, run_id: str, lease: float = DEFAULT_LEASE) -> Run:
        _check_lease(lease)

        async def beat(conn: Any, retry: bool) -> Run | LeaseLostError:
            row = await conn.fetchrow(
                f"WITH t AS (SELECT {_NOW} AS now) UPDATE sms_flow.runs AS r "
                "SET heartbeat_at = t.now, expires_at = t.now + $2 FROM t "
                "WHERE r.run_id = $1 AND r.ended_at IS NULL AND r.expires_at > t.now "
                f"RETURNING {', '.join('r.' + c for c in _RUN_COLUMNS.split(', '))}",
                run_id,
                float(lease),
            )
            if row is not None:
                return _run(row)
            run = await _run_of(conn, run_id)
            if run is None:
                why = "this journal has no such run"
            elif run.ended_at is not None:
                why = f"it ended ({run.end_reason or 'ended'})"
            else:
                why = f"its lease expired {await _clock(conn) - run.expires_at:.1f} s ago"
            return LeaseLostError(
                f"run {run_id[:8]} lost its lease: {why}; another run may have taken its "
                "sources over, so it pushes nothing more; run it again to resume",
                owner=run,
            )

        run: Run = _raised(await self._call("renew a lease", beat, after_writes=False))
        return run

    async def end_run(self, run_id: str, *, reason: str = "ended") -> None:
        async def end(conn: Any, retry: bool) -> None:
            await conn.execute(
                f"UPDATE sms_flow.runs SET ended_at = {_NOW}, end_reason = $2 "
                "WHERE run_id = $1 AND ended_at IS NULL",
                run_id,
                reason,
            )

        await self._call("end a run", end)

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
        self._live()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._claims.setdefault((run_id, endpoint, bool(steal), reason), []).append((ids, future))
        if self._claimer is None or self._claimer.done():
            self._claimer = asyncio.create_task(
                self._claim_queued(), name=f"sms-flow-claims:{self}"
            )
        claimed: Claimed = _raised(await future)
        return claimed

    async def _claim_queued(self) -> None:
        """Make the queued claims, those of one run, endpoint and mind (steal, reason) in one
        transaction; and again, while more were queued meanwhile."""
        while self._claims:
            queued, self._claims = self._claims, {}
            await asyncio.gather(*(self._claim_together(key, asks) for key, asks in queued.items()))

    async def _claim_together(
        self, key: tuple[str, str, bool, str | None], asks: list[tuple[list[str], Any]]
    ) -> None:
        run_id, endpoint, steal, reason = key
        every = list(dict.fromkeys(source_id for ids, _ in asks for source_id in ids))

        async def claim(conn: Any, retry: bool) -> Claimed | LeaseLostError:
            async with conn.transaction():
                return await _claim(conn, run_id, endpoint, every, steal, reason)

        try:
            claimed: Claimed | Exception = await self._call(
                "claim sources", claim, after_writes=False
            )
        except Exception as exc:
            claimed = exc
        for ids, future in asks:
            if future.done():  # its caller was cancelled
                continue
            if isinstance(claimed, Exception):
                future.set_result(claimed)
                continue
            future.set_result(
                Claimed(
                    {s: claimed.granted[s] for s in ids if s in claimed.granted},
                    {s: claimed.refused[s] for s in ids if s in claimed.refused},
                    {s: claimed.taken_from[s] for s in ids if s in claimed.taken_from},
                )
            )

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
        finished = dict(done or {})
        held = list(holding)

        async def work(conn: Any, retry: bool) -> Work | LeaseLostError:
            async with conn.transaction():
                return await _claim_work(
                    conn, run_id, session, wave, endpoint, int(limit), finished, held
                )

        found: Work = _raised(await self._call("claim work", work, after_writes=False))
        return found

    async def release(self, run_id: str, endpoint: str, source_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(source_id_list(source_ids, "release")))
        if not ids:
            return 0

        async def release(conn: Any, retry: bool) -> int:
            done: str = await conn.execute(
                "DELETE FROM sms_flow.claims WHERE endpoint = $1 AND run_id = $2 "
                "AND source_id = ANY($3::text[])",
                endpoint,
                run_id,
                ids,
            )
            return int(done.split()[-1])

        return await self._call("release claims", release, after_writes=False)

    async def reserve_requests(self, session: str, count: int, rate: float) -> float:
        check_request_rate(count, rate)

        async def reserve(conn: Any, retry: bool) -> float:
            delay: float | None = await conn.fetchval(
                f"WITH t AS (SELECT {_NOW} AS now) UPDATE sms_flow.wave_sessions AS s "
                "SET rate_at = greatest(s.rate_at, t.now) + $2 FROM t "
                "WHERE s.session_id = $1 RETURNING s.rate_at - $2 - t.now",
                session,
                count / float(rate),
            )
            return max(0.0, delay or 0.0)

        return await self._call("reserve requests", reserve, after_writes=False)

    async def workers(self, wave: str, *, endpoint: str | None = None) -> list[Worker]:
        async def read(conn: Any, retry: bool) -> list[Worker]:
            now = await _clock(conn)
            rows = await conn.fetch(
                "SELECT DISTINCT ON (s.endpoint) s.session_id FROM sms_flow.wave_sessions AS s "
                "WHERE s.name = $1 AND ($2::text IS NULL OR s.endpoint = $2) "
                "ORDER BY s.endpoint, s.started_at DESC",
                wave,
                endpoint,
            )
            found: list[Worker] = []
            for (session,) in rows:
                done = {
                    r[0]: r[1]
                    for r in await conn.fetch(
                        "SELECT run_id, count(*) FROM sms_flow.wave_done WHERE session_id = $1 "
                        "GROUP BY run_id",
                        session,
                    )
                }
                for row in await conn.fetch(
                    f"SELECT {', '.join('r.' + c for c in _RUN_COLUMNS.split(', '))}, "
                    "(SELECT count(*) FROM sms_flow.claims AS c WHERE c.run_id = r.run_id "
                    "AND NOT EXISTS (SELECT 1 FROM sms_flow.wave_done AS d "
                    "WHERE d.session_id = w.session_id AND d.source_id = c.source_id)) "
                    "AS claims FROM sms_flow.runs AS r JOIN sms_flow.wave_workers AS w "
                    "ON w.run_id = r.run_id WHERE w.session_id = $1 ORDER BY r.started_at",
                    session,
                ):
                    run = _run(row)
                    claims = row["claims"] if run.live(now) else 0
                    found.append(Worker(run, session, claims, done.get(run.run_id, 0)))
            return found

        return await self._call("read the workers", read)

    async def adopt(self, entry_id: int, run_id: str) -> None:
        async def adopt(conn: Any, retry: bool) -> SmsFlowError | None:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT source_id, endpoint, outcome FROM sms_flow.entries WHERE id = $1 "
                    "FOR UPDATE",
                    entry_id,
                )
                if row is None or row["outcome"] not in ("pending", "unverified"):
                    return JournalError(
                        f"cannot adopt journal entry {entry_id}: "
                        + ("no such entry" if row is None else f"it is settled as {row[2]!r}")
                    )
                source_id, endpoint = row["source_id"], row["endpoint"]
                if endpoint is None:  # written before endpoints were recorded: the run's
                    endpoint = await conn.fetchval(
                        "SELECT endpoint FROM sms_flow.runs WHERE run_id = $1", run_id
                    )
                claim = None
                if endpoint is not None:
                    claim = await conn.fetchrow(_CLAIMS_OF, [endpoint], [source_id])
                if claim is None or claim["run_id"] != run_id or not claim["live"]:
                    now = await _clock(conn)
                    return await _fence_error(conn, run_id, endpoint, source_id, claim, now)
                await conn.execute(
                    "UPDATE sms_flow.entries SET run_id = $1, fence = $2, endpoint = $3 "
                    "WHERE id = $4",
                    run_id,
                    claim["token"],
                    endpoint,
                    entry_id,
                )
                return None

        _raised(await self._call("adopt an entry", adopt))

    async def state_ages(self) -> list[tuple[str, int, float]]:
        async def read(conn: Any, retry: bool) -> list[tuple[str, int, float]]:
            rows = await conn.fetch(
                "SELECT at_state, count(*), min(at_since) FROM sms_flow.latest "
                "WHERE at_state IS NOT NULL GROUP BY at_state"
            )
            return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]

        return await self._call("count sources by state", read)

    async def runs(self, *, live: bool = True) -> list[Run]:
        where = " WHERE ended_at IS NULL" if live else ""

        async def read(conn: Any, retry: bool) -> list[Run]:
            rows = await conn.fetch(
                f"SELECT {_RUN_COLUMNS} FROM sms_flow.runs{where} ORDER BY started_at"
            )
            return [_run(r) for r in rows]

        return await self._call("read the runs", read)

    async def check(self) -> JournalCheck:
        async def check(conn: Any, retry: bool) -> JournalCheck:
            problems: list[str] = []
            version = int(
                await conn.fetchval("SELECT value FROM sms_flow.meta WHERE key = 'schema_version'")
                or 0
            )
            if version != SCHEMA_VERSION:
                problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
            for table in (
                "entries",
                "waves",
                "wave_members",
                "runs",
                "claims",
                "fencing",
                "latest",
            ):
                if await conn.fetchval("SELECT to_regclass($1)", f"sms_flow.{table}") is None:
                    problems.append(f"table sms_flow.{table} is missing")
            if problems:
                return JournalCheck(self._shown, False, problems, version, -1, -1, [], -1)
            entries = await conn.fetchval("SELECT count(*) FROM sms_flow.entries")
            open_ = await conn.fetchval(
                "SELECT count(*) FROM sms_flow.entries WHERE outcome IN ('pending', 'unverified')"
            )
            # One statement: one snapshot of both.
            sources, latest = await conn.fetchrow(
                "SELECT (SELECT count(DISTINCT source_id) FROM sms_flow.entries), "
                "(SELECT count(*) FROM sms_flow.latest)"
            )
            if sources != latest:
                problems.append(
                    f"the table of each source's latest entry holds {latest:,} sources but "
                    f"the entries name {sources:,}; census and wave status are wrong: copy "
                    "the journal (sms-flow journal copy) to rebuild it"
                )
            now = await _clock(conn)
            rows = await conn.fetch(
                f"SELECT {_RUN_COLUMNS} FROM sms_flow.runs WHERE ended_at IS NULL "
                "AND expires_at > $1 ORDER BY started_at",
                now,
            )
            live = [r for r in map(_run, rows) if r.live(now)]
            claims = await conn.fetchval(
                "SELECT count(*) FROM sms_flow.claims WHERE run_id = ANY($1::text[])",
                [r.run_id for r in live],
            )
            return JournalCheck(
                self._shown, not problems, problems, version, entries, open_, live, claims
            )

        return await self._call("check the journal", check)

    # --- copying -----------------------------------------------------------------------

    async def dump(
        self, tables: Sequence[_CopySpec], *, batch: int = 5000
    ) -> AsyncGenerator[tuple[str, list[tuple[Any, ...]]], None]:
        """Every row of ``tables`` (name, columns, order), table after table, as ``(table,
        rows)`` in batches of up to ``batch`` rows, all read in one read-only ``REPEATABLE
        READ`` transaction (one snapshot, whatever is written meanwhile) through a cursor;
        the next batch is fetched while the caller handles this one."""
        if batch < 1:
            raise JournalError(f"dump: batch must be 1 or more, got {batch}")
        self._live()
        await self._barrier()
        try:
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                for table, columns, order in tables:
                    cursor = await conn.cursor(_select(table, columns, order))
                    rows = await cursor.fetch(batch)
                    while rows:
                        ahead = (
                            asyncio.ensure_future(cursor.fetch(batch))
                            if len(rows) == batch
                            else None
                        )
                        try:
                            yield table, [tuple(r) for r in rows]
                        except BaseException:
                            if ahead is not None:
                                ahead.cancel()
                                with contextlib.suppress(BaseException):
                                    await ahead
                            raise
                        rows = await ahead if ahead is not None else []
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._error("read the journal to copy it", exc) from None

    @contextlib.asynccontextmanager
    async def loading(self) -> AsyncIterator[PostgresLoader]:
        """A transaction to copy rows into (``sms-flow journal copy``), every table of the
        schema locked against other writers: committed when the block ends (the identity
        sequences set past the largest ids first), rolled back whole (nothing of it
        written) when the block raises. After the commit the tables are vacuumed and
        analysed (a failure there is logged: the copy stands), so that the first reads of
        the copy plan well and count from their indexes alone, without waiting for
        autovacuum."""
        self._live()
        await self._barrier()
        failure = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
        names: list[str] = []
        try:
            async with self._pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    tables = await conn.fetch(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'sms_flow' "
                        "AND tablename <> 'meta' ORDER BY tablename"
                    )
                    names[:] = [r["tablename"] for r in tables]
                    _named(*names)
                    await conn.execute(
                        f"LOCK TABLE {', '.join('sms_flow.' + n for n in names)} IN EXCLUSIVE MODE"
                    )
                    loader = PostgresLoader(conn, self)
                    yield loader
                    await loader.finish()
                except BaseException:
                    with contextlib.suppress(*failure):
                        await transaction.rollback()
                    raise
                await transaction.commit()
        except failure as exc:
            raise self._error(
                "copy into the journal (nothing of the copy is written)", exc
            ) from None
        try:
            if names:
                async with self._pool.acquire() as conn:
                    await conn.execute(
                        f"VACUUM (ANALYZE) {', '.join('sms_flow.' + n for n in names)}"
                    )
        except failure as exc:
            _log.warning("journal.copy_not_vacuumed", error=str(exc))

    async def sizes(self, tables: Sequence[str]) -> dict[str, int]:
        """The rows of each table now (of ``fencing``: its last token)."""

        async def read(conn: Any, retry: bool) -> dict[str, int]:
            return await _sizes(conn, tables)

        return await self._call("count the rows", read)


def _resolve(write: _Write, result: Any) -> None:
    future = write.future
    if future is not None and not future.done():
        future.set_result(result)


_CLAIM_ROUNDS: Final = 3
"""Selections of members a claim of work makes at most (see _claim_work)."""


async def _claim_work(
    conn: Any,
    run_id: str,
    session: str,
    wave: str,
    endpoint: str,
    limit: int,
    done: dict[str, str],
    holding: list[str],
) -> Work | LeaseLostError:
    """:meth:`Journal.claim_work` inside the caller's transaction."""
    now = await _clock(conn)
    if done:
        await conn.execute(
            "INSERT INTO sms_flow.wave_done (session_id, source_id, outcome, run_id, done_at) "
            "SELECT $1, d.source_id, d.outcome, $2, $3 "
            "FROM unnest($4::text[], $5::text[]) AS d(source_id, outcome) "
            "WHERE EXISTS (SELECT 1 FROM sms_flow.claims AS c WHERE c.endpoint = $6 "
            "AND c.source_id = d.source_id AND (c.run_id = $2 OR c.taken_from = $2)) "
            "ON CONFLICT DO NOTHING",
            session,
            run_id,
            now,
            list(done),
            list(done.values()),
            endpoint,
        )
    # Workers of the session on this host whose process is gone are dead now, not at the
    # end of their lease: their sources are free at once.
    for row in await conn.fetch(
        f"SELECT {_RUN_COLUMNS}, expires_at <= $1 AS expired FROM sms_flow.runs "
        "WHERE ended_at IS NULL AND host = $2 AND run_id <> $4 AND run_id IN "
        "(SELECT run_id FROM sms_flow.wave_workers WHERE session_id = $3)",
        now,
        HOST,
        session,
        run_id,
    ):
        other = _run(row)
        dead = _dead(other, row["expired"])
        if dead is not None:
            await _mark_dead(conn, other, now, dead)
    # Members no live run holds, in order, skipping those another worker's claim has locked.
    # A claim committed after this statement began is not seen by it (its snapshot) yet no
    # longer locks its rows: those members are selected and then refused by the claim. Each
    # round selects again (a new snapshot) past the refused, so that losing that race leaves
    # a worker with work instead of idle until its next poll. (Past what it granted too: a
    # member the run claimed in this transaction is neither locked for it nor "held by
    # another live run", and would be selected again.)
    claimed = Claimed()
    passed: list[str] = []
    for _ in range(_CLAIM_ROUNDS):
        ids = [
            r[0]
            for r in await conn.fetch(
                "SELECT m.source_id FROM sms_flow.wave_members AS m "
                "WHERE m.wave = $1 AND m.endpoint = $2 "
                "AND NOT (m.source_id = ANY($8::text[])) "
                "AND NOT EXISTS (SELECT 1 FROM sms_flow.wave_done AS d "
                "WHERE d.session_id = $3 AND d.source_id = m.source_id) "
                "AND NOT EXISTS (SELECT 1 FROM sms_flow.claims AS c "
                "JOIN sms_flow.runs AS r ON r.run_id = c.run_id "
                "WHERE c.endpoint = m.endpoint AND c.source_id = m.source_id "
                "AND r.ended_at IS NULL AND r.expires_at > $4 "
                "AND (c.run_id <> $5 OR c.source_id = ANY($6::text[]))) "
                "ORDER BY m.seq LIMIT $7 FOR UPDATE OF m SKIP LOCKED",
                wave,
                endpoint,
                session,
                now,
                run_id,
                holding,
                limit - len(claimed.granted),
                passed,
            )
        ]
        if not ids:
            if not passed:  # nothing to claim: the run must still be live to be told so
                refused = await _unless_live(conn, run_id, now, lock=False)
                if refused is not None:
                    return refused
            break
        got = await _claim(conn, run_id, endpoint, ids, False, None)
        if isinstance(got, LeaseLostError):
            return got
        claimed.granted.update(got.granted)
        claimed.taken_from.update(got.taken_from)
        claimed.refused.update(got.refused)
        if not got.refused or len(claimed.granted) >= limit:
            break
        passed += [*got.refused, *got.granted]  # the next round: past both
    undone = await conn.fetchval(
        "SELECT count(*) FROM sms_flow.wave_members AS m WHERE m.wave = $1 AND m.endpoint = $2 "
        "AND NOT EXISTS (SELECT 1 FROM sms_flow.wave_done AS d "
        "WHERE d.session_id = $3 AND d.source_id = m.source_id)",
        wave,
        endpoint,
        session,
    )
    failures = await conn.fetchval(
        "SELECT count(*) FROM sms_flow.wave_done WHERE session_id = $1 AND outcome = 'failed'",
        session,
    )
    return Work(claimed, undone, failures)


async def _unless_live(conn: Any, run_id: str, now: float, *, lock: bool) -> LeaseLostError | None:
    """None while the run is live at ``now`` (its row share-locked with ``lock``, so that it
    is not ended under the claim); else why it may claim nothing."""
    own = await conn.fetchrow(
        f"SELECT {_RUN_COLUMNS}, expires_at <= $2 AS expired FROM sms_flow.runs "
        "WHERE run_id = $1" + (" FOR SHARE" if lock else ""),
        run_id,
        now,
    )
    if own is not None and own["ended_at"] is None and not own["expired"]:
        return None
    return not_live(run_id, None if own is None else _run(own), now)


async def _claim(
    conn: Any, run_id: str, endpoint: str, ids: list[str], steal: bool, reason: str | None
) -> Claimed | LeaseLostError:
    """Claim ``ids`` for the run inside the caller's transaction (see :meth:`Journal.claim`)."""
    now = await _clock(conn)
    refused = await _unless_live(conn, run_id, now, lock=True)
    if refused is not None:
        return refused
    result = Claimed()
    tokens: dict[str, int] = {}
    grants: dict[str, Run | None] = {}  # source: the run it is taken from (None: free)
    holders: dict[str, tuple[Run, bool]] = {}  # run id: its record, and whether it is dead
    pending = sorted(ids)
    while pending:
        # Free sources first: a row inserted now is ours; one another claimant inserted
        # first is locked and looked at below, with the rest.
        inserted = await conn.fetch(
            "INSERT INTO sms_flow.claims (endpoint, source_id, run_id, token, claimed_at) "
            "SELECT $1, source_id, $2, nextval('sms_flow.fencing'), $3 "
            "FROM unnest($4::text[]) WITH ORDINALITY AS s(source_id, ord) ORDER BY ord "
            "ON CONFLICT (endpoint, source_id) DO NOTHING RETURNING source_id, token",
            endpoint,
            run_id,
            now,
            pending,
        )
        for row in inserted:
            tokens[row["source_id"]] = row["token"]
            grants[row["source_id"]] = None
        got = {r["source_id"] for r in inserted}
        others = [s for s in pending if s not in got]
        # Those held already (the first claim of free sources has none: no round trip).
        held = (
            await conn.fetch(
                "SELECT source_id, run_id, token FROM sms_flow.claims "
                "WHERE endpoint = $1 AND source_id = ANY($2::text[]) "
                "ORDER BY source_id FOR UPDATE",
                endpoint,
                others,
            )
            if others
            else []
        )
        seen = got | {r["source_id"] for r in held}
        pending = [s for s in pending if s not in seen]  # released meanwhile: try again
        takeover: list[tuple[str, Run | None]] = []
        for row in held:
            source_id, holder_id = row["source_id"], row["run_id"]
            if holder_id == run_id:
                tokens[source_id] = row["token"]  # already ours: keeps its token
                continue
            if holder_id not in holders:
                found = await conn.fetchrow(
                    f"SELECT {_RUN_COLUMNS}, expires_at <= $2 AS expired FROM sms_flow.runs "
                    "WHERE run_id = $1",
                    holder_id,
                    now,
                )
                if found is None:
                    takeover.append((source_id, None))
                    continue
                holder = _run(found)
                dead = "ended" if holder.ended_at is not None else _dead(holder, found["expired"])
                if dead is not None and holder.ended_at is None:
                    holder = await _mark_dead(conn, holder, now, dead)
                holders[holder_id] = (holder, dead is not None)
            holder, dead_ = holders[holder_id]
            if dead_ or steal:
                takeover.append((source_id, holder))
            else:
                result.refused[source_id] = holder
        if takeover:
            taken = await conn.fetch(
                "UPDATE sms_flow.claims AS c SET run_id = $2, token = nextval('sms_flow.fencing'), "
                "claimed_at = $3, reason = t.reason, taken_from = t.taken_from "
                "FROM unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY "
                "AS t(source_id, reason, taken_from, ord) "
                "WHERE c.endpoint = $1 AND c.source_id = t.source_id RETURNING c.source_id, c.token",
                endpoint,
                run_id,
                now,
                [s for s, _ in takeover],
                [reason if b is not None and b.ended_at is None else None for _, b in takeover],
                [b.run_id if b is not None else None for _, b in takeover],
            )
            for row in taken:
                tokens[row["source_id"]] = row["token"]
            for source_id, before in takeover:
                grants[source_id] = before
    for source_id in ids:
        if source_id in tokens:
            result.granted[source_id] = tokens[source_id]
            before = grants.get(source_id)
            if before is not None:
                result.taken_from[source_id] = before
    return result
