"""What only the PostgreSQL journal does: group commit on a server, several workers on one
database (row locks), its schema, a lost connection, and a DSN whose password stays secret.

The contract every back end keeps is tested in ``tests/test_journal.py`` (against this one
too). Every test here runs against a real PostgreSQL (the ``postgres`` and ``pg_dsn``
fixtures of ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
import structlog

from sms_flow.errors import ClaimLostError, ConfigError, JournalError
from sms_flow.journal import Intent, Outcome, is_dsn
from sms_flow.journal_postgres import _MIGRATIONS, SCHEMA_VERSION, PostgresJournal, redact_dsn
from tests.conftest import REPO, PostgresServer, Spawner, eventually
from tests.test_journal import assert_counts_agree_with_history

ENDPOINT = "https://sms.example.com"


def intent(source_id: str = "s1", **overrides: Any) -> Intent:
    fields: dict[str, Any] = {
        "source_id": source_id,
        "trigger": "start",
        "from_state": "WAITING/checking",
        "to_state": "REPLICATE/replicating",
        "actor": "cli:alice",
        "reason": "wave 1 go-live",
    }
    fields.update(overrides)
    return Intent(**fields)


@pytest.fixture
async def journal(pg_dsn: str) -> AsyncIterator[PostgresJournal]:
    async with PostgresJournal(pg_dsn) as opened:
        yield opened


@contextlib.asynccontextmanager
async def entries_locked(dsn: str) -> AsyncIterator[None]:
    """Another session holds a lock on the entries table that every INSERT waits for."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE sms_flow.entries IN SHARE ROW EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


# --- group commit --------------------------------------------------------------------------


async def test_begins_and_settles_queued_together_are_written_in_one_transaction(
    pg_dsn: str, journal: PostgresJournal
) -> None:
    old = await asyncio.gather(*(journal.begin(intent(f"old{i}")) for i in range(600)))
    batches = journal.stats().batches

    calls: list[Awaitable[int | None]] = []
    for i, entry_id in enumerate(old):
        calls.append(journal.settle(entry_id, Outcome.APPLIED, request_id=f"r{i}"))
        calls.append(journal.begin(intent(f"new{i}", wave=f"w{i % 3}")))
    results = await asyncio.gather(*calls)

    assert journal.stats().batches == batches + 1
    new_ids = [entry_id for entry_id in results[1::2] if entry_id is not None]
    assert new_ids == sorted(new_ids) and len(set(new_ids)) == 600
    assert min(new_ids) > max(old)
    assert await rows(
        pg_dsn, "SELECT count(*) FROM sms_flow.entries WHERE outcome = 'applied'"
    ) == [(600,)]
    assert await rows(
        pg_dsn, "SELECT source_id FROM sms_flow.entries WHERE id = $1", new_ids[-1]
    ) == [("new599",)]
    assert await journal.waves() == ["w0", "w1", "w2"]


async def test_a_failing_write_fails_alone_and_its_batch_commits(
    pg_dsn: str, journal: PostgresJournal
) -> None:
    done = await journal.begin(intent("done"))
    await journal.settle(done, Outcome.APPLIED)
    waiting = await journal.begin(intent("waiting"))

    async with entries_locked(pg_dsn):
        plug = asyncio.create_task(journal.begin(intent("plug")))
        await eventually(lambda: journal.stats().in_flight == 1)  # the writer waits on the lock
        batches = journal.stats().batches
        tasks = [
            asyncio.create_task(coro)
            for coro in (
                journal.begin(intent("new", wave="w9")),
                journal.settle(999_999, Outcome.APPLIED),
                journal.settle(done, Outcome.FAILED),
                journal.record(intent("nul", reason="a\x00b"), Outcome.REJECTED),
                journal.settle(waiting, Outcome.IGNORED, request_id="req-w"),
            )
        ]
        await asyncio.sleep(0)  # every task queues its write on its first step
    await plug
    new, unknown, twice, nul, settled = await asyncio.gather(*tasks, return_exceptions=True)

    assert journal.stats().batches == batches + 1  # after the plug's, all five together
    assert journal.stats().largest_batch >= 5
    assert isinstance(unknown, JournalError) and "no such entry" in str(unknown)
    assert isinstance(twice, JournalError) and "already settled as 'applied'" in str(twice)
    assert isinstance(nul, JournalError) and "0x00" in str(nul)
    assert isinstance(new, int)
    assert settled is None
    committed = dict(await rows(pg_dsn, "SELECT source_id, outcome FROM sms_flow.entries"))
    assert committed == {
        "done": "applied",
        "waiting": "ignored",
        "plug": "pending",
        "new": "pending",
    }
    assert await journal.waves() == ["w9"]


