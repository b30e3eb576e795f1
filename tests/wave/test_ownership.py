"""More than one actor at a time: a wave owns its sources in the journal, and others see it.

Each case of issue 9's "what was seen" (two runs of one wave, ``set`` during a wave, two waves
sharing sources, a process stopped past its lease) is judged by the simulator's history and
the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from sms_flow.journal import Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.simulator import Faults, Simulator
from sms_flow.wave import Event, EventKind, SourceOutcome, WaveSession, run_wave
from tests.conftest import Spawner, eventually
from tests.wave.conftest import (
    MAIN_PATH,
    SIMULATOR_ARGS,
    WAVE_SIMULATOR,
    applied_entries,
    assert_clean_history,
    journalled,
    pending_intents,
    spec,
    write_wave,
)

pytestmark = WAVE_SIMULATOR


def live_run_expired(journal: Path) -> bool:
    """Whether every run the journal holds as live has let its lease expire (by its clock)."""
    with contextlib.closing(sqlite3.connect(journal, timeout=5)) as conn:
        leases = [
            row[0] for row in conn.execute("SELECT expires_at FROM runs WHERE ended_at IS NULL")
        ]
    return bool(leases) and max(leases) < time.time()


@pytest.mark.slow
async def test_a_second_run_of_a_live_wave_is_refused_with_its_owner(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.02", sources=30)
    wave = write_wave(
        tmp_path / "wave.yaml", name="twice", endpoint=sim.url, sources={"ids": sim.ids}
    )
    journal = tmp_path / "journal.sqlite"
    command = ("run", str(wave), "--journal", str(journal), "--no-progress")
    first = spawn.sms_flow(*command, "--concurrency", "2", cwd=tmp_path)
    await eventually(lambda: journalled(first, journal, 5), timeout=60)

    second = spawn.sms_flow(*command, cwd=tmp_path)

    assert await second.await_exit() == 5, second.stdout + second.stderr
    assert "twice" in second.stderr and f"pid {first.pid}" in second.stderr
    assert first.running, "the first run was not disturbed"
    assert await first.await_exit() == 0, first.stderr
    assert pending_intents(journal) == 0
    puts = sim.stats()["puts_per_source"]
    for sid in sim.ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)
        assert puts[sid] == len(MAIN_PATH), "nothing pushed twice"


async def test_a_wave_skips_the_sources_another_live_wave_drives(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(8, prefix="share")
    sim.set_faults(Faults(latency=0.02))
    path = tmp_path / "j.sqlite"
    async with WaveSession(
        spec(name="first", sources={"ids": ids}, concurrency=1), endpoint=sim.url, journal_path=path
    ) as session:
        first = asyncio.create_task(session.runner.run())
        await eventually(lambda: applied_entries(path) >= 2)

        second = await run_wave(
            spec(name="second", sources={"ids": ids}), endpoint=sim.url, journal_path=path
        )

        assert [r.outcome for r in second.sources.values()] == [SourceOutcome.OWNED] * 8
        assert all("wave first" in (r.error or "") for r in second.sources.values())
        report = await first
    assert report.ok
    async with SqliteJournal(path) as journal:
        assert await journal.history(wave="second") == [], "the second wave pushed nothing"
    for sid in ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)


async def test_set_on_a_source_a_wave_drives_is_refused_unless_forced(
    sim: Simulator, tmp_path: Path, spawn: Spawner
) -> None:
    ids = await sim.register_many(6, prefix="op")
    first, last = ids[0], ids[-1]
    await sim.move(first, pair="STOPPED/syncing")  # the wave waits here for a task action
    await sim.move(last, trigger="configure")  # WAITING/setting, as in the issue
    path = tmp_path / "j.sqlite"
    env = {"SMS_FLOW_ENDPOINT": sim.url, "SMS_FLOW_JOURNAL": str(path)}
    events: list[Event] = []
    async with WaveSession(
        spec(
            name="busy",
            sources={"ids": ids},
            concurrency=1,
            target="SYNCING/syncing",
            wait_for_actions=True,  # so that it waits at the first source for the task action
        ),
        endpoint=sim.url,
        journal_path=path,
        on_event=events.append,
    ) as session:
        wave = asyncio.create_task(session.runner.run())
        await eventually(lambda: any(e.kind is EventKind.WAITING for e in events))

        refused = spawn.sms_flow("set", last, "--copystate", "ERROR", env=env)
        assert await refused.await_exit() == 5, refused.stdout + refused.stderr
        assert "wave busy" in refused.stderr and f"pid {os.getpid()}" in refused.stderr
        assert [h.trigger for h in sim.history(last)] == ["configure"], "the set pushed nothing"

        forced = spawn.sms_flow(
            "set", last, "--copystate", "ERROR", "--force", "--reason", "agent broke, hold it",
            env=env,
        )  # fmt: skip
        assert await forced.await_exit() == 0, forced.stdout + forced.stderr
        await sim.move(first, trigger="resume")  # the wave goes on, and reaches the last source
        report = await wave

    taken = report.sources[last]
    assert taken.outcome is SourceOutcome.TAKEN
    assert "agent broke, hold it" in (taken.error or "") and "set" in (taken.error or "")
    assert taken.state == "ERROR/setting"
    # The operator's change is the last one: the wave pushed nothing over it.
    assert [(h.trigger, h.by.value) for h in sim.history(last)] == [
        ("configure", "control"),
        ("fail", "client"),
    ]
    for sid in ids[1:-1]:
        assert_clean_history(sim.history(sid), ["configure", "start", "replicate", "sync"])
    async with SqliteJournal(path) as journal:
        [entry] = await journal.history(source_id=last)
        assert (entry.outcome, entry.actor, entry.reason, entry.forced) == (
            Outcome.APPLIED,
            "cli",
            "agent broke, hold it",
            True,
        )


@pytest.mark.slow
async def test_a_wave_stopped_past_its_lease_pushes_nothing_when_it_wakes(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.02", sources=24)
    wave = write_wave(
        tmp_path / "wave.yaml", name="paused", endpoint=sim.url, sources={"ids": sim.ids}
    )
    journal = tmp_path / "journal.sqlite"
    command = ("run", str(wave), "--journal", str(journal), "--no-progress", "--lease", "2")
    stopped = spawn.sms_flow(*command, "--concurrency", "4", "--json", cwd=tmp_path)
    await eventually(lambda: journalled(stopped, journal, 20), timeout=60)
    stopped.send_signal(signal.SIGSTOP)
    try:
        # Taken over once the journal shows its lease expired (a live one refuses: see above).
        await eventually(lambda: live_run_expired(journal), timeout=30)
        takeover = spawn.sms_flow(*command, "--json", cwd=tmp_path)
        assert await takeover.await_exit() == 0, takeover.stdout + takeover.stderr
        puts_after_takeover = sim.stats()["puts_per_source"]
    finally:
        stopped.send_signal(signal.SIGCONT)

    assert await stopped.await_exit() == 5, stopped.stderr
    assert "lease" in stopped.stderr
    assert sim.stats()["puts_per_source"] == puts_after_takeover, "it pushed after waking"
    report = json.loads(stopped.stdout)
    assert report["interrupted"] is True
    assert pending_intents(journal) == 0
    for sid in sim.ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)
