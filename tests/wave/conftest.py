"""Shared by the wave tests: their simulator configuration, wave specs and files, history and
journal checks.

The simulator (``sim``), child processes (``spawn``) and ``eventually`` are the suite's own,
from ``tests/conftest.py``. The wave tests run the in-process ``sim`` with
``pytestmark = WAVE_SIMULATOR``; a simulator in a child process (for ``sms-flow run`` in a
child too) is ``spawn.simulator(*SIMULATOR_ARGS, ..., sources=N)``.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from sms_flow.chart import default_chart
from sms_flow.journal import Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.planner import Planner
from sms_flow.retry import RetryPolicy
from sms_flow.states import parse_pair
from sms_flow.wave import WaveSpec
from tests.conftest import Child

MAIN_PATH = ["configure", "start", "replicate", "cutover", "finish"]
WAVE_SIMULATOR = pytest.mark.simulator(service_delay=0.02, seed=11)
"""The ``sim`` of the wave tests: the service's own moves come quickly."""
SIMULATOR_ARGS = ("--service-delay", "0.02")
"""The same, for ``spawn.simulator``."""
RETRY = {
    "retry": RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.1, total_time=30.0, timeout=2.0)
}


def spec(**fields: Any) -> WaveSpec:
    base: dict[str, Any] = {"name": "w", "sources": {"count": 1}, "concurrency": 16}
    base.update(fields)
    return WaveSpec.model_validate(base)


def planned_path(start: str, target: str = "FINISHED/cutovered") -> list[str]:
    return [e.trigger for e in Planner(default_chart()).plan(parse_pair(start), target).steps]


def assert_clean_history(history: list[dict[str, Any]] | list[Any], expected: list[str]) -> None:
    """Exactly the planned path: no repeats, no gaps, each step starting where the last ended."""
    rows = [h if isinstance(h, dict) else h.to_dict() for h in history]
    assert [h["trigger"] for h in rows] == expected
    for a, b in itertools.pairwise(rows):
        assert a["to"] == b["from"]


async def journal_paths(path: Path) -> dict[str, list[tuple[str | None, str, str]]]:
    """Per source, the applied or observed steps the journal holds, in order."""
    async with SqliteJournal(path) as journal:
        entries = await journal.history()
    out: dict[str, list[tuple[str | None, str, str]]] = {}
    for e in entries:
        assert e.outcome is not Outcome.PENDING, f"an intent was left open: {e}"
        if e.outcome in (Outcome.APPLIED, Outcome.OBSERVED):
            out.setdefault(e.source_id, []).append((e.trigger, e.from_state, e.to_state))
    return out


def journalled(run: Child, journal: Path, steps: int) -> bool:
    """Whether ``journal`` holds ``steps`` applied steps; fails if ``run`` ended before that.

    The proof that a wave is under way, for tests that kill or interrupt it::

        await eventually(lambda: journalled(run, journal, 20), timeout=60)
    """
    if applied_entries(journal) >= steps:
        return True
    assert run.running, f"the run ended before {steps} steps were journalled: {run.stderr}"
    return False


def write_wave(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return path


def applied_entries(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(journal, timeout=5)) as conn:
            return int(
                conn.execute("SELECT count(*) FROM entries WHERE outcome = 'applied'").fetchone()[0]
            )
    except sqlite3.OperationalError:  # the journal is being created
        return 0


def pending_intents(journal: Path) -> int:
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM entries WHERE outcome = 'pending'").fetchone()[0]
        )
