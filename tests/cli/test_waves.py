"""``sms-flow run`` and ``drill`` (``sms_flow/cli/waves.py``) in a child process: bad input ends in
exit 2 with one line before anything is pushed, SIGTERM always stops a run, and a second Ctrl-C
aborts with one line, a partial report and exit 130."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cli.conftest import assert_refused
from tests.conftest import SMS_FLOW_COMMAND, Child, SimulatorChild, Spawner, eventually
from tests.wave.conftest import MAIN_PATH, SIMULATOR_ARGS, assert_clean_history, write_wave


def run(spawn: Spawner, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Child:
    return spawn.run(*SMS_FLOW_COMMAND, *args, cwd=cwd, env=env, timeout=60)


def pushed(sim: SimulatorChild) -> int:
    """How many changestate calls the simulator has answered."""
    return sum(sim.stats()["puts_per_source"].values())


def requests(sim: SimulatorChild, route: str) -> int:
    return sum(sim.stats()["requests"].get(route, {}).values())


def pending(journal: Path) -> int:
    """Open intents in the journal (0 while it does not exist yet); read-only, never creates it."""
    if not journal.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT count(*) FROM entries WHERE outcome = 'pending'").fetchone()
    except sqlite3.OperationalError:  # the journal is being created
        return 0
    return int(row[0])


# -- bad input: exit 2, one line, nothing pushed ----------------------------------------------


@pytest.fixture
def sim(spawn: Spawner) -> SimulatorChild:
    return spawn.simulator(*SIMULATOR_ARGS, sources=2)


def wave_file(tmp_path: Path, sim: SimulatorChild, **fields: Any) -> Path:
    base: dict[str, Any] = {"name": "w", "endpoint": sim.url, "sources": {"ids": sim.ids}}
    return write_wave(tmp_path / "wave.yaml", **{**base, **fields})


def test_a_wave_file_nested_20000_deep(spawn: Spawner, tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert_refused(run(spawn, "run", str(deep), cwd=tmp_path), "nested more than 64 levels deep")


def test_a_chart_nested_20000_deep(spawn: Spawner, tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 20_000 + "]" * 20_000 + "\n")
    check = run(spawn, "check", "SYNCING/syncing", "CUTOVERING", "--chart", str(deep), cwd=tmp_path)
    assert_refused(check, "chart error", "line 1, column 70", "nested more than 64 levels deep")
    wave = write_wave(tmp_path / "wave.yaml", name="w", sources={"count": 1}, chart=str(deep))
    done = run(spawn, "run", str(wave), "--journal", str(tmp_path / "j.sqlite"), cwd=tmp_path)
    assert_refused(done, "nested more than 64 levels deep")


def test_a_chart_that_is_an_endless_device_is_refused_unread(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild
) -> None:
    wave = wave_file(tmp_path, sim, chart="/dev/zero")
    done = run(spawn, "run", str(wave), "--journal", str(tmp_path / "j.sqlite"), cwd=tmp_path)
    assert_refused(done, "/dev/zero", "not a regular file")
    assert pushed(sim) == 0


def test_a_key_given_twice_in_a_wave_file(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild
) -> None:
    wave = wave_file(tmp_path, sim)
    with wave.open("a") as file:
        file.write("concurrency: 4\nconcurrency: 64\n")
    done = run(spawn, "run", str(wave), cwd=tmp_path)
    assert_refused(done, "key 'concurrency' is given twice")
    assert pushed(sim) == 0


@pytest.mark.parametrize("where", ["file", "option"])
def test_an_absurd_rate_limit(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild, where: str
) -> None:
    if where == "file":
        done = run(spawn, "run", str(wave_file(tmp_path, sim, rate_limit=1e-300)), cwd=tmp_path)
    else:
        wave = wave_file(tmp_path, sim)
        done = run(spawn, "run", str(wave), "--rate-limit", "1e-300", cwd=tmp_path)
    assert_refused(done, "rate_limit", "0.01")
    assert pushed(sim) == 0


def test_more_ids_than_a_wave_takes(spawn: Spawner, tmp_path: Path, sim: SimulatorChild) -> None:
    wave = wave_file(tmp_path, sim, sources={"ids": [f"s{i}" for i in range(10_001)]})
    done = run(spawn, "run", str(wave), cwd=tmp_path)
    assert_refused(done, "10,001 ids", "at most 10,000")
    assert pushed(sim) == 0


@pytest.mark.parametrize(
    ("report", "needle"),
    [
        ("{tmp}", "is a directory, not a file"),
        ("/proc/sms-flow-report.json", "nothing can be written in /proc"),
        ("{tmp}/wave.yaml/report.json", "wave.yaml is not a directory"),
    ],
    ids=["a directory", "a read-only place", "under a file"],
)
def test_a_report_path_that_cannot_be_written_is_refused_before_anything_is_pushed(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild, report: str, needle: str
) -> None:
    wave = wave_file(tmp_path, sim)
    path = report.format(tmp=tmp_path)
    done = run(spawn, "run", str(wave), "--report", path, "--no-progress", cwd=tmp_path)
    assert_refused(done, f"report path {path}", needle, "--report FILE")
    assert pushed(sim) == 0
    assert not (tmp_path / ".sms-flow").exists()  # no journal was opened either


@pytest.mark.parametrize(
    ("journal", "needle"),
    [
        ("{tmp}", "is a directory, not a file"),
        ("{tmp}/wave.yaml/journal.sqlite", "wave.yaml is not a directory"),
        ("/proc/journal.sqlite", "nothing can be written in /proc"),
    ],
    ids=["a directory", "under a file", "a read-only place"],
)
def test_a_journal_path_that_cannot_be_written_is_refused_before_anything_starts(
    spawn: Spawner, tmp_path: Path, journal: str, needle: str
) -> None:
    """With the embedded simulator, whose state file goes beside the journal: under a file, the
    simulator's start ended in a traceback (exit 1)."""
    wave = write_wave(tmp_path / "wave.yaml", name="w", sources={"count": 1})
    path = journal.format(tmp=tmp_path)
    done = run(spawn, "run", str(wave), "--journal", path, "--no-progress", cwd=tmp_path)
    assert_refused(done, f"journal path {path}", needle, "--journal FILE")


