"""`sms-flow check`, `plan` and `diagram`: answers from the chart, exit codes and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sms_flow.cli import main
from tests.test_chart import TINY


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_allowed_exits_0_with_the_trigger(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "SYNCING/syncing", "CUTOVERING/cutovering")
    assert code == 0
    assert "allowed: cutover" in out


def test_check_rejected_exits_1_with_reasons_and_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "WAITING/checking", "FINISHED/cutovered")
    assert code == 1
    assert "rejected: WAITING/checking → FINISHED/cutovered" in out
    assert "[no_transition]" in out
    assert "5. finish" in out


def test_check_accepts_a_partial_target_and_any_case(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "syncing/SYNCING", "cutovering")
    assert code == 0 and "CUTOVERING/cutovering" in out


def test_check_bad_input_exits_2_naming_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "SYNCING/syncing", "LAUNCHED")
    assert code == 2
    assert "unknown copystate 'LAUNCHED'" in err and "CUTOVERING" in err
    assert out == ""
    code, _, err = run(capsys, "check", "SYNCING", "CUTOVERING")
    assert code == 2 and "both parts" in err


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "STOPPED/syncing", "SYNCING", "--json")
    data = json.loads(out)
    assert code == 1
    assert {r["code"] for r in data["reasons"]} == {"frozen", "not_by_client"}
    assert data["path"] == [
        {
            "trigger": "resume",
            "from": "STOPPED/syncing",
            "to": "SYNCING/syncing",
            "by": "action",
            "basis": "documented",
            "irreversible": False,
            "call": 'POST /v3/tasks/{task_id}/action {"operation": "start"}',
        }
    ]


def test_check_with_a_users_chart(
    capsys: pytest.CaptureFixture[str], write_chart: Callable[[str], Path]
) -> None:
    path = write_chart(TINY)
    code, out, _ = run(capsys, "check", "WAITING/setting", "INIT/replicating", "--chart", str(path))
    assert code == 0 and "allowed: start" in out
    # the tiny chart has no SYNCING at all
    code, out, _ = run(capsys, "check", "INIT/replicating", "SYNCING/syncing", "--chart", str(path))
    assert code == 1 and "no place in chart 'tiny'" in out


def test_a_broken_chart_exits_2_with_file_and_entry(
    capsys: pytest.CaptureFixture[str], write_chart: Callable[[str], Path]
) -> None:
    path = write_chart(TINY.replace("to: INIT,", "to: INITT,"))
    code, _, err = run(capsys, "check", "WAITING/setting", "INIT", "--chart", str(path))
    assert code == 2
    assert f"{path}: transitions[1] (trigger 'start').to: unknown copystate 'INITT'" in err


def test_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "STOPPED/syncing", "FINISHED/cutovered")
    assert code == 0
    assert "in 3 steps" in out and "by action" in out
    code, out, _ = run(capsys, "plan", "DELETING/syncing", "SYNCING/syncing")
    assert code == 1 and "no plan" in out
    code, out, _ = run(capsys, "plan", "WAITING/checking", "FINISHED", "--json")
    assert code == 0 and len(json.loads(out)["steps"]) == 5


def test_diagram_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "diagram")
    assert code == 0 and out.startswith("stateDiagram-v2")
    code, out, _ = run(capsys, "diagram", "--format", "dot")
    assert code == 0 and out.startswith('digraph "sms-source"')
    target = tmp_path / "chart.md"
    code, _, err = run(capsys, "diagram", "--format", "markdown", "--output", str(target))
    assert code == 0 and "wrote markdown" in err
    assert target.read_text().startswith("# Statechart `sms-source`")
