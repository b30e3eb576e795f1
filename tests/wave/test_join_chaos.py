"""Workers of one wave in separate processes on a PostgreSQL journal, disturbed: one killed,
one paused past its lease, the database restarted under them, an operator's ``set`` on a
source a worker of another machine holds. The simulator's histories are the judge: every
source at the target along the planned path, no step pushed twice, no backward move.

"Another machine" is a worker whose runs are recorded under another host name
(``SMS_FLOW_HOST``): its process cannot be seen from here, so only its lease (on the
database's clock) says whether it lives, as for a machine that was lost.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Child, PostgresServer, SimulatorChild, Spawner, eventually
from tests.wave.conftest import MAIN_PATH, SIMULATOR_ARGS, assert_clean_history, write_wave

pytestmark = pytest.mark.slow


async def pg_value(dsn: str, sql: str, *args: Any) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def pg_rows(dsn: str, sql: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def applied(dsn: str) -> int:
    try:
        return int(
            await pg_value(dsn, "SELECT count(*) FROM sms_flow.entries WHERE outcome = 'applied'")
        )
    except Exception:  # the schema is being created, or the server restarts
        return 0


def team_wave(tmp_path: Path, sim: SimulatorChild, **fields: Any) -> Path:
    base: dict[str, Any] = {
        "name": "team",
        "endpoint": sim.url,
        "sources": {"ids": sim.ids},
        "concurrency": 8,
    }
    return write_wave(tmp_path / "wave.yaml", **{**base, **fields})


def worker(spawn: Spawner, wave: Path, dsn: str, *args: str, host: str | None = None) -> Child:
    env = {"SMS_FLOW_HOST": host} if host else None
    return spawn.sms_flow(
        "run",
        str(wave),
        "--journal",
        dsn,
        "--join",
        "--no-progress",
        "--json",
        *args,
        cwd=wave.parent,
        env=env,
    )


def assert_every_source_once(sim: SimulatorChild) -> None:
    puts = sim.stats()["puts_per_source"]
    for sid in sim.ids:
        assert puts[sid] == len(MAIN_PATH), f"{sid}: {puts[sid]} pushes, not one a step"
        assert_clean_history(sim.history(sid), MAIN_PATH)


async def test_three_workers_one_killed_every_source_once_and_taken_over_in_the_lease(
    spawn: Spawner, tmp_path: Path, pg_dsn: str
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.005", sources=1000)
    wave = team_wave(tmp_path, sim)
    lease = 4.0
    # The one killed is on "another machine": only its lease frees its sources.
    doomed = worker(spawn, wave, pg_dsn, "--lease", str(lease), host="machine-lost")
    others = [worker(spawn, wave, pg_dsn, "--lease", str(lease)) for _ in range(2)]
    await eventually(lambda: applied_now(pg_dsn, 600), timeout=120)
    doomed_run = await pg_value(
        pg_dsn, "SELECT run_id FROM sms_flow.runs WHERE host = 'machine-lost'"
    )
    # Frozen first, so that what it holds and has not done (claimed, not marked done in the
    # session: those the others must take over) is known exactly when it dies; thawed and
    # frozen again, a moment later, in the rare instant it holds nothing undone.
    for _ in range(50):
        doomed.send_signal(signal.SIGSTOP)
        held = await pg_value(
            pg_dsn,
            "SELECT count(*) FROM sms_flow.claims AS c WHERE c.run_id = $1 AND NOT EXISTS "
            "(SELECT 1 FROM sms_flow.wave_done AS d JOIN sms_flow.wave_workers AS w "
            "ON w.session_id = d.session_id WHERE w.run_id = $1 AND d.source_id = c.source_id)",
            doomed_run,
        )
        if held:
            break
        doomed.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.02)
    killed_at = await pg_value(pg_dsn, "SELECT extract(epoch FROM clock_timestamp())::float8")
    assert doomed.kill() == -signal.SIGKILL
    assert held > 0, "the killed worker held sources it had not done when it died"

    for child in others:
        assert await child.await_exit(timeout=300) == 0, child.stderr[-3000:]
    reports = [json.loads(child.stdout) for child in others]
    assert sum(r["taken_over"] for r in reports) == held
    assert_every_source_once(sim)
    # Taken over within the lease plus a few seconds, on the database's clock.
    last_taken = await pg_value(
        pg_dsn, "SELECT max(claimed_at) FROM sms_flow.claims WHERE taken_from = $1", doomed_run
    )
    assert last_taken - killed_at < lease + 5, last_taken - killed_at
    assert (
        await pg_value(pg_dsn, "SELECT count(*) FROM sms_flow.entries WHERE outcome = 'pending'")
        == 0
    )


async def applied_now(dsn: str, at_least: int) -> bool:
    """Whether the journal holds ``at_least`` applied entries (for ``eventually``)."""
    return await applied(dsn) >= at_least


async def test_a_worker_paused_past_its_lease_pushes_nothing_when_it_wakes(
    spawn: Spawner, tmp_path: Path, pg_dsn: str
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.02", sources=120)
    wave = team_wave(tmp_path, sim, concurrency=4)
    paused = worker(spawn, wave, pg_dsn, "--lease", "2", host="machine-paused")
    await eventually(lambda: applied_now(pg_dsn, 40), timeout=120)
    paused.send_signal(signal.SIGSTOP)
    paused_run = await pg_value(
        pg_dsn, "SELECT run_id FROM sms_flow.runs WHERE host = 'machine-paused'"
    )
    try:
        other = worker(spawn, wave, pg_dsn, "--lease", "2")
        assert await other.await_exit(timeout=300) == 0, other.stderr[-3000:]
        puts = sim.stats()["puts_per_source"]
        taken = await pg_value(
            pg_dsn, "SELECT count(*) FROM sms_flow.claims WHERE taken_from = $1", paused_run
        )
        assert taken > 0, "the other worker took the paused one's sources"
    finally:
        paused.send_signal(signal.SIGCONT)
    assert await paused.await_exit(timeout=120) == 5, paused.stderr[-3000:]
    assert "lease" in paused.stderr
    assert sim.stats()["puts_per_source"] == puts, "the paused worker pushed after waking"
    assert_every_source_once(sim)


async def test_workers_wait_for_postgresql_to_restart_and_resume(
    spawn: Spawner, tmp_path: Path, pg_dsn: str, postgres: PostgresServer
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.01", sources=300)
    wave = team_wave(tmp_path, sim, concurrency=4)
    workers = [worker(spawn, wave, pg_dsn) for _ in range(2)]
    await eventually(lambda: applied_now(pg_dsn, 200), timeout=120)

    await asyncio.to_thread(postgres.restart)

    for child in workers:
        assert await child.await_exit(timeout=300) == 0, child.stderr[-3000:]
    assert_every_source_once(sim)
    others = await pg_rows(
        pg_dsn,
        "SELECT id, source_id, trigger, from_state, to_state, outcome, error, run_id "
        "FROM sms_flow.entries WHERE outcome <> 'applied' ORDER BY id",
    )
    assert others == [], "every entry applied"
    assert await applied(pg_dsn) == len(sim.ids) * len(MAIN_PATH), "one entry a step"


async def test_a_set_on_a_source_a_worker_of_another_machine_holds_is_refused(
    spawn: Spawner, tmp_path: Path, pg_dsn: str
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.3", sources=6)
    wave = team_wave(tmp_path, sim, concurrency=1)
    remote = worker(spawn, wave, pg_dsn, host="machine-b")
    await eventually(lambda: applied_now(pg_dsn, 1), timeout=120)
    held = await pg_value(
        pg_dsn,
        "SELECT c.source_id FROM sms_flow.claims AS c JOIN sms_flow.runs AS r "
        "ON r.run_id = c.run_id WHERE r.host = 'machine-b' AND r.ended_at IS NULL LIMIT 1",
    )

    refused = spawn.sms_flow(
        "set",
        held,
        "--copystate",
        "SYNCING",
        "--journal",
        pg_dsn,
        env={"SMS_FLOW_ENDPOINT": sim.url},
    )

    assert await refused.await_exit() == 5, refused.stdout + refused.stderr
    assert "machine-b" in refused.stderr and "pid" in refused.stderr
    assert (
        await pg_value(
            pg_dsn, "SELECT count(*) FROM sms_flow.entries WHERE actor NOT LIKE 'wave:%'"
        )
        == 0
    ), "the refused set journalled nothing"
    assert await remote.await_exit(timeout=300) == 0, remote.stderr[-3000:]
    assert_every_source_once(sim)
