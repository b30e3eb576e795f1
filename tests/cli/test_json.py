"""`--json`: every command prints one JSON document on standard output, on success and on
every error (status, error_code, message, request_id, exit_code), bad options included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sms_flow.cli import main
from tests.conftest import SMS_FLOW_COMMAND, Spawner


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    out, _ = capsys.readouterr()
    doc = json.loads(out)  # one document, nothing else on standard output
    assert isinstance(doc, dict) and doc["exit_code"] == code, doc
    return code, doc


def assert_error(doc: dict[str, Any], error_code: str, *needles: str) -> None:
    assert doc["status"] in {"error", "rejected", "refused", "interrupted"}, doc
    assert doc["error_code"] == error_code, doc
    assert set(doc) >= {"status", "error_code", "message", "request_id", "exit_code"}
    for needle in needles:
        assert needle in doc["message"], (needle, doc["message"])


@pytest.fixture(autouse=True)
def _no_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SMS_FLOW_ENDPOINT", "SMS_FLOW_REGION", "SMS_FLOW_TOKEN", "CLOUD_SDK_AK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMS_FLOW_JOURNAL", str(tmp_path / "journal.sqlite"))


def test_answers_carry_their_status_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "check", "SYNCING/syncing", "CUTOVERING")
    assert (code, doc["status"], doc["trigger"]) == (0, "allowed", "cutover")
    code, doc = run_json(capsys, "check", "SYNCING/syncing", "cleared")
    assert (code, doc["status"]) == (1, "rejected")
    assert [s["irreversible"] for s in doc["path"]] == [True, True, True, False]
    code, doc = run_json(capsys, "plan", "DELETING/syncing", "SYNCING/syncing")
    assert (code, doc["status"], doc["found"]) == (1, "no_plan", False)


def test_errors_are_json_for_every_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, doc = run_json(capsys, "check", "SYNCING/syncing", "LAUNCHED")
    assert code == 2
    assert_error(doc, "UnknownValueError", "unknown copystate 'LAUNCHED'")
    code, doc = run_json(capsys, "plan", "SYNCING/syncing", "X", "--chart", str(tmp_path / "no"))
    assert code == 2
    assert_error(doc, "ChartError", "chart error")
    code, doc = run_json(capsys, "get", "abc")
    assert code == 2
    assert_error(doc, "ConfigError", "SMS_FLOW_ENDPOINT")
    code, doc = run_json(capsys, "set", "abc")
    assert code == 2
    assert_error(doc, "InputError", "give --copystate, --migrationcycle or both")
    code, doc = run_json(capsys, "set", "abc", "--copystate", "INIT", "--allow", "cutover")
    assert code == 2
    assert_error(doc, "InputError", "--allow goes with --path")
    code, doc = run_json(capsys, "set", "abc", "--copystate", "INIT", "--path", "--allow", "cutovr")
    assert code == 2
    assert_error(doc, "InputError", "--allow cutovr", "clear, cutover, delete, finish")
    code, doc = run_json(capsys, "run", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert_error(doc, "ConfigError", "missing.yaml")
    code, doc = run_json(capsys, "drill")
    assert code == 2
    assert_error(doc, "InputError", "--ids")


def test_a_bad_command_line_is_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, "set", "abc", "--copystate", "INIT", "--bogus")
    assert code == 2
    assert_error(doc, "usage", "unrecognized arguments: --bogus")
    assert doc["usage"].startswith("usage: sms-flow")
    code, doc = run_json(capsys, "check", "SYNCING/syncing")
    assert code == 2
    assert_error(doc, "usage", "required: TO")
    code, doc = run_json(capsys, "set", "abc", "--copystate", "INIT", "--wait", "never")
    assert code == 2
    assert_error(doc, "usage", "'never' is not a number of seconds")


def test_an_api_error_is_json_with_the_services_code_and_request_id(
    spawn: Spawner, tmp_path: Path
) -> None:
    sim = spawn.simulator(sources=0, env={"SMS_FLOW_SIM_TOKEN": "right"})
    done = spawn.run(
        *SMS_FLOW_COMMAND,
        "get",
        "00000000-0000-4000-8000-000000000000",
        "--json",
        env={"SMS_FLOW_ENDPOINT": sim.url, "SMS_FLOW_TOKEN": "wrong"},
    )
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 3 and doc["http_status"] == 403
    assert doc["error_code"] == "SMS.9004" and doc["request_id"]
    assert "wrong" not in done.stdout + done.stderr
