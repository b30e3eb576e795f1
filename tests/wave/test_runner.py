"""The runner against the simulator: faults, failure policy, events, resuming, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import sms_flow
from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.journal import Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.retry import RetryPolicy
from sms_flow.simulator import Faults, Simulator
from sms_flow.wave import Event, EventKind, SourceOutcome, WaveRunner, WaveSession, run_wave
from tests.conftest import Spawner, eventually
from tests.test_engine import Faulty
from tests.wave.conftest import (
    MAIN_PATH,
    RETRY,
    SIMULATOR_ARGS,
    WAVE_SIMULATOR,
    applied_entries,
    assert_clean_history,
    journal_paths,
    journalled,
    pending_intents,
    planned_path,
    spec,
    write_wave,
)

pytestmark = WAVE_SIMULATOR


async def test_every_source_reaches_the_target_through_faults(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(30, prefix="f")
    sim.set_faults(
        Faults(
            latency=0.002,
            latency_jitter=0.004,
            error_rate=0.08,
            throttle_rate=0.05,
            retry_after=0.01,
            drop_rate=0.05,
        )
    )
    journal = tmp_path / "j.sqlite"
    async with WaveSession(
        spec(name="faulty", sources={"ids": ids}),
        endpoint=sim.url,
        journal_path=journal,
        client_options=RETRY,
    ) as session:
        report = await session.runner.run()
    faults = sim.stats.faults
    sim.set_faults(Faults())
    assert report.ok, report.to_dict()["failures"]
    assert report.count(SourceOutcome.FINISHED) == 30
    assert faults.get("drop", 0) > 0 and faults.get("throttle", 0) > 0
    assert faults.get("error_500", 0) + faults.get("error_503", 0) > 0
    # The report counts the retries by cause, in all and per source.
    data = report.to_dict()
    totals = data["totals"]
    by_cause = totals["retries_by_cause"]
    assert by_cause["429"] > 0 and by_cause["5xx"] > 0
    assert by_cause["dropped"] + by_cause["timeout"] + by_cause["connect"] > 0
    assert totals["retries"] == sum(by_cause.values())
    per_source = data["sources"]
    assert sum(r["retries"] for r in per_source) > 0, "some pushes were retried"
    assert sum(r["retries"] for r in per_source) <= totals["retries"]
    assert all(r["attempts"] >= 5 for r in per_source), "5 pushes each, at least"
    assert totals["attempts"] == sum(r["attempts"] for r in per_source)
    assert data["exit_code"] == 0 and data["sms_flow_version"] == sms_flow.__version__
    for key in ("started_at", "finished_at"):
        when = datetime.fromisoformat(data[key].replace("Z", "+00:00"))
        assert when.tzinfo is not None and when.utcoffset() == timedelta(0)
        assert abs(when.timestamp() - time.time()) < 600
    steps = await journal_paths(journal)
    for sid in ids:
        assert str(sim.source(sid).pair) == "FINISHED/cutovered"
        assert_clean_history(sim.history(sid), MAIN_PATH)
        # the journal matches the simulator's own history, step for step
        assert steps[sid] == [
            (h.trigger, str(h.from_pair), str(h.to_pair)) for h in sim.history(sid)
        ]


async def test_applied_then_503_is_not_pushed_twice_into_the_history(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(10, prefix="a")
    sim.set_faults(Faults(apply_then_fail_rate=0.3))
    report = await run_wave(
        spec(name="atf", sources={"ids": ids}), endpoint=sim.url, journal_path=tmp_path / "j.sqlite"
    )
    sim.set_faults(Faults())
    assert report.ok
    assert sim.stats.faults.get("apply_then_fail", 0) > 0
    for sid in ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)


async def test_service_moves_are_waited_for(sim: Simulator, tmp_path: Path) -> None:
    ids = await sim.register_many(4, prefix="s")
    for sid in ids:
        await sim.move(sid, pair="SYNCING/syncing")
    events: list[Event] = []
    report = await run_wave(
        spec(name="stop", sources={"ids": ids}, target="STOPPED"),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
        on_event=events.append,
    )
    assert report.ok and report.applied == 4 and report.observed == 4
    assert sum(1 for e in events if e.kind is EventKind.WAITING) == 4
    for sid in ids:
        assert [(h.trigger, h.by.value) for h in sim.history(sid)][-2:] == [
            ("stop", "client"),
            ("stopped", "service"),
        ]


async def test_a_failed_source_does_not_stop_the_others(sim: Simulator, tmp_path: Path) -> None:
    ids = await sim.register_many(6, prefix="p")
    await sim.move(ids[0], pair="STOPPED/syncing")  # needs a task action nobody will call
    report = await run_wave(
        spec(
            name="carry",
            sources={"ids": [*ids, "00000000-0000-4000-8000-00000000dead"]},
            service_wait=0.3,
        ),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
    )
    assert report.count(SourceOutcome.FINISHED) == 5
    failed = {r.source_id: r for r in report.failed}
    assert set(failed) == {ids[0], "00000000-0000-4000-8000-00000000dead"}
    assert "Task action start" in (failed[ids[0]].error or "")
    assert "404" in (failed["00000000-0000-4000-8000-00000000dead"].error or "")
    assert not report.ok


async def test_a_move_only_another_api_makes_fails_the_source_at_once_and_a_later_run_resumes(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(3, prefix="c")
    for sid in ids:
        await sim.move(sid, pair="FINISHED/cutovered")
    wave = spec(name="clear", sources={"ids": ids}, target="cleared", service_wait=600)
    journal = tmp_path / "j.sqlite"
    report = await run_wave(wave, endpoint=sim.url, journal_path=journal)
    # Not 600 s: nothing but a task action makes `clear`, so nobody waits for it.
    assert report.count(SourceOutcome.FAILED) == 3 and report.observed == 0
    for record in report.failed:
        assert record.error_type == "ActionNeededError"
        assert 'POST /v3/tasks/{task_id}/action {"operation": "clear"}' in (record.error or "")
        assert str(sim.source(record.source_id).pair) == "FINISHED/cutovered"
    for sid in ids:  # someone made the call
        await sim.move(sid, trigger="clear")
    again = await run_wave(wave, endpoint=sim.url, journal_path=journal)
    # Observed on its first read (the service may have finished clearing by then), or waited for.
    reached = again.count(SourceOutcome.FINISHED) + again.count(SourceOutcome.ALREADY)
    assert again.ok and reached == 3, again.to_dict()["failures"]
    for sid in ids:
        assert str(sim.source(sid).pair) == "cleared/cutovered"


async def test_a_wave_may_ask_to_wait_for_moves_another_api_makes(
    sim: Simulator, tmp_path: Path
) -> None:
    [sid] = await sim.register_many(1, prefix="w")
    await sim.move(sid, pair="FINISHED/cutovered")
    wave = spec(name="wait", sources={"ids": [sid]}, target="cleared", wait_for_actions=True)
    events: list[Event] = []
    running = asyncio.create_task(
        run_wave(wave, endpoint=sim.url, journal_path=tmp_path / "j.sqlite", on_event=events.append)
    )
    await eventually(lambda: any(e.kind is EventKind.WAITING for e in events), timeout=30)
    await sim.move(sid, trigger="clear")
    report = await running
    assert report.ok and report.observed >= 1  # the service made the move(s) once called
    assert str(sim.source(sid).pair) == "cleared/cutovered"


async def test_halt_after_k_failed_sources(sim: Simulator, tmp_path: Path) -> None:
    ids = await sim.register_many(20, prefix="h")
    for sid in ids[:3]:
        await sim.move(sid, pair="DELETING/checking")  # nothing leads out of DELETING
    report = await run_wave(
        spec(name="halt", sources={"ids": ids}, concurrency=1, failure_policy={"halt_after": 2}),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
    )
    assert report.halted
    assert len(report.failed) == 2
    assert report.count(SourceOutcome.STOPPED) == 18
    assert all(str(sim.source(s).pair) == "WAITING/checking" for s in ids[3:])


async def test_events_as_an_async_iterator(sim: Simulator, tmp_path: Path) -> None:
    ids = await sim.register_many(3, prefix="e")
    async with WaveSession(
        spec(name="ev", sources={"ids": ids}), endpoint=sim.url, journal_path=tmp_path / "j.sqlite"
    ) as session:
        seen: list[EventKind] = []

        async def consume() -> None:
            async for event in session.runner.events():
                seen.append(event.kind)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        report = await session.runner.run()
        await consumer
    assert report.ok
    assert seen[0] is EventKind.WAVE_STARTED and seen[-1] is EventKind.WAVE_DONE
    assert seen.count(EventKind.STEP) == 15 and seen.count(EventKind.SOURCE_DONE) == 3


async def test_a_second_run_resumes_with_the_same_members(sim: Simulator, tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    ids = await sim.register_many(5, prefix="r")
    first = await run_wave(
        spec(name="again", sources={"ids": ids}, target="REPLICATE"),
        endpoint=sim.url,
        journal_path=journal,
    )
    assert first.count(SourceOutcome.FINISHED) == 5
    second = await run_wave(
        spec(name="again", sources={"ids": ids}, target="REPLICATE"),
        endpoint=sim.url,
        journal_path=journal,
    )
    assert second.count(SourceOutcome.ALREADY) == 5 and second.applied == 0


@pytest.mark.slow
async def test_ctrl_c_stops_cleanly_and_a_second_run_resumes(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.02", sources=60)
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="ctrlc",
        endpoint=sim.url,
        sources={"ids": sim.ids},
        concurrency=4,
    )
    journal = tmp_path / "journal.sqlite"
    command = ("run", str(wave), "--journal", str(journal), "--no-progress", "--json")
    run = spawn.sms_flow(*command, cwd=tmp_path)
    # Interrupt once the run is well under way (20 steps journalled of 300), not at a guess.
    await eventually(lambda: journalled(run, journal, 20), timeout=60)
    run.send_signal(signal.SIGINT)
    assert await run.await_exit(60) == 130, run.stderr
    report = json.loads(run.stdout)
    assert report["interrupted"] is True
    assert report["totals"]["stopped"] > 0
    assert pending_intents(journal) == 0, "in-flight steps finished and were journalled"
    again = spawn.sms_flow(*command, cwd=tmp_path)
    assert await again.await_exit() == 0, again.stderr
    assert json.loads(again.stdout)["totals"]["failed"] == 0
    for sid in sim.ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)


@pytest.mark.slow
def test_history_command_shows_a_sources_path(spawn: Spawner, tmp_path: Path) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, sources=2)
    wave = write_wave(
        tmp_path / "wave.yaml", name="hist", endpoint=sim.url, sources={"ids": sim.ids}
    )
    journal = tmp_path / "journal.sqlite"
    run = spawn.sms_flow("run", str(wave), "--journal", str(journal), "--no-progress", cwd=tmp_path)
    assert run.wait() == 0, run.stderr
    shown = spawn.sms_flow("history", sim.ids[0], "--journal", str(journal), cwd=tmp_path)
    assert shown.wait() == 0, shown.stderr
    for trigger in MAIN_PATH:
        assert trigger in shown.stdout
    as_json = spawn.sms_flow(
        "history", "--wave", "hist", "--journal", str(journal), "--json", cwd=tmp_path
    )
    assert as_json.wait() == 0, as_json.stderr
    entries = json.loads(as_json.stdout)
    assert len(entries) == 10 and {e["outcome"] for e in entries} == {"applied"}


def test_planned_path_is_the_main_path() -> None:
    assert planned_path("WAITING/checking") == MAIN_PATH


@pytest.mark.slow
async def test_a_journal_deleted_mid_run_stops_the_run(spawn: Spawner, tmp_path: Path) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.02", sources=40)
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="gone",
        endpoint=sim.url,
        sources={"ids": sim.ids},
        concurrency=4,
    )
    journal = tmp_path / "journal.sqlite"
    run = spawn.sms_flow("run", str(wave), "--journal", str(journal), "--no-progress", cwd=tmp_path)
    await eventually(lambda: journalled(run, journal, 20), timeout=60)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink()
    pushed = sum(sim.stats()["puts_per_source"].values())

    assert await run.await_exit() not in (0, 130), run.stdout + run.stderr
    assert "deleted" in run.stderr and str(journal) in run.stderr
    # Only the pushes already begun (at most one per source in flight) went out after it.
    assert sum(sim.stats()["puts_per_source"].values()) - pushed <= 4


async def test_a_source_moved_outside_the_journal_is_observed_before_it_is_driven(
    sim: Simulator, tmp_path: Path
) -> None:
    [sid] = await sim.register_many(1, prefix="mv")
    journal = tmp_path / "j.sqlite"
    first = await run_wave(
        spec(name="mv", sources={"ids": [sid]}, target="INIT"),
        endpoint=sim.url,
        journal_path=journal,
    )
    assert first.ok
    await sim.move(sid, trigger="replicate")  # someone moves it on, outside sms-flow

    second = await run_wave(
        spec(name="mv", sources={"ids": [sid]}), endpoint=sim.url, journal_path=journal
    )

    assert second.ok
    assert second.sources[sid].detail["moved"] == (
        "INIT/replicating → REPLICATE/replicating (unknown)"
    )
    async with SqliteJournal(journal) as opened:
        entries = await opened.history(source_id=sid)
    assert [(e.trigger, e.outcome, e.actor) for e in entries] == [
        ("configure", Outcome.APPLIED, "wave:mv"),
        ("start", Outcome.APPLIED, "wave:mv"),
        (None, Outcome.OBSERVED, "unknown"),
        ("cutover", Outcome.APPLIED, "wave:mv"),
        ("finish", Outcome.APPLIED, "wave:mv"),
    ]
    assert (entries[2].from_state, entries[2].to_state) == (
        "INIT/replicating",
        "REPLICATE/replicating",
    )


async def test_a_push_that_cannot_be_verified_is_reported_and_settled_by_the_next_run(
    sim: Simulator, tmp_path: Path
) -> None:
    [sid] = await sim.register_many(1, prefix="uv")
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal, SmsClient(sim.url, retry=RETRY["retry"]) as client:
        # The service goes down right after the first push: nothing can be read back.
        broken = Faulty(client, sim, Faults(), Faults(error_rate=1.0))
        async with Engine(broken, journal=journal, endpoint=sim.url) as engine:
            runner = WaveRunner(
                spec(name="uv", sources={"ids": [sid]}), engine, journal, client=broken
            )
            report = await runner.run()
    sim.set_faults(Faults())
    record = report.sources[sid]
    assert record.outcome is SourceOutcome.UNVERIFIED and not report.ok
    assert record.state == "WAITING/checking", "the last state known for sure"
    assert "may have landed" in (record.error or "")
    assert str(sim.source(sid).pair) == "WAITING/setting", "it had landed"

    again = await run_wave(
        spec(name="uv", sources={"ids": [sid]}), endpoint=sim.url, journal_path=path
    )
    assert again.ok and again.recovery is not None and again.recovery.applied == 1
    assert_clean_history(sim.history(sid), MAIN_PATH)


class _OneUnreadable:
    """The real client; reading ``bad`` meets the simulator's 5xx on every attempt."""

    def __init__(self, client: SmsClient, sim: Simulator, bad: str) -> None:
        self.client, self.sim, self.bad = client, sim, bad
        self.endpoint = client.endpoint

    async def change_state(
        self, source_id: str, copystate: Any = None, migrationcycle: Any = None
    ) -> Any:
        return await self.client.change_state(source_id, copystate, migrationcycle)

    async def get_source(self, source_id: str) -> Any:
        if source_id != self.bad:
            return await self.client.get_source(source_id)
        self.sim.set_faults(Faults(error_rate=1.0))
        try:
            return await self.client.get_source(source_id)
        finally:
            self.sim.set_faults(Faults())


