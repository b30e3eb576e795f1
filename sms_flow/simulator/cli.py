"""``sms-flow simulator`` (and ``python -m sms_flow.simulator``): run the simulator in the foreground.

The first line on stdout is the base URL (flushed at once, so a parent process can read it
and start calling); with ``--sources N`` the ids of the N registered sources follow, one a
line. It serves until SIGINT or SIGTERM and then exits 0. Secrets may come from the
environment instead of the command line, where other users of the machine can see them:
``SMS_FLOW_SIM_TOKEN``, ``SMS_FLOW_SIM_AK``, ``SMS_FLOW_SIM_SK``, ``SMS_FLOW_SIM_PROJECT_ID``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sms_flow.chart import load_chart
from sms_flow.errors import SmsFlowError
from sms_flow.simulator.config import SimulatorConfig
from sms_flow.simulator.faults import Faults
from sms_flow.simulator.server import Simulator

__all__ = ["add_arguments", "config_from_args", "run"]

_ENV = {
    "token": "SMS_FLOW_SIM_TOKEN",
    "ak": "SMS_FLOW_SIM_AK",
    "sk": "SMS_FLOW_SIM_SK",
    "project_id": "SMS_FLOW_SIM_PROJECT_ID",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``."""
    net = parser.add_argument_group("listening")
    net.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    net.add_argument(
        "--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)"
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
    faults.add_argument(
        "--latency", type=float, default=0.0, metavar="S", help="seconds every answer waits"
    )
    faults.add_argument(
        "--latency-jitter",
        type=float,
        default=0.0,
        metavar="S",
        help="up to this many more seconds, drawn uniformly",
    )
    faults.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="share of requests answered 500 or 503 (0 to 1)",
    )
    faults.add_argument(
        "--error-mode",
        choices=("alternate", "random"),
        default="alternate",
        help="alternate 500 and 503, or pick at random (default: %(default)s)",
    )
    faults.add_argument(
        "--throttle-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="share of requests answered 429 APIG.0308 (0 to 1)",
    )
    faults.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds sent in Retry-After with a 429 (default: %(default)s)",
    )
    faults.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="share of requests whose connection is closed with no answer (0 to 1)",
    )
    faults.add_argument(
        "--apply-then-fail-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="share of changestate calls that are applied and then answered 503 (0 to 1)",
    )


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
    chart = load_chart(args.chart) if args.chart is not None else None
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        strict=args.strict,
        chart=chart,
        service_delay=args.service_delay,
        state_file=args.state_file,
        faults=Faults(
            latency=args.latency,
            latency_jitter=args.latency_jitter,
            error_rate=args.error_rate,
            error_mode=args.error_mode,
            throttle_rate=args.throttle_rate,
            retry_after=args.retry_after,
            drop_rate=args.drop_rate,
            apply_then_fail_rate=args.apply_then_fail_rate,
        ),
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
    try:
        return asyncio.run(_serve(config, args.sources, args.sources_prefix))
    except (SmsFlowError, OSError) as exc:
        return _fail(str(exc))


def _fail(message: str) -> int:
    print(f"sms-flow simulator: error: {message}", file=sys.stderr)
    return 2


async def _serve(config: SimulatorConfig, n_sources: int, prefix: str) -> int:
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
