"""The journal on real SQLite files: durability, queries, group commit, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import structlog

import sms_flow
from sms_flow.errors import ConfigError, SmsFlowError
from sms_flow.journal import (
    Entry,
    Intent,
    JournalError,
    Outcome,
    SqliteJournal,
    default_journal_path,
)

_ROOT = str(Path(sms_flow.__file__).resolve().parent.parent)


def intent(source_id: str = "s1", *, wave: str | None = None, **overrides: Any) -> Intent:
    fields: dict[str, Any] = {
        "source_id": source_id,
        "trigger": "start",
        "from_state": "WAITING/checking",
        "to_state": "REPLICATE/replicating",
        "actor": "cli:alice",
        "reason": "wave 1 go-live",
        "forced": False,
        "wave": wave,
    }
    fields.update(overrides)
    return Intent(**fields)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite"


@pytest.fixture
async def journal(path: Path) -> AsyncIterator[SqliteJournal]:
    async with SqliteJournal(path) as opened:
        yield opened


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read through a second, independent connection (not the journal's)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def read_file(path: Path) -> bytes:
    return path.read_bytes()


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the journal's write lock from another connection, as another process could."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (polling, at most 10 s) until ``predicate`` holds."""
    async with asyncio.timeout(10):
        # The condition is set by the journal's thread, which offers no event to await.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


# --- durability ------------------------------------------------------------------------


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_begin_and_settle_are_committed_when_they_return(
    path: Path, synchronous: Literal["NORMAL", "FULL"]
) -> None:
    async with SqliteJournal(path, synchronous=synchronous) as journal:
        entry_id = await journal.begin(intent("s1", wave="w1"))

        seen = rows(path, "SELECT id, source_id, outcome, settled_at FROM entries")
        assert seen == [(entry_id, "s1", "pending", None)]

        await journal.settle(entry_id, Outcome.APPLIED, request_id="req-1", attempts=2)

        seen = rows(path, "SELECT outcome, request_id, attempts, error FROM entries")
        assert seen == [("applied", "req-1", 2, None)]


async def test_a_second_journal_on_the_same_file_sees_committed_entries(
    path: Path, journal: SqliteJournal
) -> None:
    first = await journal.begin(intent("s1"))
    async with SqliteJournal(path) as other:
        assert [e.id for e in await other.open_intents()] == [first]
        second = await other.begin(intent("s2"))
    assert second > first
    assert [e.source_id for e in await journal.open_intents()] == ["s1", "s2"]


