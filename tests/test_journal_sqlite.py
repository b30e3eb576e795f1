"""The SQLite journal on real files: durability, group commit, locks, schema, unusable paths.

What every journal does is in ``tests/test_journal.py`` (run against this back end too).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from sms_flow import journal_sqlite
from sms_flow.errors import ConfigError, LeaseLostError
from sms_flow.journal import JournalError, Lease, Outcome
from sms_flow.journal_sqlite import SCHEMA_VERSION, SqliteJournal
from tests.conftest import Spawner, eventually
from tests.test_journal import assert_counts_agree_with_history, intent


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


def journal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sms-flow-journal")]


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


_CHILD_READY = """
import asyncio, sys
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_sqlite import SqliteJournal

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


async def test_sigkill_after_ready_keeps_exactly_what_was_written(
    path: Path, spawn: Spawner
) -> None:
    child = spawn.python("-c", _CHILD_READY, str(path))
    assert await child.areadline() == "ready"  # proof: its writes have returned
    assert child.kill() == -signal.SIGKILL

    async with SqliteJournal(path) as journal:
        history = await journal.history()
        pending = await journal.open_intents(wave="w1")

    assert [e.source_id for e in history] == [f"s{i}" for i in range(10)]
    assert [e.outcome for e in history] == [Outcome.APPLIED] * 4 + [Outcome.PENDING] * 6
    assert [e.request_id for e in history[:4]] == [f"req-{e.id}" for e in history[:4]]
    assert [e.source_id for e in pending] == [f"s{i}" for i in range(4, 10)]


