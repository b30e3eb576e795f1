"""Migration drills: ``premigready → premiging → a check → premiged | premigfailed → SYNCING``.

A drill runs on sources that are syncing. For each one the runner pushes ``drill_ready`` and
``drill_start``, runs the user's check (a shell command with the source id in its
environment, or a Python callable), pushes ``drill_pass`` or ``drill_fail`` by the check's
answer, then ``drill_done`` to bring the source back to ``SYNCING``; a report per source
says what happened. A check that hangs is stopped at its timeout and counts as failed.

Like a wave, a drill resumes where it stopped: the next step of each source follows from
its state (a source found in ``premiging`` runs its check again).

A drill's result is reused only for the same drill: its *definition*
(:func:`drill_definition`: the check's command and timeout, or the Python check's name, the
sources, and ``prepare``) is part of the actor its steps are journalled under
(``drill:NAME#DIGEST``), and a source whose drill of that definition is in the journal (on
the same endpoint) is not drilled again: its earlier verdict is reported as reused
(``reused: true``), with its time and, from the earlier report, its check's output. A drill
with another check, or other sources, drills them again. A drill whose check did not pass
is a failed source (in the report's totals and failures, and in the exit status).

A check command that cannot run (a missing script, one that is not executable, no such
command) is refused before anything is opened or pushed (:func:`check_runnable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

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
    "check_runnable",
    "drill_definition",
    "drill_failures",
    "load_drill",
    "run_check_command",
    "run_drill",
]

SYNCING = StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
DRILL_TRIGGERS = ("drill_ready", "drill_start", "drill_pass", "drill_fail", "drill_done")

CheckFn = Callable[[str], bool | Awaitable[bool]]
"""A Python check: called with the source id; True means the drill passed."""

_KEPT: Final = ("check_output", "check_seconds", "checked_at")
"""A drilled source's detail that a later run reporting its reused result carries over."""


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


