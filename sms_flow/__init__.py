"""sms-flow: a state machine in front of Huawei Cloud SMS ``changestate``.

Validate and plan source-server state changes against a statechart, push them to
``PUT /v3/sources/{source_id}/changestate``, verify and journal them, and orchestrate waves
and drills; an SMS-compatible simulator runs it all without a cloud account.

The public API is what this module exports (``__all__``); modules and names starting with
``_`` are private.
"""

from __future__ import annotations

from sms_flow.chart import Basis, By, Chart, Edge, StateInfo, default_chart, load_chart
from sms_flow.errors import (
    ApiError,
    AuthError,
    ChartError,
    ConfigError,
    ConnectError,
    IgnoredByServiceError,
    InputError,
    InvalidRequestError,
    NotAppliedError,
    NotFoundError,
    ReadBackMismatchError,
    RequestTimeoutError,
    ServerError,
    SmsFlowError,
    SupersededError,
    ThrottledError,
    TransitionRejected,
    TransportError,
    UnknownValueError,
)
from sms_flow.machine import LifecycleMachine
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

__all__ = [
    "ApiError",
    "AuthError",
    "Basis",
    "By",
    "Chart",
    "ChartError",
    "ConfigError",
    "ConnectError",
    "CopyState",
    "Edge",
    "IgnoredByServiceError",
    "InputError",
    "InvalidRequestError",
    "LifecycleMachine",
    "MigrationCycle",
    "NotAppliedError",
    "NotFoundError",
    "Plan",
    "Planner",
    "ReadBackMismatchError",
    "Reason",
    "ReasonCode",
    "RequestTimeoutError",
    "SdkCycle",
    "ServerError",
    "SmsFlowError",
    "Spelling",
    "StateInfo",
    "StatePair",
    "StateRequest",
    "SupersededError",
    "ThrottledError",
    "TransitionRejected",
    "TransportError",
    "UnknownValueError",
    "Verdict",
    "__version__",
    "check",
    "default_chart",
    "load_chart",
    "parse_copystate",
    "parse_cycle",
    "parse_pair",
    "parse_request",
    "plan",
]
