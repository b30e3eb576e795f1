"""`sms-flow set --path`: the plan first, consent for more than one step and for irreversible
steps nobody asked for, each step as it is applied, and what was applied when it stops early."""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SMS_FLOW_COMMAND, SimulatorChild, Spawner, eventually
from tests.wave.conftest import journalled

# Runs `sms-flow ARGS` on a pseudo-terminal (stdin, stdout and stderr), answers ANSWER once it
# asks (or types Ctrl-C for "ctrl-c"), and prints everything the terminal showed; exits with
# sms-flow's exit status.
ON_A_TERMINAL = r"""
import os, pty, sys
answer, argv = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
seen = b""
answered = False
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:  # the child closed the terminal
        break
    if not chunk:
        break
    seen += chunk
    if not answered and b"[y/N]" in seen:
        os.write(fd, b"\x03" if answer == "ctrl-c" else answer.encode() + b"\n")
        answered = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def env_for(sim: SimulatorChild, tmp_path: Path) -> dict[str, str]:
    return {
        "SMS_FLOW_ENDPOINT": sim.url,
        "SMS_FLOW_TOKEN": "any-token",
        "SMS_FLOW_JOURNAL": str(tmp_path / "journal.sqlite"),
    }


def move(sim: SimulatorChild, source_id: str, **fields: str) -> None:
    """Put a source where a test starts (the simulator's test control)."""
    request = urllib.request.Request(
        f"{sim.url}/_simulator/sources/{source_id}/move",
        data=json.dumps(fields).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def state(sim: SimulatorChild, source_id: str) -> str:
    with urllib.request.urlopen(f"{sim.url}/_simulator/sources/{source_id}", timeout=10) as a:
        shown: dict[str, Any] = json.load(a)
    return f"{shown['copystate']}/{shown['migrationcycle']}"


@pytest.fixture
def syncing(spawn: Spawner) -> tuple[SimulatorChild, str]:
    """A simulator whose one source is in SYNCING/syncing."""
    sim = spawn.simulator("--service-delay", "0.05", sources=1)
    move(sim, sim.ids[0], copystate="SYNCING", migrationcycle="syncing")
    return sim, sim.ids[0]


def test_a_cutover_nobody_asked_for_is_refused_before_anything_is_sent(
    spawn: Spawner, syncing: tuple[SimulatorChild, str], tmp_path: Path
) -> None:
    sim, sid = syncing
    before = len(sim.history(sid))
    env = env_for(sim, tmp_path)
    done = spawn.run(
        *SMS_FLOW_COMMAND, "set", sid, "--copystate", "INIT", "--path", "--yes", env=env
    )
    assert done.returncode == 1, done.stderr
    assert "1. cutover" in done.stdout and "⚠ irreversible" in done.stdout, "the plan comes first"
    assert "3 irreversible steps you did not ask for" in done.stderr
    assert "--allow cutover --allow finish --allow clear" in done.stderr
    assert len(sim.history(sid)) == before and state(sim, sid) == "SYNCING/syncing"
    # Asking for the irreversible step's own destination is asking for it.
    asked = spawn.run(
        *SMS_FLOW_COMMAND, "set", sid, "--copystate", "CUTOVERING", "--path", "--yes", env=env
    )
    assert asked.returncode == 0, asked.stderr
    assert "applied: cutover" in asked.stdout


def test_allowed_steps_are_applied_one_by_one_and_a_move_another_api_makes_stops_the_path(
    spawn: Spawner, syncing: tuple[SimulatorChild, str], tmp_path: Path
) -> None:
    sim, sid = syncing
    done = spawn.run(
        *SMS_FLOW_COMMAND,
        "set",
        sid,
        "--copystate",
        "INIT",
        "--path",
        "--yes",
        *("--allow", "cutover", "--allow", "finish", "--allow", "clear"),
        env=env_for(sim, tmp_path),
    )
    # It does not wait (300 s by default) for a move nothing will make by itself.
    assert done.returncode == 4, done.stderr
    lines = done.stdout.splitlines()
    applied = [line for line in lines if line.split()[1:2] == ["applied:"]]
    assert [line.split()[2] for line in applied] == ["cutover", "finish"]
    assert all("request_id " in line for line in applied)
    assert "stopped by an error: 2 of 8 steps applied" in done.stdout
    assert f"source {sid} is now FINISHED/cutovered (read back)" in done.stdout
    assert 'POST /v3/tasks/{task_id}/action {"operation": "clear"}' in done.stderr
    assert f"GET /v3/tasks?source_server_id={sid}" in done.stderr
    assert state(sim, sid) == "FINISHED/cutovered"


def test_more_than_one_step_off_a_terminal_needs_yes(spawn: Spawner, tmp_path: Path) -> None:
    sim = spawn.simulator(sources=1)
    sid = sim.ids[0]
    done = spawn.run(
        *SMS_FLOW_COMMAND,
        "set",
        sid,
        "--copystate",
        "SYNCING",
        "--path",
        env=env_for(sim, tmp_path),
    )
    assert done.returncode == 2
    assert "4 steps" in done.stdout
    assert "standard input is not a terminal" in done.stderr and "--yes" in done.stderr
    assert sim.history(sid) == [] and state(sim, sid) == "WAITING/checking"


@pytest.mark.slow
def test_a_terminal_confirms_the_plan_or_declines_it(spawn: Spawner, tmp_path: Path) -> None:
    sim = spawn.simulator(sources=1)
    sid = sim.ids[0]
    env = env_for(sim, tmp_path)
    argv = (*SMS_FLOW_COMMAND, "set", sid, "--migrationcycle", "replicating", "--path")
    declined = spawn.run(sys.executable, "-c", ON_A_TERMINAL, "n", *argv, env=env)
    assert declined.returncode == 1, declined.stdout
    assert "take these 2 steps" in declined.stdout and "not confirmed" in declined.stdout
    assert sim.history(sid) == []
    interrupted = spawn.run(sys.executable, "-c", ON_A_TERMINAL, "ctrl-c", *argv, env=env)
    assert interrupted.returncode == 130, interrupted.stdout
    assert "interrupted before anything was sent" in interrupted.stdout
    assert sim.history(sid) == []
    confirmed = spawn.run(sys.executable, "-c", ON_A_TERMINAL, "y", *argv, env=env)
    assert confirmed.returncode == 0, confirmed.stdout
    assert "1/2 applied: configure" in confirmed.stdout
    assert "2/2 applied: start" in confirmed.stdout
    assert state(sim, sid) == "INIT/replicating"


@pytest.mark.slow
async def test_ctrl_c_mid_path_lists_what_was_applied_and_where_the_source_is(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator("--service-delay", "600", sources=1)  # `stopped` takes its time
    sid = sim.ids[0]
    journal = tmp_path / "journal.sqlite"
    run = spawn.sms_flow(
        "set", sid, "--copystate", "STOPPED", "--path", "--yes", env=env_for(sim, tmp_path)
    )
    await eventually(lambda: journalled(run, journal, 3), timeout=60)  # configure, start, stop
    run.send_signal(signal.SIGINT)
    assert await run.await_exit() == 130, run.stderr
    assert "3/4 applied: stop" in run.stdout
    assert "interrupted: 3 of 4 steps applied" in run.stdout
    assert f"source {sid} is now STOPPING/replicating (read back)" in run.stdout
    assert "not done: stopped → STOPPED/replicating" in run.stdout
    assert "Traceback" not in run.stderr


def test_wait_bounds_the_wait_for_the_service(spawn: Spawner, tmp_path: Path) -> None:
    sim = spawn.simulator("--service-delay", "600", sources=1)
    sid = sim.ids[0]
    move(sim, sid, copystate="SYNCING", migrationcycle="syncing")
    done = spawn.run(
        *SMS_FLOW_COMMAND,
        "set",
        sid,
        "--copystate",
        "STOPPED",
        "--path",
        "--yes",
        "--wait",
        "1",
        env=env_for(sim, tmp_path),
    )
    assert done.returncode == 4, done.stderr
    assert "waiting up to 1s for the service: stopped" in done.stdout
    assert "stopped by an error: 1 of 2 steps applied: stop → STOPPING/syncing" in done.stdout
    assert "waited 1s for the service" in done.stderr


def test_set_json_is_one_document_on_success_refusal_and_error(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator(sources=1)
    sid = sim.ids[0]
    env = env_for(sim, tmp_path)

    def run(*args: str) -> tuple[int | None, dict[str, Any]]:
        done = spawn.run(*SMS_FLOW_COMMAND, *args, "--json", env=env)
        return done.returncode, json.loads(done.stdout)

    code, doc = run("set", sid, "--copystate", "FINISHED")  # a rejection printed text on main
    assert code == 1 and doc["status"] == "rejected" and doc["exit_code"] == 1
    assert doc["verdict"]["allowed"] is False and len(doc["verdict"]["path"]) == 5
    code, doc = run("set", sid, "--copystate", "SYNCING", "--path")
    assert code == 2 and doc["error_code"] == "confirmation_needed"
    assert [s["trigger"] for s in doc["plan"]] == ["configure", "start", "replicate", "sync"]
    code, doc = run("set", sid, "--copystate", "SYNCING", "--path", "--yes")
    assert code == 0 and doc["status"] == "applied" and doc["state"] == "SYNCING/syncing"
    assert [s["trigger"] for s in doc["steps"]] == ["configure", "start", "replicate", "sync"]
    assert all(s["request_id"] for s in doc["steps"])
    code, doc = run("set", sid, "--copystate", "BOGUS")
    assert code == 2 and doc["status"] == "error" and doc["error_code"] == "UnknownValueError"
    assert "unknown copystate 'BOGUS'" in doc["message"]
    code, doc = run("set", sid, "--copystate", "INIT", "--path", "--yes")
    assert code == 1 and doc["error_code"] == "irreversible"
    assert [s["trigger"] for s in doc["plan"]][:2] == ["cutover", "finish"]