_CHILD_STREAM = """
import asyncio, sys
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_sqlite import SqliteJournal

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


async def test_sigkill_mid_stream_loses_nothing_acknowledged(path: Path, spawn: Spawner) -> None:
    child = spawn.python("-c", _CHILD_STREAM, str(path))
    begun: set[int] = set()
    settled: set[int] = set()
    while len(settled) < 300:  # killed mid-stream, once 300 settles have returned
        word, number = (await child.areadline()).split()
        (begun if word == "begun" else settled).add(int(number))
    assert child.kill() == -signal.SIGKILL

    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    async with SqliteJournal(path) as journal:
        outcomes = {e.id: e.outcome for e in await journal.history()}
    assert begun <= outcomes.keys()
    assert all(outcomes[i] is Outcome.APPLIED for i in settled)
    assert all(outcome is Outcome.PENDING for i, outcome in outcomes.items() if i % 2)


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
                journal.begin(intent("new", wave="w9")),
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
    # The wave first named in the batch that was rolled back and replayed is recorded.
    assert await journal.waves() == ["w9", "w1"]


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


@pytest.mark.slow
async def test_200_coroutines_get_distinct_growing_ids_and_the_loop_keeps_ticking(
    journal: SqliteJournal,
) -> None:
    callers, pairs = 200, 50  # 20,000 operations
    turns = 0  # turns of the event loop, counted by a task that yields at once every time
    waited: list[int] = []  # the turns the loop made while each journal call was awaited
    running = True

    async def ticker() -> None:
        nonlocal turns
        while running:
            await asyncio.sleep(0)
            turns += 1

    async def caller(k: int) -> list[int]:
        ids = []
        for i in range(pairs):
            before = turns
            entry_id = await journal.begin(intent(f"s{k}", wave="load"))
            waited.append(turns - before)
            ids.append(entry_id)
            before = turns
            await journal.settle(entry_id, Outcome.APPLIED, request_id=f"r{k}-{i}")
            waited.append(turns - before)
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
    # The loop kept turning while the thread wrote: during every one of the 20,000 calls
    # (none was written on the loop, holding it up), and more often than there were batches.
    assert len(waited) == 2 * callers * pairs
    assert min(waited) >= 1
    assert turns > stats.batches


async def test_begins_and_settles_queued_together_commit_as_one_batch(
    path: Path, journal: SqliteJournal
) -> None:
    old = await asyncio.gather(*(journal.begin(intent(f"old{i}")) for i in range(600)))
    batches = journal.stats().batches

    # Interleaved, as a wave queues them: one source's outcome, another's next intent, ...
    calls: list[Awaitable[int | None]] = []
    for i, entry_id in enumerate(old):
        calls.append(journal.settle(entry_id, Outcome.APPLIED, request_id=f"r{i}"))
        calls.append(journal.begin(intent(f"new{i}", wave=f"w{i % 3}")))
    results = await asyncio.gather(*calls)

    assert journal.stats().batches == batches + 1
    new_ids = results[1::2]
    assert new_ids == list(range(old[-1] + 1, old[-1] + 601))
    assert rows(path, "SELECT count(*) FROM entries WHERE outcome = 'applied'") == [(600,)]
    assert rows(path, "SELECT source_id FROM entries WHERE id = ?", (new_ids[-1],)) == [("new599",)]
    assert await journal.waves() == ["w0", "w1", "w2"]


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
    assert not journal_threads()


# --- schema ----------------------------------------------------------------------------


async def test_schema_version_and_application_id_are_recorded(
    path: Path, journal: SqliteJournal
) -> None:
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "PRAGMA application_id") == [(0x534D5346,)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


async def test_a_newer_schema_version_is_refused(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        await journal.begin(intent())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")

    with pytest.raises(ConfigError, match=r"schema version 99.*upgrade sms-flow") as info:
        await SqliteJournal(path).open()
    assert str(path) in str(info.value)
    assert not journal_threads()


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
    assert path.read_bytes() == notes  # left untouched


# --- unusable paths --------------------------------------------------------------------


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
        "from sms_flow.journal_sqlite import SqliteJournal\n"
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
    assert not journal_threads()
    (tmp_path / "blocker").unlink()
    async with journal:
        assert await journal.begin(intent()) == 1


# --- the journal knows its file (issue 9, point 5) -------------------------------------------


@pytest.mark.parametrize("parts", [("",), ("", "-wal", "-shm"), ("-wal",)])
async def test_a_journal_deleted_while_open_refuses_every_later_call(
    path: Path, journal: SqliteJournal, parts: tuple[str, ...]
) -> None:
    first = await journal.begin(intent("s1"))
    await journal.settle(first, Outcome.APPLIED)
    for suffix in parts:
        Path(f"{path}{suffix}").unlink()

    with pytest.raises(JournalError, match="deleted") as info:
        await journal.begin(intent("s2"))
    message = str(info.value)
    assert str(path) in message and "nothing more" in message
    with pytest.raises(JournalError, match="deleted"):
        await journal.history()
    with pytest.raises(JournalError, match="deleted"):
        await journal.settle(first, Outcome.FAILED)


async def test_a_journal_replaced_while_open_refuses_every_later_call(
    path: Path, journal: SqliteJournal, tmp_path: Path
) -> None:
    await journal.begin(intent("s1"))
    other = tmp_path / "other.sqlite"
    async with SqliteJournal(other) as elsewhere:
        await elsewhere.begin(intent("x"))
    replacement = other.read_bytes()
    os.replace(other, path)

    with pytest.raises(JournalError, match="replaced"):
        await journal.begin(intent("s2"))
    with pytest.raises(JournalError, match="replaced"):
        await journal.open_intents()
    await journal.close()
    assert path.read_bytes() == replacement, "nothing was written into the new file"


def _interior_pages(path: Path) -> list[int]:
    """The numbers of the interior b-tree pages of an SQLite file (read from its bytes)."""
    data = path.read_bytes()
    size = int.from_bytes(data[16:18], "big") or 65536
    found = []
    for number in range(1, len(data) // size + 1):
        start = (number - 1) * size + (100 if number == 1 else 0)
        if data[start] in (0x02, 0x05):  # interior index, interior table
            found.append(number)
    return found


async def test_a_journal_with_damaged_pages_is_refused_at_open(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        for i in range(3000):  # enough rows for interior pages
            await journal.record(intent(f"source-{i:05d}", reason="x" * 40), Outcome.APPLIED)
    header = path.read_bytes()[:100]
    interior = [n for n in _interior_pages(path) if n > 1]
    assert interior, "the file has interior pages"
    size = int.from_bytes(header[16:18], "big")
    with path.open("r+b") as f:  # scribble over an interior page's cell pointers
        f.seek((interior[0] - 1) * size + 8)
        f.write(b"\xff\x7f" * 40)
    assert path.read_bytes()[:100] == header, "the header is intact"

    with pytest.raises(JournalError, match="damaged") as info:
        await SqliteJournal(path).open()
    message = str(info.value)
    assert str(path) in message and "sms-flow journal check" in message
    assert not journal_threads()


_SCHEMA_1 = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source_id TEXT NOT NULL, trigger TEXT,
    from_state TEXT NOT NULL, to_state TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT,
    forced INTEGER NOT NULL, wave TEXT, outcome TEXT NOT NULL, request_id TEXT,
    attempts INTEGER NOT NULL, error TEXT, created_at REAL NOT NULL, settled_at REAL
);
CREATE INDEX entries_source ON entries (source_id);
CREATE INDEX entries_wave ON entries (wave) WHERE wave IS NOT NULL;
CREATE INDEX entries_pending ON entries (outcome) WHERE outcome = 'pending';
CREATE TABLE waves (seq INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE wave_members (
    seq INTEGER PRIMARY KEY, wave TEXT NOT NULL, source_id TEXT NOT NULL,
    UNIQUE (wave, source_id)
);
PRAGMA application_id = 1397576518;
PRAGMA user_version = 1;
"""


