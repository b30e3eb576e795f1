"""``sms-flow simulator`` (and ``python -m sms_flow.simulator``): run the simulator in the foreground.

The first line on stdout is the base URL (flushed at once, so a parent process can read it
and start calling); with ``--sources N`` the ids of the N registered sources follow, one a
line. It serves until SIGINT or SIGTERM and then exits 0. Secrets may come from the
environment instead of the command line, where other users of the machine can see them:
``SMS_FLOW_SIM_TOKEN``, ``SMS_FLOW_SIM_AK``, ``SMS_FLOW_SIM_SK``, ``SMS_FLOW_SIM_PROJECT_ID``,
``SMS_FLOW_SIM_CONTROL_TOKEN``. A ``--host`` other than loopback needs a token or AK/SK;
without, it exits 2 saying so.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from sms_flow.errors import SmsFlowError
from sms_flow.simulator.config import HEADER_TIMEOUT, MAX_CONNECTIONS
from sms_flow.simulator.faults import Faults, Unit

if TYPE_CHECKING:
    from sms_flow.simulator.config import SimulatorConfig

__all__ = ["add_arguments", "add_model_arguments", "config_from_args", "run", "values_from_args"]

_ENV = {
    "token": "SMS_FLOW_SIM_TOKEN",
    "ak": "SMS_FLOW_SIM_AK",
    "sk": "SMS_FLOW_SIM_SK",
    "project_id": "SMS_FLOW_SIM_PROJECT_ID",
    "control_token": "SMS_FLOW_SIM_CONTROL_TOKEN",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``."""
    net = parser.add_argument_group("listening")
    net.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s); another than loopback needs "
        "--token or --ak/--sk/--project-id",
    )
    net.add_argument(
        "--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)"
    )
    net.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        metavar="S",
        help="close a connection that has not sent a complete request S seconds after it "
        "opened or after its last answer (default: %(default)g)",
    )
    net.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        metavar="N",
        help="most connections open at once; at the cap the one idle the longest is closed "
        "(default: %(default)s)",
    )

    auth = parser.add_argument_group(
        "authentication (none given: every request is accepted; both: either is accepted)"
    )
    auth.add_argument(
        "--token", metavar="T", help=f"accept this X-Auth-Token (or set {_ENV['token']})"
    )
    auth.add_argument(
        "--ak", metavar="AK", help=f"accept AK/SK signatures by this access key (or {_ENV['ak']})"
    )
    auth.add_argument("--sk", metavar="SK", help=f"the secret key of --ak (or {_ENV['sk']})")
    auth.add_argument(
        "--project-id",
        metavar="P",
        help=f"the project id signed requests must carry in X-Project-Id (or {_ENV['project_id']})",
    )
    auth.add_argument(
        "--control-token",
        metavar="T",
        help="a token (in X-Auth-Token) the test controls /_simulator accept besides the "
        f"credentials above, which they need once any is given (or {_ENV['control_token']})",
    )

    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument(
        "--strict",
        action="store_true",
        help="refuse (400 SMS.SIM1) a change that is not a client move of the statechart",
    )
    behaviour.add_argument(
        "--chart",
        type=Path,
        metavar="PATH",
        help="statechart YAML file (default: the built-in one)",
    )
    behaviour.add_argument(
        "--service-delay",
        type=float,
        default=0.2,
        metavar="S",
        help="seconds before the service makes its own moves, e.g. stopping → stopped "
        "(default: %(default)s)",
    )
    behaviour.add_argument(
        "--state-file",
        type=Path,
        metavar="PATH",
        help="SQLite file keeping sources and histories across restarts (default: memory only)",
    )
    behaviour.add_argument(
        "--sources",
        type=int,
        default=0,
        metavar="N",
        help="register N sources at start and print their ids after the URL (default: 0)",
    )
    behaviour.add_argument(
        "--sources-prefix",
        default="src",
        metavar="P",
        help="name prefix of the sources --sources registers (default: %(default)s)",
    )

    faults = parser.add_argument_group("faults on /v3 routes (never on /_simulator)")
    faults.add_argument(
        "--seed", type=int, metavar="N", help="seed the fault dice so that runs repeat"
    )
    add_model_arguments(faults, Faults)


