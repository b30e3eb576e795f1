"""Waves end to end against the simulator: faults, crashes, Ctrl-C, failure policy, the API."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sms_flow.chart import default_chart
from sms_flow.client import RetryPolicy
from sms_flow.journal import Outcome, SqliteJournal
from sms_flow.orchestrator import (
    Event,
    EventKind,
    SourceOutcome,
    WaveSession,
    WaveSpec,
    run_wave,
)
from sms_flow.planner import Planner
from sms_flow.simulator import Faults, Simulator, SimulatorConfig
from sms_flow.states import parse_pair
from tests.conftest import REPO

MAIN_PATH = ["configure", "start", "replicate", "cutover", "finish"]
RETRY = {
    "retry": RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.1, total_time=30.0, timeout=2.0)
}


def spec(**fields: Any) -> WaveSpec:
    base: dict[str, Any] = {"name": "w", "sources": {"count": 1}, "concurrency": 16}
    base.update(fields)
    return WaveSpec.model_validate(base)


def planned_path(start: str, target: str = "FINISHED/cutovered") -> list[str]:
    return [e.trigger for e in Planner(default_chart()).plan(parse_pair(start), target).steps]


def assert_clean_history(history: list[dict[str, Any]] | list[Any], expected: list[str]) -> None:
    """Exactly the planned path: no repeats, no gaps, each step starting where the last ended."""
    rows = [h if isinstance(h, dict) else h.to_dict() for h in history]
    assert [h["trigger"] for h in rows] == expected
    for a, b in itertools.pairwise(rows):
        assert a["to"] == b["from"]


async def journal_paths(path: Path) -> dict[str, list[tuple[str | None, str, str]]]:
    """Per source, the applied or observed steps the journal holds, in order."""
    async with SqliteJournal(path) as journal:
        entries = await journal.history()
    out: dict[str, list[tuple[str | None, str, str]]] = {}
    for e in entries:
        assert e.outcome is not Outcome.PENDING, f"an intent was left open: {e}"
        if e.outcome in (Outcome.APPLIED, Outcome.OBSERVED):
            out.setdefault(e.source_id, []).append((e.trigger, e.from_state, e.to_state))
    return out


# -- in-process: faults, policy, API --------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(service_delay=0.02, seed=11)) as s:
        yield s


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


async def test_recovery_settles_open_intents_three_ways(sim: Simulator, tmp_path: Path) -> None:
    """Applied → settled; not applied → pushed again; changed by someone else → conflict."""
    from sms_flow.journal import Intent

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


# -- crash, Ctrl-C and resume in real processes ----------------------------------------------------


@dataclass
class ExternalSimulator:
    url: str
    ids: list[str]
    proc: subprocess.Popen[str]

    def history(self, source_id: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(
            f"{self.url}/_simulator/sources/{source_id}/history", timeout=10
        ) as answer:
            return list(json.load(answer)["history"])

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_simulator/stats", timeout=10) as answer:
            return dict(json.load(answer))


@pytest.fixture
def external_sim(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(n: int, *extra: str) -> ExternalSimulator:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sms_flow.simulator",
                "--port",
                "0",
                "--sources",
                str(n),
                "--service-delay",
                "0.02",
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        ids = [proc.stdout.readline().strip() for _ in range(n)]
        return ExternalSimulator(url, ids, proc)

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=10)


def write_wave(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return path


def sms_flow(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sms_flow", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def applied_entries(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(journal, timeout=5)) as conn:
            return int(
                conn.execute("SELECT count(*) FROM entries WHERE outcome = 'applied'").fetchone()[0]
            )
    except sqlite3.OperationalError:  # the journal is being created
        return 0


def pending_intents(journal: Path) -> int:
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM entries WHERE outcome = 'pending'").fetchone()[0]
        )


@pytest.mark.parametrize("seed", [3, 17, 29])
def test_sigkill_at_a_random_moment_then_resume(
    external_sim: Any, tmp_path: Path, seed: int
) -> None:
    sim = external_sim(40, "--latency", "0.002", "--latency-jitter", "0.006", "--seed", str(seed))
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="crash",
        endpoint=sim.url,
        sources={"ids": sim.ids},
        concurrency=8,
    )
    journal = tmp_path / "journal.sqlite"
    rng = random.Random(seed)
    for _ in range(2):  # killed twice, at random moments
        proc = sms_flow("run", str(wave), "--journal", str(journal), "--no-progress", cwd=tmp_path)
        time.sleep(rng.uniform(0.6, 1.8))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    done = sms_flow("run", str(wave), "--journal", str(journal), "--no-progress", cwd=tmp_path)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, out + err
    assert pending_intents(journal) == 0
    steps = asyncio.run(journal_paths(journal))
    for sid in sim.ids:
        history = sim.history(sid)
        assert_clean_history(history, MAIN_PATH)
        assert steps[sid] == [(h["trigger"], h["from"], h["to"]) for h in history]
    puts = sim.stats()["puts_per_source"]
    # a push in flight at the kill may be sent again, never a step that had landed
    assert all(puts[sid] <= len(MAIN_PATH) + 2 for sid in sim.ids)


def test_sigkill_with_the_embedded_simulator_then_resume(tmp_path: Path) -> None:
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="embedded",
        sources={"count": 60},
        concurrency=16,
        simulator={"latency": 0.003, "latency_jitter": 0.004, "seed": 5},
    )
    proc = sms_flow("run", str(wave), "--no-progress", cwd=tmp_path)
    time.sleep(1.6)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    done = sms_flow("run", str(wave), "--no-progress", "--json", cwd=tmp_path)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, out + err
    report = json.loads(out)
    assert report["totals"]["sources"] == 60
    assert report["totals"]["failed"] == 0
    state = tmp_path / ".sms-flow" / "simulator.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables, "the embedded simulator kept its sources in a file"
    journal = tmp_path / ".sms-flow" / "journal.sqlite"
    assert pending_intents(journal) == 0
    steps = asyncio.run(journal_paths(journal))
    assert len(steps) == 60
    for path in steps.values():
        assert [t for t, _, _ in path] == MAIN_PATH


def test_ctrl_c_stops_cleanly_and_a_second_run_resumes(external_sim: Any, tmp_path: Path) -> None:
    sim = external_sim(60, "--latency", "0.02")
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="ctrlc",
        endpoint=sim.url,
        sources={"ids": sim.ids},
        concurrency=4,
    )
    journal = tmp_path / "journal.sqlite"
    proc = sms_flow(
        "run", str(wave), "--journal", str(journal), "--no-progress", "--json", cwd=tmp_path
    )
    # Interrupt once the run is well under way (20 steps journalled of 300), not at a guess.
    deadline = time.monotonic() + 60
    while applied_entries(journal) < 20:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["totals"]["stopped"] > 0
    assert pending_intents(journal) == 0, "in-flight steps finished and were journalled"
    again = sms_flow(
        "run", str(wave), "--journal", str(journal), "--no-progress", "--json", cwd=tmp_path
    )
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert json.loads(out)["totals"]["failed"] == 0
    for sid in sim.ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)


def test_history_command_shows_a_sources_path(external_sim: Any, tmp_path: Path) -> None:
    sim = external_sim(2)
    wave = write_wave(
        tmp_path / "wave.yaml", name="hist", endpoint=sim.url, sources={"ids": sim.ids}
    )
    journal = tmp_path / "journal.sqlite"
    run = sms_flow("run", str(wave), "--journal", str(journal), "--no-progress", cwd=tmp_path)
    run.communicate(timeout=60)
    assert run.returncode == 0
    shown = sms_flow("history", sim.ids[0], "--journal", str(journal), cwd=tmp_path)
    out, _ = shown.communicate(timeout=60)
    assert shown.returncode == 0
    for trigger in MAIN_PATH:
        assert trigger in out
    as_json = sms_flow(
        "history", "--wave", "hist", "--journal", str(journal), "--json", cwd=tmp_path
    )
    out, _ = as_json.communicate(timeout=60)
    entries = json.loads(out)
    assert len(entries) == 10 and {e["outcome"] for e in entries} == {"applied"}


def test_planned_path_is_the_main_path() -> None:
    assert planned_path("WAITING/checking") == MAIN_PATH
    assert REPO.is_dir()


async def test_rate_limiter_spaces_calls() -> None:
    from sms_flow.orchestrator import RateLimiter

    limiter = RateLimiter(200.0)  # one call every 5 ms, no burst
    started = time.monotonic()
    stamps = []
    for _ in range(21):
        await limiter.acquire()
        stamps.append(time.monotonic())
    # 20 intervals of at least 5 ms each (the lower bound is the behaviour; no upper bound)
    assert stamps[-1] - started >= 20 * 0.005 * 0.95
    with pytest.raises(Exception, match="must be above 0"):
        RateLimiter(0)


async def test_wave_file_errors_name_the_field(tmp_path: Path) -> None:
    from sms_flow.errors import ConfigError
    from sms_flow.orchestrator import load_wave

    path = write_wave(
        tmp_path / "w.yaml", name="x", sources={"count": 3}, endpoint="https://sms.example.com"
    )
    with pytest.raises(ConfigError, match="only the simulator allows"):
        load_wave(path)
    path = write_wave(tmp_path / "w.yaml", name="x", sources={"ids": ["a/b"]})
    with pytest.raises(ConfigError, match="not safe in a URL path"):
        load_wave(path)
    path = write_wave(
        tmp_path / "w.yaml",
        name="x",
        sources={"count": 3},
        target="FINISHED/checking",
        concurency=3,
    )
    with pytest.raises(ConfigError, match="concurency"):
        load_wave(path)
