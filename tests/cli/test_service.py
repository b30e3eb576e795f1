"""`sms-flow get` and `sms-flow set` against `sms-flow simulator`, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TOKEN = "cli-test-token-5f2c"


@pytest.fixture(scope="module")
def simulator() -> Iterator[tuple[str, list[str]]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sms_flow",
            "simulator",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--sources",
            "3",
            "--service-delay",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    ids = [proc.stdout.readline().strip() for _ in range(3)]
    assert url.startswith("http://127.0.0.1:")
    yield url, ids
    proc.terminate()
    proc.communicate(timeout=10)
    assert proc.returncode == 0


@pytest.fixture
def cli(
    simulator: tuple[str, list[str]], tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    url, _ = simulator

    def run(*args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_FLOW_", "CLOUD_SDK_"))}
        env.update(
            SMS_FLOW_ENDPOINT=url,
            SMS_FLOW_TOKEN=token,
            SMS_FLOW_JOURNAL=str(tmp_path / "journal.sqlite"),
        )
        return subprocess.run(
            [sys.executable, "-m", "sms_flow", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    return run


def test_set_walks_the_main_path_one_step_at_a_time(
    cli: Callable[..., subprocess.CompletedProcess[str]], simulator: tuple[str, list[str]]
) -> None:
    sid = simulator[1][0]
    steps = [
        ("--migrationcycle", "setting", "configure"),
        ("--copystate", "INIT", "start"),
        ("--copystate", "REPLICATE", "replicate"),
        ("--copystate", "SYNCING", "sync"),
        ("--copystate", "CUTOVERING", "cutover"),
        ("--copystate", "FINISHED", "finish"),
    ]
    for option, value, trigger in steps:
        result = cli("set", sid, option, value)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"applied: {trigger}" in result.stdout and "read back" in result.stdout
        assert result.stderr == ""
    shown = cli("get", sid)
    assert shown.returncode == 0
    assert "state: FINISHED/cutovered" in shown.stdout and "frozen, final" in shown.stdout
    history = cli("history", sid, "--json")
    assert [e["trigger"] for e in json.loads(history.stdout)] == [t for _, _, t in steps]


def test_set_refuses_an_illegal_step_with_exit_1(
    cli: Callable[..., subprocess.CompletedProcess[str]], simulator: tuple[str, list[str]]
) -> None:
    sid = simulator[1][1]
    result = cli("set", sid, "--copystate", "FINISHED", "--migrationcycle", "cutovered")
    assert result.returncode == 1
    assert "rejected: WAITING/checking → FINISHED/cutovered" in result.stdout
    assert "shortest legal path (5 steps)" in result.stdout
    assert "WAITING/checking" in cli("get", sid).stdout, "nothing was sent"


def test_set_follows_the_path_when_asked(
    cli: Callable[..., subprocess.CompletedProcess[str]], simulator: tuple[str, list[str]]
) -> None:
    sid = simulator[1][1]
    result = cli("set", sid, "--copystate", "STOPPED", "--path", "--yes")
    assert result.returncode == 0, result.stderr
    assert "applied: stop" in result.stdout
    assert "observed: stopped" in result.stdout and "made by the service" in result.stdout


def test_set_reports_a_frozen_state_with_exit_4(
    cli: Callable[..., subprocess.CompletedProcess[str]], simulator: tuple[str, list[str]]
) -> None:
    sid = simulator[1][1]  # STOPPED by the test before
    result = cli("set", sid, "--copystate", "REPLICATE")
    assert result.returncode == 4
    assert "STOPPED is frozen" in result.stdout
    forced = cli(
        "set",
        sid,
        "--copystate",
        "REPLICATE",
        "--force",
        "--reason",
        "checking what the service does",
    )
    assert forced.returncode == 4
    assert "the service answered 200 but the source is still STOPPED" in forced.stderr
    no_edge = cli("set", sid, "--copystate", "SYNCING", "--force", "--reason", "r")
    assert no_edge.returncode == 1
    assert "--force only lifts" in no_edge.stdout
    no_reason = cli("set", sid, "--copystate", "SYNCING", "--force")
    assert no_reason.returncode == 2 and "--force needs --reason" in no_reason.stderr


def test_api_errors_exit_3_with_the_details(
    cli: Callable[..., subprocess.CompletedProcess[str]], simulator: tuple[str, list[str]]
) -> None:
    sid = simulator[1][2]
    result = cli("get", sid, token="not-the-token")
    assert result.returncode == 3
    for needle in ("HTTP 403", "error_code: SMS.9004", "error_msg:", "request_id: "):
        assert needle in result.stderr
    assert "not-the-token" not in result.stderr + result.stdout
    missing = cli("get", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 3 and "HTTP 404" in missing.stderr


def test_bad_input_exits_2_and_sends_nothing(
    cli: Callable[..., subprocess.CompletedProcess[str]], simulator: tuple[str, list[str]]
) -> None:
    sid = simulator[1][2]
    for args, needle in (
        (("set", sid, "--copystate", "BOGUS"), "unknown copystate 'BOGUS'"),
        (("set", sid), "give --copystate, --migrationcycle or both"),
        (("set", "a/b", "--copystate", "INIT"), "not safe in a URL path"),
        (("set", "x" * 300, "--copystate", "INIT"), "the API takes at most 255"),
        (("set", sid, "--copystate", "INIT", "--attempts", "0"), "--attempts is 0; give 1 or more"),
        (("get", sid, "--total-time", "-1"), "--total-time is -1.0; give more than 0 seconds"),
        (("get", sid, "--timeout", "0"), "--timeout is 0.0; give more than 0 seconds"),
    ):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr
    assert "WAITING/checking" in cli("get", sid).stdout


def test_no_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_FLOW_", "CLOUD_SDK_"))}
    result = subprocess.run(
        [sys.executable, "-m", "sms_flow", "get", "abc"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SMS_FLOW_ENDPOINT" in result.stderr and "SMS_FLOW_REGION" in result.stderr
