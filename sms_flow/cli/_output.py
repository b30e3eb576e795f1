"""What the commands print: lines, JSON, verdicts and steps, API errors, the rich console.

Under ``--json`` a command prints one JSON document on standard output, on success and on
every error: an error is :func:`error_document` (``status``, ``error_code``, ``message``,
``request_id``, ``exit_code``, plus what the command adds).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from sms_flow.errors import ApiError, TransportError

if TYPE_CHECKING:
    from rich.console import Console

    from sms_flow.chart import Edge
    from sms_flow.planner import Verdict

__all__ = [
    "console",
    "err",
    "out",
    "print_api_error",
    "print_json",
    "print_steps",
    "print_verdict",
    "step_marks",
]


def out(text: str = "", *, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout)


def err(text: str) -> None:
    print(text, file=sys.stderr)


def print_json(data: Any) -> None:
    out(json.dumps(data, indent=2, ensure_ascii=False))


def step_marks(step: Edge) -> str:
    """What a person should know of a step: who makes it (and what to call), irreversible."""
    marks = []
    if step.by.value == "service":
        marks.append("by service: sms-flow waits for it")
    elif step.by.value == "action":
        marks.append(
            "by action: " + (f"call {step.call}" if step.call else "another API call makes it")
        )
    if step.irreversible:
        marks.append("⚠ irreversible")
    return f"({'; '.join(marks)})" if marks else ""


def error_document(
    exit_code: int,
    error_code: str,
    message: str,
    *,
    request_id: str | None = None,
    status: str = "error",
    **extra: Any,
) -> dict[str, Any]:
    """The JSON document of a command that did not do what was asked.

    ``status`` is ``error`` (or a word the command uses instead: ``rejected``,
    ``interrupted``), ``error_code`` a stable name (the service's code for an API error, else
    the kind of error), ``message`` what a person reads in text mode; ``extra`` what the
    command adds (a verdict, the steps applied, where the source is).
    """
    return {
        "status": status,
        "error_code": error_code,
        "message": message,
        "request_id": request_id,
        "exit_code": exit_code,
        **extra,
    }


def print_steps(steps: Sequence[Edge], indent: str = "  ", *, stream: TextIO | None = None) -> None:
    """Numbered moves, each marked when the service makes it and when it cannot be undone."""
    width = max((len(s.trigger) for s in steps), default=0)
    for i, step in enumerate(steps, 1):
        marks = step_marks(step)
        out(
            f"{indent}{i}. {step.trigger.ljust(width)}  {step.source} → {step.dest}"
            + (f"   {marks}" if marks else ""),
            stream=stream,
        )


def print_verdict(verdict: Verdict) -> None:
    """Allowed with the trigger, or rejected with every reason and the shortest legal path."""
    if verdict.allowed:
        if verdict.noop:
            out(f"allowed: {verdict.current} is already {verdict.requested}; nothing to send")
        else:
            out(f"allowed: {verdict.trigger}  {verdict.current} → {verdict.target}")
        return
    out(f"rejected: {verdict.current} → {verdict.requested}")
    for reason in verdict.reasons:
        out(f"  - {reason.message} [{reason.code.value}]")
    if verdict.path:
        n = len(verdict.path)
        out(f"shortest legal path ({n} step{'s' if n != 1 else ''}):")
        print_steps(verdict.path)
    else:
        out("no legal path leads there")


def print_api_error(exc: ApiError | TransportError) -> None:
    """The service's answer (status, error_code, error_msg, request_id, hint) or the network's."""
    if isinstance(exc, ApiError):
        err(f"sms-flow: API error: HTTP {exc.status}")
        err(f"  error_code: {exc.error_code or '-'}")
        err(f"  error_msg:  {exc.error_msg or exc.body or '-'}")
        err(f"  request_id: {exc.request_id or '-'}")
        if exc.error_param:
            err(f"  error_param: {', '.join(exc.error_param)}")
        hint = exc.hint()
        if hint:
            err(f"  what to do: {hint}")
    else:
        err(f"sms-flow: network error: {exc}")


def console() -> Console:
    """A rich console; when the output is not a terminal, wide enough not to fold tables."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=160)
