"""``sms-flow status WAVE`` (from the journal, also while the wave runs in another process)
and ``sms-flow list`` (the service's sources, filtered)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sms_flow.simulator import Simulator
from tests.cli.conftest import assert_refused
from tests.conftest import SMS_FLOW_COMMAND, Spawner, eventually
from tests.wave.conftest import SIMULATOR_ARGS, journalled, write_wave


@pytest.mark.slow
async def test_status_from_another_process_while_the_wave_runs(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.03", sources=30)
    wave = write_wave(
        tmp_path / "wave.yaml", name="live", endpoint=sim.url, sources={"ids": sim.ids},
        concurrency=2,
    )  # fmt: skip
    journal = tmp_path / "journal.sqlite"
    run = spawn.sms_flow("run", str(wave), "--journal", str(journal), "--no-progress", cwd=tmp_path)
    await eventually(lambda: journalled(run, journal, 10), timeout=60)

    during = spawn.sms_flow("status", "live", "--journal", str(journal), "--json", cwd=tmp_path)
    assert await during.await_exit() == 0, during.stderr
    seen = json.loads(during.stdout)
    assert run.running, "the wave was still running when status answered"
    [driver] = seen["live_runs"]
    assert driver["pid"] == run.pid and driver["kind"] == "wave" and driver["name"] == "live"
    assert seen["members"] == 30 and sum(seen["states"].values()) == 30
    assert seen["entries"] >= 10
    assert seen["states"].get("FINISHED/cutovered", 0) < 30

    text = spawn.sms_flow("status", "live", "--journal", str(journal), cwd=tmp_path)
    assert await text.await_exit() == 0, text.stderr
    assert "wave live" in text.stdout and f"pid {run.pid}" in text.stdout

    assert await run.await_exit(120) == 0, run.stderr
    after = spawn.sms_flow("status", "live", "--journal", str(journal), "--json", cwd=tmp_path)
    assert await after.await_exit() == 0, after.stderr
    done = json.loads(after.stdout)
    assert done["live_runs"] == [] and done["states"] == {"FINISHED/cutovered": 30}
    assert done["failed"] == 0 and done["open_intents"] == 0 and done["entries"] == 150


def test_status_of_an_unknown_wave_names_the_known_ones(spawn: Spawner, tmp_path: Path) -> None:
    import asyncio

    from sms_flow.journal_sqlite import SqliteJournal

    journal = tmp_path / "journal.sqlite"

    async def fill() -> None:
        async with SqliteJournal(journal) as j:
            await j.add_members("wave-1", ["a", "b"])

    asyncio.run(fill())
    done = spawn.run(*SMS_FLOW_COMMAND, "status", "wave1", "--journal", str(journal), cwd=tmp_path)
    assert_refused(done, "no wave or drill named 'wave1'", "(did you mean 'wave-1'?)", "wave-1")


TOKEN = "list-test-token"


@pytest.mark.simulator(token=TOKEN)
async def test_list_shows_the_sources_filtered_by_state_and_name_prefix(
    sim: Simulator, spawn: Spawner, tmp_path: Path
) -> None:
    web = [await sim.register(f"web-{i}") for i in range(3)]
    db = await sim.register("db-web-1")
    await sim.move(web[0], pair="SYNCING/syncing")
    env = {"SMS_FLOW_TOKEN": TOKEN, "SMS_FLOW_ENDPOINT": sim.url}

    async def listed(*args: str) -> list[dict[str, str]]:
        child = spawn.sms_flow("list", "--json", *args, cwd=tmp_path, env=env)
        assert await child.await_exit() == 0, child.stderr
        found: list[dict[str, str]] = json.loads(child.stdout)
        return found

    every = await listed()
    assert {s["id"] for s in every} == {*web, db}
    assert {s["state"] for s in every} == {"WAITING/checking", "SYNCING/syncing"}
    assert [s["id"] for s in await listed("--state", "syncing")] == [web[0]]
    assert {s["id"] for s in await listed("--name", "web-")} == set(web), "a prefix, not a part"
    assert [s["id"] for s in await listed("--state", "WAITING", "--name", "db-")] == [db]
    assert len(await listed("--limit", "2")) == 2

    table = spawn.sms_flow("list", "--cycle", "syncing", cwd=tmp_path, env=env)
    assert await table.await_exit() == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["source", "id", "state", "name"]
    assert web[0] in lines[1] and "SYNCING/syncing" in lines[1] and "web-0" in lines[1]
    assert lines[-1] == "1 source"

    bad = spawn.sms_flow("list", "--state", "synching", cwd=tmp_path, env=env)
    assert await bad.await_exit() == 2
    assert "synching" in bad.stderr and "Traceback" not in bad.stderr
