"""The session: an embedded simulator whose sources outlive the process."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Spawner, eventually
from tests.wave.conftest import (
    MAIN_PATH,
    journal_paths,
    journalled,
    pending_intents,
    write_wave,
)


@pytest.mark.slow
async def test_sigkill_with_the_embedded_simulator_then_resume(
    spawn: Spawner, tmp_path: Path
) -> None:
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="embedded",
        sources={"count": 60},
        concurrency=16,
        simulator={"latency": 0.003, "latency_jitter": 0.004, "seed": 5},
    )
    journal = tmp_path / ".sms-flow" / "journal.sqlite"
    run = spawn.sms_flow("run", str(wave), "--no-progress", cwd=tmp_path)
    # Killed part-way: once 50 of the 300 steps are journalled.
    await eventually(lambda: journalled(run, journal, 50), timeout=60)
    assert run.kill() == -signal.SIGKILL
    done = spawn.sms_flow("run", str(wave), "--no-progress", "--json", cwd=tmp_path)
    assert await done.await_exit() == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["totals"]["sources"] == 60
    assert report["totals"]["failed"] == 0
    state = tmp_path / ".sms-flow" / "simulator.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables, "the embedded simulator kept its sources in a file"
    assert pending_intents(journal) == 0
    steps = await journal_paths(journal)
    assert len(steps) == 60
    for path in steps.values():
        assert [t for t, _, _ in path] == MAIN_PATH
