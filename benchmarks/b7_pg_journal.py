"""B7: B3's 10,000 pushes with the PostgreSQL journal, beside the same run with the SQLite one.

What is measured: changestate requests per second through ``Engine.fire``, exactly as B3's
sms-flow side (:func:`benchmarks._common.engine_pushes`: ``sources`` sources each walked
``WAITING/checking → FINISHED/cutovered``, 5 pushes a source, 64 in flight, no read before or
after the push, AK/SK signing, the engine's own run claiming each source on its first push,
every push journalled before it goes out and settled after), once with a
:class:`~sms_flow.journal_postgres.PostgresJournal` (its default pool) and once with a
:class:`~sms_flow.journal_sqlite.SqliteJournal` (its defaults) in a temporary directory.

The PostgreSQL server is a throwaway cluster this benchmark starts
(:class:`sms_flow.testing._postgres.Cluster`: ``initdb``, ``pg_ctl``; as root, as the
``postgres`` user) with the server's default durability (``fsync`` and
``synchronous_commit`` on: every commit waits for its WAL flush) and ``pg_stat_statements``
loaded; or the server ``SMS_FLOW_BENCH_PG_DSN`` names (its user needs ``CREATEDB``). Each run
gets a new database, dropped afterwards.

The sides are run ``repeat`` times, interleaved, each against a fresh simulator process; the
best run of each counts. Each run reports the CPU per wall second of the client, the
simulator and (PostgreSQL side, own cluster) the server's processes together, the journal's
batching (writes per transaction), and, read from the server, the statements per push
(``pg_stat_statements``, own cluster; each is a round trip, ``BEGIN`` and ``COMMIT``
included), with the statements run most.

Target: PostgreSQL at least 0.8x SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import (
    SHARED_CORES_NOTE,
    Baseline,
    CpuClock,
    Figure,
    Run,
    SimulatorProcess,
    cpu_seconds_of,
    engine_pushes,
    push_path,
    ratio,
    simulator,
)
from sms_flow.journal_postgres import PostgresJournal
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.testing._postgres import Cluster

TARGET = 0.8
DSN_ENV = "SMS_FLOW_BENCH_PG_DSN"
"""A PostgreSQL server to use instead of a cluster of the benchmark's own."""

_SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "max_connections": "50"}
"""The cluster's settings beyond the server's defaults (durability left as it is)."""


class Server:
    """Where the PostgreSQL side's databases are made: a cluster of our own, or a DSN."""

    def __init__(self, admin_dsn: str, cluster: Cluster | None) -> None:
        self.admin_dsn = admin_dsn
        self.cluster = cluster
        self._made = 0

    @property
    def postmaster(self) -> int | None:
        """The server's main process (own cluster only): its CPU and its children's count."""
        if self.cluster is None:
            return None
        return int((self.cluster.data / "postmaster.pid").read_text().split()[0])

    async def _admin(self, *statements: str) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.admin_dsn, timeout=30)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def database(self) -> str:
        """A new empty database (with ``pg_stat_statements`` when the server has it); its DSN."""
        from urllib.parse import urlsplit, urlunsplit

        self._made += 1
        name = f"sms_flow_bench_{os.getpid()}_{self._made}"
        await self._admin(f'CREATE DATABASE "{name}"')
        dsn = urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{name}"))
        if self.cluster is not None:
            import asyncpg

            conn = await asyncpg.connect(dsn, timeout=30)
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            finally:
                await conn.close()
        return dsn

    async def drop(self, dsn: str) -> None:
        from urllib.parse import urlsplit

        name = urlsplit(dsn).path.lstrip("/")
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def server() -> Iterator[Server]:
    """The PostgreSQL server of this run: ``SMS_FLOW_BENCH_PG_DSN``, or a cluster started now."""
    external = os.environ.get(DSN_ENV)
    if external:
        yield Server(external, None)
        return
    why = Cluster.unavailable()
    if why is not None:
        raise RuntimeError(
            f"B7 needs PostgreSQL: {why}; install the PostgreSQL server, or set {DSN_ENV} "
            "to the DSN of a server where its user may create databases"
        )
    with Cluster(_SETTINGS) as cluster:
        yield Server(cluster.admin_dsn, cluster)


def _children_cpu(parent: int) -> dict[int, float]:
    """CPU seconds of ``parent`` and each of its child processes (Linux ``/proc``)."""
    found: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == parent or ppid == parent:
            cpu = cpu_seconds_of(pid)
            if cpu is not None:
                found[pid] = cpu
    return found


class ServerCpuClock(CpuClock):
    """:class:`CpuClock`, and the CPU of the PostgreSQL server's processes over the window
    (a process that ended inside it is not counted: the journal's connections outlive it)."""

    def __init__(self, simulator_pid: int, postmaster: int | None) -> None:
        super().__init__(simulator_pid)
        self._postmaster = postmaster
        self.server_cpu: float | None = None

    def __enter__(self) -> ServerCpuClock:
        self._server0 = _children_cpu(self._postmaster) if self._postmaster else {}
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self._postmaster:
            end = _children_cpu(self._postmaster)
            self.server_cpu = sum(cpu - self._server0.get(pid, 0.0) for pid, cpu in end.items())

    def shares(self) -> dict[str, float | None]:
        wall = self.wall or 1e-9
        return {
            **super().shares(),
            "postgres_cpu_per_wall": (
                round(self.server_cpu / wall, 3) if self.server_cpu is not None else None
            ),
        }


