"""Every example runs, as a user would run it, and says what it should."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def run_example(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def test_validate_request_explains_each_request() -> None:
    result = run_example("validate_request.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "allowed: cutover: SYNCING/syncing → CUTOVERING/cutovering" in out
    assert "Shortest legal path (5 steps)" in out
    assert "ignores changestate while the source is STOPPED" in out
    assert "allowed: requeue: cleared/cutovered → WAITING/cutovered" in out
    assert "unknown copystate 'CUTOVER'" in out
    assert out.rstrip().endswith("2 allowed, 4 rejected")


def test_validate_request_takes_the_operators_pairs() -> None:
    result = run_example("validate_request.py", "REPLICATE/replicating", "SYNCING/syncing")
    assert result.returncode == 0, result.stderr
    assert "allowed: sync: REPLICATE/replicating → SYNCING/syncing" in result.stdout
