"""The session: an embedded simulator whose sources outlive the process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path

from tests.wave.conftest import MAIN_PATH, journal_paths, pending_intents, sms_flow, write_wave


def test_sigkill_with_the_embedded_simulator_then_resume(tmp_path: Path) -> None:
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="embedded",
        sources={"count": 60},
        concurrency=16,
        simulator={"latency": 0.003, "latency_jitter": 0.004, "seed": 5},
    )
    proc = sms_flow("run", str(wave), "--no-progress", cwd=tmp_path)
    time.sleep(1.6)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    done = sms_flow("run", str(wave), "--no-progress", "--json", cwd=tmp_path)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, out + err
    report = json.loads(out)
    assert report["totals"]["sources"] == 60
    assert report["totals"]["failed"] == 0
    state = tmp_path / ".sms-flow" / "simulator.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables, "the embedded simulator kept its sources in a file"
    journal = tmp_path / ".sms-flow" / "journal.sqlite"
    assert pending_intents(journal) == 0
    steps = asyncio.run(journal_paths(journal))
    assert len(steps) == 60
    for path in steps.values():
        assert [t for t, _, _ in path] == MAIN_PATH
