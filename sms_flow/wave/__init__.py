"""Driving many sources: waves and drills.

- :mod:`~sms_flow.wave.spec`: the wave file's schema and the YAML loader (drills share it);
- :mod:`~sms_flow.wave.ratelimit`: the request-rate limit towards the service;
- :mod:`~sms_flow.wave.recovery`: settling the intents a crash left open;
- :mod:`~sms_flow.wave.report`: the events a run emits and the report it leaves;
- :mod:`~sms_flow.wave.runner`: driving every source to the target;
- :mod:`~sms_flow.wave.session`: opening the simulator, client, journal and engine together;
- :mod:`~sms_flow.wave.drill`: migration drills, a wave whose steps run a check;
- :mod:`~sms_flow.wave.dryrun`: a wave's or drill's plan per source, nothing sent.

Nothing here imports the simulator's server until a session starts an embedded one; the
wave file's simulator options reuse its fault definitions (:mod:`sms_flow.simulator.faults`).
"""

from sms_flow.wave.drill import (
    CheckResult,
    CheckSpec,
    DrillRunner,
    DrillSession,
    DrillSpec,
    check_runnable,
    drill_definition,
    drill_failures,
    load_drill,
    run_check_command,
    run_drill,
)
from sms_flow.wave.dryrun import DryRun, SourcePlan, dry_run
from sms_flow.wave.ratelimit import RateLimiter, limited
from sms_flow.wave.recovery import RecoveryReport, read_states, recover
from sms_flow.wave.report import (
    Event,
    EventKind,
    SourceOutcome,
    SourceRecord,
    WaveReport,
    state_counts,
)
from sms_flow.wave.runner import WaveRunner
from sms_flow.wave.session import WaveSession, run_session, run_wave
from sms_flow.wave.spec import (
    FailurePolicy,
    SimulatorOptions,
    SourceQuery,
    SourceSelector,
    WaveSpec,
    chart_of,
    folder_of,
    journal_of,
    load_spec,
    load_wave,
)

__all__ = [
    "CheckResult",
    "CheckSpec",
    "DrillRunner",
    "DrillSession",
    "DrillSpec",
    "DryRun",
    "Event",
    "EventKind",
    "FailurePolicy",
    "RateLimiter",
    "RecoveryReport",
    "SimulatorOptions",
    "SourceOutcome",
    "SourcePlan",
    "SourceQuery",
    "SourceRecord",
    "SourceSelector",
    "WaveReport",
    "WaveRunner",
    "WaveSession",
    "WaveSpec",
    "chart_of",
    "check_runnable",
    "drill_definition",
    "drill_failures",
    "dry_run",
    "folder_of",
    "journal_of",
    "limited",
    "load_drill",
    "load_spec",
    "load_wave",
    "read_states",
    "recover",
    "run_check_command",
    "run_drill",
    "run_session",
    "run_wave",
    "state_counts",
]
