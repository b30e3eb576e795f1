"""The private SQLite worker, on real files: group commit, failures, close, loops."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sms_flow._sqlite import Operation, SqliteWorker, each
from sms_flow.errors import ConfigError, JournalError
from tests.conftest import eventually

Calls = list[tuple[str, list[Any]]]


class Db:
    """A worker on a file with one table, and what it saw: kinds run, statements, losses."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.calls: Calls = []
        self.statements: list[str] = []
        self.lost: list[BaseException] = []
        self.busy_timeout_ms = busy_timeout_ms
        self.worker = SqliteWorker(
            self.connect,
            name=f"test-sqlite-worker:{path.name}",
            explain=lambda exc, doing: JournalError(f"{path}: could not {doing}: {exc}"),
            closed=lambda: JournalError(f"{path} is closed; make a new worker"),
            lost=self.lost.append,
        )
        self.insert: Operation[tuple[str, int], str] = Operation(
            "insert", self._insert, writes=True, commutes=True
        )
        self.bump: Operation[str, int] = Operation("bump", self._bump, writes=True, commutes=True)
        self.read: Operation[str, int | None] = Operation("read", self._read, writes=False)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS items (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS counters (k TEXT PRIMARY KEY, n INTEGER)")
        conn.set_trace_callback(self.statements.append)
        return conn

    def _insert(self, conn: sqlite3.Connection, items: list[tuple[str, int]]) -> list[str]:
        self.calls.append(("insert", [k for k, _ in items]))
        for k, v in items:
            if v < 0:
                raise ValueError(f"negative value {v} for {k}")
            conn.execute("INSERT INTO items (k, v) VALUES (?, ?)", (k, v))
        return [k for k, _ in items]

    def _bump(self, conn: sqlite3.Connection, keys: list[str]) -> list[int]:
        self.calls.append(("bump", list(keys)))
        counts = []
        for k in keys:
            conn.execute(
                "INSERT INTO counters (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1",
                (k,),
            )
            counts.append(conn.execute("SELECT n FROM counters WHERE k = ?", (k,)).fetchone()[0])
        return counts

    def _read(self, conn: sqlite3.Connection, keys: list[str]) -> list[int | None]:
        self.calls.append(("read", list(keys)))
        found = []
        for k in keys:
            row = conn.execute("SELECT v FROM items WHERE k = ?", (k,)).fetchone()
            found.append(None if row is None else row[0])
        return found

    def rows(self) -> dict[str, int]:
        """The committed items, read through a connection of our own."""
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            return dict(conn.execute("SELECT k, v FROM items"))

    def commits(self) -> int:
        return sum(1 for s in self.statements if s == "COMMIT")


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-sqlite-worker")]


@contextlib.contextmanager
def write_lock(path: Path) -> Any:
    """Hold the file's write lock from another connection, as another process could."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    opened = Db(tmp_path / "w.sqlite")
    await opened.worker.start()
    try:
        yield opened
    finally:
        await opened.worker.close()


# --- group commit ----------------------------------------------------------------------


async def test_operations_queued_in_one_turn_commit_once(db: Db) -> None:
    commits = db.commits()

    keys = await asyncio.gather(*(db.worker.submit(db.insert, (f"k{i}", i)) for i in range(1000)))

    assert keys == [f"k{i}" for i in range(1000)]
    assert db.commits() == commits + 1
    assert (db.worker.batches, db.worker.operations, db.worker.largest_batch) == (1, 1000, 1000)
    assert db.calls == [("insert", [f"k{i}" for i in range(1000)])]  # one call for the kind
    assert len(db.rows()) == 1000


async def test_many_callers_in_a_loop_share_few_commits(db: Db) -> None:
    async def caller(k: int) -> None:
        for i in range(20):
            await db.worker.submit(db.insert, (f"c{k}-{i}", i))

    await asyncio.gather(*(caller(k) for k in range(50)))

    assert len(db.rows()) == 1000
    assert db.worker.operations == 1000
    # Each round of the 50 callers is one batch: they queue their next write in the same turn.
    assert db.commits() == db.worker.batches == 20


async def test_commuting_kinds_are_gathered_and_the_others_keep_their_place(db: Db) -> None:
    queued: list[asyncio.Future[Any]] = [
        db.worker.submit(db.insert, ("a", 1)),
        db.worker.submit(db.bump, "x"),
        db.worker.submit(db.insert, ("b", 2)),
        db.worker.submit(db.bump, "x"),
        db.worker.submit(db.read, "b"),  # does not commute: sees a and b, not c
        db.worker.submit(db.read, "c"),
        db.worker.submit(db.insert, ("c", 3)),
        db.worker.submit(db.read, "c"),
    ]
    results = await asyncio.gather(*queued)

    assert results == ["a", 1, "b", 2, 2, None, "c", 3]
    assert db.calls == [
        ("insert", ["a", "b"]),
        ("bump", ["x", "x"]),
        ("read", ["b", "c"]),
        ("insert", ["c"]),
        ("read", ["c"]),
    ]
    assert db.worker.batches == 1


# --- failures --------------------------------------------------------------------------


async def test_a_failing_write_fails_alone_and_the_rest_of_its_batch_commits(db: Db) -> None:
    await db.worker.submit(db.insert, ("taken", 0))
    batches = db.worker.batches

    results = await asyncio.gather(
        db.worker.submit(db.insert, ("a", 1)),
        db.worker.submit(db.insert, ("taken", 2)),  # primary key taken: an SQLite error
        db.worker.submit(db.bump, "x"),
        db.worker.submit(db.insert, ("bad", -1)),  # refused by the operation itself
        db.worker.submit(db.insert, ("b", 3)),
        return_exceptions=True,
    )

    a, taken, bumped, bad, b = results
    assert (a, bumped, b) == ("a", 1, "b")
    assert isinstance(taken, JournalError)
    assert "could not write: UNIQUE constraint failed: items.k" in str(taken)
    assert isinstance(taken.__cause__, sqlite3.IntegrityError)
    assert isinstance(bad, ValueError)  # not an SQLite error: handed over as it is
    assert str(bad) == "negative value -1 for bad"
    assert db.rows() == {"taken": 0, "a": 1, "b": 3}
    assert db.worker.batches == batches + 1  # tried whole, then replayed: one batch


async def test_a_failing_read_fails_alone(db: Db) -> None:
    broken: Operation[str, int] = each(
        "broken", lambda conn, k: conn.execute("SELECT nope FROM items").fetchone(), writes=False
    )
    results = await asyncio.gather(
        db.worker.submit(db.insert, ("a", 1)),
        db.worker.submit(broken, "a"),
        db.worker.submit(db.read, "a"),
        return_exceptions=True,
    )

    assert results[0] == "a"
    assert isinstance(results[1], JournalError)
    assert "could not read: no such column: nope" in str(results[1])
    assert results[2] == 1


async def test_a_transaction_that_cannot_start_fails_its_whole_batch(tmp_path: Path) -> None:
    db = Db(tmp_path / "w.sqlite", busy_timeout_ms=0)
    await db.worker.start()
    try:
        with write_lock(db.path):
            results = await asyncio.gather(
                db.worker.submit(db.insert, ("a", 1)),
                db.worker.submit(db.insert, ("b", 2)),
                return_exceptions=True,
            )
        for result in results:
            assert isinstance(result, JournalError)
            assert "could not start a transaction: database is locked" in str(result)
        assert db.calls == []
        # The lock is gone: the worker goes on.
        assert await db.worker.submit(db.insert, ("c", 3)) == "c"
        assert db.rows() == {"c": 3}
    finally:
        await db.worker.close()


async def test_a_failure_nobody_waits_for_goes_to_the_owner_and_the_rest_commits(db: Db) -> None:
    await db.worker.submit(db.insert, ("taken", 0))

    db.worker.submit_nowait(db.insert, ("taken", 1))
    db.worker.submit_nowait(db.insert, ("quiet", 2))
    # Queued after both, so they have run; a batch's results are handed over together, in
    # queue order, so the failure has reached the owner by now.
    assert await db.worker.submit(db.read, "quiet") == 2

    [lost] = db.lost
    assert isinstance(lost, JournalError)
    assert "UNIQUE constraint failed" in str(lost)
    assert db.rows() == {"taken": 0, "quiet": 2}


async def test_a_write_nobody_waits_for_may_come_from_outside_any_event_loop(db: Db) -> None:
    await asyncio.to_thread(db.worker.submit_nowait, db.insert, ("from-a-thread", 7))
    assert await db.worker.submit(db.read, "from-a-thread") == 7


async def test_a_cancelled_caller_does_not_withdraw_its_operation(db: Db) -> None:
    with write_lock(db.path):
        future = db.worker.submit(db.insert, ("a", 1))
        await eventually(lambda: db.worker.in_flight == 1)  # the thread waits on the lock
        future.cancel()
    assert await db.worker.submit(db.read, "a") == 1


# --- lifecycle -------------------------------------------------------------------------


async def test_close_lets_queued_work_finish(tmp_path: Path) -> None:
    db = Db(tmp_path / "w.sqlite")
    await db.worker.start()
    futures = [db.worker.submit(db.insert, (f"k{i}", i)) for i in range(100)]
    for i in range(100, 110):
        db.worker.submit_nowait(db.insert, (f"k{i}", i))

    await db.worker.close()

    assert [f.result() for f in futures] == [f"k{i}" for i in range(100)]
    assert len(db.rows()) == 110
    assert db.lost == []
    assert not worker_threads()


async def test_use_after_close_fails_with_the_owners_error(tmp_path: Path) -> None:
    db = Db(tmp_path / "w.sqlite")
    await db.worker.start()
    closing = asyncio.create_task(db.worker.close())
    await asyncio.sleep(0)  # close() has begun
    with pytest.raises(JournalError, match=r"w\.sqlite is closed; make a new worker"):
        db.worker.submit(db.insert, ("late", 1))
    await closing
    with pytest.raises(JournalError, match="is closed"):
        db.worker.submit(db.read, "late")
    with pytest.raises(JournalError, match="is closed"):
        db.worker.submit_nowait(db.insert, ("late", 1))
    await db.worker.close()  # twice: harmless
    assert db.rows() == {}


@pytest.mark.parametrize("failure", ["config", "sqlite"])
async def test_a_failure_to_connect_reaches_the_opener(tmp_path: Path, failure: str) -> None:
    def connect() -> sqlite3.Connection:
        if failure == "config":
            raise ConfigError(f"{tmp_path / 'w.sqlite'}: not usable; choose another path")
        return sqlite3.connect(tmp_path / "missing" / "w.sqlite")  # no such directory

    worker = SqliteWorker(
        connect,
        name="test-sqlite-worker:failing",
        explain=lambda exc, doing: JournalError(f"could not {doing}: {exc}"),
        closed=lambda: JournalError("closed"),
        lost=lambda exc: None,
    )
    expected, message = (
        (ConfigError, "not usable; choose another path")
        if failure == "config"
        else (sqlite3.OperationalError, "unable to open database file")
    )
    with pytest.raises(expected, match=message):
        await worker.start()
    assert not worker_threads()
    noop: Operation[int, int] = each("noop", lambda conn, arg: arg, writes=False)
    with pytest.raises(JournalError, match="closed"):
        worker.submit(noop, 1)


async def test_two_event_loops_each_get_their_own_results(db: Db) -> None:
    async def other_loop() -> list[str]:
        return list(
            await asyncio.gather(*(db.worker.submit(db.insert, (f"t{i}", i)) for i in range(50)))
        )

    here = asyncio.gather(*(db.worker.submit(db.insert, (f"m{i}", i)) for i in range(50)))
    there = await asyncio.to_thread(asyncio.run, other_loop())

    assert await here == [f"m{i}" for i in range(50)]
    assert there == [f"t{i}" for i in range(50)]
    assert len(db.rows()) == 100
