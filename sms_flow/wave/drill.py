"""Migration drills: ``premigready → premiging → a check → premiged | premigfailed → SYNCING``.

A drill runs on sources that are syncing. For each one the runner pushes ``drill_ready`` and
``drill_start``, runs the user's check (a shell command with the source id in its
environment, or a Python callable), pushes ``drill_pass`` or ``drill_fail`` by the check's
answer, then ``drill_done`` to bring the source back to ``SYNCING``; a report per source
says what happened. A check that hangs is stopped at its timeout and counts as failed.

Like a wave, a drill resumes where it stopped: the next step of each source follows from
its state (a source found in ``premiging`` runs its check again), and a source whose drill
is already in the journal is not drilled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sms_flow.engine import Engine
from sms_flow.errors import ConfigError
from sms_flow.journal import Outcome
from sms_flow.states import CopyState, MigrationCycle, StatePair, StateRequest
from sms_flow.wave.report import Event, EventKind, SourceOutcome, SourceRecord, WaveReport
from sms_flow.wave.runner import WaveRunner
from sms_flow.wave.session import WaveSession, run_session
from sms_flow.wave.spec import WaveSpec, folder_of, load_spec

__all__ = [
    "CheckFn",
    "CheckResult",
    "CheckSpec",
    "DrillRunner",
    "DrillSession",
    "DrillSpec",
    "drill_failures",
    "load_drill",
    "run_check_command",
    "run_drill",
]

SYNCING = StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
DRILL_TRIGGERS = ("drill_ready", "drill_start", "drill_pass", "drill_fail", "drill_done")

CheckFn = Callable[[str], bool | Awaitable[bool]]
"""A Python check: called with the source id; True means the drill passed."""


class CheckSpec(BaseModel):
    """The check a drill runs while a source is ``premiging``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(min_length=1, description="Shell command; exit 0 means the drill passed.")
    timeout: float = Field(
        60.0, gt=0, le=86_400, description="Seconds before the check counts as failed."
    )


class DrillSpec(WaveSpec):
    """A drill file: a wave's sources and settings, plus the check."""

    target: str = "SYNCING/syncing"
    check: CheckSpec | None = None
    prepare: bool = Field(
        False,
        description="First take sources that are not syncing to SYNCING/syncing (simulator demos).",
    )

    @model_validator(mode="after")
    def _target_is_syncing(self) -> DrillSpec:
        if self.target_request != StateRequest(CopyState.SYNCING, MigrationCycle.SYNCING):
            raise ValueError("a drill always ends in SYNCING/syncing; leave target out")
        return self


