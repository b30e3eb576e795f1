"""B11: the dashboard's first page and its update with 100,000 sources in the journal.

The journal: one wave of ``sources`` members (100,000), each with 1 to 5 entries along the
main path (configure → start → replicate → cutover → finish; 5% of the last steps failed),
about 300,000 entries in all, written straight into a journal file that
:class:`~sms_flow.journal_sqlite.SqliteJournal` created (the real schema), in time order.

What is measured: the server time of ``GET /`` and of ``GET /dashboard.json`` (the update
the page fetches every few seconds), each handled by :class:`~sms_flow.serve.dashboard.Dashboard`
in an aiohttp server on loopback and timed from request to the last byte of the answer
(``time.perf_counter`` around one request over a kept-alive connection, so it is the
server's time plus a loopback round trip): the first page before any count of the journal
(it waits for the counts: the service's first page, the first after a quiet spell, or the
first for another ``stuck`` threshold); a page and an update while the snapshot of the counts is
fresh; and a page and an update that find it stale (each starts a recount in the background
and is answered from the latest snapshot). Also the counting alone (the journal's
``census`` and every wave's ``wave_status``, on the dashboard's own connection), which sets
how old the counts on a page may be. Best and median of ``repeat`` runs.

The same again on a PostgreSQL journal (a cluster of its own, started as B7's is, when one
can be started here): the SQLite journal copied into a new database with ``sms-flow journal
copy``'s code (which vacuums and analyses the tables after the copy), the figures named
"PostgreSQL: ...".

Target: under 200 ms each (issue 12). Baseline of the counting: the census as journals of
SQLite schema 4 counted it, grouping every entry by source (plain ``sqlite3``, the same file).

    python -m benchmarks --only B11 [--b11-sources N] [--repeat N]
    python -m benchmarks.b11_dashboard [--sources N] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._common import Baseline, Figure, ratio

TARGET_MS = 200.0
WAVE = "bench"
_PATH = [
    ("configure", "WAITING/checking", "WAITING/setting"),
    ("start", "WAITING/setting", "INIT/replicating"),
    ("replicate", "INIT/replicating", "REPLICATE/replicating"),
    ("cutover", "REPLICATE/replicating", "CUTOVERING/cutovering"),
    ("finish", "CUTOVERING/cutovering", "FINISHED/cutovered"),
]


def _source(i: int) -> str:
    return f"5d8c0f3d-8a67-486d-a0aa-{i:012x}"


def fill_journal(path: Path, sources: int, *, wave: str = WAVE, seed: int = 1) -> int:
    """Write a wave of ``sources`` members with 1 to 5 entries each; how many entries."""
    from sms_flow.journal_sqlite import SqliteJournal

    async def create() -> None:
        async with SqliteJournal(path) as journal:
            await journal.add_members(wave, [])

    asyncio.run(create())
    rnd = random.Random(seed)
    start = time.time() - 2 * 3600
    rows: list[tuple[Any, ...]] = []
    for i in range(sources):
        steps = rnd.randint(1, 5)
        for n in range(steps):
            trigger, src, dst = _PATH[n]
            failed = n == steps - 1 and rnd.random() < 0.05
            t = start + i * (3600 / sources) + n * 60
            rows.append(
                (
                    _source(i),
                    trigger,
                    src,
                    dst,
                    f"wave:{wave}",
                    wave,
                    "failed" if failed else "applied",
                    f"req-{i:x}-{n}",
                    t,
                    t + 0.5,
                    "boom" if failed else None,
                )
            )
    rows.sort(key=lambda r: r[8])
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR IGNORE INTO waves (name) VALUES (?)", (wave,))
        conn.executemany(
            "INSERT INTO wave_members (wave, endpoint, source_id) VALUES (?, 'bench:', ?)",
            ((wave, _source(i)) for i in range(sources)),
        )
        conn.executemany(
            "INSERT INTO entries (source_id, trigger, from_state, to_state, actor, reason, "
            "forced, wave, outcome, request_id, attempts, error, created_at, settled_at, "
            "endpoint, project, run_id, fence) "
            "VALUES (?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, 1, ?, ?, ?, 'bench:', NULL, NULL, 1)",
            ((*r[:8], r[10], r[8], r[9]) for r in rows),
        )
    return len(rows)


async def _measure(location: str, repeat: int) -> dict[str, list[float]]:
    import aiohttp
    from aiohttp import web

    from sms_flow.chart import default_chart
    from sms_flow.journals import open_journal
    from sms_flow.serve.access import ApiTokens
    from sms_flow.serve.dashboard import DEFAULT_STUCK, Dashboard

    times: dict[str, list[float]] = {}
    async with open_journal(location) as journal:
        dashboard = Dashboard(journal, default_chart(), ApiTokens(), refresh=3600.0)
        app = web.Application()
        dashboard.add_to(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"

        async def timed(name: str, call: Callable[[], Awaitable[Any]]) -> None:
            t = time.perf_counter()
            await call()
            times.setdefault(name, []).append((time.perf_counter() - t) * 1000)

        try:
            async with aiohttp.ClientSession() as http:

                async def get(route: str) -> None:
                    async with http.get(url + route) as resp:
                        assert resp.status == 200, resp.status
                        await resp.read()

                await get("/static/dashboard.css")  # the connection is open before timing
                for _ in range(repeat):
                    # As if the page were asked for before any count: the service's first
                    # page, the first after a quiet spell, or one for a new stuck threshold.
                    dashboard._snapshots.clear()
                    dashboard.refresh = 3600.0
                    await timed("first page before any count (waits for it)", lambda: get("/"))
                    await timed("page, snapshot fresh", lambda: get("/"))
                    await timed("update, snapshot fresh", lambda: get("/dashboard.json"))
                    # Every request now finds the snapshot stale and starts a new count.
                    dashboard.refresh = 0.0
                    await timed("page, recount in background", lambda: get("/"))
                    await timed("update, recount in background", lambda: get("/dashboard.json"))
                    while dashboard._taking:
                        await asyncio.gather(*dashboard._taking.values())
                    await timed(
                        "counting (census + every wave_status)",
                        lambda: dashboard._take(DEFAULT_STUCK),
                    )
        finally:
            await runner.cleanup()
    return times


# The census of SQLite schema 4 (before the table of each source's latest entry): every
# source's state worked out by grouping all its entries.
_GROUPED_CENSUS = (
    "WITH s AS (SELECT source_id, max(id) AS last_id, "
    "max(CASE WHEN outcome IN ('applied', 'observed') THEN id END) AS at_id "
    "FROM entries GROUP BY source_id), "
    "p AS MATERIALIZED (SELECT s.source_id, coalesce(a.to_state, l.from_state) AS state, "
    "coalesce(a.settled_at, a.created_at, l.created_at) AS since, l.outcome AS outcome "
    "FROM s JOIN entries AS l ON l.id = s.last_id LEFT JOIN entries AS a ON a.id = s.at_id) "
    "SELECT state, count(*), sum(outcome IN ('failed', 'ignored', 'conflict', 'unverified')), "
    "sum(since < ? AND state <> 'FINISHED/cutovered') FROM p GROUP BY state"
)


def _grouped_census_ms(path: Path, repeat: int) -> list[float]:
    times = []
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for _ in range(repeat):
            t = time.perf_counter()
            conn.execute(_GROUPED_CENSUS, (time.time() - 3600,)).fetchall()
            times.append((time.perf_counter() - t) * 1000)
    return times


async def _copied_to_postgresql(path: Path, cluster: Any) -> str:
    """A new database of ``cluster`` holding a copy of the journal at ``path``; its DSN."""
    import asyncpg

    from sms_flow import journals

    conn = await asyncpg.connect(cluster.admin_dsn, timeout=30)
    try:
        await conn.execute("CREATE DATABASE b11")
    finally:
        await conn.close()
    dsn: str = cluster.dsn("b11")
    await journals.copy(str(path), dsn)
    return dsn


def run(*, sources: int = 100_000, repeat: int = 5, postgres: bool = True) -> list[Figure]:
    """B11's figures: the median server time of each request, and of the counting, on a
    SQLite journal and (``postgres``, when a cluster can be started here) on a PostgreSQL
    journal holding a copy of it (``sms-flow journal copy``)."""
    from sms_flow.testing._postgres import Cluster

    with tempfile.TemporaryDirectory(prefix="b11-") as folder:
        path = Path(folder) / "journal.sqlite"
        t = time.perf_counter()
        entries = fill_journal(path, sources)
        filled = time.perf_counter() - t
        measured = {"": asyncio.run(_measure(str(path), repeat))}
        grouped = _grouped_census_ms(path, repeat)
        if postgres and Cluster.unavailable() is None:
            with Cluster() as cluster:
                dsn = asyncio.run(_copied_to_postgresql(path, cluster))
                measured["PostgreSQL: "] = asyncio.run(_measure(dsn, repeat))
    note = f"{sources:,} sources, {entries:,} entries" + (
        "; the target is for 100,000 sources" if sources != 100_000 else ""
    )
    figures: list[Figure] = []
    for prefix, times in measured.items():
        figures += _figures(prefix, times, grouped if not prefix else [], note, filled, sources)
    return figures


def _figures(
    prefix: str,
    times: dict[str, list[float]],
    grouped: list[float],
    note: str,
    filled: float,
    sources: int,
) -> list[Figure]:
    figures: list[Figure] = []
    for name, values in times.items():
        median = statistics.median(values)
        counting = name.startswith("counting")
        baselines = []
        if counting and grouped:
            baseline = statistics.median(grouped)
            baselines.append(
                Baseline(
                    "census grouping the entries (schema 4)", baseline, ratio(median, baseline)
                )
            )
        figures.append(
            Figure(
                "B11",
                prefix + name,
                median,
                "ms",
                "lower",
                f"< {TARGET_MS:g} ms" if not counting else "sets the counts' age",
                None if counting or sources != 100_000 else median < TARGET_MS,
                baselines,
                note,
                {
                    "best_ms": round(min(values), 3),
                    "runs": len(values),
                    "fill_seconds": round(filled, 1),
                },
            )
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="b11-") as folder:
        path = Path(folder) / "journal.sqlite"
        t = time.perf_counter()
        entries = fill_journal(path, args.sources)
        print(
            f"B11: {args.sources:,} sources, {entries:,} entries (written in {time.perf_counter() - t:.1f} s)"
        )
        times = asyncio.run(_measure(str(path), args.repeat))
    print(f"{'what':<40} {'best ms':>9} {'median ms':>10}  target {TARGET_MS:.0f} ms")
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        met = "" if name.startswith("counting") else ("met" if median < TARGET_MS else "NOT met")
        print(f"{name:<40} {best:>9.1f} {median:>10.1f}  {met}")


if __name__ == "__main__":
    main()
