"""Logging configuration: structlog, JSON when not on a terminal, secrets redacted.

sms-flow logs through ``structlog``. The library configures it only when nobody else has
(:func:`ensure_configured`), at ``WARNING`` unless ``SMS_FLOW_LOG_LEVEL`` says otherwise, so
that importing sms-flow never floods a user's output. Every event passes through
:func:`redact`, which masks anything that looks like a credential, whatever the caller
bound.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["configure", "enabled", "ensure_configured", "get_logger", "redact"]

_SECRET_KEYS = frozenset(
    {
        "token",
        "x-auth-token",
        "x_auth_token",
        "sk",
        "secret",
        "secret_key",
        "password",
        "authorization",
        "signature",
        "headers",
    }
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# The level set by configure(); 0 (everything) when structlog was configured by someone else.
# Hot paths ask enabled() first: a filtered-out structlog call still costs microseconds.
_threshold = [0]


def enabled(level: int) -> bool:
    """True when a log call at ``level`` (``logging.DEBUG`` ...) would be written."""
    return level >= _threshold[0]


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values whose key names a credential (token, sk, authorization, signature ...)."""
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "<hidden>"
    return event


def configure(
    *,
    level: str | None = None,
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for sms-flow's output.

    ``level``: debug, info, warning or error (default ``SMS_FLOW_LOG_LEVEL`` or warning).
    ``json``: JSON lines (default: when ``stream`` is not a terminal). ``stream``: where
    log lines go (default standard error, so that standard output stays for results).
    """
    out = stream if stream is not None else sys.stderr
    # Without a given stream, look sys.stderr up at each log call: it may be replaced later
    # (pytest's capture, a daemon redirecting its output) and the old one closed.
    factory: Any = (
        structlog.PrintLoggerFactory(stream)
        if stream is not None
        else (lambda *_args: structlog.PrintLogger(sys.stderr))
    )
    name = (level or os.environ.get("SMS_FLOW_LOG_LEVEL") or "warning").lower()
    if name not in _LEVELS:
        raise ValueError(f"unknown log level {name!r}; use one of: {', '.join(_LEVELS)}")
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    _threshold[0] = _LEVELS[name]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[name]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def ensure_configured() -> None:
    """Configure logging with the defaults unless the application already did."""
    if not structlog.is_configured():
        configure()


def get_logger(name: str) -> Any:
    """A structlog logger named for the module (``sms_flow.engine`` ...)."""
    return structlog.get_logger(name)