async def test_a_failed_first_read_fails_that_source_not_the_wave(
    sim: Simulator, tmp_path: Path
) -> None:
    """Defect 7: one source whose first read fails (5xx on every attempt) is a failed source
    in the report, with the error; the others are driven to the target."""
    ids = await sim.register_many(4, prefix="fr")
    retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, total_time=5.0, timeout=2.0)
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal, SmsClient(sim.url, retry=retry) as client:
        reader = _OneUnreadable(client, sim, ids[1])
        async with Engine(reader, journal=journal, endpoint=sim.url) as engine:
            runner = WaveRunner(
                spec(name="fr", sources={"ids": ids}, concurrency=1), engine, journal, client=reader
            )
            report = await runner.run()
    assert [r.source_id for r in report.failed] == [ids[1]]
    record = report.sources[ids[1]]
    assert record.error_type == "ServerError"
    assert "could not be read" in (record.error or "") and "HTTP 5" in (record.error or "")
    assert report.count(SourceOutcome.FINISHED) == 3
    assert str(sim.source(ids[1]).pair) == "WAITING/checking", "never pushed"
    data = report.to_dict()
    [failure] = data["failures"]
    assert failure["source_id"] == ids[1] and failure["error_type"] == "ServerError"
    assert failure["request_id"] and failure["request_id"] in failure["error"]
    assert data["exit_code"] == 1


