"""``sms-flow history`` and ``sms-flow journal check`` (``sms_flow/cli/journal.py``): bad input
is exit 2 with one line; check says whether the journal file is sound and what it holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sms_flow.cli import main
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_sqlite import SqliteJournal
from tests.cli.conftest import assert_refused
from tests.conftest import SMS_FLOW_COMMAND, Spawner
from tests.test_journal_sqlite import _interior_pages


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


async def _fill(path: Path, entries: int) -> None:
    async with SqliteJournal(path) as journal:
        for i in range(entries):
            await journal.record(
                Intent(f"source-{i:05d}", "configure", "WAITING/checking", "WAITING/setting",
                       "cli", "x" * 40),
                Outcome.APPLIED,
            )  # fmt: skip
        await journal.begin(
            Intent("open-1", "start", "WAITING/setting", "INIT/replicating", "cli", None)
        )
        run = await journal.start_run("wave", name="w1", endpoint="https://e", actor="wave:w1")
        await journal.claim(run.run.run_id, "https://e", ["a", "b"])


def test_check_reports_a_sound_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journal.sqlite"
    asyncio.run(_fill(path, 3))

    assert main(["journal", "check", "--journal", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"journal {path}: sound" in shown
    assert "schema version 3" in shown and "entries: 4, open intents: 1" in shown
    assert "wave w1 (run" in shown and "sources held by live runs: 2" in shown

    assert main(["journal", "check", "--journal", str(path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["ok"], found["entries"], found["open_intents"], found["claims"]) == (
        True,
        4,
        1,
        2,
    )


def test_check_reports_damaged_pages_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.sqlite"
    asyncio.run(_fill(path, 3000))
    size = int.from_bytes(path.read_bytes()[16:18], "big")
    page = next(n for n in _interior_pages(path) if n > 1)
    with path.open("r+b") as f:
        f.seek((page - 1) * size + 8)
        f.write(b"\xff\x7f" * 40)

    assert main(["journal", "check", "--journal", str(path)]) == 3
    captured = capsys.readouterr()
    assert f"journal {path}: DAMAGED" in captured.out and "malformed" in captured.out
    assert f"journal {path} is damaged" in captured.err


def test_check_without_a_journal_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journal", "check", "--journal", str(tmp_path / "none.sqlite")]) == 2
    assert "no journal at" in capsys.readouterr().err
