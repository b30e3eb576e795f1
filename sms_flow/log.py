"""Logging: one way to get a logger, structlog when configured, secrets redacted.

Every module of sms-flow gets its logger from :func:`get_logger` and logs events with
key-value pairs (``log.info("sms.retry", source_id=..., attempt=...)``). The library never
configures logging itself: an application does, or the ``sms-flow`` command (with
:func:`configure`). What happens to an event depends on what the application did:

* structlog configured (by :func:`configure`, or by the application itself): the event goes
  through structlog's processors, as for the application's own events;
* structlog not configured: the event goes to the standard library logger of the same name
  (``sms_flow.client`` ...), rendered as ``event key=value ...``. Without a ``logging``
  configuration, Python then writes warnings and errors to standard error and drops the
  rest, so an application that configures nothing never gets sms-flow's debug or info lines
  (structlog's own default would print them on standard output).

Every event passes through :func:`redact`, which masks anything that looks like a credential,
whatever the caller bound. :meth:`Logger.enabled` (and :func:`enabled`) answers, cheaply,
whether a call at a level would be written, for hot paths that would otherwise build an
event only to have it filtered out.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO, final

import structlog

__all__ = ["Logger", "configure", "enabled", "ensure_configured", "get_logger", "redact"]

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
_PACKAGE: Final = "sms_flow"
_LEVEL_ENV: Final = "SMS_FLOW_LOG_LEVEL"


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values whose key names a credential (token, sk, authorization, signature ...)."""
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "<hidden>"
    return event


# --- what structlog's configuration lets through -------------------------------------------

# The threshold of the configured wrapper class, computed once per class: structlog's
# filtering loggers (make_filtering_bound_logger) are one class per level.
_threshold_of_wrapper: dict[Any, int | None] = {}


def _filtering_level(wrapper: Any) -> int | None:
    """The level a structlog filtering logger class lets through; None for another class."""
    try:
        return _threshold_of_wrapper[wrapper]
    except (KeyError, TypeError):
        pass
    found: int | None = None
    for level in (logging.NOTSET, *_LEVELS.values(), logging.CRITICAL):
        if structlog.make_filtering_bound_logger(level) is wrapper:
            found = level
            break
    if len(_threshold_of_wrapper) < 64:
        _threshold_of_wrapper[wrapper] = found
    return found


def _structlog_enabled(level: int, stdlib: logging.Logger) -> bool:
    """Whether the configured structlog would write a call at ``level`` (True when unsure)."""
    config = structlog.get_config()
    found = _filtering_level(config["wrapper_class"])
    if found is not None:
        return level >= found
    if isinstance(config["logger_factory"], structlog.stdlib.LoggerFactory):
        # structlog hands events to the standard library loggers, which filter by level.
        return stdlib.isEnabledFor(level)
    return True  # another wrapper: let the call through, it filters itself


# --- the logger ------------------------------------------------------------------------------


def _render(event: str, fields: MutableMapping[str, Any]) -> str:
    return " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])


@final
class Logger:
    """A module's logger; see the module docstring for where its events go.

    ``debug``, ``info``, ``warning``, ``error`` and ``exception`` take an event name and
    key-value pairs, as structlog's loggers do.
    """

    __slots__ = ("_stdlib", "_structlog", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._structlog = structlog.get_logger(name)
        self._stdlib = logging.getLogger(name)

    def __repr__(self) -> str:
        return f"Logger({self.name!r})"

    def enabled(self, level: int) -> bool:
        """True when a call at ``level`` (``logging.DEBUG`` ...) would be written.

        Follows whoever configured logging: structlog's filtering level when structlog is
        configured with one (as :func:`configure` does), the standard library logger's level
        when structlog hands its events to ``logging``, or when structlog is not configured
        at all. True when it cannot tell: the call then filters itself.
        """
        if structlog.is_configured():
            return _structlog_enabled(level, self._stdlib)
        return self._stdlib.isEnabledFor(level)

    def _log(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        # A call filtered out returns here: structlog would build the event only to drop it.
        if structlog.is_configured():
            if _structlog_enabled(level, self._stdlib):
                getattr(self._structlog, method)(event, **redact(None, method, fields))
        elif self._stdlib.isEnabledFor(level):
            redact(None, method, fields)
            exc_info = fields.pop("exc_info", method == "exception")
            # stacklevel 3: the record names the caller of debug()/info()..., not this module.
            self._stdlib.log(level, "%s", _render(event, fields), exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """``error`` with the exception being handled attached."""
        self._log(logging.ERROR, "exception", event, fields)


def get_logger(name: str) -> Logger:
    """The logger for module ``name`` (``sms_flow.engine`` ...): the one way to get one."""
    return Logger(name)


_package_logger: Final = Logger(_PACKAGE)


def enabled(level: int) -> bool:
    """:meth:`Logger.enabled` of the package's logger, ``sms_flow``.

    Prefer the method of the module's own logger: with structlog unconfigured, a level set on
    the standard library logger of one module (``sms_flow.client``) is honoured only there.
    """
    return _package_logger.enabled(level)


# --- configuration, for applications and the CLI ---------------------------------------------


def configure(
    *,
    level: str | None = None,
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for sms-flow's output; for the CLI and applications, never the library.

    ``level``: debug, info, warning or error (default ``SMS_FLOW_LOG_LEVEL`` or warning);
    another raises ``ValueError`` naming it (and the variable, when it came from there).
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
    given = level or os.environ.get(_LEVEL_ENV) or "warning"
    name = given.strip().lower()
    if name not in _LEVELS:
        what = f"log level {given!r}" if level else f"{_LEVEL_ENV}={given!r}"
        raise ValueError(f"unknown {what}; use one of: {', '.join(_LEVELS)}")
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
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
    """Configure logging with the defaults unless the application already did.

    For applications and scripts that want sms-flow's output as the CLI shows it; sms-flow's
    own classes never call it.
    """
    if not structlog.is_configured():
        configure()