def add_model_arguments(parser: Any, model: type[BaseModel]) -> None:
    """Add one option per field of ``model`` (``--latency-jitter`` for ``latency_jitter``).

    The field gives the option its type (a number, or the choices of a ``Literal``), its help
    (the description, the range, the default) and its metavar (the field's :class:`Unit`).
    The option's own default is ``None``: a value not given is left to the model's default.
    ``parser`` is a parser or an argument group.
    """
    for name, field in model.model_fields.items():
        kind = field.annotation
        bounds = {
            key: getattr(item, key)
            for item in field.metadata
            for key in ("ge", "le")
            if getattr(item, key, None) is not None
        }
        units = [item for item in field.metadata if isinstance(item, Unit)]
        notes: list[str] = []
        if "ge" in bounds and "le" in bounds:
            notes.append(f"{bounds['ge']:g} to {bounds['le']:g}")
        default = field.get_default(call_default_factory=True)
        notes.append(
            f"default: {default:g}" if isinstance(default, float) else f"default: {default}"
        )
        description = (field.description or name).rstrip(".")
        options: dict[str, Any] = {
            "dest": name,
            "default": None,
            "help": f"{description[:1].lower()}{description[1:]} ({'; '.join(notes)})",
        }
        if get_origin(kind) is Literal:
            options["choices"] = get_args(kind)
        elif kind in (int, float):
            options["type"] = kind
            options["metavar"] = units[0].metavar if units else ("N" if kind is int else "X")
        else:
            raise TypeError(
                f"{model.__name__}.{name} is a {kind}, which has no command-line form; "
                "give it a number or Literal type, or add the form here"
            )
        parser.add_argument("--" + name.replace("_", "-"), **options)


def values_from_args(model: type[BaseModel], args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``model`` given on the command line (see :func:`add_model_arguments`)."""
    given = {name: getattr(args, name, None) for name in model.model_fields}
    return {name: value for name, value in given.items() if value is not None}


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The config the options describe; secrets not given fall back to the environment.

    Raises ``pydantic.ValidationError`` or :class:`~sms_flow.errors.SmsFlowError` (a chart
    that does not load).
    """
    secrets: dict[str, Any] = {}
    for name, var in _ENV.items():
        value = getattr(args, name, None)
        if value is None:
            value = os.environ.get(var) or None
        secrets[name] = value
    from sms_flow.chart import load_chart
    from sms_flow.simulator.config import SimulatorConfig

    chart = load_chart(args.chart) if args.chart is not None else None
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        strict=args.strict,
        chart=chart,
        service_delay=args.service_delay,
        state_file=args.state_file,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
        faults=Faults(**values_from_args(Faults, args)),
        **secrets,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 then, 2 for unusable options or state file."""
    try:
        config = config_from_args(args)
        if args.sources < 0:
            raise ValueError(f"--sources must be 0 or more, not {args.sources}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        return _fail(problems)
    except (SmsFlowError, ValueError) as exc:
        return _fail(str(exc))
    import asyncio

    try:
        return asyncio.run(_serve(config, args.sources, args.sources_prefix))
    except (SmsFlowError, OSError) as exc:
        return _fail(str(exc))


def _fail(message: str) -> int:
    print(f"sms-flow simulator: error: {message}", file=sys.stderr)
    return 2


async def _serve(config: SimulatorConfig, n_sources: int, prefix: str) -> int:
    import asyncio
    import signal

    from sms_flow.simulator.server import Simulator

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass
    try:
        async with Simulator(config) as sim:
            ids = await sim.register_many(n_sources, prefix)
            sys.stdout.write(sim.url + "\n")
            sys.stdout.flush()
            if ids:
                sys.stdout.write("".join(f"{source_id}\n" for source_id in ids))
                sys.stdout.flush()
            print(
                f"sms-flow simulator listening on {sim.url} "
                f"({len(ids)} sources registered; SIGINT or SIGTERM stops it)",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0