async def test_a_version_1_journal_is_migrated_and_keeps_its_entries(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA_1)
        conn.execute(
            "INSERT INTO entries (source_id, trigger, from_state, to_state, actor, forced, wave, "
            "outcome, attempts, created_at) VALUES ('s1', 'configure', 'WAITING/checking', "
            "'WAITING/setting', 'wave:w1', 0, 'w1', 'pending', 0, 1700000000.0)"
        )
        conn.execute("INSERT INTO waves (name) VALUES ('w1')")
        conn.commit()

    async with SqliteJournal(path) as journal:
        [old] = await journal.open_intents(wave="w1")
        assert (old.source_id, old.outcome, old.created_at) == ("s1", Outcome.PENDING, 1700000000.0)
        assert (old.endpoint, old.project, old.run_id) == (None, None, None), "unknown"
        new = await journal.begin(intent("s2", endpoint="https://sms.example", project="p1"))
        assert await journal.waves() == ["w1"]
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(5,)]
    assert rows(path, "SELECT endpoint, project FROM entries WHERE id = ?", (new,)) == [
        ("https://sms.example", "p1")
    ]


async def test_a_version_2_journals_members_get_their_waves_endpoint(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA_1)
        for statement in journal_sqlite._MIGRATIONS[1].split(";"):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        for wave, endpoint in [("w1", "https://old"), ("w1", "https://e1"), ("w2", None)]:
            conn.execute(
                "INSERT INTO entries (source_id, trigger, from_state, to_state, actor, forced, "
                "wave, outcome, attempts, created_at, endpoint) VALUES ('s1', 'configure', "
                "'WAITING/checking', 'WAITING/setting', 'x', 0, ?, 'applied', 1, 1.0, ?)",
                (wave, endpoint),
            )
        conn.executemany(
            "INSERT INTO wave_members (wave, source_id) VALUES (?, ?)",
            [("w1", "b"), ("w1", "a"), ("w2", "c"), ("w3", "d")],
        )
        conn.commit()

    async with SqliteJournal(path) as journal:
        assert await journal.members("w1", endpoint="https://e1") == ["b", "a"]  # the last one
        assert await journal.member_endpoints("w2") == [""]  # no entry names an endpoint
        assert await journal.member_endpoints("w3") == [""]
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(5,)]


