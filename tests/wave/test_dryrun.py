"""Dry runs of waves and drills: each source's plan from where it is, and nothing sent,
journalled or claimed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sms_flow.simulator import Simulator
from sms_flow.wave import DrillSpec
from sms_flow.wave.dryrun import dry_run
from tests.conftest import SMS_FLOW_COMMAND, Spawner
from tests.wave.conftest import SIMULATOR_ARGS, WAVE_SIMULATOR, spec, write_wave

pytestmark = WAVE_SIMULATOR


async def test_each_source_gets_its_plan_and_nothing_is_sent(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(4, prefix="d")
    await sim.move(ids[1], pair="SYNCING/syncing")
    await sim.move(ids[2], pair="FINISHED/cutovered")
    await sim.move(ids[3], pair="cleared/cutovered")
    missing = "00000000-0000-4000-8000-00000000beef"
    journal = tmp_path / "j.sqlite"
    wave = spec(name="dry", sources={"ids": [*ids, missing]}, target="cleared")
    found = await dry_run(wave, endpoint=sim.url, journal_path=journal)
    plans = {p.source_id: p for p in found.sources}
    assert [e.trigger for e in plans[ids[1]].steps] == ["cutover", "finish", "clear", "clear_done"]
    assert [e.trigger for e in plans[ids[1]].irreversible] == ["cutover", "finish", "clear"]
    assert [e.trigger for e in plans[ids[2]].actions] == ["clear"]
    assert [e.trigger for e in plans[ids[2]].waited] == ["clear_done"]
    assert plans[ids[2]].shape == "FINISHED/cutovered: clear [action] ⚠ → clear_done [wait]"
    assert plans[ids[3]].steps == () and plans[ids[3]].shape.endswith("already there")
    assert "404" in (plans[missing].problem or "")
    assert not found.plannable
    doc = found.to_dict()
    assert doc["totals"]["actions"] == 3 and doc["totals"]["cannot"] == 1
    assert doc["sources"][2]["steps"][0]["call"] == (
        'POST /v3/tasks/{task_id}/action {"operation": "clear"}'
    )
    assert sim.stats.puts_per_source == {}, "nothing was pushed"
    assert not journal.exists(), "no journal was made"


async def test_a_drill_plans_its_own_steps(sim: Simulator, tmp_path: Path) -> None:
    ids = await sim.register_many(2, prefix="dd")
    await sim.move(ids[0], pair="SYNCING/syncing")
    drill = DrillSpec.model_validate(
        {"name": "dd", "sources": {"ids": ids}, "check": {"command": "true"}}
    )
    found = await dry_run(drill, endpoint=sim.url, journal_path=tmp_path / "j.sqlite")
    first, second = found.sources
    assert first.shape == (
        "SYNCING/syncing: drill_ready → drill_start → (check) → drill_pass → drill_done"
    )
    assert second.skipped is not None and "not syncing" in second.skipped
    assert found.plannable, "a skipped source is no failure"


def test_run_dry_run_changes_nothing_in_the_journal_or_the_service(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, sources=3)
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="dry-cli",
        endpoint=sim.url,
        sources={"ids": sim.ids[:2]},
        target="SYNCING/syncing",
    )
    journal = tmp_path / "j.sqlite"
    env = {"SMS_FLOW_TOKEN": "any"}
    first = spawn.run(*SMS_FLOW_COMMAND, "run", str(wave), "--journal", str(journal), env=env)
    assert first.returncode == 0, first.stderr
    write_wave(
        wave,
        name="dry-cli",
        endpoint=sim.url,
        sources={"ids": sim.ids},
        target="FINISHED/cutovered",
    )
    with sqlite3.connect(journal) as conn:
        before = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    histories = {i: sim.history(i) for i in sim.ids}
    done = spawn.run(
        *SMS_FLOW_COMMAND, "run", str(wave), "--journal", str(journal), "--dry-run", "--json",
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["dry_run"] is True and doc["status"] == "planned" and doc["exit_code"] == 0
    shapes = {s["plan"]: s["sources"] for s in doc["shapes"]}
    assert shapes == {
        "SYNCING/syncing: cutover ⚠ → finish ⚠": 2,
        "WAITING/checking: configure → start → replicate → cutover ⚠ → finish ⚠": 1,
    }
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == before
        live = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert live == 1, "only the first run was journalled"
    assert {i: sim.history(i) for i in sim.ids} == histories, "nothing was pushed"
    text = spawn.run(
        *SMS_FLOW_COMMAND, "run", str(wave), "--journal", str(journal), "--dry-run", env=env
    )
    assert text.returncode == 0, text.stderr
    assert "nothing was sent, journalled or claimed" in text.stdout
    assert f"{sim.ids[2]}  WAITING/checking: configure" in text.stdout
    assert "take 6 irreversible steps" in text.stdout
