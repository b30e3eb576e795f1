"""The simulator's optional state file: SQLite, write-through, on a thread of its own.

Sources and their histories survive a restart of the simulator (an orchestrator killed with
SIGKILL and run again finds the same simulated sources). The event loop never touches SQLite:
the connection runs on the private worker of :mod:`sms_flow._sqlite` (the same one as the
journal's), on a dedicated thread fed by a queue. Writes that arrive together are committed
in one transaction (group commit), so many concurrent PUTs cost one commit; each PUT awaits
the commit of its own change before it is answered.

The file is in WAL mode with ``synchronous=NORMAL``: a committed change survives the
simulator being killed (it is in the WAL), though not necessarily a power failure.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from sms_flow._sqlite import Operation, SqliteWorker, each
from sms_flow.errors import ConfigError, SmsFlowError
from sms_flow.simulator.store import HistoryEntry, MovedBy, SourceRow
from sms_flow.states import parse_pair

__all__ = ["SqliteWriter"]

_log = logging.getLogger("sms_flow.simulator")

SCHEMA_VERSION: Final = "1"

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
_Write = tuple[Sequence[SourceRow], Sequence[tuple[str, HistoryEntry]]]


class SqliteWriter:
    """Owns the state file on a dedicated thread; implements :class:`~.store.StoreWriter`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(
            self._connect,
            name=f"sms-flow-simulator-sqlite:{path.name}",
            explain=self._explain,
            closed=lambda: SmsFlowError(
                f"the simulator's state file {path} is closed; start the simulator again"
            ),
            lost=self._log_lost,
        )

    @classmethod
    async def open(cls, path: Path) -> tuple[SqliteWriter, Loaded]:
        """Open (or create) the state file and read back every source and history entry.

        Raises :class:`~sms_flow.errors.ConfigError` naming the file when it cannot be used.
        """
        writer = cls(path)
        await writer._worker.start()
        try:
            loaded = await writer._worker.submit(_LOAD, path)
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
        if wait:
            return self._worker.submit(_WRITE, (sources, entries))
        self._worker.submit_nowait(_WRITE, (sources, entries))
        return None

    async def close(self) -> None:
        """Commit what is queued, close the file and end the thread."""
        await self._worker.close()

    # -- on the worker's thread ------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise _unusable(self.path, exc) from exc
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
                )
            elif row[0] != SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path}: simulator state file of schema {row[0]}, this version reads "
                    f"schema {SCHEMA_VERSION}; give another --state-file or delete this one"
                )
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _unusable(self.path, exc) from exc
            raise
        return conn

    def _explain(self, exc: sqlite3.Error, doing: str) -> SmsFlowError:
        error = SmsFlowError(
            f"simulator state file {self.path}: could not {doing}: {exc}; "
            f"check free disk space and permissions under {self.path.parent}"
        )
        error.__cause__ = exc
        return error

    def _log_lost(self, exc: BaseException) -> None:
        _log.error("simulator state file %s: write failed: %s", self.path, exc)


def _unusable(path: Path, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"{path}: cannot be used as the simulator's state file ({exc}); "
        "give a new path or a file an earlier simulator wrote"
    )


def _load(conn: sqlite3.Connection, path: Path) -> Loaded:
    try:
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
    except (sqlite3.Error, ValueError) as exc:
        raise _unusable(path, exc) from exc
    return rows, entries


def _write(conn: sqlite3.Connection, writes: list[_Write]) -> list[None]:
    """Store the rows and entries of every write queued together, in order."""
    sources = [row for rows, _ in writes for row in rows]
    if sources:
        conn.executemany(_UPSERT_SOURCE, sources)
    entries = [
        (sid, e.seq, e.time, str(e.from_pair), str(e.to_pair), e.by.value, e.trigger, e.request_id)
        for _, pairs in writes
        for sid, e in pairs
    ]
    if entries:
        conn.executemany(_INSERT_ENTRY, entries)
    return [None] * len(writes)


_LOAD: Final = each("load", _load, writes=False)
_WRITE: Final[Operation[_Write, None]] = Operation("write", _write, writes=True)
