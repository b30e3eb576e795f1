"""Shared by the command-line tests: what a refusal of bad input looks like to the person who
typed the command (exit 2, one line on standard error, no traceback)."""

from __future__ import annotations

from tests.conftest import Child


def assert_refused(done: Child, *needles: str) -> str:
    """``done`` (a finished ``sms-flow`` child) refused its input: exit status 2, one line on
    standard error holding every needle, and no traceback. Returns the line."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
