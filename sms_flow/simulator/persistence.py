"""The simulator's optional state file: SQLite, write-through, on a thread of its own.

Sources and their histories survive a restart of the simulator (an orchestrator killed with
SIGKILL and run again finds the same simulated sources). The event loop never touches SQLite:
one dedicated thread owns the connection and takes work from a queue. Writes that arrive
together are committed in one transaction (group commit), so many concurrent PUTs cost one
commit; each PUT awaits the commit of its own change before it is answered.

The file is in WAL mode with ``synchronous=NORMAL``: a committed change survives the
simulator being killed (it is in the WAL), though not necessarily a power failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sms_flow.errors import ConfigError
from sms_flow.simulator.store import HistoryEntry, MovedBy, SourceRow
from sms_flow.states import parse_pair

__all__ = ["SqliteWriter"]

_log = logging.getLogger("sms_flow.simulator")

SCHEMA_VERSION: Final = "1"
_MAX_BATCH: Final = 1024

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    ord INTEGER NOT NULL,
    name TEXT NOT NULL,
    copystate TEXT NOT NULL,
    cycle TEXT NOT NULL,
    entered_at REAL NOT NULL,
    state_action_time INTEGER NOT NULL,
    stage_action_time INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    extra TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    source_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    from_pair TEXT NOT NULL,
    to_pair TEXT NOT NULL,
    by TEXT NOT NULL,
    trigger TEXT,
    request_id TEXT,
    PRIMARY KEY (source_id, seq)
) WITHOUT ROWID;
"""

_UPSERT_SOURCE: Final = """
INSERT INTO sources (id, ord, name, copystate, cycle, entered_at, state_action_time,
                     stage_action_time, registered_at, extra)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    copystate = excluded.copystate,
    cycle = excluded.cycle,
    entered_at = excluded.entered_at,
    state_action_time = excluded.state_action_time,
    stage_action_time = excluded.stage_action_time
"""

_INSERT_ENTRY: Final = """
INSERT OR REPLACE INTO history (source_id, seq, time, from_pair, to_pair, by, trigger, request_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

Loaded = tuple[list[SourceRow], list[tuple[str, HistoryEntry]]]


@dataclass(slots=True)
class _Job:
    kind: str  # "load", "write" or "stop"
    sources: Sequence[SourceRow] = ()
    entries: Sequence[tuple[str, HistoryEntry]] = ()
    future: asyncio.Future[Any] | None = None


class SqliteWriter:
    """Owns the state file on a dedicated thread; implements :class:`~.store.StoreWriter`."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self._loop = loop
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"sms-flow-simulator-sqlite:{path.name}", daemon=True
        )

    @classmethod
    async def open(cls, path: Path) -> tuple[SqliteWriter, Loaded]:
        """Open (or create) the state file and read back every source and history entry.

        Raises :class:`~sms_flow.errors.ConfigError` naming the file when it cannot be used.
        """
        writer = cls(path, asyncio.get_running_loop())
        writer._thread.start()
        future: asyncio.Future[Loaded] = writer._loop.create_future()
        writer._queue.put(_Job("load", future=future))
        try:
            loaded = await future
        except BaseException:
            await writer.close()
            raise
        return writer, loaded

    def write(
        self,
        sources: Sequence[SourceRow],
        entries: Sequence[tuple[str, HistoryEntry]],
        *,
        wait: bool,
    ) -> asyncio.Future[None] | None:
        """Queue rows and entries for the next commit; with ``wait``, a future of it."""
        if self._closed:
            raise RuntimeError(f"the state file {self.path} is closed")
        future: asyncio.Future[None] | None = self._loop.create_future() if wait else None
        self._queue.put(_Job("write", sources, entries, future))
        return future

    async def close(self) -> None:
        """Commit what is queued, close the file and end the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            future: asyncio.Future[None] = self._loop.create_future()
            self._queue.put(_Job("stop", future=future))
            await future
            await asyncio.to_thread(self._thread.join)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to the first job that comes
            failure = exc
        while True:
            batch = [self._queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]] = []
            writes = [job for job in batch if job.kind == "write"]
            if writes:
                error = failure or self._commit(conn, writes)
                done.extend((job.future, None, error) for job in writes)
                if error is not None and all(job.future is None for job in writes):
                    _log.error("simulator state file %s: write failed: %s", self.path, error)
            stop = False
            for job in batch:
                if job.kind == "load":
                    try:
                        if failure is not None:
                            raise failure
                        assert conn is not None
                        done.append((job.future, self._load(conn), None))
                    except BaseException as exc:
                        done.append((job.future, None, self._explain(exc)))
                elif job.kind == "stop":
                    stop = True
                    done.append((job.future, None, None))
            if stop and conn is not None:
                conn.close()
            self._resolve(done)
            if stop:
                return

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path}: simulator state file of schema {row[0]}, this version reads "
                f"schema {SCHEMA_VERSION}; give another --state-file or delete this one"
            )
        return conn

    def _load(self, conn: sqlite3.Connection) -> Loaded:
        rows: list[SourceRow] = [
            (
                str(r[0]),
                int(r[1]),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                float(r[5]),
                int(r[6]),
                int(r[7]),
                int(r[8]),
                str(r[9]),
            )
            for r in conn.execute(
                "SELECT id, ord, name, copystate, cycle, entered_at, state_action_time, "
                "stage_action_time, registered_at, extra FROM sources ORDER BY ord"
            )
        ]
        entries = [
            (
                str(r[0]),
                HistoryEntry(
                    int(r[1]),
                    float(r[2]),
                    parse_pair(r[3]),
                    parse_pair(r[4]),
                    MovedBy(r[5]),
                    r[6],
                    r[7],
                ),
            )
            for r in conn.execute(
                "SELECT source_id, seq, time, from_pair, to_pair, by, trigger, request_id "
                "FROM history ORDER BY source_id, seq"
            )
        ]
        return rows, entries

    def _commit(self, conn: sqlite3.Connection | None, writes: list[_Job]) -> BaseException | None:
        assert conn is not None
        try:
            conn.execute("BEGIN")
            for job in writes:
                if job.sources:
                    conn.executemany(_UPSERT_SOURCE, job.sources)
                if job.entries:
                    conn.executemany(
                        _INSERT_ENTRY,
                        [
                            (
                                sid,
                                e.seq,
                                e.time,
                                str(e.from_pair),
                                str(e.to_pair),
                                e.by.value,
                                e.trigger,
                                e.request_id,
                            )
                            for sid, e in job.entries
                        ],
                    )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return exc
        return None

    def _explain(self, exc: BaseException) -> BaseException:
        if isinstance(exc, ConfigError):
            return exc
        if isinstance(exc, (sqlite3.Error, ValueError, OSError)):
            return ConfigError(
                f"{self.path}: cannot be used as the simulator's state file ({exc}); "
                "give a new path or a file an earlier simulator wrote"
            )
        return exc

    def _resolve(
        self, done: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]]
    ) -> None:
        waiting = [item for item in done if item[0] is not None]
        if not waiting:
            return
        # RuntimeError: the loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle_futures, waiting)


def _settle_futures(
    done: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]],
) -> None:
    for future, result, error in done:
        if future is None or future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