async def test_close_finishes_queued_writes(pg_dsn: str) -> None:
    journal = PostgresJournal(pg_dsn)
    await journal.open()
    tasks = [asyncio.create_task(journal.begin(intent(f"s{i}"))) for i in range(100)]
    await asyncio.sleep(0)  # all queued, none answered yet
    await journal.close()

    assert len(set(await asyncio.gather(*tasks))) == 100
    assert await rows(pg_dsn, "SELECT count(*) FROM sms_flow.entries") == [(100,)]


async def test_a_cancelled_begin_still_leaves_its_intent(
    pg_dsn: str, journal: PostgresJournal
) -> None:
    async with entries_locked(pg_dsn):
        begin = asyncio.create_task(journal.begin(intent("s1")))
        await eventually(lambda: journal.stats().in_flight == 1)
        begin.cancel()
        with pytest.raises(asyncio.CancelledError):
            await begin
    (pending,) = await journal.open_intents()
    assert pending.source_id == "s1"


# --- several workers on one database -------------------------------------------------------


async def test_two_workers_claiming_the_same_sources_at_once_never_both_get_one(
    pg_dsn: str,
) -> None:
    sources = [f"s{i:03d}" for i in range(300)]
    async with PostgresJournal(pg_dsn) as a, PostgresJournal(pg_dsn) as b:
        runs = [
            (await j.start_run("wave", name="w1", endpoint=ENDPOINT, actor="wave:w1")).run.run_id
            for j in (a, b)
        ]

        # Each claims in batches, in its own order, both at once.
        async def worker(journal: PostgresJournal, run_id: str, order: list[str]) -> set[str]:
            got: set[str] = set()
            for start in range(0, len(order), 25):
                claimed = await journal.claim(run_id, ENDPOINT, order[start : start + 25])
                got |= set(claimed.granted)
                assert set(claimed.granted) | set(claimed.refused) == set(order[start : start + 25])
            return got

        got_a, got_b = await asyncio.gather(
            worker(a, runs[0], sources), worker(b, runs[1], sources[::-1])
        )

    assert got_a.isdisjoint(got_b)
    assert got_a | got_b == set(sources)
    holders = dict(await rows(pg_dsn, "SELECT source_id, run_id FROM sms_flow.claims"))
    assert {s for s, r in holders.items() if r == runs[0]} == got_a


async def test_claims_asked_at_once_each_get_the_answer_for_their_own_sources(
    journal: PostgresJournal,
) -> None:
    wave = (await journal.start_run("wave", name="w1", endpoint=ENDPOINT, actor="w")).run
    other = (await journal.start_run("set", name=None, endpoint=ENDPOINT, actor="cli")).run
    await journal.claim(other.run_id, ENDPOINT, ["held"])

    a, b, c, elsewhere = await asyncio.gather(
        journal.claim(wave.run_id, ENDPOINT, ["s1", "s2"]),
        journal.claim(wave.run_id, ENDPOINT, ["s2", "s3", "held"]),
        journal.claim(wave.run_id, ENDPOINT, ["s4"], steal=True, reason="mine now"),
        journal.claim(wave.run_id, "https://other", ["s1"]),
    )

    assert list(a.granted) == ["s1", "s2"] and a.refused == {}
    assert list(b.granted) == ["s2", "s3"] and b.granted["s2"] == a.granted["s2"]
    assert {s: r.run_id for s, r in b.refused.items()} == {"held": other.run_id}
    assert list(c.granted) == ["s4"] and list(elsewhere.granted) == ["s1"]
    tokens = [a.granted["s1"], a.granted["s2"], b.granted["s3"], c.granted["s4"]]
    assert len(set(tokens)) == 4 and elsewhere.granted["s1"] not in tokens


