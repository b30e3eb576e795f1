"""What a wave tells while it runs (:class:`Event`) and what it leaves (:class:`WaveReport`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sms_flow.journal import iso_utc

if TYPE_CHECKING:
    from sms_flow.chart import Edge
    from sms_flow.engine import Engine, StepResult
    from sms_flow.states import StatePair
    from sms_flow.wave.recovery import RecoveryReport

__all__ = [
    "Event",
    "EventKind",
    "SourceOutcome",
    "SourceRecord",
    "WaveReport",
    "state_counts",
]


class EventKind(StrEnum):
    WAVE_STARTED = "wave_started"
    QUEUED = "queued"
    """Once every member was read: ``report.sources`` holds them all, and those without an
    outcome yet are queued to be driven."""
    SOURCE_STARTED = "source_started"
    STEP = "step"
    WAITING = "waiting"
    CHECK = "check"
    SOURCE_DONE = "source_done"
    STOPPING = "stopping"
    WAVE_DONE = "wave_done"


class SourceOutcome(StrEnum):
    FINISHED = "finished"
    """Reached the target in this run."""
    ALREADY = "already"
    """Was at the target before this run did anything."""
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not eligible (a drill on a source that is not syncing)."""
    STOPPED = "stopped"
    """Not finished because the run was stopped (Ctrl-C, the failure policy, a lost lease)."""
    OWNED = "owned"
    """Held by another live driver (another wave, a ``set``): not driven; run again later."""
    TAKEN = "taken"
    """Taken over by another driver during the run (``set --force``): no longer driven."""
    UNVERIFIED = "unverified"
    """Its last push may have landed, but nothing proves it (the service could not be read);
    the journal keeps the entry open, and the next run's first read settles it."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in a wave; callbacks and ``WaveRunner.events()`` get these."""

    kind: EventKind
    wave: str
    source_id: str | None = None
    step: StepResult | None = None
    edge: Edge | None = None
    state: StatePair | None = None
    outcome: SourceOutcome | None = None
    error: str | None = None
    report: WaveReport | None = None


@dataclass
class SourceRecord:
    """One source in a wave report."""

    source_id: str
    start: str | None = None
    state: str | None = None
    outcome: SourceOutcome | None = None
    steps: int = 0
    error: str | None = None
    error_type: str | None = None
    request_id: str | None = None
    """The request id of the call that failed it, when the service answered."""
    attempts: int = 0
    """HTTP attempts of its pushes (and of the call that failed it), retries included."""
    retries: int = 0
    """Of those attempts, the retries."""
    detail: dict[str, Any] = field(default_factory=dict)

    def count_attempts(self, attempts: int) -> None:
        """Count the attempts of one call (its retries are all but the first)."""
        self.attempts += attempts
        self.retries += max(0, attempts - 1)

    def note_error(self, exc: BaseException) -> None:
        """Keep the request id and the attempts of the call that raised ``exc``."""
        request_id = getattr(exc, "request_id", None)
        if isinstance(request_id, str):
            self.request_id = request_id
        attempts = getattr(exc, "attempts", None)
        if isinstance(attempts, int):
            self.count_attempts(attempts)


