"""The ``sms-flow`` command line.

Exit codes, the same for every command:

* 0 - done (allowed, applied, planned, finished)
* 1 - rejected by the chart (or a wave/drill in which a source failed)
* 2 - bad input: an unknown value, a bad option, an unusable file or credentials
* 3 - the API or the network failed (status, error_code, error_msg, request_id printed)
* 4 - not applied: the service ignored the change (frozen), the read-back disagrees, or the
  source was not where the step starts (someone else moved it; not pushed)
* 5 - owned by another live driver: a second run of a live wave, ``set`` on a source a wave
  drives (``--force --reason`` takes it), a wave whose sources another driver holds or took
  over, or a run that lost its lease (it pushes nothing more; run it again)
* 130 - stopped by Ctrl-C before the end: a wave or drill (run it again to resume), a
  ``set --path`` (it lists the steps applied and where the source is)

Under ``--json`` every command prints one JSON document on standard output, on success and
on every error, a bad command line included (:func:`report_error`,
:func:`~sms_flow.cli._output.error_document`): ``status``, ``error_code``, ``message``,
``request_id``, ``exit_code`` and what the command adds.

The parser is apart from the commands: :mod:`~sms_flow.cli.parser` builds the argparse tree
and imports nothing heavy, and each command's handler is imported only when it runs, from
the module of its idea: :mod:`~sms_flow.cli.model` (check, plan, diagram),
:mod:`~sms_flow.cli.service` (get, set), :mod:`~sms_flow.cli.waves` (run, drill, with the
display of :mod:`~sms_flow.cli.progress`), :mod:`~sms_flow.cli.journal` (history, journal
check, migrate and copy, recover), :mod:`~sms_flow.cli.status` (status) and
:mod:`sms_flow.simulator.cli` (simulator). So ``sms-flow check`` loads neither aiohttp, SQLite,
rich, structlog nor the simulator.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sms_flow.errors import (
    ApiError,
    ChartError,
    InputError,
    NotAppliedError,
    OwnedError,
    SmsFlowError,
    TransitionRejected,
    TransportError,
)

__all__ = [
    "EXIT_API",
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_APPLIED",
    "EXIT_OK",
    "EXIT_OWNED",
    "EXIT_REJECTED",
    "error_fields",
    "exit_code_of",
    "main",
    "report_error",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_API = 3
EXIT_NOT_APPLIED = 4
EXIT_OWNED = 5
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from sms_flow.cli._output import err
    from sms_flow.cli.parser import build_parser, command_of

    given = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in given[: given.index("--")] if "--" in given else "--json" in given
    parser = build_parser(command_of(given))
    if json_mode:
        parsed = _parse_for_json(parser, given)
        if isinstance(parsed, int):
            return parsed
        args = parsed
    else:
        args = parser.parse_args(given)
    json_mode = bool(getattr(args, "json", False))
    if args.logs:
        from sms_flow.log import configure

        try:
            configure(level=getattr(args, "log_level", None))
        except ValueError as exc:  # SMS_FLOW_LOG_LEVEL names no level
            if json_mode:
                from sms_flow.cli._output import error_document, print_json

                print_json(error_document(EXIT_BAD_INPUT, "InputError", str(exc)))
            else:
                err(f"sms-flow: {exc}")
            return EXIT_BAD_INPUT
    module, _, name = args.handler.partition(":")
    handler: Callable[..., int] = getattr(importlib.import_module(module), name)
    try:
        return handler(args)
    except (SmsFlowError, KeyboardInterrupt) as exc:
        return report_error(exc, json_mode=json_mode)
    except BrokenPipeError:  # `sms-flow ... | head`: the reader has had enough
        # Later writes (the interpreter's last flush) go nowhere instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _parse_for_json(parser: argparse.ArgumentParser, given: list[str]) -> argparse.Namespace | int:
    """Parse ``given`` for a command line with ``--json``: a bad option is a JSON document too."""
    import contextlib
    import io

    from sms_flow.cli._output import error_document, print_json

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(given)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
        lines = captured.getvalue().strip().splitlines()
        if code == EXIT_OK:  # --help, --version
            sys.stderr.write(captured.getvalue())
            return EXIT_OK
        message = lines[-1] if lines else "bad command line"
        usage = " ".join(line.strip() for line in lines[:-1]) or None
        print_json(error_document(code, "usage", message, usage=usage))
        return code


def exit_code_of(exc: BaseException) -> int:
    """The exit code an error ends a command with (see this module's docstring)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, TransitionRejected):
        return EXIT_REJECTED
    if isinstance(exc, NotAppliedError):
        return EXIT_NOT_APPLIED
    if isinstance(exc, OwnedError):
        return EXIT_OWNED
    if isinstance(exc, ChartError | InputError):
        return EXIT_BAD_INPUT
    return EXIT_API  # ApiError, TransportError, and any other error of the service or journal


def error_fields(exc: BaseException) -> dict[str, Any]:
    """``error_code``, ``message`` and ``request_id`` of an error, for its JSON document.

    ``error_code`` is the service's code for an API error (``HTTP 404`` when it gave none),
    ``interrupted`` for Ctrl-C, else the name of the error's class (``NotAppliedError``,
    ``ActionNeededError``, ``InputError``...). ``message`` is what text mode prints.
    """
    if isinstance(exc, KeyboardInterrupt):
        return {"error_code": "interrupted", "message": "interrupted", "request_id": None}
    message = f"chart error: {exc}" if isinstance(exc, ChartError) else str(exc)
    code = type(exc).__name__
    if isinstance(exc, ApiError):
        code = exc.error_code or f"HTTP {exc.status}"
        message = f"HTTP {exc.status}: {exc.error_msg or exc.body or '-'}"
        hint = exc.hint()
        if hint:
            message += f"; what to do: {hint}"
    return {"error_code": code, "message": message, "request_id": getattr(exc, "request_id", None)}


def report_error(
    exc: BaseException, *, json_mode: bool, extra: dict[str, Any] | None = None
) -> int:
    """Print an error the way every command does (text on standard error, or one JSON
    document under ``--json`` with ``extra`` added) and return its exit code."""
    from sms_flow.cli._output import err, error_document, print_api_error, print_json

    code = exit_code_of(exc)
    if json_mode:
        fields = error_fields(exc)
        more = dict(extra or {})
        status = "error"
        if isinstance(exc, TransitionRejected):
            status = "rejected"
            fields["error_code"] = "rejected"
            fields["message"] = exc.verdict.explain()
            more.setdefault("verdict", exc.verdict.to_dict())
        elif isinstance(exc, KeyboardInterrupt):
            status = "interrupted"
        elif isinstance(exc, ApiError):
            more.setdefault("http_status", exc.status)
            if exc.error_param:
                more.setdefault("error_param", list(exc.error_param))
        print_json(error_document(code, status=status, **fields, **more))
        return code
    if isinstance(exc, TransitionRejected):
        from sms_flow.cli._output import print_verdict

        print_verdict(exc.verdict)
    elif isinstance(exc, ApiError | TransportError):
        print_api_error(exc)
    elif isinstance(exc, ChartError):
        err(f"sms-flow: chart error: {exc}")
    elif isinstance(exc, KeyboardInterrupt):
        err("sms-flow: interrupted")
    else:
        err(f"sms-flow: {exc}")
    return code