async def test_a_takeover_sees_every_intent_written_under_the_claim_it_took(
    pg_dsn: str,
) -> None:
    """An intent racing a takeover is either refused or seen open by the taker: never
    written unseen behind its back (the claim row is share-locked while the intent goes in)."""
    sources = [f"s{i:03d}" for i in range(200)]
    async with PostgresJournal(pg_dsn) as a, PostgresJournal(pg_dsn) as b:
        wave = (await a.start_run("wave", name="w1", endpoint=ENDPOINT, actor="wave:w1")).run
        operator = (await b.start_run("set", name=None, endpoint=ENDPOINT, actor="cli:bob")).run
        await a.claim(wave.run_id, ENDPOINT, sources)

        async def take_over() -> set[int]:
            await b.claim(operator.run_id, ENDPOINT, sources, steal=True, reason="hold them")
            return {e.id for e in await b.open_intents()}

        begins = [a.begin(intent(s, endpoint=ENDPOINT, run_id=wave.run_id)) for s in sources]
        *written, seen = await asyncio.gather(*begins, take_over(), return_exceptions=True)

    ids = {entry_id for entry_id in written if isinstance(entry_id, int)}
    refused = [e for e in written if isinstance(e, ClaimLostError)]
    assert len(ids) + len(refused) == len(sources), written
    assert isinstance(seen, set)
    assert ids <= seen


# --- schema --------------------------------------------------------------------------------


