"""The `sms-flow` parser: usage errors, help, every command's handler, the console script."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from sms_flow.cli import main
from sms_flow.cli.parser import build_parser, command_of
from sms_flow.simulator.faults import Faults


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "SYNCING/syncing"])
    assert info.value.code == 2
    assert "the following arguments are required: TO" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["launch"])
    assert info.value.code == 2
    assert "invalid choice: 'launch'" in capsys.readouterr().err


def test_the_command_is_the_first_argument_that_is_not_an_option() -> None:
    assert command_of(["check", "SYNCING/syncing", "CUTOVERING"]) == "check"
    assert command_of(["--version"]) == ""
    assert command_of(["-h", "simulator", "--port", "0"]) == "simulator"


def test_every_command_names_a_handler_that_exists() -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(commands.choices, dict)
    assert set(commands.choices) == {
        "check", "plan", "diagram", "get", "set", "run", "drill", "history", "recover",
        "journal", "simulator", "status", "list", "completion", "serve",
    }  # fmt: skip
    for name, sub in commands.choices.items():
        handler = sub.get_default("handler")
        module, _, function = handler.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
        assert sub.get_default("logs") is (
            name not in {"check", "plan", "diagram", "completion"}
        ), name


def test_simulator_help_lists_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulator", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "faults on /v3 routes" in text
    for name in Faults.model_fields:
        assert "--" + name.replace("_", "-") in text, name


def test_console_script_runs() -> None:
    script = Path(sys.executable).parent / "sms-flow"
    result = subprocess.run(
        [str(script), "check", "SYNCING/syncing", "CUTOVERING"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "allowed: cutover" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "sms_flow", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "exit codes" in result.stdout
    assert "130 stopped by Ctrl-C (a wave or drill: run it again to resume)" in result.stdout
    assert "5 owned by another live driver" in result.stdout