def load_drill(path: str | Path, **overrides: Any) -> DrillSpec:
    """Read and check a drill file; raises :class:`~sms_flow.errors.ConfigError`."""

    def short_check(raw: dict[str, Any]) -> None:  # `check: COMMAND` for `check: {command: ...}`
        if isinstance(raw.get("check"), str):
            raw["check"] = {"command": raw["check"]}

    return load_spec(path, DrillSpec, "drill", overrides, short_check)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check said about one source."""

    passed: bool
    verdict: str
    """``passed``, ``failed``, ``timeout`` or ``error``."""
    output: str = ""
    seconds: float = 0.0


async def run_check_command(
    command: str, source_id: str, *, timeout: float, drill: str
) -> CheckResult:
    """Run a shell check with ``SMS_FLOW_SOURCE_ID`` and ``SMS_FLOW_DRILL`` in its environment.

    Exit status 0 passes. A check still running at ``timeout`` is killed (its whole process
    group) and fails with verdict ``timeout``.
    """
    env = {**os.environ, "SMS_FLOW_SOURCE_ID": source_id, "SMS_FLOW_DRILL": drill}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return CheckResult(
            False, "timeout", f"no answer within {timeout:g}s", time.monotonic() - started
        )
    text = out.decode(errors="replace")[-2000:]
    passed = proc.returncode == 0
    verdict = "passed" if passed else "failed"
    if not passed:
        text = f"exit status {proc.returncode}; {text}"
    return CheckResult(passed, verdict, text.strip(), time.monotonic() - started)


async def _run_check_callable(check: CheckFn, source_id: str, *, timeout: float) -> CheckResult:
    started = time.monotonic()
    try:
        if inspect.iscoroutinefunction(check):
            answer = await asyncio.wait_for(check(source_id), timeout)
        else:
            answer = await asyncio.wait_for(asyncio.to_thread(check, source_id), timeout)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        return CheckResult(
            False, "timeout", f"no answer within {timeout:g}s", time.monotonic() - started
        )
    except Exception as exc:  # a user's check that raises counts as failed, with the reason
        return CheckResult(
            False, "error", f"{type(exc).__name__}: {exc}", time.monotonic() - started
        )
    passed = bool(answer)
    return CheckResult(passed, "passed" if passed else "failed", "", time.monotonic() - started)


class DrillRunner(WaveRunner):
    """Runs a drill on every source of a :class:`DrillSpec` (a wave whose steps are the drill)."""

    def __init__(
        self, spec: DrillSpec, *args: Any, check: CheckFn | None = None, **kwargs: Any
    ) -> None:
        super().__init__(spec, *args, **kwargs)
        self.drill = spec
        self.check = check
        self.actor = f"drill:{spec.name}"
        if check is None and spec.check is None:
            raise ConfigError(
                f"drill {spec.name!r} has no check: give check.command in the file or a Python check"
            )
        missing = [t for t in DRILL_TRIGGERS if t not in self.engine.chart.triggers]
        if missing:
            raise ConfigError(
                f"the chart {self.engine.chart.name!r} has no trigger {', '.join(missing)}; a drill needs them"
            )

    @property
    def check_timeout(self) -> float:
        return self.drill.check.timeout if self.drill.check is not None else 60.0

    async def _already_drilled(self, source_id: str) -> str | None:
        entries = await self.journal.history(source_id=source_id, wave=self.spec.name)
        applied = [e.trigger for e in entries if e.outcome is Outcome.APPLIED]
        if "drill_done" not in applied:
            return None
        return "passed" if "drill_pass" in applied else "failed"

    async def drive(self, record: SourceRecord) -> None:
        """Drill one source (first taking it to ``SYNCING/syncing`` when ``prepare`` says so)."""
        engine = self.engine
        source_id = record.source_id
        earlier = await self._already_drilled(source_id)
        if earlier is not None:
            record.detail["drill"] = earlier
            self.finish(record, SourceOutcome.ALREADY)
            return
        state = engine.states[source_id]
        in_drill = state.copystate in (
            CopyState.PREMIGREADY,
            CopyState.PREMIGING,
            CopyState.PREMIGED,
            CopyState.PREMIGFAILED,
        )
        if state != SYNCING and not in_drill:
            if not self.drill.prepare:
                record.detail["drill"] = "not run"
                self.finish(
                    record,
                    SourceOutcome.SKIPPED,
                    f"not syncing ({state}); a drill starts from {SYNCING}",
                )
                return
            if not await self.walk(record, StateRequest(CopyState.SYNCING, MigrationCycle.SYNCING)):
                return
        self.emit(EventKind.SOURCE_STARTED, source_id=source_id, state=engine.states[source_id])
        while True:
            state = engine.states[source_id]
            record.state = str(state)
            if self.stopping:
                return
            cs = state.copystate
            if cs is CopyState.SYNCING:
                if "drill" in record.detail:
                    self.finish(record, SourceOutcome.FINISHED)
                    return
                trigger = "drill_ready"
            elif cs is CopyState.PREMIGREADY:
                trigger = "drill_start"
            elif cs is CopyState.PREMIGING:
                result = await self._check(source_id)
                record.detail.update(
                    drill=result.verdict,
                    check_output=result.output,
                    check_seconds=round(result.seconds, 3),
                )
                self.emit(
                    EventKind.CHECK,
                    source_id=source_id,
                    error=None if result.passed else result.verdict,
                )
                trigger = "drill_pass" if result.passed else "drill_fail"
            elif cs in (CopyState.PREMIGED, CopyState.PREMIGFAILED):
                record.detail.setdefault(
                    "drill", "passed" if cs is CopyState.PREMIGED else "failed"
                )
                trigger = "drill_done"
            else:
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    f"unexpected state {state} during the drill",
                    "Drill",
                )
                return
            edge = engine.chart.edge(state, trigger)
            if edge is None:
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    f"the chart has no {trigger} from {state}",
                    "Drill",
                )
                return
            if not await self.take_step(record, edge):
                return

    async def _check(self, source_id: str) -> CheckResult:
        if self.check is not None:
            return await _run_check_callable(self.check, source_id, timeout=self.check_timeout)
        assert self.drill.check is not None
        return await run_check_command(
            self.drill.check.command,
            source_id,
            timeout=self.drill.check.timeout,
            drill=self.spec.name,
        )


def drill_failures(report: WaveReport) -> list[SourceRecord]:
    """Sources whose drill did not pass, or that failed, in a drill report."""
    return [
        r
        for r in report.sources.values()
        if r.outcome is SourceOutcome.FAILED
        or r.detail.get("drill") not in (None, "passed", "not run")
    ]


class DrillSession(WaveSession):
    """A :class:`WaveSession` whose runner is a :class:`DrillRunner` (a run of kind ``drill``)."""

    kind = "drill"

    def __init__(self, spec: DrillSpec, *, check: CheckFn | None = None, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.drill = spec
        self.check = check

    def make_runner(self, engine: Engine, client: Any) -> DrillRunner:
        return DrillRunner(
            self.drill,
            engine,
            self.journal,
            client=client,
            endpoint=self.shown_endpoint,
            on_event=self.on_event,
            check=self.check,
            simulator=self.simulator,
        )


async def run_drill(
    spec: DrillSpec | str | Path,
    *,
    check: CheckFn | None = None,
    endpoint: str | None = None,
    journal_path: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> WaveReport:
    """Run a drill from Python; ``check`` (a callable) replaces the file's command."""
    base_dir = None
    if not isinstance(spec, DrillSpec):
        base_dir = folder_of(spec)
        spec = load_drill(spec)
    return await run_session(
        DrillSession(
            spec,
            check=check,
            endpoint=endpoint,
            journal_path=journal_path,
            base_dir=base_dir,
            on_event=on_event,
        )
    )
