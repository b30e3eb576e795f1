"""Several workers on one wave (``run --join``), in one process against the in-process
simulator: every source driven once, by one worker; the failure policy counted across them;
a worker stopped hands its sources back at once; a run without ``--join`` and a worker
refuse each other. The simulator's histories are the judge. (Workers in separate processes,
killed and paused, and PostgreSQL restarted under them: ``test_join_chaos.py``.)
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sms_flow.errors import ConfigError, OwnedError
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.simulator import Faults, Simulator
from sms_flow.wave import SourceOutcome, WaveReport, WaveSession, WaveSpec
from tests.conftest import SMS_FLOW_COMMAND, Spawner, eventually
from tests.wave.conftest import MAIN_PATH, WAVE_SIMULATOR, applied_entries, assert_clean_history
from tests.wave.conftest import spec as make_spec

pytestmark = WAVE_SIMULATOR


def wave(ids: list[str], **fields: Any) -> WaveSpec:
    return make_spec(**{"name": "team", "sources": {"ids": ids}, "concurrency": 4, **fields})


async def drive(session: WaveSession) -> WaveReport:
    async with session:
        report = await session.runner.run()
        session.write_report(report)
        return report


async def test_three_workers_drive_every_source_once(
    sim: Simulator, tmp_path: Path, spawn: Spawner
) -> None:
    ids = await sim.register_many(60, prefix="team")
    sim.set_faults(Faults(latency=0.005))
    path = tmp_path / "j.sqlite"
    spec = wave(ids, rate_limit=2000)
    sessions = [WaveSession(spec, endpoint=sim.url, journal_path=path, join=True) for _ in "abc"]

    reports = await asyncio.gather(*(drive(s) for s in sessions))

    driven = [set(r.sources) for r in reports]
    assert set().union(*driven) == set(ids)
    assert sum(len(d) for d in driven) == len(ids), "no source driven by two workers"
    assert len({r.session for r in reports}) == 1 and reports[0].session is not None
    for report in reports:
        assert {r.outcome for r in report.sources.values()} <= {SourceOutcome.FINISHED}
        assert report.exit_code == 0
    for sid in ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)
    async with SqliteJournal(path) as journal:
        workers = await journal.workers("team")
    assert sorted(w.done for w in workers) == sorted(len(d) for d in driven)
    assert all(w.run.end_reason == "ended" and w.claims == 0 for w in workers)
    # Each worker's report is its own file, beside the others.
    reports_dir = path.parent / "reports"
    assert len(list(reports_dir.glob("team.worker-*.json"))) == 3
    # `status` shows every worker and what it did; `history`, which process made each step.
    shown = spawn.run(*SMS_FLOW_COMMAND, "status", "team", "--journal", str(path))
    assert shown.returncode == 0, shown.stderr
    assert f"workers (session {reports[0].session[:8]}): 0 live of 3" in shown.stdout
    for w in workers:
        assert f"run {w.run.run_id[:8]}  pid {w.run.pid} on {w.run.host}" in shown.stdout
        assert f"done {w.done:,}  ended" in shown.stdout
    data = json.loads(
        spawn.run(*SMS_FLOW_COMMAND, "status", "team", "--journal", str(path), "--json").stdout
    )
    assert sorted(w["done"] for w in data["workers"]) == sorted(len(d) for d in driven)
    steps = spawn.run(*SMS_FLOW_COMMAND, "history", ids[0], "--journal", str(path)).stdout
    assert f"{workers[0].run.host}:{os.getpid()}" in steps  # every worker was this process


async def test_a_run_without_join_and_a_worker_refuse_each_other(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(4, prefix="alone")
    sim.set_faults(Faults(latency=0.05))
    path = tmp_path / "j.sqlite"
    async with WaveSession(
        wave(ids, concurrency=1), endpoint=sim.url, journal_path=path, join=True
    ) as worker:
        running = asyncio.create_task(worker.runner.run())
        await eventually(lambda: applied_entries(path) >= 1)
        with pytest.raises(OwnedError, match="add --join to be another one"):
            async with WaveSession(wave(ids), endpoint=sim.url, journal_path=path):
                pass
        await running
    async with WaveSession(wave(ids, concurrency=1), endpoint=sim.url, journal_path=path) as alone:
        running = asyncio.create_task(alone.runner.run())
        with pytest.raises(OwnedError, match="started without --join"):
            async with WaveSession(wave(ids), endpoint=sim.url, journal_path=path, join=True):
                pass
        await running


async def test_the_failure_policy_counts_every_workers_failures(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(40, prefix="halt")
    missing = [f"00000000-0000-4000-8000-{i:012d}" for i in range(3)]  # the service says 404
    sim.set_faults(Faults(latency=0.01))
    path = tmp_path / "j.sqlite"
    # Each worker alone sees fewer than 3 failures at first; together they reach it.
    spec = wave(missing[:1] + ids[:20] + missing[1:] + ids[20:], failure_policy={"halt_after": 3})
    sessions = [WaveSession(spec, endpoint=sim.url, journal_path=path, join=True) for _ in "ab"]

    reports = await asyncio.gather(*(drive(s) for s in sessions))

    assert all(r.halted for r in reports), [r.halted for r in reports]
    failed = [s for r in reports for s, rec in r.sources.items() if rec.outcome == "failed"]
    assert sorted(failed) == sorted(missing)
    finished = sum(1 for r in reports for rec in r.sources.values() if rec.outcome == "finished")
    assert finished < len(ids), "the wave halted before the end"


async def test_a_stopped_worker_hands_its_sources_back_at_once(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(24, prefix="hand")
    sim.set_faults(Faults(latency=0.03))
    path = tmp_path / "j.sqlite"
    spec = wave(ids, concurrency=2)
    # A lease of 10 minutes: a source comes back only because the stopped worker hands it.
    first = WaveSession(spec, endpoint=sim.url, journal_path=path, join=True, lease=600)
    second = WaveSession(spec, endpoint=sim.url, journal_path=path, join=True, lease=600)
    async with first:
        running = asyncio.create_task(first.runner.run())
        await eventually(lambda: applied_entries(path) >= 3)
        first.runner.stop()
        stopped = await running
    later = await drive(second)

    handed = {s for s, r in stopped.sources.items() if r.outcome is SourceOutcome.STOPPED}
    assert handed, "the first worker had sources queued when it stopped"
    assert handed <= set(later.sources)
    assert {r.outcome for r in later.sources.values()} <= {SourceOutcome.FINISHED}
    for sid in ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)


async def test_join_is_refused_with_the_embedded_simulator_and_reset_members(
    tmp_path: Path,
) -> None:
    spec = make_spec(name="emb", sources={"count": 2})
    with pytest.raises(ConfigError, match="sms-flow simulator"):
        async with WaveSession(spec, journal_path=tmp_path / "j.sqlite", join=True):
            pass
    with pytest.raises(ConfigError, match="--reset-members"):
        async with WaveSession(
            wave(["a"]),
            endpoint="http://127.0.0.1:9",
            journal_path=tmp_path / "j.sqlite",
            join=True,
            reset_members=True,
        ):
            pass
