"""The OpenAPI 3.1 document of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Written by hand to describe every route of :mod:`sms_flow.serve.api`: each answer it can give
(success and error), with schemas that forbid fields they do not name, so a field added to an
answer without adding it here fails the tests (``tests/serve/test_openapi.py`` checks every
answer against this document).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any, Final

from sms_flow import __version__
from sms_flow.chart import Basis, By
from sms_flow.journal import Outcome

__all__ = ["document"]

_REF: Final = "#/components/schemas/"
JSON: Final = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


_STR: Final = {"type": "string"}
_STR_OR_NULL: Final = {"type": ["string", "null"]}
_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_INT: Final = {"type": "integer", "minimum": 0}
_BOOL: Final = {"type": "boolean"}
_OUTCOMES: Final = [o.value for o in Outcome]


def _schemas() -> dict[str, Any]:
    step = _obj(
        {
            "trigger": _STR,
            "from": _STR,
            "to": _STR,
            "by": {"enum": [b.value for b in By]},
            "basis": {"enum": [b.value for b in Basis]},
            "irreversible": _BOOL,
            "call": _STR_OR_NULL,
        }
    )
    reason = _obj({"code": _STR, "message": _STR})
    entry = _obj(
        {
            "id": _INT,
            "source_id": _STR,
            "trigger": _STR_OR_NULL,
            "from_state": _STR,
            "to_state": _STR,
            "actor": _STR,
            "reason": _STR_OR_NULL,
            "forced": _BOOL,
            "wave": _STR_OR_NULL,
            "outcome": {"enum": _OUTCOMES},
            "request_id": _STR_OR_NULL,
            "attempts": _INT,
            "error": _STR_OR_NULL,
            "created_at": {"type": "number"},
            "settled_at": {"type": ["number", "null"]},
            "endpoint": _STR_OR_NULL,
            "project": _STR_OR_NULL,
            "run_id": _STR_OR_NULL,
            "fence": {"type": ["integer", "null"]},
        }
    )
    step_result = _obj(
        {
            "source_id": _STR,
            "trigger": _STR_OR_NULL,
            "from": _STR,
            "to": _STR,
            "outcome": {"enum": _OUTCOMES},
            "request_id": _STR_OR_NULL,
            "attempts": _INT,
            "forced": _BOOL,
            "journal_id": {"type": ["integer", "null"]},
            "elapsed": {"type": "number", "minimum": 0},
            "note": _STR_OR_NULL,
        }
    )
    counts = {"type": "object", "additionalProperties": _INT}
    wave_summary = {
        "members": _INT,
        "states": counts,
        "failed": _INT,
        "open_intents": _INT,
        "entries": _INT,
        "last_activity": _TIME,
    }
    return {
        "Error": {
            "type": "object",
            "description": "Every error of /api/v1 (SMSFLOW.00NN codes; SMS's own when relayed).",
            "properties": {
                "error_code": _STR,
                "error_msg": _STR,
                "error_param": {"type": "array", "items": _STR},
                "details": {"type": "array", "items": {"type": "object"}},
                "verdict": _ref("Verdict"),
                "plan": {"type": "array", "items": _ref("Step")},
            },
            "required": ["error_code", "error_msg"],
            "additionalProperties": False,
        },
        "Step": step,
        "Reason": reason,
        "Verdict": _obj(
            {
                "allowed": _BOOL,
                "current": _STR_OR_NULL,
                "requested": _STR_OR_NULL,
                "target": _STR_OR_NULL,
                "trigger": _STR_OR_NULL,
                "noop": _BOOL,
                "reasons": {"type": "array", "items": _ref("Reason")},
                "path": {"type": "array", "items": _ref("Step")},
            }
        ),
        "Plan": _obj(
            {
                "found": _BOOL,
                "current": _STR_OR_NULL,
                "requested": _STR_OR_NULL,
                "target": _STR_OR_NULL,
                "steps": {"type": "array", "items": _ref("Step")},
                "reasons": {"type": "array", "items": _ref("Reason")},
            }
        ),
        "CheckRequest": _obj(
            {
                "from": {**_STR, "description": "The current pair, COPYSTATE/cycle."},
                "to": {**_STR, "description": "COPYSTATE/cycle, COPYSTATE or /cycle."},
            }
        ),
        "Entry": entry,
        "History": _obj({"source_id": _STR, "entries": {"type": "array", "items": _ref("Entry")}}),
        "Source": _obj(
            {
                "source_id": _STR,
                "journal": {
                    "oneOf": [
                        {"type": "null"},
                        _obj(
                            {
                                "state": _STR,
                                "settled": _BOOL,
                                "since": {"type": "string", "format": "date-time"},
                                "entry": _ref("Entry"),
                            }
                        ),
                    ],
                    "description": "The state of the source's latest applied or observed entry.",
                },
                "latest_entry": {"oneOf": [{"type": "null"}, _ref("Entry")]},
                "live": {
                    "oneOf": [
                        {"type": "null"},
                        _obj({"state": _STR, "known": _BOOL, "name": _STR_OR_NULL}),
                    ],
                    "description": "What SMS says now (null when it could not be read).",
                },
                "live_error": {
                    "oneOf": [{"type": "null"}, _obj({"error_code": _STR, "error_msg": _STR})]
                },
            }
        ),
        "ChangeRequest": _obj(
            {
                "to": {
                    **_STR,
                    "description": "The requested state: COPYSTATE/cycle, COPYSTATE, /cycle.",
                },
                "actor": {**_STR, "maxLength": 255, "description": "Who asked (journalled)."},
                "reason": {**_STR, "maxLength": 255, "description": "Why (journalled)."},
                "path": {**_BOOL, "description": "Take the shortest legal path.", "default": False},
                "allow": {
                    "type": "array",
                    "items": _STR,
                    "description": "Irreversible triggers on the path consented to by name.",
                },
                "yes": {**_BOOL, "description": "Consent to a path of more than one step."},
            },
            required=["to"],
        ),
        "StepResult": step_result,
        "Change": _obj(
            {
                "status": {"enum": ["applied", "noop"]},
                "source_id": _STR,
                "state": _STR_OR_NULL,
                "steps": {"type": "array", "items": _ref("StepResult")},
                "plan": {"type": "array", "items": _ref("Step")},
            },
            required=["status", "source_id", "state", "steps"],
        ),
        "WaveSummary": _obj({"name": _STR, **wave_summary}),
        "Waves": _obj({"waves": {"type": "array", "items": _ref("WaveSummary")}}),
        "Wave": _obj(
            {
                "name": _STR,
                **wave_summary,
                "failures": {"type": "array", "items": _ref("Entry")},
                "open": {"type": "array", "items": _ref("Entry")},
                "report": {
                    "type": ["object", "null"],
                    "description": "The wave's last report file (sms-flow run's JSON), if found.",
                },
            }
        ),
        "OpenApi": {"type": "object", "required": ["openapi", "info", "paths"]},
    }


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


_ERRORS: Final = {
    "400": "The request is malformed or refused (error_code says which; nothing was sent).",
    "401": "No API token, or not a valid one (API tokens are configured).",
    "403": "The token's role may not do this.",
    "404": "No such source, wave or route.",
    "409": "Another live driver holds the source, or the change did not take.",
    "500": "The journal failed.",
    "502": "SMS could not be reached or refused the request (its error_code), or the push "
    "is unverified.",
}


def _operation(
    summary: str,
    ok: str,
    errors: tuple[str, ...],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    role: str = "viewer",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs a {role} token when API tokens are configured.",
        "responses": {"200": _answer("Success.", ok)}
        | {code: _answer(_ERRORS[code], "Error") for code in ("401", "403", *errors)},
    }
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return op


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or _STR}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STR}


@cache
def _document() -> dict[str, Any]:
    sid = [_path_param("source_id")]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sms-flow serve API",
            "version": __version__,
            "description": "Check, plan and request changes of SMS source servers against "
            "sms-flow's statechart; read the journal's history and waves.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/v1/check": {
                "get": _operation(
                    "Check a change against the chart",
                    "Verdict",
                    ("400",),
                    params=[
                        _query("from", "The current pair, COPYSTATE/cycle."),
                        _query("to", "The requested state."),
                    ],
                ),
                "post": _operation(
                    "Check a change against the chart", "Verdict", ("400",), body="CheckRequest"
                ),
            },
            "/api/v1/plan": {
                "post": _operation(
                    "The shortest legal sequence of moves", "Plan", ("400",), body="CheckRequest"
                )
            },
            "/api/v1/sources/{source_id}": {
                "get": _operation(
                    "A source: the journal's last known state and a live read from SMS",
                    "Source",
                    ("400", "404"),
                    params=sid,
                )
            },
            "/api/v1/sources/{source_id}/history": {
                "get": _operation(
                    "A source's journal entries, oldest first",
                    "History",
                    ("400",),
                    params=[
                        *sid,
                        _query(
                            "limit",
                            "Only the last N entries (1 to 10,000).",
                            {"type": "integer", "minimum": 1, "maximum": 10_000},
                        ),
                        _query("since", "ISO-8601, or a duration ago (90s, 30m, 2h, 7d, 1w)."),
                        _query("until", "ISO-8601, or a duration ago (excluded)."),
                        _query("outcome", "Outcomes, comma-separated: " + ", ".join(_OUTCOMES)),
                        _query("actor", "Only this actor's entries."),
                    ],
                )
            },
            "/api/v1/sources/{source_id}/changes": {
                "post": _operation(
                    "Request a change: checked, pushed, read back and journalled",
                    "Change",
                    ("400", "404", "409", "500", "502"),
                    body="ChangeRequest",
                    params=sid,
                    role="operator",
                )
            },
            "/api/v1/waves": {
                "get": _operation("Every wave in the journal", "Waves", ()),
            },
            "/api/v1/waves/{name}": {
                "get": _operation(
                    "One wave: counts, failures, open entries, its last report",
                    "Wave",
                    ("404",),
                    params=[_path_param("name")],
                )
            },
            "/api/v1/openapi.json": {
                "get": _operation("This document", "OpenApi", ()),
            },
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy; the caller may change it)."""
    return copy.deepcopy(_document())
