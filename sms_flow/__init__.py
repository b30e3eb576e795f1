"""sms-flow: a state machine in front of Huawei Cloud SMS ``changestate``.

Validate and plan source-server state changes against a statechart, push them to
``PUT /v3/sources/{source_id}/changestate``, verify and journal them, and orchestrate waves
and drills; an SMS-compatible simulator runs it all without a cloud account.

The public API is what this module exports (``__all__``); modules and names starting with
``_`` are private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sms_flow.chart import Basis, By, Chart, Edge, StateInfo, default_chart, load_chart
from sms_flow.errors import (
    ActionNeededError,
    ApiError,
    AuthError,
    ChartError,
    ClaimLostError,
    ConfigError,
    ConflictError,
    ConnectError,
    IgnoredByServiceError,
    InputError,
    InvalidRequestError,
    LeaseLostError,
    NotAppliedError,
    NotFoundError,
    OwnedError,
    ReadBackMismatchError,
    RequestTimeoutError,
    ServerError,
    SignatureError,
    SmsFlowError,
    SupersededError,
    ThrottledError,
    TransitionRejected,
    TransportError,
    UnknownValueError,
    UnverifiedError,
    UsageError,
)
from sms_flow.planner import Plan, Planner, Reason, ReasonCode, Verdict, check, plan
from sms_flow.states import (
    CopyState,
    MigrationCycle,
    SdkCycle,
    Spelling,
    StatePair,
    StateRequest,
    parse_copystate,
    parse_cycle,
    parse_pair,
    parse_request,
)

__version__ = "0.1.0"

# Names from the I/O layers and the machine are imported when first used, so that
# `import sms_flow` (and the `sms-flow check` command) does not pay for aiohttp, SQLite, the
# simulator and `transitions`.
_LAZY = {
    "LifecycleMachine": "sms_flow.machine",
    "AkSkAuth": "sms_flow.auth",
    "TokenAuth": "sms_flow.auth",
    "auth_from_env": "sms_flow.auth",
    "SmsClient": "sms_flow.client",
    "RetryPolicy": "sms_flow.retry",
    "PushResult": "sms_flow.client",
    "Engine": "sms_flow.engine",
    "StepResult": "sms_flow.engine",
    "WaitPolicy": "sms_flow.engine",
    "Journal": "sms_flow.journal",
    "SqliteJournal": "sms_flow.journal_sqlite",
    "Intent": "sms_flow.journal",
    "Entry": "sms_flow.journal",
    "Outcome": "sms_flow.journal",
    "Lease": "sms_flow.journal",
    "Run": "sms_flow.journal",
    "JournalError": "sms_flow.errors",
    "WaitTimeoutError": "sms_flow.errors",
    "WaveSpec": "sms_flow.wave",
    "WaveSession": "sms_flow.wave",
    "WaveRunner": "sms_flow.wave",
    "WaveReport": "sms_flow.wave",
    "Event": "sms_flow.wave",
    "EventKind": "sms_flow.wave",
    "SourceOutcome": "sms_flow.wave",
    "load_wave": "sms_flow.wave",
    "run_wave": "sms_flow.wave",
    "recover": "sms_flow.wave",
    "DrillSpec": "sms_flow.wave",
    "DrillSession": "sms_flow.wave",
    "load_drill": "sms_flow.wave",
    "run_drill": "sms_flow.wave",
}

if TYPE_CHECKING:
    from sms_flow.auth import AkSkAuth, TokenAuth, auth_from_env
    from sms_flow.client import PushResult, SmsClient
    from sms_flow.engine import Engine, StepResult, WaitPolicy
    from sms_flow.errors import JournalError, WaitTimeoutError
    from sms_flow.journal import Entry, Intent, Journal, Lease, Outcome, Run
    from sms_flow.journal_sqlite import SqliteJournal
    from sms_flow.machine import LifecycleMachine
    from sms_flow.retry import RetryPolicy
    from sms_flow.wave import (
        DrillSession,
        DrillSpec,
        Event,
        EventKind,
        SourceOutcome,
        WaveReport,
        WaveRunner,
        WaveSession,
        WaveSpec,
        load_drill,
        load_wave,
        recover,
        run_drill,
        run_wave,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sms_flow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ActionNeededError",
    "AkSkAuth",
    "ApiError",
    "AuthError",
    "Basis",
    "By",
    "Chart",
    "ChartError",
    "ClaimLostError",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "CopyState",
    "DrillSession",
    "DrillSpec",
    "Edge",
    "Engine",
    "Entry",
    "Event",
    "EventKind",
    "IgnoredByServiceError",
    "InputError",
    "Intent",
    "InvalidRequestError",
    "Journal",
    "JournalError",
    "Lease",
    "LeaseLostError",
    "LifecycleMachine",
    "MigrationCycle",
    "NotAppliedError",
    "NotFoundError",
    "Outcome",
    "OwnedError",
    "Plan",
    "Planner",
    "PushResult",
    "ReadBackMismatchError",
    "Reason",
    "ReasonCode",
    "RequestTimeoutError",
    "RetryPolicy",
    "Run",
    "SdkCycle",
    "ServerError",
    "SignatureError",
    "SmsClient",
    "SmsFlowError",
    "SourceOutcome",
    "Spelling",
    "SqliteJournal",
    "StateInfo",
    "StatePair",
    "StateRequest",
    "StepResult",
    "SupersededError",
    "ThrottledError",
    "TokenAuth",
    "TransitionRejected",
    "TransportError",
    "UnknownValueError",
    "UnverifiedError",
    "UsageError",
    "Verdict",
    "WaitPolicy",
    "WaitTimeoutError",
    "WaveReport",
    "WaveRunner",
    "WaveSession",
    "WaveSpec",
    "__version__",
    "auth_from_env",
    "check",
    "default_chart",
    "load_chart",
    "load_drill",
    "load_wave",
    "parse_copystate",
    "parse_cycle",
    "parse_pair",
    "parse_request",
    "plan",
    "recover",
    "run_drill",
    "run_wave",
]