async def test_a_service_that_goes_away_stops_the_run_instead_of_failing_every_source(
    sim: Simulator, tmp_path: Path
) -> None:
    """Once sources in a row cannot reach the service (each after the client's retries), the
    run stops (exit 3) rather than take every other source through its retries too."""
    ids = await sim.register_many(60, prefix="gone")
    sim.set_faults(Faults(latency=0.02))
    path = tmp_path / "j.sqlite"
    retry = {"retry": RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, timeout=1.0)}
    async with WaveSession(
        spec(name="gone", sources={"ids": ids}, concurrency=4),
        endpoint=sim.url,
        journal_path=path,
        client_options=retry,
    ) as session:
        running = asyncio.create_task(session.runner.run())
        await eventually(lambda: applied_entries(path) >= 10)
        await sim.stop()
        report = await running

    assert report.unreachable is not None and "could not reach the service" in report.unreachable
    assert report.exit_code == 3
    outcomes = [r.outcome for r in report.sources.values()]
    assert SourceOutcome.STOPPED in outcomes, "the rest were left for the next run"
    failed = outcomes.count(SourceOutcome.FAILED) + outcomes.count(SourceOutcome.UNVERIFIED)
    assert failed <= 4 + 4, "no more than the sources in flight and the few in a row"
    assert report.to_dict()["unreachable"] == report.unreachable
