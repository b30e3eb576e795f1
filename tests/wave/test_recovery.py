"""Recovery: open intents settled by reading the sources back, in process and after SIGKILL."""

from __future__ import annotations

import random
import signal
from functools import partial
from pathlib import Path

import pytest

from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.errors import ConfigError
from sms_flow.journal import Intent
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
        for sid in ids:
            await journal.begin(
                Intent(
                    sid,
                    "configure",
                    "WAITING/checking",
                    "WAITING/setting",
                    "wave:rec",
                    None,
                    wave="rec",
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
            await journal.begin(Intent(sid, trigger, start, end, "wave:o", None, wave="o"))
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