@dataclass
class WaveReport:
    """The result of a wave run; :meth:`to_dict` is the JSON report."""

    wave: str
    target: str
    endpoint: str
    started_at: float
    finished_at: float = 0.0
    sources: dict[str, SourceRecord] = field(default_factory=dict)
    applied: int = 0
    observed: int = 0
    halted: bool = False
    interrupted: bool = False
    cut_short: bool = False
    """A signal cut the run short: steps in flight were cancelled, not finished (the second
    Ctrl-C or SIGTERM, or the first while a request waited for a rate-limit slot)."""
    recovery: RecoveryReport | None = None
    lease_lost: str | None = None
    """Why the run stopped pushing when its lease lapsed or it was taken over, if it did."""
    took_over: list[str] = field(default_factory=list)
    """The dead runs of this wave this run took over (their open intents it settled)."""
    unreachable: str | None = None
    """Why the run stopped early because the service could not be reached (sources in a
    row failed to reach it, each after the client's retries), if it did."""
    session: str | None = None
    """A joined worker's (``run --join``) session: its sources are the ones it drove."""
    taken_over: int = 0
    """A joined worker: sources it took from dead workers of its session."""
    retries: dict[str, int] = field(default_factory=dict)
    """The client's retries during the run, by cause (``connect``, ``dropped``, ``timeout``,
    ``429``, ``5xx``) and in all (``total``); empty when the client does not count them."""
    counting: Callable[[], dict[str, int]] | None = field(default=None, repr=False)
    """While the run goes on: its retries so far (the runner sets it)."""

    def retries_so_far(self) -> dict[str, int]:
        """The retries of the run so far (for a live display), as :attr:`retries`."""
        return self.counting() if self.counting is not None else self.retries

    def count(self, outcome: SourceOutcome) -> int:
        return sum(1 for r in self.sources.values() if r.outcome is outcome)

    @property
    def failed(self) -> list[SourceRecord]:
        return [r for r in self.sources.values() if r.outcome is SourceOutcome.FAILED]

    @property
    def not_ours(self) -> list[SourceRecord]:
        """Sources another driver holds or took over: owned or taken."""
        return [
            r
            for r in self.sources.values()
            if r.outcome in (SourceOutcome.OWNED, SourceOutcome.TAKEN)
        ]

    @property
    def unverified(self) -> list[SourceRecord]:
        return [r for r in self.sources.values() if r.outcome is SourceOutcome.UNVERIFIED]

    @property
    def ok(self) -> bool:
        """True when every source is at the target."""
        return all(
            r.outcome in (SourceOutcome.FINISHED, SourceOutcome.ALREADY)
            for r in self.sources.values()
        )

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    @property
    def unpassed(self) -> list[SourceRecord]:
        """Sources that failed, or whose drill did not pass (a drill report's failures)."""
        return [
            r
            for r in self.sources.values()
            if r.outcome is SourceOutcome.FAILED
            or r.detail.get("drill") not in (None, "passed", "not run")
        ]

    @property
    def exit_code(self) -> int:
        """The exit status ``sms-flow run`` and ``drill`` give for this report: 5 when the
        run lost its lease, 3 when it stopped because the service could not be reached, 130
        when a signal cut it short, 1 when a source failed, its drill
        did not pass or its last push is unverified, 5 when sources are another driver's, 130
        when it was interrupted before every source was at the target, else 0 (see
        :mod:`sms_flow.cli`)."""
        if self.lease_lost:
            return 5
        if self.unreachable:
            return 3
        if self.cut_short:
            return 130
        if self.unpassed or self.unverified:
            return 1
        if self.not_ours:
            return 5
        if self.interrupted and not self.ok:
            return 130
        return 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: times in ISO-8601 UTC, the sms-flow version, the exit status,
        totals (retries by cause included), each failure with its error type, message and
        request id, and each source's last known state."""
        from sms_flow import __version__

        elapsed = self.elapsed
        failures = [
            r
            for r in self.sources.values()
            if r.outcome
            in (
                SourceOutcome.FAILED,
                SourceOutcome.OWNED,
                SourceOutcome.TAKEN,
                SourceOutcome.UNVERIFIED,
            )
            or r.detail.get("drill") not in (None, "passed", "not run")
        ]
        return {
            "wave": self.wave,
            "target": self.target,
            "endpoint": self.endpoint,
            "sms_flow_version": __version__,
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at) if self.finished_at else None,
            "elapsed_seconds": round(elapsed, 3),
            "exit_code": self.exit_code,
            "totals": {
                "sources": len(self.sources),
                **{o.value: self.count(o) for o in SourceOutcome},
                "transitions_applied": self.applied,
                "moves_observed": self.observed,
                "transitions_per_second": round(self.applied / elapsed, 1) if elapsed > 0 else None,
                "attempts": sum(r.attempts for r in self.sources.values()),
                "retries": self.retries.get("total", 0),
                "retries_by_cause": {k: v for k, v in self.retries.items() if k != "total"},
            },
            "halted": self.halted,
            "interrupted": self.interrupted,
            "lease_lost": self.lease_lost,
            "unreachable": self.unreachable,
            "took_over": self.took_over,
            "session": self.session,
            "taken_over": self.taken_over,
            "recovery": self.recovery.to_dict() if self.recovery else None,
            "failures": [  # every source not done, with why: failed, owned, taken, unverified
                {
                    "source_id": r.source_id,
                    "outcome": r.outcome.value if r.outcome else None,
                    "state": r.state,
                    "error_type": r.error_type,
                    "error": r.error,
                    "request_id": r.request_id,
                    **({"drill": r.detail["drill"]} if "drill" in r.detail else {}),
                }
                for r in failures
            ],
            "sources": [
                {
                    "source_id": r.source_id,
                    "start": r.start,
                    "state": r.state,
                    "outcome": r.outcome.value if r.outcome else None,
                    "steps": r.steps,
                    "attempts": r.attempts,
                    "retries": r.retries,
                    "error": r.error,
                    "request_id": r.request_id,
                    **r.detail,
                }
                for r in self.sources.values()
            ],
        }


def state_counts(engine: Engine, members: Iterable[str]) -> Counter[str]:
    """How many of ``members`` are in each copystate now (for a progress display)."""
    states = engine.states
    counts: Counter[str] = Counter()
    for source_id in members:
        pair = states.get(source_id)
        counts[pair.copystate.value if pair is not None else "?"] += 1
    return counts