async def test_entries_survive_reopening_and_ids_keep_growing(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        first = await journal.begin(intent("s1"))
        await journal.settle(first, Outcome.FAILED, attempts=3, error="HTTP 500 SMS.0001")
    async with SqliteJournal(path) as journal:
        (entry,) = await journal.history()
        second = await journal.begin(intent("s1"))
    assert entry.id == first
    assert entry.outcome is Outcome.FAILED
    assert (entry.attempts, entry.error) == (3, "HTTP 500 SMS.0001")
    assert second > first


_CHILD_READY = """
import asyncio, sys
from sms_flow.journal import Intent, Outcome, SqliteJournal

async def main(path):
    journal = SqliteJournal(path)
    await journal.open()
    ids = []
    for i in range(10):
        ids.append(await journal.begin(Intent(f"s{i}", "start", "WAITING/checking",
                                              "REPLICATE/replicating", "wave:w1", None, wave="w1")))
    for entry_id in ids[:4]:
        await journal.settle(entry_id, Outcome.APPLIED, request_id=f"req-{entry_id}")
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


async def _spawn(script: str, path: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": _ROOT}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(path), stdout=asyncio.subprocess.PIPE, env=env
    )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    await proc.communicate()
    assert proc.returncode == -signal.SIGKILL


async def test_sigkill_after_ready_keeps_exactly_what_was_written(path: Path) -> None:
    proc = await _spawn(_CHILD_READY, path)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    assert line == b"ready\n"
    await _kill(proc)

    async with SqliteJournal(path) as journal:
        history = await journal.history()
        pending = await journal.open_intents(wave="w1")

    assert [e.source_id for e in history] == [f"s{i}" for i in range(10)]
    assert [e.outcome for e in history] == [Outcome.APPLIED] * 4 + [Outcome.PENDING] * 6
    assert [e.request_id for e in history[:4]] == [f"req-{e.id}" for e in history[:4]]
    assert [e.source_id for e in pending] == [f"s{i}" for i in range(4, 10)]


_CHILD_STREAM = """
import asyncio, sys
from sms_flow.journal import Intent, Outcome, SqliteJournal

async def worker(journal, k):
    while True:
        entry_id = await journal.begin(Intent(f"s{k}", None, "A", "B", "wave:w1", None))
        print(f"begun {entry_id}", flush=True)
        if entry_id % 2 == 0:
            await journal.settle(entry_id, Outcome.APPLIED)
            print(f"settled {entry_id}", flush=True)

async def main(path):
    async with SqliteJournal(path) as journal:
        await asyncio.gather(*(worker(journal, k) for k in range(8)))

asyncio.run(main(sys.argv[1]))
"""


async def test_sigkill_mid_stream_loses_nothing_acknowledged(path: Path) -> None:
    proc = await _spawn(_CHILD_STREAM, path)
    assert proc.stdout is not None
    begun: set[int] = set()
    settled: set[int] = set()
    while len(settled) < 300:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line, "the child process ended early"
        word, number = line.decode().split()
        (begun if word == "begun" else settled).add(int(number))
    await _kill(proc)

    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    async with SqliteJournal(path) as journal:
        outcomes = {e.id: e.outcome for e in await journal.history()}
    assert begun <= outcomes.keys()
    assert all(outcomes[i] is Outcome.APPLIED for i in settled)
    assert all(outcome is Outcome.PENDING for i, outcome in outcomes.items() if i % 2)


# --- queries ---------------------------------------------------------------------------


async def test_open_intents_are_the_pending_entries_oldest_first(journal: SqliteJournal) -> None:
    a = await journal.begin(intent("a", wave="w1"))
    b = await journal.begin(intent("b", wave="w2"))
    c = await journal.begin(intent("c", wave="w1"))
    d = await journal.begin(intent("d"))
    await journal.settle(a, Outcome.APPLIED)

    assert [e.id for e in await journal.open_intents()] == [b, c, d]
    assert [e.id for e in await journal.open_intents(wave="w1")] == [c]
    assert await journal.open_intents(wave="nope") == []
    (entry,) = await journal.open_intents(wave="w2")
    assert entry.outcome is Outcome.PENDING
    assert entry.settled_at is None
    assert entry.intent == intent("b", wave="w2")


async def test_history_filters_by_source_and_wave_and_keeps_the_last_n(
    journal: SqliteJournal,
) -> None:
    ids = [
        await journal.begin(intent(source, wave=wave))
        for source, wave in [("a", "w1"), ("b", "w1"), ("a", "w2"), ("a", "w1"), ("b", None)]
    ]

    assert [e.id for e in await journal.history()] == ids
    assert [e.id for e in await journal.history(source_id="a")] == [ids[0], ids[2], ids[3]]
    assert [e.id for e in await journal.history(wave="w1")] == [ids[0], ids[1], ids[3]]
    assert [e.id for e in await journal.history(source_id="a", wave="w1")] == [ids[0], ids[3]]
    assert [e.id for e in await journal.history(limit=2)] == ids[3:]
    assert [e.id for e in await journal.history(source_id="a", limit=2)] == [ids[2], ids[3]]
    assert [e.id for e in await journal.history(limit=100)] == ids
    assert await journal.history(limit=0) == []
    assert await journal.history(source_id="zzz") == []
    with pytest.raises(JournalError, match="limit must be 0 or more, got -1"):
        await journal.history(limit=-1)


async def test_record_writes_an_entry_born_settled(journal: SqliteJournal) -> None:
    before = time.time()
    entry_id = await journal.record(
        intent("s1", forced=True, trigger=None), Outcome.REJECTED, error="no such transition"
    )

    (entry,) = await journal.history()
    assert entry.id == entry_id
    assert entry.outcome is Outcome.REJECTED
    assert entry.forced is True
    assert entry.trigger is None
    assert entry.error == "no such transition"
    assert entry.settled_at == entry.created_at
    assert before <= entry.created_at <= time.time()
    assert await journal.open_intents() == []
    with pytest.raises(JournalError, match="already settled as 'rejected'"):
        await journal.settle(entry_id, Outcome.APPLIED)


async def test_settle_and_record_refuse_pending_as_an_outcome(journal: SqliteJournal) -> None:
    entry_id = await journal.begin(intent())
    with pytest.raises(JournalError, match="use begin"):
        await journal.settle(entry_id, Outcome.PENDING)
    with pytest.raises(JournalError, match="use begin"):
        await journal.record(intent(), Outcome.PENDING)
    assert [e.id for e in await journal.open_intents()] == [entry_id]


async def test_last_applied_is_the_latest_applied_or_observed_entry(
    journal: SqliteJournal,
) -> None:
    async def settled(source: str, outcome: Outcome) -> int:
        entry_id = await journal.begin(intent(source))
        await journal.settle(entry_id, outcome)
        return entry_id

    a_applied = await settled("a", Outcome.APPLIED)
    await settled("a", Outcome.FAILED)  # a later failure does not hide the applied move
    await journal.begin(intent("a"))  # nor does a pending intent
    await settled("b", Outcome.APPLIED)
    b_observed = await journal.record(intent("b"), Outcome.OBSERVED)
    await settled("c", Outcome.IGNORED)
    await journal.record(intent("c"), Outcome.CONFLICT)

    found = await journal.last_applied(["a", "b", "c", "d", "a"])

    assert {source: entry.id for source, entry in found.items()} == {
        "a": a_applied,
        "b": b_observed,
    }
    assert found["b"].outcome is Outcome.OBSERVED
    assert await journal.last_applied([]) == {}


async def test_last_applied_answers_for_thousands_of_sources(journal: SqliteJournal) -> None:
    sources = [f"src-{i:05d}" for i in range(1_200)]
    expected = {}
    for source in sources[::2]:
        expected[source] = await journal.record(intent(source), Outcome.APPLIED)

    found = await journal.last_applied(sources)

    assert {source: entry.id for source, entry in found.items()} == expected


async def test_members_are_idempotent_and_keep_first_insertion_order(
    journal: SqliteJournal,
) -> None:
    await journal.add_members("w1", ["c", "a", "b"])
    await journal.add_members("w1", ["b", "d", "a"])
    await journal.add_members("w2", ["a"])

    assert await journal.members("w1") == ["c", "a", "b", "d"]
    assert await journal.members("w2") == ["a"]
    assert await journal.members("unknown") == []


async def test_waves_lists_every_wave_in_order_of_first_appearance(
    journal: SqliteJournal,
) -> None:
    assert await journal.waves() == []
    await journal.add_members("w2", ["a"])
    await journal.begin(intent("x", wave="w1"))
    await journal.record(intent("y", wave="w3"), Outcome.REJECTED)
    await journal.add_members("w1", ["b"])
    await journal.begin(intent("z"))

    assert await journal.waves() == ["w2", "w1", "w3"]


async def test_a_string_instead_of_a_list_of_sources_is_refused(
    journal: SqliteJournal,
) -> None:
    with pytest.raises(JournalError, match=r"wrap it in a list: \['abc'\]"):
        await journal.add_members("w1", "abc")
    with pytest.raises(JournalError, match="not the string 'abc'"):
        await journal.last_applied("abc")
    assert await journal.waves() == []


def test_entry_to_dict_is_plain_json() -> None:
    entry = Entry(
        id=7,
        source_id="s1",
        trigger="start",
        from_state="WAITING/checking",
        to_state="REPLICATE/replicating",
        actor="wave:w1",
        reason=None,
        forced=False,
        wave="w1",
        outcome=Outcome.CONFLICT,
        request_id="req-9",
        attempts=1,
        error=None,
        created_at=1700000000.5,
        settled_at=1700000001.25,
    )

    data = entry.to_dict()

    assert data["outcome"] == "conflict"
    assert type(data["outcome"]) is str
    assert json.loads(json.dumps(data)) == data
    assert list(data) == [
        "id",
        "source_id",
        "trigger",
        "from_state",
        "to_state",
        "actor",
        "reason",
        "forced",
        "wave",
        "outcome",
        "request_id",
        "attempts",
        "error",
        "created_at",
        "settled_at",
    ]


# --- group commit and the event loop ---------------------------------------------------


async def test_a_failing_operation_fails_alone_and_its_batch_commits(
    path: Path, journal: SqliteJournal
) -> None:
    done = await journal.begin(intent("done"))
    await journal.settle(done, Outcome.APPLIED)
    waiting = await journal.begin(intent("waiting"))

    with write_lock(path):
        plug = asyncio.create_task(journal.begin(intent("plug")))
        await eventually(lambda: journal.stats().in_flight == 1)  # the thread waits on the lock
        batches = journal.stats().batches
        tasks = [
            asyncio.create_task(coro)
            for coro in (
                journal.begin(intent("new")),
                journal.settle(999_999, Outcome.APPLIED),
                journal.settle(done, Outcome.FAILED),
                journal.settle(waiting, Outcome.IGNORED, request_id="req-w"),
                journal.add_members("w1", ["new", "waiting"]),
            )
        ]
        await asyncio.sleep(0)  # every task queues its operation on its first step
    await plug
    new, unknown, twice, settled, added = await asyncio.gather(*tasks, return_exceptions=True)

    assert journal.stats().batches == batches + 2  # the plug's batch, then all five together
    assert journal.stats().largest_batch >= 5
    assert isinstance(unknown, JournalError)
    assert "no such entry" in str(unknown)
    assert isinstance(twice, JournalError)
    assert "already settled as 'applied'" in str(twice)
    assert isinstance(new, int)
    assert settled is None
    assert added is None
    committed = dict(rows(path, "SELECT source_id, outcome FROM entries"))
    assert committed == {
        "done": "applied",
        "waiting": "ignored",
        "plug": "pending",
        "new": "pending",
    }
    assert rows(path, "SELECT source_id FROM wave_members ORDER BY seq") == [
        ("new",),
        ("waiting",),
    ]


async def test_the_event_loop_runs_while_the_journal_waits_for_sqlite(
    path: Path, journal: SqliteJournal
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    ticking = asyncio.create_task(ticker())
    try:
        with write_lock(path):
            begin = asyncio.create_task(journal.begin(intent()))
            start = ticks
            await eventually(lambda: ticks >= start + 50)
            assert not begin.done()
        assert await begin == 1
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking


async def test_200_coroutines_get_distinct_growing_ids_and_the_loop_keeps_ticking(
    journal: SqliteJournal,
) -> None:
    callers, pairs = 200, 50  # 20,000 operations
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def caller(k: int) -> list[int]:
        ids = []
        for i in range(pairs):
            entry_id = await journal.begin(intent(f"s{k}", wave="load"))
            ids.append(entry_id)
            await journal.settle(entry_id, Outcome.APPLIED, request_id=f"r{k}-{i}")
        return ids

    ticking = asyncio.create_task(ticker())
    per_caller = await asyncio.gather(*(caller(k) for k in range(callers)))
    running = False
    await ticking

    every = [entry_id for ids in per_caller for entry_id in ids]
    assert sorted(every) == list(range(1, callers * pairs + 1))
    assert all(ids == sorted(ids) for ids in per_caller)
    assert await journal.open_intents() == []
    assert len(await journal.history(wave="load")) == callers * pairs
    stats = journal.stats()
    assert stats.operations >= 2 * callers * pairs
    assert stats.batches <= stats.operations // 2  # group commit shared transactions
    assert len(gaps) > stats.batches  # the ticker ran between batches ...
    assert max(gaps) < 0.5  # ... and was never held up for long


async def test_a_cancelled_begin_still_leaves_its_intent(
    path: Path, journal: SqliteJournal
) -> None:
    with write_lock(path):
        begin = asyncio.create_task(journal.begin(intent("s1")))
        await eventually(lambda: journal.stats().in_flight == 1)
        begin.cancel()
        with pytest.raises(asyncio.CancelledError):
            await begin
    (pending,) = await journal.open_intents()
    assert pending.source_id == "s1"


async def test_close_finishes_queued_work(path: Path) -> None:
    journal = SqliteJournal(path)
    await journal.open()
    tasks = [asyncio.create_task(journal.begin(intent(f"s{i}"))) for i in range(100)]
    await asyncio.sleep(0)  # all queued, none answered yet
    await journal.close()

    assert sorted(await asyncio.gather(*tasks)) == list(range(1, 101))
    assert rows(path, "SELECT count(*) FROM entries") == [(100,)]
    assert not [t for t in threading.enumerate() if t.name.startswith("sms-flow-journal")]


# --- errors ----------------------------------------------------------------------------


async def test_use_before_open_and_after_close_raises_journal_error(path: Path) -> None:
    journal = SqliteJournal(path)
    with pytest.raises(JournalError, match="is not open"):
        await journal.begin(intent())
    async with journal:
        with pytest.raises(JournalError, match="already open"):
            await journal.open()
    await journal.close()  # closing twice is harmless
    with pytest.raises(JournalError, match="is closed"):
        await journal.begin(intent())
    with pytest.raises(JournalError, match="is closed"):
        await journal.history()
    assert issubclass(JournalError, SmsFlowError)


async def test_a_newer_schema_version_is_refused(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        await journal.begin(intent())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")

    with pytest.raises(ConfigError, match=r"schema version 99.*upgrade sms-flow") as info:
        await SqliteJournal(path).open()
    assert str(path) in str(info.value)
    assert not [t for t in threading.enumerate() if t.name.startswith("sms-flow-journal")]


async def test_schema_version_is_recorded(path: Path, journal: SqliteJournal) -> None:
    assert rows(path, "PRAGMA user_version") == [(1,)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


async def test_another_sqlite_database_is_refused(path: Path) -> None:
    write_file(path, b"")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(ConfigError, match="not an sms-flow journal"):
        await SqliteJournal(path).open()
    assert rows(path, "SELECT name FROM sqlite_schema") == [("invoices",)]


async def test_a_file_that_is_not_sqlite_is_refused(path: Path) -> None:
    notes = b"not a database, just notes\n" * 200
    write_file(path, notes)
    with pytest.raises(ConfigError, match="not an SQLite database"):
        await SqliteJournal(path).open()
    assert read_file(path) == notes  # left untouched


async def test_a_directory_path_is_refused_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory") as info:
        await SqliteJournal(tmp_path).open()
    assert str(tmp_path / "journal.sqlite") in str(info.value)
    assert "SMS_FLOW_JOURNAL" in str(info.value)


async def test_a_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    write_file(tmp_path / "blocker", b"")
    with pytest.raises(ConfigError, match="cannot create the journal directory") as info:
        await SqliteJournal(tmp_path / "blocker" / "journal.sqlite").open()
    assert str(tmp_path / "blocker") in str(info.value)


def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    code = (
        "import asyncio, sys\n"
        "from sms_flow.errors import ConfigError\n"
        "from sms_flow.journal import SqliteJournal\n"
        "try:\n"
        "    asyncio.run(SqliteJournal(sys.argv[1]).open())\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    command = [sys.executable, "-c", code, str(locked / "journal.sqlite")]
    if os.geteuid() == 0:
        # root writes anywhere; drop the capabilities that allow it, as an operator's account lacks them
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip(reason="root, and no setpriv (util-linux) to drop DAC override")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 3, result.stderr
    assert "is not writable" in result.stdout
    assert str(locked) in result.stdout


def test_an_unknown_synchronous_mode_is_refused(path: Path) -> None:
    with pytest.raises(ConfigError, match="'OFF'; use 'NORMAL' or 'FULL'"):
        SqliteJournal(path, synchronous="OFF")  # type: ignore[arg-type]


async def test_a_failed_open_can_be_retried_once_the_path_is_fixed(tmp_path: Path) -> None:
    write_file(tmp_path / "blocker", b"")
    journal = SqliteJournal(tmp_path / "blocker" / "journal.sqlite")
    with pytest.raises(ConfigError):
        await journal.open()
    (tmp_path / "blocker").unlink()
    async with journal:
        assert await journal.begin(intent()) == 1


# --- default path ----------------------------------------------------------------------


def test_default_journal_path_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SMS_FLOW_JOURNAL", str(tmp_path / "j.sqlite"))
    assert default_journal_path() == tmp_path / "j.sqlite"


def test_default_journal_path_is_under_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SMS_FLOW_JOURNAL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_journal_path() == tmp_path / ".sms-flow" / "journal.sqlite"


# --- settle without waiting ------------------------------------------------------------


async def test_settle_without_waiting_is_written_before_the_next_begin(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        first = await journal.begin(
            Intent("s1", "configure", "WAITING/checking", "WAITING/setting", "a", None)
        )
        await journal.settle(first, Outcome.APPLIED, request_id="r1", attempts=1, wait=False)
        second = await journal.begin(
            Intent("s1", "start", "WAITING/setting", "INIT/replicating", "a", None)
        )
        # the second begin is committed, so the settle queued before it is too
        assert rows(path, "SELECT id, outcome, request_id FROM entries ORDER BY id") == [
            (first, "applied", "r1"),
            (second, "pending", None),
        ]
        await journal.settle(second, Outcome.APPLIED, wait=False)
    # close() writes what is still queued
    assert rows(path, "SELECT outcome FROM entries WHERE id = ?", (second,)) == [("applied",)]


async def test_a_failed_settle_nobody_waits_for_is_logged(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        entry = await journal.begin(
            Intent("s1", "configure", "WAITING/checking", "WAITING/setting", "a", None)
        )
        await journal.settle(entry, Outcome.APPLIED)
        with structlog.testing.capture_logs() as logs:
            await journal.settle(entry, Outcome.FAILED, wait=False)  # settled twice: a bug
            await journal.history()  # a round trip: the queued settle has run by now
            await asyncio.sleep(0)
    [event] = [e for e in logs if e["event"] == "journal write failed"]
    assert "already settled" in event["error"]
    assert event["log_level"] == "error"
