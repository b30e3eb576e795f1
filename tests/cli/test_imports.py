"""What `sms-flow check`, `plan` and `diagram` import: the chart and the planner, and nothing of
the service, the journal, the display or the simulator (they start at once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Never, for a command that only asks the chart.
FORBIDDEN = (
    "aiohttp",
    "asyncio",
    "sqlite3",
    "rich",
    "structlog",
    "transitions",
    "sms_flow.auth",
    "sms_flow.client",
    "sms_flow.engine",
    "sms_flow.journal",
    "sms_flow.journal_sqlite",
    "sms_flow.log",
    "sms_flow.machine",
    "sms_flow.simulator",
    "sms_flow.wave",
    "sms_flow.wire",
    "sms_flow.cli.journal",
    "sms_flow.cli.progress",
    "sms_flow.cli.service",
    "sms_flow.cli.waves",
)
# Not once the default chart's checked form is cached: reading and checking its YAML.
FORBIDDEN_WHEN_CACHED = ("yaml", "pydantic", "sms_flow._chartfile")

# Runs `python -m sms_flow ARGS` and writes the modules it imported, as it exits, to OUT.
DRIVER = """
import atexit, json, runpy, sys
out, *args = sys.argv[1:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["sms-flow", *args]
runpy.run_module("sms_flow", run_name="__main__")
"""

COMMANDS = {
    "check": ["check", "SYNCING/syncing", "CUTOVERING/cutovering"],
    "plan": ["plan", "WAITING/checking", "FINISHED/cutovered"],
    "diagram": ["diagram", "--format", "dot"],
}


def imported(tmp_path: Path, args: list[str]) -> list[str]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "SMS_FLOW_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout, "the command printed its answer"
    modules: list[str] = json.loads(out.read_text())
    return modules


def offenders(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_that_asks_the_chart_imports_no_io_layer(tmp_path: Path, command: str) -> None:
    first = imported(tmp_path, COMMANDS[command])
    assert offenders(first, FORBIDDEN) == []
    again = imported(tmp_path, COMMANDS[command])
    assert offenders(again, FORBIDDEN + FORBIDDEN_WHEN_CACHED) == []


def test_a_chart_given_on_the_command_line_is_read_and_checked(tmp_path: Path) -> None:
    chart = tmp_path / "chart.yaml"
    chart.write_text((REPO / "statecharts" / "sms-source.yaml").read_text(), "utf-8")
    modules = imported(tmp_path, [*COMMANDS["check"], "--chart", str(chart)])
    assert offenders(modules, FORBIDDEN) == []
    assert "sms_flow._chartfile" in modules, "a user's chart is checked, never taken on trust"
