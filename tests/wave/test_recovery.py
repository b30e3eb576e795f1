"""Recovery: open intents settled by reading the sources back, in process and after SIGKILL."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.errors import ConfigError
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.simulator import Simulator
from sms_flow.wave import recover, run_wave
from tests.conftest import Spawner, eventually
from tests.wave.conftest import (
    MAIN_PATH,
    SIMULATOR_ARGS,
    WAVE_SIMULATOR,
    applied_entries,
    assert_clean_history,
    journal_paths,
    journalled,
    pending_intents,
    spec,
    write_wave,
)

pytestmark = WAVE_SIMULATOR


async def test_recovery_settles_open_intents_three_ways(sim: Simulator, tmp_path: Path) -> None:
    """Applied → settled; not applied → pushed again; changed by someone else → conflict."""
    ids = await sim.register_many(3, prefix="rc")
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.add_members("rec", ids)
        for sid in ids:  # as a run that crashed left them: pushed to this endpoint
            await journal.begin(
                Intent(
                    sid,
                    "configure",
                    "WAITING/checking",
                    "WAITING/setting",
                    "wave:rec",
                    None,
                    wave="rec",
                    endpoint=sim.url,
                )
            )
    await sim.move(ids[0], trigger="configure")  # it landed before the crash
    await sim.move(ids[2], pair="ERROR/setting")  # someone else moved it
    report = await run_wave(
        spec(name="rec", sources={"ids": ids}, target="WAITING/setting"),
        endpoint=sim.url,
        journal_path=path,
    )
    assert report.recovery is not None
    assert (report.recovery.applied, report.recovery.pushed_again, report.recovery.conflicts) == (
        1,
        1,
        1,
    )
    assert str(sim.source(ids[1]).pair) == "WAITING/setting"
    assert str(sim.source(ids[2]).pair) == "ERROR/setting", "a conflict is not overwritten"
    [conflict] = report.failed
    assert conflict.source_id == ids[2] and conflict.error_type == "Conflict"
    assert [h.trigger for h in sim.history(ids[0])] == ["configure"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 17, 29])
async def test_sigkill_at_a_random_moment_then_resume(
    spawn: Spawner, tmp_path: Path, seed: int
) -> None:
    sim = spawn.simulator(
        *SIMULATOR_ARGS,
        *("--latency", "0.002", "--latency-jitter", "0.006", "--seed", str(seed)),
        sources=40,
    )
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="crash",
        endpoint=sim.url,
        sources={"ids": sim.ids},
        concurrency=8,
    )
    journal = tmp_path / "journal.sqlite"
    rng = random.Random(seed)
    command = ("run", str(wave), "--journal", str(journal), "--no-progress")
    for _ in range(2):  # killed twice, at random moments once the journal shows work going on
        at = applied_entries(journal) + rng.randint(10, 60)  # of 200 steps
        run = spawn.sms_flow(*command, cwd=tmp_path)
        await eventually(partial(journalled, run, journal, at), timeout=60)
        assert run.kill() == -signal.SIGKILL
    done = spawn.sms_flow(*command, cwd=tmp_path)
    assert await done.await_exit() == 0, done.stdout + done.stderr
    assert pending_intents(journal) == 0
    steps = await journal_paths(journal)
    for sid in sim.ids:
        history = sim.history(sid)
        assert_clean_history(history, MAIN_PATH)
        assert steps[sid] == [(h["trigger"], h["from"], h["to"]) for h in history]
    puts = sim.stats()["puts_per_source"]
    # a push in flight at the kill may be sent again, never a step that had landed
    assert all(puts[sid] <= len(MAIN_PATH) + 2 for sid in sim.ids)


async def test_intents_of_one_source_are_settled_in_order(sim: Simulator, tmp_path: Path) -> None:
    """Two open intents of one source: each is pushed again, the second from where the first left."""
    sid = await sim.register("order")
    async with (
        SqliteJournal(tmp_path / "j.sqlite") as journal,
        SmsClient(sim.url) as client,
    ):
        for trigger, start, end in (
            ("configure", "WAITING/checking", "WAITING/setting"),
            ("start", "WAITING/setting", "INIT/replicating"),
        ):
            await journal.begin(
                Intent(sid, trigger, start, end, "wave:o", None, wave="o", endpoint=sim.url)
            )
        engine = Engine(client, journal=journal)
        report = await recover(engine, journal, client=client, wave="o")
        assert (report.pushed_again, report.total) == (2, 2)
        assert [d["result"] for d in report.details] == ["pushed again", "pushed again"]
        assert await journal.open_intents() == []
        assert str(engine.states[sid]) == "INIT/replicating"
    assert [h.trigger for h in sim.history(sid)] == ["configure", "start"]


async def test_recover_settles_in_the_engines_own_journal(sim: Simulator, tmp_path: Path) -> None:
    async with (
        SqliteJournal(tmp_path / "a.sqlite") as mine,
        SqliteJournal(tmp_path / "b.sqlite") as other,
        SmsClient(sim.url) as client,
    ):
        engine = Engine(client, journal=mine)
        with pytest.raises(ConfigError, match="the engine's own journal"):
            await recover(engine, other, client=client)


async def test_recovery_keeps_to_its_endpoint_and_to_sources_it_can_claim(
    sim: Simulator, tmp_path: Path
) -> None:
    """Intents of another endpoint, of an unknown one (an old journal), or of a source a live
    driver holds are left open; an unverified one whose push did not take is settled ignored."""
    mine, elsewhere, unknown, held, unverified = await sim.register_many(5, prefix="ke")
    path = tmp_path / "j.sqlite"

    def configure(sid: str, endpoint: str | None) -> Intent:
        return Intent(
            sid, "configure", "WAITING/checking", "WAITING/setting", "wave:ke", None,
            wave="ke", endpoint=endpoint,
        )  # fmt: skip

    async with SqliteJournal(path) as journal:
        await journal.begin(configure(mine, sim.url))
        await journal.begin(configure(elsewhere, "https://sms.other.example"))
        await journal.begin(configure(unknown, None))
        await journal.begin(configure(held, sim.url))
        entry = await journal.begin(configure(unverified, sim.url))
        await journal.settle(entry, Outcome.UNVERIFIED, error="read-back failed")
        operator = await journal.start_run("set", name=None, endpoint=sim.url, actor="cli:ann")
        await journal.claim(operator.run.run_id, sim.url, [held])

        async with (
            SmsClient(sim.url) as client,
            Engine(client, journal=journal, endpoint=sim.url) as engine,
        ):
            report = await recover(engine, journal, client=client, wave="ke")

        assert (report.pushed_again, report.ignored, report.held, report.unknown_endpoint) == (
            1,
            1,
            1,
            1,
        )
        [detail] = [d for d in report.details if d["source_id"] == held]
        assert "cli:ann" in detail["error"]
        left = {e.source_id for e in await journal.open_intents()}
        assert left == {elsewhere, unknown, held}
        [settled] = await journal.history(source_id=unverified)
        assert settled.outcome is Outcome.IGNORED and "did not take" in (settled.error or "")
    assert [h.trigger for h in sim.history(mine)] == ["configure"]
    for sid in (elsewhere, unknown, held, unverified):
        assert sim.history(sid) == [], "nothing pushed for an intent left open or ignored"


@pytest.mark.slow
async def test_recover_command_settles_a_crashed_set(spawn: Spawner, tmp_path: Path) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, sources=2)
    landed, lost = sim.ids
    journal = tmp_path / "journal.sqlite"
    async with SqliteJournal(journal) as opened:  # a set killed while its pushes were out
        for sid in (landed, lost):
            await opened.begin(
                Intent(
                    sid, "configure", "WAITING/checking", "WAITING/setting", "cli", "ticket 7",
                    endpoint=sim.url,
                )
            )  # fmt: skip
    move = urllib.request.Request(
        f"{sim.url}/_simulator/sources/{landed}/move",
        data=json.dumps({"trigger": "configure"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # One push had landed before the kill.
    await asyncio.to_thread(lambda: urllib.request.urlopen(move, timeout=10).close())
    env = {"SMS_FLOW_ENDPOINT": sim.url}
    done = spawn.sms_flow("recover", "--journal", str(journal), "--json", env=env)
    assert await done.await_exit() == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["applied"], report["pushed_again"]) == (1, 1)
    assert pending_intents(journal) == 0
    assert [(h["trigger"], h["by"]) for h in sim.history(landed)] == [("configure", "control")]
    assert [(h["trigger"], h["by"]) for h in sim.history(lost)] == [("configure", "client")]
