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
* 130 - a wave or drill stopped by Ctrl-C before the end (run it again to resume)

The parser is apart from the commands: :mod:`~sms_flow.cli.parser` builds the argparse tree
and imports nothing heavy, and each command's handler is imported only when it runs, from
the module of its idea: :mod:`~sms_flow.cli.model` (check, plan, diagram),
:mod:`~sms_flow.cli.service` (get, set), :mod:`~sms_flow.cli.waves` (run, drill, with the
display of :mod:`~sms_flow.cli.progress`), :mod:`~sms_flow.cli.journal` (history, journal
check, recover) and
:mod:`sms_flow.simulator.cli` (simulator). So ``sms-flow check`` loads neither aiohttp, SQLite,
rich, structlog nor the simulator.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

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
    "main",
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
    args = build_parser(command_of(given)).parse_args(given)
    if args.logs:
        from sms_flow.log import configure

        try:
            configure(level=getattr(args, "log_level", None))
        except ValueError as exc:  # SMS_FLOW_LOG_LEVEL names no level
            err(f"sms-flow: {exc}")
            return EXIT_BAD_INPUT
    module, _, name = args.handler.partition(":")
    handler: Callable[..., int] = getattr(importlib.import_module(module), name)
    try:
        return handler(args)
    except TransitionRejected as exc:
        from sms_flow.cli._output import print_verdict

        print_verdict(exc.verdict)
        return EXIT_REJECTED
    except NotAppliedError as exc:
        err(f"sms-flow: {exc}")
        return EXIT_NOT_APPLIED
    except OwnedError as exc:
        err(f"sms-flow: {exc}")
        return EXIT_OWNED
    except (ApiError, TransportError) as exc:
        from sms_flow.cli._output import print_api_error

        print_api_error(exc)
        return EXIT_API
    except ChartError as exc:
        err(f"sms-flow: chart error: {exc}")
        return EXIT_BAD_INPUT
    except InputError as exc:
        err(f"sms-flow: {exc}")
        return EXIT_BAD_INPUT
    except SmsFlowError as exc:
        err(f"sms-flow: {exc}")
        return EXIT_API
    except KeyboardInterrupt:
        err("sms-flow: interrupted")
        return EXIT_INTERRUPTED
