"""A smoke run of the benchmarks: they run and write their figures (no timing is asserted)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from sms_flow.testing._postgres import Cluster
from tests.conftest import PG_REQUIRE_ENV, PostgresServer, Spawner


@pytest.mark.slow
def test_benchmarks_smoke_run(spawn: Spawner, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = spawn.run(
        sys.executable, "-m", "benchmarks", "--quick", "--only", "B1,B2", "--repeat", "1", "--json", str(out),
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    ids = {f["id"] for f in data["figures"]}
    assert ids == {"B1", "B2"}
    assert all(f["value"] > 0 and f["baselines"] for f in data["figures"])
    assert "B1" in result.stdout and "checks/s" in result.stdout


@pytest.mark.slow
def test_b10_history_runs_and_reports_time_and_memory(spawn: Spawner, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = spawn.run(
        sys.executable, "-m", "benchmarks", "--only", "B10", "--b10-entries", "3000",
        "--json", str(out), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())["figures"]
    assert {f["what"] for f in figures} == {
        f"history --wave, {form}: {what}"
        for form in ("table", "csv", "json")
        for what in ("wall time", "peak memory")
    }
    assert all(f["value"] > 0 and f["baselines"] for f in figures)


@pytest.mark.slow
def test_b11_dashboard_runs_and_reports_each_request_and_the_counting(
    spawn: Spawner, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    result = spawn.run(
        sys.executable, "-m", "benchmarks", "--only", "B11", "--b11-sources", "500",
        "--repeat", "1", "--json", str(out), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())["figures"]
    names = {
        "first page before any count (waits for it)",
        "page, snapshot fresh",
        "update, snapshot fresh",
        "page, recount in background",
        "update, recount in background",
        "counting (census + every wave_status)",
    }
    # The same on a PostgreSQL copy of the journal wherever a cluster can be started.
    why_not = Cluster.unavailable()
    if os.environ.get(PG_REQUIRE_ENV) == "1":
        assert why_not is None, f"B11 cannot measure PostgreSQL here: {why_not}"
    on_postgres = {"PostgreSQL: " + name for name in names} if why_not is None else set()
    assert {f["what"] for f in figures} == names | on_postgres
    assert all(f["value"] > 0 and f["unit"] == "ms" for f in figures)
    [counting] = [f for f in figures if f["what"].startswith("counting")]
    assert counting["baselines"][0]["name"] == "census grouping the entries (schema 4)"


@pytest.mark.slow
def test_soak_small_finds_nothing_pushed_twice_or_recorded_wrong(
    spawn: Spawner, tmp_path: Path
) -> None:
    """The soak's judgement at the test suite's size: faults and concurrent actors (two runs
    of one wave, set during a wave, two waves sharing sources), judged by the simulator's
    histories and the journal."""
    out = tmp_path / "soak.json"
    result = spawn.run(
        sys.executable, "-m", "benchmarks.soak", "--small", "--json", str(out), timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [verdict] = json.loads(out.read_text())["verdicts"]
    judged = {
        k: verdict[k]
        for k in (
            "duplicated_steps", "backward_moves", "overrides", "applied_recorded_failed",
            "unjournalled_pushes", "open_entries",
        )
    }  # fmt: skip
    assert set(judged.values()) == {0}, judged
    assert verdict["client_moves"] > 0 and verdict["at_target"] == verdict["sources"]
    exits = verdict["exits"]
    assert 5 in exits["A: first run"] + exits["A: second run"], "one of the two runs refused"
    assert exits["B: set"] and set(exits["B: set"]) == {5}, "set refused while the wave owns it"
    assert sum(verdict["faults"].values()) > 0


@pytest.mark.slow
def test_b7_runs_both_journals_and_reports_their_ratio(
    spawn: Spawner, tmp_path: Path, postgres: PostgresServer
) -> None:
    """B7 on the tests' PostgreSQL (as SMS_FLOW_BENCH_PG_DSN), a few sources a side."""
    out = tmp_path / "results.json"
    result = spawn.run(
        sys.executable, "-m", "benchmarks", "--only", "B7", "--b7-sources", "40", "--repeat", "1",
        "--concurrency", "8", "--json", str(out), timeout=300,
        env={"SMS_FLOW_BENCH_PG_DSN": postgres.admin_dsn},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [figure] = json.loads(out.read_text())["figures"]
    assert figure["id"] == "B7" and figure["value"] > 0
    [baseline] = figure["baselines"]
    assert baseline["name"] == "same run, SQLite journal" and baseline["value"] > 0
    sides = [r["side"] for r in figure["details"]["runs"]]
    assert sides == ["SQLite journal", "PostgreSQL journal"]
    assert all(r["requests"] == 40 * 5 for r in figure["details"]["runs"])
