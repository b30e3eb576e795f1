"""Shared by the wave tests: a wave spec maker, history checks, simulators, a CLI spawner."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sms_flow.chart import default_chart
from sms_flow.client import RetryPolicy
from sms_flow.journal import Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.planner import Planner
from sms_flow.simulator import Simulator, SimulatorConfig
from sms_flow.states import parse_pair
from sms_flow.wave import WaveSpec

MAIN_PATH = ["configure", "start", "replicate", "cutover", "finish"]
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


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(service_delay=0.02, seed=11)) as s:
        yield s


@dataclass
class ExternalSimulator:
    url: str
    ids: list[str]
    proc: subprocess.Popen[str]

    def history(self, source_id: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(
            f"{self.url}/_simulator/sources/{source_id}/history", timeout=10
        ) as answer:
            return list(json.load(answer)["history"])

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_simulator/stats", timeout=10) as answer:
            return dict(json.load(answer))


@pytest.fixture
def external_sim(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(n: int, *extra: str) -> ExternalSimulator:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sms_flow.simulator",
                "--port",
                "0",
                "--sources",
                str(n),
                "--service-delay",
                "0.02",
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        ids = [proc.stdout.readline().strip() for _ in range(n)]
        return ExternalSimulator(url, ids, proc)

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=10)


def write_wave(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return path


def sms_flow(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sms_flow", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


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
