"""Drills against the simulator: pass, fail, timeout, a Python check, resume, skip."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sms_flow.errors import ConfigError
from sms_flow.journal import Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.simulator import Simulator
from sms_flow.wave.drill import (
    DrillSession,
    DrillSpec,
    check_runnable,
    drill_failures,
    load_drill,
    run_check_command,
    run_drill,
)
from sms_flow.wave.report import EventKind, SourceOutcome
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


async def test_a_check_that_does_not_pass_is_a_failed_source_in_totals_and_failures(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await syncing_sources(sim, 3)
    report = await run_drill(
        drill(ids, f'test "$SMS_FLOW_SOURCE_ID" != {ids[1]} || {{ echo nope; exit 1; }}'),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
    )
    data = report.to_dict()
    assert data["totals"]["failed"] == 1 and data["totals"]["finished"] == 2
    [failure] = data["failures"]
    assert failure["source_id"] == ids[1] and failure["error_type"] == "DrillFailed"
    assert failure["error"] == "the check failed: exit status 1; nope"
    assert drill_failures(report) == report.failed
    assert str(sim.source(ids[1]).pair) == "SYNCING/syncing"  # the drill itself was carried out


async def test_a_result_is_reused_only_for_the_same_check(sim: Simulator, tmp_path: Path) -> None:
    [sid] = await syncing_sources(sim, 1)
    journal = tmp_path / "j.sqlite"
    passed = await run_drill(drill([sid], "echo fine"), endpoint=sim.url, journal_path=journal)
    assert passed.count(SourceOutcome.FINISHED) == 1
    # The same name with another check drills again (no false pass), and fails.
    failed = await run_drill(drill([sid], "exit 1"), endpoint=sim.url, journal_path=journal)
    [record] = failed.sources.values()
    assert record.outcome is SourceOutcome.FAILED and record.detail["drill"] == "failed"
    assert "reused" not in record.detail
    assert [h.trigger for h in sim.history(sid)].count("drill_fail") == 1
    # The same check again: its result is reused, shown as such with its time, not drilled.
    puts = len(sim.history(sid))
    again = await run_drill(drill([sid], "exit 1"), endpoint=sim.url, journal_path=journal)
    [reused] = again.sources.values()
    assert len(sim.history(sid)) == puts
    assert reused.outcome is SourceOutcome.FAILED and again.to_dict()["totals"]["failed"] == 1
    assert reused.detail["reused"] is True and reused.detail["drill"] == "failed"
    assert reused.detail["checked_at"] == record.detail["checked_at"]
    assert "reused" in (reused.error or "")
    # A longer timeout is another definition too.
    longer = await run_drill(
        drill([sid], "exit 1", timeout=20.0), endpoint=sim.url, journal_path=journal
    )
    assert "reused" not in longer.sources[sid].detail
    assert [h.trigger for h in sim.history(sid)].count("drill_fail") == 2


async def test_a_resumed_drill_keeps_the_earlier_runs_detail(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await syncing_sources(sim, 3)
    journal = tmp_path / "j.sqlite"
    spec = drill(ids, 'echo "checked $SMS_FLOW_SOURCE_ID"', concurrency=1)
    session = DrillSession(spec, endpoint=sim.url, journal_path=journal)
    async with session:
        runner = session.runner
        runner.subscribe(
            lambda e: runner.stop() if e.kind is EventKind.SOURCE_DONE else None
        )  # Ctrl-C once the first source is drilled
        first = await runner.run()
        session.write_report(first)
    [done] = [r for r in first.sources.values() if r.outcome is SourceOutcome.FINISHED]
    assert first.interrupted and done.detail["check_output"] == f"checked {done.source_id}"

    resumed = await run_drill(spec, endpoint=sim.url, journal_path=journal)
    assert {r.detail["drill"] for r in resumed.sources.values()} == {"passed"}
    written = json.loads(session.report_path.read_text(encoding="utf-8"))
    by_id = {s["source_id"]: s for s in written["sources"]}
    kept = by_id[done.source_id]
    assert kept["reused"] is True and kept["outcome"] == "already"
    assert kept["check_output"] == f"checked {done.source_id}"
    assert kept["check_seconds"] == done.detail["check_seconds"]
    assert kept["checked_at"] == done.detail["checked_at"]
    for sid in set(ids) - {done.source_id}:
        assert by_id[sid]["check_output"] == f"checked {sid}" and "reused" not in by_id[sid]


async def test_a_check_that_cannot_run_is_refused_before_anything_is_pushed(
    sim: Simulator, tmp_path: Path
) -> None:
    [sid] = await syncing_sources(sim, 1)
    before = len(sim.history(sid))
    script = tmp_path / "smoke.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    cases = {
        f"{tmp_path}/missing.sh --quick": "does not exist",
        str(script): "is not executable; chmod +x",
        "no-such-command-here --flag": "no such command 'no-such-command-here'",
        "echo 'unbalanced": "is not valid shell (",
    }
    for command, needle in cases.items():
        with pytest.raises(ConfigError, match=re.escape(needle)):
            await run_drill(drill([sid], command), endpoint=sim.url, journal_path=tmp_path / "j")
    assert len(sim.history(sid)) == before
    assert not (tmp_path / "j").exists()  # nothing was opened either
    heredoc = "cat <<EOF\nit's here\nEOF"  # valid shell that shlex cannot split
    for fine in ("exit 0", "case x in x) true;; esac", "X=1 true", "[ 1 = 1 ]", heredoc):
        check_runnable(fine)
