"""``sms-flow history`` (``sms_flow/cli/journal.py``) in a child process: bad input is exit 2
with one line."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import assert_refused
from tests.conftest import SMS_FLOW_COMMAND, Spawner


def test_a_negative_limit_is_bad_input(spawn: Spawner, tmp_path: Path) -> None:
    done = spawn.run(*SMS_FLOW_COMMAND, "history", "s1", "--limit", "-1", cwd=tmp_path)
    assert_refused(done, "--limit -1 is below 0")


def test_a_journal_that_is_a_directory_is_bad_input(spawn: Spawner, tmp_path: Path) -> None:
    done = spawn.run(*SMS_FLOW_COMMAND, "history", "s1", "--journal", str(tmp_path), cwd=tmp_path)
    assert_refused(done, f"journal {tmp_path} is a directory", "--journal PATH")


def test_an_unknown_log_level_in_the_environment(spawn: Spawner, tmp_path: Path) -> None:
    done = spawn.run(
        *SMS_FLOW_COMMAND, "history", "s1", cwd=tmp_path, env={"SMS_FLOW_LOG_LEVEL": "bogus"}
    )
    assert_refused(done, "unknown SMS_FLOW_LOG_LEVEL='bogus'; use one of: debug, info")
    done = spawn.run(
        *SMS_FLOW_COMMAND, "history", "s1", cwd=tmp_path, env={"SMS_FLOW_LOG_LEVEL": "INFO"}
    )
    assert_refused(done, "no journal at")  # a level it names is taken, in any case