def test_a_drills_report_path_is_checked_too(spawn: Spawner, tmp_path: Path) -> None:
    done = run(
        spawn, "drill", "--ids", "a", "--check", "true", "--report", "/proc/r.json", cwd=tmp_path
    )
    assert_refused(done, "report path /proc/r.json", "nothing can be written in /proc")


@pytest.mark.parametrize(
    ("check", "needle"),
    [
        ("./smoke.sh", "./smoke.sh does not exist"),
        ("./not-executable.sh", "is not executable; chmod +x ./not-executable.sh"),
        ("smoke-test-nowhere", "no such command 'smoke-test-nowhere'"),
    ],
)
def test_a_check_that_cannot_run_is_refused_before_anything_is_pushed(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild, check: str, needle: str
) -> None:
    (tmp_path / "not-executable.sh").write_text("#!/bin/sh\nexit 0\n")
    ids = ",".join(sim.ids)
    done = run(spawn, "drill", "--ids", ids, "--check", check, "--endpoint", sim.url, cwd=tmp_path)
    assert_refused(done, f"the check command {check!r} cannot run", needle)
    assert pushed(sim) == 0 and requests(sim, "GET /v3/sources/{source_id}") == 0
    assert not (tmp_path / ".sms-flow").exists()


def test_a_repeated_ad_hoc_drill_with_another_check_is_drilled_again(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild
) -> None:
    """Defect 2: the second ad-hoc drill, whose check fails, printed `passed`, exit 0."""
    wave = wave_file(tmp_path, sim, target="SYNCING/syncing")
    assert run(spawn, "run", str(wave), "--no-progress", cwd=tmp_path).returncode == 0
    source = sim.ids[0]
    drill = ("drill", "--ids", source, "--endpoint", sim.url, "--json")
    first = run(spawn, *drill, "--check", "echo smoke ok", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run(spawn, *drill, "--check", "exit 1", cwd=tmp_path)
    assert second.returncode == 1, second.stderr
    report = json.loads(second.stdout)
    assert report["totals"]["failed"] == 1 and len(report["failures"]) == 1
    [entry] = report["sources"]
    assert entry["drill"] == "failed" and "reused" not in entry
    assert report["wave"] != json.loads(first.stdout)["wave"]  # each drill its own id
    triggers = [h["trigger"] for h in sim.history(source)]
    assert triggers.count("drill_pass") == 1 and triggers.count("drill_fail") == 1
    # The same drill again: reused, said so, and still failed.
    third = run(spawn, *drill[:-1], "--check", "exit 1", "--no-progress", cwd=tmp_path)
    assert third.returncode == 1, third.stderr
    assert "reused 1 earlier result(s) of this drill" in third.stdout
    assert f"{source} failed at " in third.stdout
    assert [h["trigger"] for h in sim.history(source)] == triggers


def test_sources_count_with_an_endpoint_is_refused_before_anything_is_read(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild
) -> None:
    wave = write_wave(tmp_path / "wave.yaml", name="w", sources={"count": 5})
    done = run(spawn, "run", str(wave), "--endpoint", sim.url, cwd=tmp_path)
    assert_refused(done, "wave w: sources.count registers new sources", f"not {sim.url}")
    assert sim.stats()["requests"] == {}
    assert not (tmp_path / ".sms-flow").exists()


def test_a_wave_rehearsed_elsewhere_is_refused_on_another_endpoint(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild
) -> None:
    """Defect 4: a wave name rehearsed on one endpoint, then run on another, reused the
    rehearsal's ids there (every source failed with 404)."""
    rehearsal = spawn.simulator(*SIMULATOR_ARGS, sources=2)
    query = {"query": {"state": "WAITING"}}  # the new sources, on either simulator
    wave = write_wave(tmp_path / "wave.yaml", name="w", sources=query, target="WAITING/setting")
    first = run(spawn, "run", str(wave), "--endpoint", rehearsal.url, "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run(spawn, "run", str(wave), "--endpoint", sim.url, "--no-progress", cwd=tmp_path)
    line = assert_refused(again, f"wave w has members on {rehearsal.url}", f"goes to {sim.url}")
    assert "another name" in line and "--journal FILE" in line and "--reset-members" in line
    assert sim.stats()["requests"] == {}
    # Starting the membership over: the query runs on this endpoint, and finds its sources.
    reset = ("run", str(wave), "--endpoint", sim.url, "--reset-members", "--json")
    done = run(spawn, *reset, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(s["source_id"] for s in report["sources"]) == sorted(sim.ids)
    assert report["totals"]["finished"] == 2


def test_the_state_folder_does_not_depend_on_the_current_directory(
    spawn: Spawner, tmp_path: Path
) -> None:
    """``journal:`` in a wave file is relative to the file's folder, and ``SMS_FLOW_HOME``
    is where the journal, reports and simulator states go without one."""
    project, elsewhere, home = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "home"
    for folder in (project, elsewhere):
        folder.mkdir()
    pinned = write_wave(
        project / "pinned.yaml", name="pinned", sources={"count": 2}, journal="state/j.sqlite"
    )
    done = run(spawn, "run", str(pinned), "--no-progress", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    state = project / "state"
    assert {p.relative_to(state).as_posix() for p in state.rglob("*.*")} >= {
        "j.sqlite",
        "reports/pinned.json",
        "simulator/pinned.sqlite",
    }
    roaming = write_wave(project / "roaming.yaml", name="roaming", sources={"count": 2})
    env = {"SMS_FLOW_HOME": str(home)}
    done = run(spawn, "run", str(roaming), "--no-progress", cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    assert (home / "journal.sqlite").is_file() and (home / "reports" / "roaming.json").is_file()
    assert (home / "simulator" / "roaming.sqlite").is_file()
    assert list(elsewhere.iterdir()) == []
    shown = run(spawn, "history", "--wave", "roaming", "--json", cwd=project, env=env)
    assert shown.returncode == 0, shown.stderr  # it found the journal (else exit 2)
    assert "roaming" in shown.stdout and "finish" in shown.stdout


def test_an_unknown_log_level_in_the_environment(
    spawn: Spawner, tmp_path: Path, sim: SimulatorChild
) -> None:
    wave = wave_file(tmp_path, sim)
    done = run(spawn, "run", str(wave), cwd=tmp_path, env={"SMS_FLOW_LOG_LEVEL": "bogus"})
    assert_refused(done, "SMS_FLOW_LOG_LEVEL='bogus'", "debug, info, warning, error")
    assert pushed(sim) == 0


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_sigterm_stops_a_run_waiting_for_its_rate_limit(
    spawn: Spawner, tmp_path: Path
) -> None:
    """At the slowest rate (one request every 100 s) every request waits; SIGTERM ends the wait
    (1e-300, accepted before, left it waiting for ever)."""
    sim = spawn.simulator(*SIMULATOR_ARGS, sources=3)
    wave = wave_file(tmp_path, sim, rate_limit=0.01)
    journal = tmp_path / "journal.sqlite"
    command = ("run", str(wave), "--journal", str(journal), "--json")
    run = spawn.sms_flow(*command, cwd=tmp_path)
    # Proof that the run is under way: its first request (reading a source) was answered; the
    # next one waits 100 s for its slot.
    await eventually(lambda: requests(sim, "GET /v3/sources/{source_id}") >= 1, timeout=60)
    assert run.running
    run.send_signal(signal.SIGTERM)
    assert await run.await_exit(60) == 130, run.stderr
    assert "Traceback" not in run.stderr
    report = json.loads(run.stdout)
    assert report["interrupted"] is True
    assert json.loads((tmp_path / "reports" / "w.json").read_text()) == report
    assert pushed(sim) == 0


@pytest.mark.slow
async def test_a_second_ctrl_c_aborts_with_one_line_a_partial_report_and_exit_130(
    spawn: Spawner, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "3", sources=8)
    wave = wave_file(tmp_path, sim, name="abort", concurrency=4)
    journal = tmp_path / "journal.sqlite"
    report = tmp_path / "abort.json"
    command = ("run", str(wave), "--journal", str(journal), "--report", str(report))
    run = spawn.sms_flow(*command, cwd=tmp_path)
    # Steps are in flight once the journal holds their intents (each request takes 3 s).
    await eventually(lambda: pending(journal) > 0 or not run.running, timeout=60)
    assert run.running, run.stderr
    run.send_signal(signal.SIGINT)
    while "stopping" not in await run.areadline():
        pass  # the first Ctrl-C is taken: the run is stopping, its steps in flight take 3 s
    run.send_signal(signal.SIGINT)
    assert await run.await_exit(60) == 130, run.stderr
    line = assert_refused_interrupt(run)
    assert line.startswith("sms-flow: aborted: ")
    assert line.endswith(f"partial report: {report}")
    partial = json.loads(report.read_text())
    assert partial["interrupted"] is True
    assert partial["totals"]["stopped"] == 8
    # The next run settles what the abort cut short and finishes, pushing no step twice.
    answer = await http.put(f"{sim.url}/_simulator/faults", json={})
    assert answer.status == 200
    again = spawn.sms_flow(*command, "--no-progress", cwd=tmp_path)
    assert await again.await_exit() == 0, again.stdout + again.stderr
    for sid in sim.ids:
        assert_clean_history(sim.history(sid), MAIN_PATH)


def assert_refused_interrupt(done: Child) -> str:
    """One line on standard error and no traceback; the line."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