async def test_the_schema_is_created_on_first_use_with_its_version(
    pg_dsn: str, journal: PostgresJournal
) -> None:
    assert await rows(pg_dsn, "SELECT value FROM sms_flow.meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    check = await journal.check()
    assert (check.ok, check.schema_version, check.problems) == (True, SCHEMA_VERSION, [])


async def test_a_newer_schema_version_is_refused(pg_dsn: str, journal: PostgresJournal) -> None:
    await journal.begin(intent())
    await rows(pg_dsn, "UPDATE sms_flow.meta SET value = '99' WHERE key = 'schema_version'")

    with pytest.raises(ConfigError, match="schema version 99, newer than this sms-flow reads"):
        await PostgresJournal(pg_dsn).open()
    assert await rows(pg_dsn, "SELECT count(*) FROM sms_flow.entries") == [(1,)]


async def test_a_version_1_journal_is_migrated_and_its_members_get_their_waves_endpoint(
    pg_dsn: str,
) -> None:
    """Schema 1 kept members by wave alone: opening it migrates it to version 2, and each
    wave's members take the endpoint of its last entry naming one ('' when none does)."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(_MIGRATIONS[0])
        await conn.execute("INSERT INTO sms_flow.meta VALUES ('schema_version', '1')")
        await conn.execute(
            "INSERT INTO sms_flow.wave_members (wave, source_id) "
            "VALUES ('w1', 'b'), ('w1', 'a'), ('w2', 'c')"
        )
        await conn.execute(
            "INSERT INTO sms_flow.entries (source_id, from_state, to_state, actor, forced, "
            "wave, outcome, attempts, created_at, endpoint, write_key) VALUES "
            "('a', 'x', 'y', 'cli:alice', false, 'w1', 'applied', 1, 1, 'https://old', "
            "gen_random_uuid()), ('b', 'x', 'y', 'cli:alice', false, 'w1', 'applied', 1, 2, "
            "'https://e', gen_random_uuid())"
        )
    finally:
        await conn.close()

    async with PostgresJournal(pg_dsn) as journal:
        assert await journal.members("w1", endpoint="https://e") == ["b", "a"]
        assert await journal.member_endpoints("w2") == [""]
        assert await journal.adopt_members("w2", endpoint="https://e") == 1
        await journal.add_members("w1", ["a"], endpoint="https://other")
        assert await journal.member_endpoints("w1") == ["https://e", "https://other"]
        check = await journal.check()
    assert (check.ok, check.schema_version) == (True, SCHEMA_VERSION)
    assert await rows(pg_dsn, "SELECT value FROM sms_flow.meta WHERE key = 'schema_version'") == [
        ("4",)
    ]


async def test_a_version_3_journal_gets_each_sources_latest_entry(pg_dsn: str) -> None:
    """Version 4 adds the table of each source's latest entry: opening a version 3 journal
    fills it from its entries, and the census and wave status read from it then agree with
    the entries."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        for migration in _MIGRATIONS[:3]:
            await conn.execute(migration)
        await conn.execute("INSERT INTO sms_flow.meta VALUES ('schema_version', '3')")
        await conn.executemany(
            "INSERT INTO sms_flow.entries (source_id, trigger, from_state, to_state, actor, "
            "forced, wave, outcome, attempts, created_at, settled_at, endpoint, write_key) "
            "VALUES ($1, 'x', $2, $3, 'cli:alice', false, $4, $5, 1, $6, $7, 'https://e', "
            "gen_random_uuid())",
            [
                ("a", "WAITING/checking", "WAITING/setting", "w1", "applied", 1.0, 1.5),
                ("a", "WAITING/setting", "INIT/replicating", "w1", "failed", 2.0, 2.5),
                ("b", "WAITING/checking", "WAITING/setting", "w1", "pending", 3.0, None),
                ("c", "WAITING/checking", "WAITING/setting", None, "observed", 4.0, 4.0),
                ("b", "WAITING/checking", "WAITING/setting", "w2", "unverified", 5.0, None),
            ],
        )
        await conn.executemany(
            "INSERT INTO sms_flow.wave_members (wave, endpoint, source_id) "
            "VALUES ($1, 'https://e', $2)",
            [("w1", "a"), ("w1", "b"), ("w1", "d"), ("w2", "b")],
        )
    finally:
        await conn.close()

    async with PostgresJournal(pg_dsn) as journal:
        await assert_counts_agree_with_history(journal, ["w1", "w2"])
        census = await journal.census(stuck_before=10.0)
        assert census.states == {"WAITING/setting": 2, "WAITING/checking": 1}
        assert census.failing == {"WAITING/setting": 1, "WAITING/checking": 1}
        status = await journal.wave_status("w1")
        assert status.states == {"WAITING/setting": 1, "WAITING/checking": 1, "unknown": 1}
        await journal.record(intent("d", wave="w1", endpoint="https://e"), Outcome.APPLIED)
        await assert_counts_agree_with_history(journal, ["w1", "w2"])
        assert (await journal.check()).ok
    assert await rows(pg_dsn, "SELECT value FROM sms_flow.meta WHERE key = 'schema_version'") == [
        ("4",)
    ]


async def test_check_finds_a_latest_table_that_disagrees_with_the_entries(pg_dsn: str) -> None:
    async with PostgresJournal(pg_dsn) as journal:
        for source_id in ("a", "b"):
            await journal.record(intent(source_id), Outcome.APPLIED)
        assert (await journal.check()).ok
        await rows(pg_dsn, "DELETE FROM sms_flow.latest WHERE source_id = 'b'")
        check = await journal.check()
    assert not check.ok
    [problem] = check.problems
    assert "latest entry holds 1 sources" in problem and "the entries name 2" in problem
    assert "sms-flow journal copy" in problem


async def test_journals_opened_at_once_on_a_new_database_create_the_schema_once(
    pg_dsn: str,
) -> None:
    journals = [PostgresJournal(pg_dsn) for _ in range(4)]
    await asyncio.gather(*(j.open() for j in journals))
    try:
        ids = await asyncio.gather(*(j.begin(intent(f"s{i}")) for i, j in enumerate(journals)))
    finally:
        await asyncio.gather(*(j.close() for j in journals))
    assert len(set(ids)) == 4


# --- the DSN and its password ----------------------------------------------------------------


def with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_redact_dsn_drops_the_password_wherever_it_is() -> None:
    assert redact_dsn("postgresql://alice:s3cret@db:5432/sms") == "postgresql://alice@db:5432/sms"
    assert (
        redact_dsn("postgres://db/sms?password=s3cret&sslmode=require")
        == "postgres://db/sms?sslmode=require"
    )
    assert redact_dsn("postgresql://db/sms") == "postgresql://db/sms"


def test_a_dsn_is_told_from_a_path() -> None:
    assert is_dsn("postgresql://alice@db/sms") and is_dsn("postgres://db/sms")
    assert not is_dsn("journal.sqlite")
    assert not is_dsn("./postgresql:/x.sqlite")


async def test_a_database_that_cannot_be_reached_is_refused_at_open_with_a_fix(
    pg_dsn: str,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = urlsplit(pg_dsn)
    nowhere = urlunsplit(parts._replace(netloc=f"alice:pa%40ss-zz@127.0.0.1:{port}"))
    journal = PostgresJournal(nowhere, connect_timeout=5)
    with pytest.raises(ConfigError, match="check that the database is up") as info:
        await journal.open()
    assert f"postgresql://alice@127.0.0.1:{port}/" in str(info.value)
    assert "pa%40ss" not in str(info.value) and "pa@ss" not in str(info.value)
    with pytest.raises(JournalError, match="is not open"):
        await journal.begin(intent())


def test_a_location_that_is_no_dsn_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a PostgreSQL DSN: mysql://bob@db/x"):
        PostgresJournal("mysql://bob:hunter2@db/x")


async def test_the_password_never_shows_in_a_repr_an_error_or_a_log(
    postgres: PostgresServer, pg_dsn: str
) -> None:
    secret = urlsplit(pg_dsn).password
    assert secret
    wrong = "wrong-Pa55word-zz"
    with structlog.testing.capture_logs() as logs:
        async with PostgresJournal(pg_dsn) as journal:
            shown = [repr(journal), journal.location, (await journal.check()).location]
            with pytest.raises(JournalError) as settled:
                await journal.settle(12345, Outcome.APPLIED)
            shown.append(str(settled.value))
            await journal.settle(12345, Outcome.APPLIED, wait=False)  # logged, not raised
            await eventually(lambda: any(e["event"] == "journal write failed" for e in logs))
        refused = PostgresJournal(with_password(pg_dsn, wrong))
        shown.append(repr(refused))
        with pytest.raises(ConfigError, match="password authentication failed") as denied:
            await refused.open()
    shown.append("".join(traceback.format_exception(denied.value)))  # as a crash prints it
    shown.extend(str(event) for event in logs)

    assert all(secret not in text and wrong not in text for text in shown), shown


# --- a lost connection ---------------------------------------------------------------------


@pytest.mark.slow
async def test_a_restart_of_the_database_mid_stream_loses_nothing_and_repeats_nothing(
    postgres: PostgresServer, pg_dsn: str
) -> None:
    """``pg_ctl restart -m fast`` while 20 callers write: the journal waits and resumes;
    every acknowledged entry is there once, with its outcome."""
    acknowledged: list[tuple[int, str]] = []
    failures: list[BaseException] = []
    restarted = asyncio.Event()

    async def caller(k: int, journal: PostgresJournal) -> None:
        i = after = 0
        while after < 40:  # until the restart is over, then 40 more
            after += restarted.is_set()
            reason = f"c{k}-{i}"
            try:
                entry_id = await journal.begin(intent(f"s{k}", reason=reason))
                await journal.settle(entry_id, Outcome.APPLIED, request_id=reason)
            except JournalError as exc:  # pragma: no cover - the assertion below shows it
                failures.append(exc)
                return
            acknowledged.append((entry_id, reason))
            i += 1

    with structlog.testing.capture_logs() as logs:
        async with PostgresJournal(pg_dsn, reconnect_for=120) as journal:
            callers = [asyncio.create_task(caller(k, journal)) for k in range(20)]
            await eventually(lambda: len(acknowledged) >= 200, timeout=60)
            before = len(acknowledged)
            await asyncio.to_thread(postgres.restart)
            restarted.set()
            await asyncio.gather(*callers)
            history = await journal.history()

    assert failures == []
    assert len(acknowledged) >= before + 20 * 40  # every caller went on after it
    assert any(e["event"] == "journal connection lost, retrying" for e in logs)
    written = [(e.id, e.reason) for e in history]
    assert len({reason for _, reason in written}) == len(written), "an entry written twice"
    assert set(acknowledged) <= set(written), "an acknowledged entry lost"
    settled = {e.reason: e for e in history}
    assert all(settled[reason].outcome is Outcome.APPLIED for _, reason in acknowledged)
    # At most one open intent per caller: the begin in flight when it stopped, none here.
    assert await rows(
        pg_dsn, "SELECT count(*) FROM sms_flow.entries WHERE outcome = 'pending'"
    ) == [(0,)]


_CHILD_STREAM = """
import asyncio, sys
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_postgres import PostgresJournal

async def worker(journal, k):
    while True:
        entry_id = await journal.begin(Intent(f"s{k}", None, "A", "B", "wave:w1", None))
        print(f"begun {entry_id}", flush=True)
        if k % 2 == 0:
            await journal.settle(entry_id, Outcome.APPLIED)
            print(f"settled {entry_id}", flush=True)

async def main(dsn):
    async with PostgresJournal(dsn) as journal:
        await asyncio.gather(*(worker(journal, k) for k in range(8)))

asyncio.run(main(sys.argv[1]))
"""


async def test_sigkill_mid_stream_loses_nothing_acknowledged(pg_dsn: str, spawn: Spawner) -> None:
    child = spawn.python("-c", _CHILD_STREAM, pg_dsn)
    begun: set[int] = set()
    settled: set[int] = set()
    while len(settled) < 300:  # killed mid-stream, once 300 settles have returned
        word, number = (await child.areadline()).split()
        (begun if word == "begun" else settled).add(int(number))
    assert child.kill() == -signal.SIGKILL

    async with PostgresJournal(pg_dsn) as journal:
        history = await journal.history()
    outcomes = {e.id: e.outcome for e in history}
    assert begun <= outcomes.keys()
    assert all(outcomes[i] is Outcome.APPLIED for i in settled)
    odd = [e.outcome for e in history if int(e.source_id[1:]) % 2]
    assert odd and all(outcome is Outcome.PENDING for outcome in odd)


# --- the fixture ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("required", "verdict"), [("1", "error"), ("", "skipped")])
def test_without_postgresql_the_tests_skip_unless_it_is_required(
    required: str, verdict: str
) -> None:
    env = {
        **os.environ,
        "PATH": "/usr/bin:/bin",  # no initdb, no pg_ctl
        "SMS_FLOW_REQUIRE_PG": required,
    }
    env.pop("SMS_FLOW_TEST_PG_DSN", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_journal_postgres.py::test_the_schema_is_created_on_first_use_with_its_version",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert f"1 {verdict}" in done.stdout, done.stdout + done.stderr
    assert "initdb and pg_ctl not on PATH and SMS_FLOW_TEST_PG_DSN not set" in done.stdout