def drill_definition(spec: DrillSpec, check: CheckFn | None = None) -> str:
    """A short digest (12 hex digits) of what a drill does, whatever it is named.

    It covers the check (a Python ``check``'s module and name, else the file's command and
    timeout), the sources (ids, query or count) and ``prepare``: two drills with the same
    definition would do the same, so one's result may stand for the other's.
    """
    if check is not None:
        what: Any = {"python": f"{check.__module__}.{getattr(check, '__qualname__', check)!s}"}
    else:
        what = spec.check.model_dump() if spec.check is not None else None
    text = json.dumps(
        {"check": what, "sources": spec.sources.model_dump(), "prepare": spec.prepare},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_PLAIN_WORD: Final = re.compile(r"[A-Za-z0-9_./+:@%-]+")
_ASSIGNMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def check_runnable(command: str, *, cwd: Path | None = None) -> None:
    """Refuse a check command that cannot run, before any source is touched.

    The shell that runs it (``/bin/sh``) must read it (``sh -n``: its syntax, nothing run).
    Its first word (after ``NAME=value`` assignments) is looked at when it is a plain word:
    a path (it has a ``/``, relative to ``cwd``, the folder the check runs in) must be an
    executable regular file; a name must be a command the shell knows (a builtin such as
    ``exit`` or ``test``, a keyword such as ``case``, or a program on ``PATH``). Anything
    else (``$VAR``, ``(``) is left to the shell. Blocks while ``/bin/sh`` answers (call it in
    a thread from async code). Raises :class:`~sms_flow.errors.ConfigError` saying what is
    wrong and what to do.
    """
    shown = f"the check command {command!r}"
    syntax = _sh("-n", "-c", command)
    if syntax.returncode != 0:
        problem = " ".join(syntax.stderr.split()) or f"exit status {syntax.returncode}"
        raise ConfigError(f"{shown} is not valid shell ({problem}); fix it")
    try:
        words = shlex.split(command, comments=True)
    except ValueError:  # valid for the shell (a here-document, say): left to it
        return
    words = _without_assignments(words)
    if not words or not _PLAIN_WORD.fullmatch(words[0]):
        return
    word = words[0]
    if "/" in word:
        path = Path(word).expanduser()
        if not path.is_absolute() and cwd is not None:
            path = cwd / path
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(
                f"{shown} cannot run: {word} does not exist (looked for {path.absolute()}); "
                "give the right path (a relative one is from the current folder)"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{shown} cannot run: {word}: {(exc.strerror or str(exc)).lower()}"
            ) from None
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{shown} cannot run: {word} is a directory; name a script")
        if not os.access(path, os.X_OK):
            raise ConfigError(
                f"{shown} cannot run: {word} is not executable; chmod +x {word}, or give "
                f"'sh {word}' as the check"
            )
        return
    if shutil.which(word) is not None:
        return
    if not _shell_knows(word):
        raise ConfigError(
            f"{shown} cannot run: no such command {word!r} (not a shell builtin, and not on "
            "PATH); give the script's path, e.g. ./check.sh"
        )


def _without_assignments(words: list[str]) -> list[str]:
    """``words`` without the leading ``NAME=value`` assignments of a shell command."""
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        i += 1
    return words[i:]


def _shell_knows(word: str) -> bool:
    """Whether ``/bin/sh`` knows ``word`` as a command (``command -v``: builtins, keywords)."""
    return _sh("-c", 'command -v -- "$1" >/dev/null 2>&1', "sh", word).returncode == 0


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")


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
    """Runs a drill on every source of a :class:`DrillSpec` (a wave whose steps are the drill).

    ``earlier`` is what an earlier run of the same drill reported per source (its report's
    ``sources``, by id): a result this run reuses, or a check this run's resume follows up,
    keeps that run's check output and times.
    """

    def __init__(
        self,
        spec: DrillSpec,
        *args: Any,
        check: CheckFn | None = None,
        earlier: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec, *args, **kwargs)
        self.drill = spec
        self.check = check
        self.definition = drill_definition(spec, check)
        self.actor = drill_actor(spec, check)
        self.earlier = {
            sid: detail
            for sid, detail in (earlier or {}).items()
            if detail.get("drill_definition") == self.definition
        }
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

    async def _already_drilled(self, source_id: str) -> tuple[str, float] | None:
        """The verdict and time of this drill's completed drill of ``source_id``, if any.

        Only entries of this drill's definition (its actor) on this endpoint count.
        """
        entries = await self.journal.history(source_id=source_id, wave=self.spec.name)
        ours = [
            e
            for e in entries
            if e.outcome is Outcome.APPLIED
            and e.actor == self.actor
            and e.endpoint == self.engine.endpoint
        ]
        if not any(e.trigger == "drill_done" for e in ours):
            return None
        verdicts = [e for e in ours if e.trigger in ("drill_pass", "drill_fail")]
        if not verdicts:
            return None
        last = verdicts[-1]
        return ("passed" if last.trigger == "drill_pass" else "failed"), last.created_at

    def _carry_over(self, record: SourceRecord) -> None:
        """Put the earlier run's check output and times of this source into ``record``."""
        before = self.earlier.get(record.source_id, {})
        for key in _KEPT:
            if key in before and key not in record.detail:
                record.detail[key] = before[key]

    async def drive(self, record: SourceRecord) -> None:
        """Drill one source (first taking it to ``SYNCING/syncing`` when ``prepare`` says so)."""
        engine = self.engine
        source_id = record.source_id
        record.detail["drill_definition"] = self.definition
        earlier = await self._already_drilled(source_id)
        if earlier is not None:
            verdict, when = earlier
            before = self.earlier.get(source_id, {})
            if before.get("drill") in ("passed", "failed", "timeout", "error") and (
                (before["drill"] == "passed") == (verdict == "passed")
            ):
                verdict = str(before["drill"])  # the finer verdict (timeout, error) it reported
            record.detail.update(drill=verdict, reused=True, checked_at=_iso(when))
            self._carry_over(record)
            if verdict == "passed":
                self.finish(record, SourceOutcome.ALREADY)
            else:
                self.finish(
                    record,
                    SourceOutcome.FAILED,
                    f"the check {verdict} at {_iso(when)} (reused: this drill, with the same "
                    "check and sources, drilled it then; give another name to drill it again)",
                    "DrillFailed",
                )
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
                    self._done(record)
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
                    checked_at=_iso(time.time()),
                )
                self.emit(
                    EventKind.CHECK,
                    source_id=source_id,
                    error=None if result.passed else result.verdict,
                )
                trigger = "drill_pass" if result.passed else "drill_fail"
            elif cs in (CopyState.PREMIGED, CopyState.PREMIGFAILED):
                if "drill" not in record.detail:  # resumed after the verdict was pushed
                    passed = cs is CopyState.PREMIGED
                    before = self.earlier.get(source_id, {})
                    shown = before.get("drill")
                    if shown is not None and (shown == "passed") == passed:
                        record.detail["drill"] = shown
                        self._carry_over(record)
                    else:
                        record.detail["drill"] = "passed" if passed else "failed"
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

    def _done(self, record: SourceRecord) -> None:
        """The source is back in SYNCING: finished when its check passed, else failed."""
        verdict = record.detail["drill"]
        if verdict == "passed":
            self.finish(record, SourceOutcome.FINISHED)
            return
        output = str(record.detail.get("check_output") or "").strip()
        self.finish(
            record,
            SourceOutcome.FAILED,
            f"the check {verdict}" + (f": {output[:300]}" if output else ""),
            "DrillFailed",
        )

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


def drill_actor(spec: DrillSpec, check: CheckFn | None = None) -> str:
    """The actor a drill's steps are journalled under: ``drill:NAME#DEFINITION``."""
    return f"drill:{spec.name}#{drill_definition(spec, check)}"


def drill_failures(report: WaveReport) -> list[SourceRecord]:
    """The failed sources of a drill report: a check that did not pass (in this run, or
    reused), or a source that could not be drilled. The same as ``report.failed``: the
    report's totals, its failures and the exit status agree."""
    return report.failed


class DrillSession(WaveSession):
    """A :class:`WaveSession` whose runner is a :class:`DrillRunner` (a run of kind ``drill``).

    Before anything is opened, the check command is tried (:func:`check_runnable`); the
    earlier report of the drill (at the report path), if there is one, gives the runner the
    detail of the results it reuses.
    """

    kind = "drill"

    def __init__(self, spec: DrillSpec, *, check: CheckFn | None = None, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.drill = spec
        self.check = check
        self._earlier: dict[str, dict[str, Any]] = {}

    @property
    def actor(self) -> str:
        return drill_actor(self.drill, self.check)

    async def __aenter__(self) -> DrillSession:
        if self.check is None and self.drill.check is not None:
            await asyncio.to_thread(check_runnable, self.drill.check.command, cwd=Path.cwd())
        self._earlier = await asyncio.to_thread(_earlier_report, self.report_path)
        await super().__aenter__()
        return self

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
            earlier=self._earlier,
        )


def _earlier_report(path: Path) -> dict[str, dict[str, Any]]:
    """The per-source entries of the report at ``path`` (none when it cannot be read)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(src["source_id"]): dict(src)
            for src in data.get("sources", [])
            if isinstance(src, dict) and "source_id" in src
        }
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


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
