"""A smoke run of the benchmarks: they run and write their figures (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import Spawner


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