async def _statements(dsn: str) -> dict[str, tuple[int, float]]:
    """The database's statements so far: calls and milliseconds, by (normalized) text; empty
    without ``pg_stat_statements`` (which counts a statement as it ends)."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        if await conn.fetchval("SELECT to_regclass('pg_stat_statements')") is None:
            return {}
        rows = await conn.fetch(
            "SELECT query, calls, total_exec_time FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return {r["query"]: (r["calls"], r["total_exec_time"]) for r in rows}
    finally:
        await conn.close()


def _per_push(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]], pushes: int
) -> dict[str, Any]:
    """Statements per push between two :func:`_statements`, and those that ran most."""
    calls: dict[str, tuple[int, float]] = {}
    for query, (n, ms) in after.items():
        n0, ms0 = before.get(query, (0, 0.0))
        if n > n0 and "pg_stat_statements" not in query:
            calls[query] = (n - n0, ms - ms0)
    top = sorted(calls.items(), key=lambda kv: -kv[1][0])[:8]
    return {
        "server_statements_per_push": (
            round(sum(n for n, _ in calls.values()) / pushes, 3) if after else None
        ),
        "top_statements": [
            {"query": q[:160], "per_push": round(n / pushes, 3), "server_ms": round(ms, 1)}
            for q, (n, ms) in top
        ],
    }


async def _postgres(sim: SimulatorProcess, warm: int, concurrency: int, where: Server) -> Run:
    dsn = await where.database()
    before: list[dict[str, tuple[int, float]]] = []

    async def count() -> None:
        before.append(await _statements(dsn))

    try:
        async with PostgresJournal(dsn) as journal:
            run = await engine_pushes(
                sim,
                warm,
                concurrency,
                journal,
                side="PostgreSQL journal",
                clock=lambda: ServerCpuClock(sim.pid, where.postmaster),
                before_window=count,
            )
        after = await _statements(dsn)
    finally:
        await where.drop(dsn)
    return Run(
        run.side,
        run.requests,
        run.wall,
        run.shares,
        {**run.extra, **_per_push(before[0], after, run.requests)},
    )


async def _sqlite(sim: SimulatorProcess, warm: int, concurrency: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="sms-flow-bench-b7-") as tmp:
        async with SqliteJournal(Path(tmp) / "journal.sqlite") as journal:
            return await engine_pushes(sim, warm, concurrency, journal, side="SQLite journal")


def run(
    *, sources: int = 2_000, concurrency: int = 64, repeat: int = 3, **_unused: Any
) -> list[Figure]:
    warm = concurrency
    pg: list[Run] = []
    lite: list[Run] = []
    with server() as where:
        for _ in range(repeat):
            with simulator(warm + sources) as sim:
                lite.append(asyncio.run(_sqlite(sim, warm, concurrency)))
            with simulator(warm + sources) as sim:
                pg.append(asyncio.run(_postgres(sim, warm, concurrency, where)))
        own = where.cluster is not None
    best_pg = max(pg, key=lambda r: r.rate)
    best_lite = max(lite, key=lambda r: r.rate)
    vs = ratio(best_pg.rate, best_lite.rate)
    n = best_pg.requests
    return [
        Figure(
            id="B7",
            what=f"push {n:,} changes, PostgreSQL journal, concurrency {concurrency}",
            value=best_pg.rate,
            unit="requests/s",
            better="higher",
            target=f">= {TARGET:g}x the SQLite journal",
            met=(vs or 0) >= TARGET,
            baselines=[Baseline("same run, SQLite journal", best_lite.rate, vs)],
            note=f"best of {repeat}; PostgreSQL "
            + ("cluster of our own, default durability" if own else f"at {DSN_ENV}")
            + "; "
            + SHARED_CORES_NOTE
            + ", and with PostgreSQL",
            details={
                "sources": sources,
                "steps_per_source": len(push_path()),
                "concurrency": concurrency,
                "runs": [r.to_dict() for r in (*lite, *pg)],
            },
        )
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.b7_pg_journal --side postgres``: one side alone, e.g. profiled.

    ``py-spy record -o b7.svg -- python -m benchmarks.b7_pg_journal`` profiles the client;
    the simulator and PostgreSQL run in processes of their own and are not recorded.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b7_pg_journal")
    parser.add_argument("--side", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--sources", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    from sms_flow.log import ensure_configured

    ensure_configured()
    with server() as where, simulator(args.concurrency + args.sources) as sim:
        if args.side == "sqlite":
            result = asyncio.run(_sqlite(sim, args.concurrency, args.concurrency))
        else:
            result = asyncio.run(_postgres(sim, args.concurrency, args.concurrency, where))
    print(json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
