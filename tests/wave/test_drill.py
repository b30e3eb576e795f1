"""Drills against the simulator: pass, fail, timeout, a Python check, resume, skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sms_flow.errors import ConfigError
from sms_flow.journal import Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.simulator import Simulator
from sms_flow.wave.drill import (
    DrillSpec,
    drill_failures,
    load_drill,
    run_check_command,
    run_drill,
)
from sms_flow.wave.report import SourceOutcome
from tests.conftest import eventually
from tests.wave.conftest import WAVE_SIMULATOR

DRILL_PATH = ["drill_ready", "drill_start", "drill_pass", "drill_done"]

pytestmark = WAVE_SIMULATOR


def ended(pid: int) -> bool:
    """Whether process ``pid`` is gone (or a zombie: dead, waiting for its parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


async def syncing_sources(sim: Simulator, n: int) -> list[str]:
    ids = await sim.register_many(n, prefix="d")
    for sid in ids:
        await sim.move(sid, pair="SYNCING/syncing")
    return ids


def drill(ids: list[str], command: str, timeout: float = 10.0, **extra: Any) -> DrillSpec:
    return DrillSpec.model_validate(
        {
            "name": "dr",
            "sources": {"ids": ids},
            "check": {"command": command, "timeout": timeout},
            **extra,
        }
    )


async def test_drill_passes_and_returns_to_syncing(sim: Simulator, tmp_path: Path) -> None:
    ids = await syncing_sources(sim, 3)
    marker = tmp_path / "seen"
    report = await run_drill(
        drill(ids, f'echo "$SMS_FLOW_SOURCE_ID $SMS_FLOW_DRILL" >> {marker}'),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
    )
    assert not drill_failures(report)
    assert {r.detail["drill"] for r in report.sources.values()} == {"passed"}
    assert sorted(line.split()[0] for line in marker.read_text().splitlines()) == sorted(ids)
    assert {line.split()[1] for line in marker.read_text().splitlines()} == {"dr"}
    for sid in ids:
        assert str(sim.source(sid).pair) == "SYNCING/syncing"
        assert [h.trigger for h in sim.history(sid)][-4:] == DRILL_PATH


async def test_drill_fails_on_a_failing_check(sim: Simulator, tmp_path: Path) -> None:
    ids = await syncing_sources(sim, 2)
    report = await run_drill(
        drill(ids, "echo broken >&2; exit 3"), endpoint=sim.url, journal_path=tmp_path / "j.sqlite"
    )
    failures = drill_failures(report)
    assert len(failures) == 2
    assert all(
        r.detail["drill"] == "failed" and "exit status 3" in r.detail["check_output"]
        for r in failures
    )
    assert "broken" in failures[0].detail["check_output"]
    for sid in ids:
        assert [h.trigger for h in sim.history(sid)][-4:] == [
            "drill_ready",
            "drill_start",
            "drill_fail",
            "drill_done",
        ]
        assert str(sim.source(sid).pair) == "SYNCING/syncing"


async def test_a_check_that_hangs_is_timed_out_and_counts_as_failed(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await syncing_sources(sim, 1)
    pidfile = tmp_path / "check.pid"
    report = await run_drill(
        drill(ids, f"echo $$ > {pidfile}; exec sleep 30", timeout=1.0),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
    )
    [record] = report.sources.values()
    assert record.detail["drill"] == "timeout"
    assert record.detail["check_output"] == "no answer within 1s"
    # The hung check was killed (and reaped) at its timeout, not waited for.
    assert not Path(f"/proc/{int(pidfile.read_text())}").exists()
    assert [h.trigger for h in sim.history(ids[0])][-2:] == ["drill_fail", "drill_done"]


async def test_check_command_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    result = await run_check_command(
        f"sh -c 'echo $$ > {pidfile}; sleep 30' & wait", "s1", timeout=1.0, drill="x"
    )
    assert result.verdict == "timeout"
    # The grandchild, in the check's process group, was killed too.
    pid = int(pidfile.read_text())
    await eventually(lambda: ended(pid))


async def test_python_check_callable(sim: Simulator, tmp_path: Path) -> None:
    ids = await syncing_sources(sim, 4)

    def check(source_id: str) -> bool:  # a plain function runs in a thread
        return source_id != ids[1]

    report = await run_drill(
        drill(ids, "false"), check=check, endpoint=sim.url, journal_path=tmp_path / "j.sqlite"
    )
    verdicts = {sid: r.detail["drill"] for sid, r in report.sources.items()}
    assert verdicts == {ids[0]: "passed", ids[1]: "failed", ids[2]: "passed", ids[3]: "passed"}


async def test_a_check_that_raises_fails_with_the_reason(sim: Simulator, tmp_path: Path) -> None:
    ids = await syncing_sources(sim, 1)

    async def check(source_id: str) -> bool:
        raise RuntimeError("cannot reach the drilled target")

    report = await run_drill(
        drill(ids, "true"), check=check, endpoint=sim.url, journal_path=tmp_path / "j.sqlite"
    )
    [record] = report.sources.values()
    assert record.detail["drill"] == "error"
    assert "cannot reach the drilled target" in record.detail["check_output"]


async def test_sources_not_syncing_are_skipped_unless_prepared(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(2, prefix="w")
    report = await run_drill(
        drill(ids, "true"), endpoint=sim.url, journal_path=tmp_path / "j.sqlite"
    )
    assert report.count(SourceOutcome.SKIPPED) == 2
    assert all(sim.history(s) == [] for s in ids)
    prepared = await run_drill(
        drill(ids, "true", prepare=True, name="dr2"),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
    )
    assert {r.detail["drill"] for r in prepared.sources.values()} == {"passed"}


async def test_a_drill_resumes_and_does_not_drill_twice(sim: Simulator, tmp_path: Path) -> None:
    ids = await syncing_sources(sim, 3)
    await sim.move(ids[0], pair="premiging/syncing")  # left mid-drill by a crash
    journal = tmp_path / "j.sqlite"
    first = await run_drill(drill(ids, "true"), endpoint=sim.url, journal_path=journal)
    assert {r.detail["drill"] for r in first.sources.values()} == {"passed"}
    assert [h.trigger for h in sim.history(ids[0])][-2:] == ["drill_pass", "drill_done"]
    again = await run_drill(drill(ids, "true"), endpoint=sim.url, journal_path=journal)
    assert again.count(SourceOutcome.ALREADY) == 3 and again.applied == 0
    async with SqliteJournal(journal) as j:
        entries = await j.history(wave="dr")
    assert (
        sum(1 for e in entries if e.trigger == "drill_done" and e.outcome is Outcome.APPLIED) == 3
    )


def test_drill_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "drill.yaml"
    path.write_text("name: x\nsources: {count: 2}\ntarget: FINISHED\ncheck: 'true'\n")
    with pytest.raises(ConfigError, match="always ends in SYNCING/syncing"):
        load_drill(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_drill(tmp_path / "missing.yaml")
