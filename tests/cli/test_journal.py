"""`sms-flow journal check`: is the journal file sound, and what does it hold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sms_flow.cli import main
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_sqlite import SqliteJournal
from tests.test_journal_sqlite import _interior_pages


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
    assert "schema version 2" in shown and "entries: 4, open intents: 1" in shown
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
