"""Every example runs, as a user would run it, and says what it should."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Child, Spawner


def run_example(spawn: Spawner, name: str, *args: str, timeout: float = 120) -> Child:
    return spawn.run(sys.executable, str(REPO / "examples" / name), *args, timeout=timeout)


def test_validate_request_explains_each_request(spawn: Spawner) -> None:
    result = run_example(spawn, "validate_request.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "allowed: cutover: SYNCING/syncing → CUTOVERING/cutovering" in out
    assert "Shortest legal path (5 steps)" in out
    assert "ignores changestate while the source is STOPPED" in out
    assert "allowed: requeue: cleared/cutovered → WAITING/cutovered" in out
    assert "unknown copystate 'CUTOVER'" in out
    assert out.rstrip().endswith("2 allowed, 4 rejected")


def test_validate_request_takes_the_operators_pairs(spawn: Spawner) -> None:
    result = run_example(spawn, "validate_request.py", "REPLICATE/replicating", "SYNCING/syncing")
    assert result.returncode == 0, result.stderr
    assert "allowed: sync: REPLICATE/replicating → SYNCING/syncing" in result.stdout


def test_push_change_example(spawn: Spawner) -> None:
    result = run_example(spawn, "push_change.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "applied configure: WAITING/checking → WAITING/setting" in out
    assert "Shortest legal path (3 steps)" in out
    assert "applied sync: SYNCING/syncing" in out
    assert "forced, and as predicted" in out
    assert "#7 resume: STOPPED/syncing → SYNCING/syncing: ignored" in out


@pytest.mark.slow
def test_drive_wave_example(spawn: Spawner) -> None:
    result = run_example(spawn, "drive_wave.py", "--sources", "12")
    assert result.returncode == 0, result.stderr
    assert "12 of 12 sources reached FINISHED/cutovered" in result.stdout
    assert "60 transitions applied" in result.stdout


@pytest.mark.slow
def test_drill_with_check_example(spawn: Spawner) -> None:
    result = run_example(spawn, "drill_with_check.py")
    assert result.returncode == 0, result.stderr
    assert "passed 4, failed 1, timed out 1" in result.stdout


@pytest.mark.slow
def test_runbook_example_handles_its_failures(spawn: Spawner) -> None:
    result = run_example(spawn, "runbook.py")
    assert result.returncode == 0, result.stderr
    assert "needs a task action; starting the task again" in result.stdout
    assert "NotFoundError: needs a person" in result.stdout
    assert "done: 30 of 30 registered sources at FINISHED/cutovered" in result.stdout


@pytest.mark.slow
def test_wave_and_drill_files_run_with_the_cli(spawn: Spawner, tmp_path: Path) -> None:
    wave = spawn.sms_flow("run", str(REPO / "examples" / "wave.yaml"), "--json", cwd=tmp_path)
    assert wave.wait(180) == 0, wave.stderr
    totals = json.loads(wave.stdout)["totals"]
    assert (totals["sources"], totals["finished"], totals["transitions_applied"]) == (
        200,
        200,
        1000,
    )
    drill = spawn.sms_flow("drill", str(REPO / "examples" / "drill.yaml"), "--json", cwd=tmp_path)
    code = drill.wait(180)
    report = json.loads(drill.stdout)
    verdicts = {s["drill"] for s in report["sources"]}
    assert verdicts <= {"passed", "failed"} and "passed" in verdicts
    # the example's check fails sources whose id ends in 0 or 1: exit 1 exactly when one does
    expect_fail = any(s["source_id"][-1] in "01" for s in report["sources"])
    assert code == (1 if expect_fail else 0), drill.stderr


def test_the_systemd_unit_starts_a_worker_the_cli_accepts() -> None:
    """The unit's ExecStart, with its instance name filled in, is a command line sms-flow
    takes (--join, and nothing it would refuse), and it stops workers with SIGINT (Ctrl-C:
    the steps in flight finish and the sources are handed back)."""
    import shlex

    from sms_flow.cli.parser import build_parser

    unit = (REPO / "examples" / "systemd" / "sms-flow-worker@.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    argv = shlex.split(settings["ExecStart"].replace("%i", "wave-1"))
    assert argv[0].endswith("/sms-flow")
    args = build_parser().parse_args(argv[1:])
    assert (args.wave, args.join, args.no_progress) == (
        "/etc/sms-flow/waves/wave-1.yaml",
        True,
        True,
    )
    assert settings["KillSignal"] == "SIGINT"
    assert "PGPASSWORD" not in settings and "EnvironmentFile" in settings