async def test_a_version_4_journal_gets_each_sources_latest_entry_and_counts(path: Path) -> None:
    """Version 5 adds the table of each source's latest entry and the counts kept from it:
    opening a version 4 journal fills them from its entries and members, and the census
    and wave status read from them then agree with the entries."""
    path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA_1)
        for migration in journal_sqlite._MIGRATIONS[1:4]:
            for statement in migration.split(";"):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        columns = (
            "source_id, trigger, from_state, to_state, actor, forced, wave, outcome, "
            "attempts, created_at, settled_at, endpoint"
        )
        conn.executemany(
            f"INSERT INTO entries ({columns}) VALUES (?, 'x', ?, ?, 'cli:alice', 0, ?, ?, 1, "
            "?, ?, 'https://e')",
            [
                ("a", "WAITING/checking", "WAITING/setting", "w1", "applied", 1.0, 1.5),
                ("a", "WAITING/setting", "INIT/replicating", "w1", "failed", 2.0, 2.5),
                ("b", "WAITING/checking", "WAITING/setting", "w1", "pending", 3.0, None),
                ("c", "WAITING/checking", "WAITING/setting", None, "observed", 4.0, 4.0),
                ("b", "WAITING/checking", "WAITING/setting", "w2", "unverified", 5.0, None),
            ],
        )
        conn.executemany(
            "INSERT INTO wave_members (wave, endpoint, source_id) VALUES (?, 'https://e', ?)",
            [("w1", "a"), ("w1", "b"), ("w1", "d"), ("w2", "b")],
        )
        conn.commit()

    async with SqliteJournal(path) as journal:
        await assert_counts_agree_with_history(journal, ["w1", "w2"])
        census = await journal.census(stuck_before=10.0)
        assert census.states == {"WAITING/setting": 2, "WAITING/checking": 1}
        assert census.failing == {"WAITING/setting": 1, "WAITING/checking": 1}
        status = await journal.wave_status("w1")
        assert (status.states, status.entries, status.last_activity) == (
            {"WAITING/setting": 1, "WAITING/checking": 1, "unknown": 1},
            3,
            3.0,
        )
        await journal.record(intent("d", wave="w1", endpoint="https://e"), Outcome.APPLIED)
        await assert_counts_agree_with_history(journal, ["w1", "w2"])
        assert (await journal.check()).ok
    assert rows(path, "PRAGMA user_version") == [(5,)]


async def test_check_finds_a_latest_table_that_disagrees_with_the_entries(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        await journal.record(intent("a"), Outcome.APPLIED)
        await journal.record(intent("b"), Outcome.APPLIED)
        assert (await journal.check()).ok
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM latest WHERE source_id = 'b'")
        conn.commit()
    async with SqliteJournal(path) as journal:
        check = await journal.check()
    assert not check.ok
    [problem] = check.problems
    assert "latest entry holds 1 sources" in problem and "the entries name 2" in problem
    assert "sms-flow journal copy" in problem


# --- the lease guard -------------------------------------------------------------------------


def _tripped(lease: Lease) -> bool:
    try:
        lease.check()
    except LeaseLostError:
        return True
    return False


async def test_a_run_whose_heartbeat_cannot_reach_the_journal_stops_pushing(
    path: Path, journal: SqliteJournal
) -> None:
    lease = Lease(
        journal, "wave", actor="wave:w", name="w", endpoint="https://e", seconds=0.6, exclusive=True
    )
    await lease.start()
    lease.check()  # just started: it may push

    async def push_in_flight() -> None:
        async with lease.watch():
            await asyncio.Event().wait()  # a push that has not answered yet

    with write_lock(path):  # the heartbeat waits for the lock: no renewal reaches the journal
        pushing = asyncio.create_task(push_in_flight())
        await eventually(lambda: _tripped(lease))
        with pytest.raises(LeaseLostError, match="was cut off"):
            await pushing
    with pytest.raises(LeaseLostError, match="without renewing its lease") as info:
        lease.check()
    assert "pushes nothing more" in str(info.value)
    await lease.end()
    assert await journal.runs() == [], "its end still frees its sources"


async def test_workers_opening_a_new_journal_at_once_all_open_it(tmp_path: Path) -> None:
    """Workers of one wave started together (``run --join``) open one new file at once: each
    waits for the others' switch to WAL mode and schema set-up instead of failing. (Seen as
    "database is locked" from ``PRAGMA journal_mode`` in tests/wave/test_join.py; the race is
    narrow, and this does not catch it every time.)"""
    path = tmp_path / "new.sqlite"
    for _ in range(10):
        journals = [SqliteJournal(path) for _ in range(8)]
        await asyncio.gather(*(j.open() for j in journals))
        await asyncio.gather(*(j.close() for j in journals))
        for part in ("", "-wal", "-shm"):
            Path(f"{path}{part}").unlink(missing_ok=True)
