"""``sms-flow serve``: the validating gateway and ``/metrics``, until SIGINT or SIGTERM.

The options name where SMS is (else ``SMS_FLOW_ENDPOINT``/``SMS_FLOW_REGION``), the journal,
and where to listen; the gateway's own credentials come from the environment as for every
command (``SMS_FLOW_TOKEN``, or ``CLOUD_SDK_AK``/``CLOUD_SDK_SK``/``CLOUD_SDK_PROJECT_ID``),
its callers' AK/SK keys from ``--keys-file`` or ``SMS_FLOW_SERVE_KEYS``, the API tokens from
``--tokens-file`` or ``SMS_FLOW_SERVE_TOKENS``. The first line of standard output is the
service's base URL.

The ``serve`` command of :mod:`sms_flow.cli.parser` names :func:`serve` as its handler (it
lives here, as the simulator's lives in :mod:`sms_flow.simulator.cli`: ``cli`` and ``serve``
are front ends of one layer, and neither imports the other).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

from sms_flow.errors import ConfigError, InputError

if TYPE_CHECKING:
    from sms_flow.serve import ServeConfig

__all__ = ["serve"]


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 then (2 for unusable options)."""
    from sms_flow.auth import auth_from_env
    from sms_flow.chart import default_chart, load_chart
    from sms_flow.client import ENDPOINT_ENV, REGION_ENV
    from sms_flow.retry import RetryPolicy
    from sms_flow.serve import ApiTokens, CallerKeys, ServeConfig

    endpoint, region = args.endpoint, args.region
    if args.watch_only and (endpoint is not None or region is not None):
        raise InputError(
            "--watch-only serves without an SMS endpoint; give it without --endpoint and "
            "--region (or leave --watch-only out to run the gateway)"
        )
    if endpoint is None and region is None and not args.watch_only:
        endpoint = os.environ.get(ENDPOINT_ENV) or None
        region = os.environ.get(REGION_ENV) or None
        if endpoint is not None and region is not None:
            raise ConfigError(f"both {ENDPOINT_ENV} and {REGION_ENV} are set; set only one")
        if endpoint is None and region is None:
            raise ConfigError(
                f"no SMS endpoint: give --endpoint URL or --region R (or set {ENDPOINT_ENV} "
                f"or {REGION_ENV})"
            )
    try:
        retry = RetryPolicy(
            attempts=args.attempts, timeout=args.timeout, total_time=args.total_time
        )
    except ConfigError as exc:
        raise InputError(str(exc).replace("RetryPolicy.", "--").replace("_", "-")) from None
    keys = CallerKeys.from_file(args.keys_file) if args.keys_file else CallerKeys.from_env()
    tokens = ApiTokens.from_file(args.tokens_file) if args.tokens_file else ApiTokens.from_env()
    config = ServeConfig(
        endpoint=endpoint,
        region=region,
        auth=auth_from_env(),
        journal=args.journal,
        host=args.host,
        port=args.port,
        keys=keys,
        tokens=tokens,
        chart=load_chart(args.chart) if args.chart else default_chart(),
        retry=retry,
        verify_tls=not args.insecure,
        lease_seconds=args.lease,
        watch_only=args.watch_only,
    )
    return asyncio.run(_serve(config))


async def _serve(config: ServeConfig) -> int:
    from sms_flow.journals import describe
    from sms_flow.serve import Service

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
        async with Service(config) as service:
            sys.stdout.write(service.url + "\n")
            sys.stdout.flush()
            if config.auth is None and not config.watch_only:
                err(
                    "sms-flow serve: no credentials of its own (SMS_FLOW_TOKEN or CLOUD_SDK_*): "
                    "only callers sending an IAM token are served"
                    + ("" if not len(config.keys) else ", and AK/SK callers only on loopback")
                )
            given = config.journal
            shown = (
                "(a journal object)"
                if not isinstance(given, str | os.PathLike | None)
                else describe(given)
            )
            what = (
                "watch only (no SMS endpoint: the dashboard, metrics and API reads)"
                if config.watch_only
                else f"gateway to {service.endpoint}"
            )
            err(
                f"sms-flow serve listening on {service.url}: {what}, journal {shown}, "
                f"metrics at {service.url}/metrics (SIGINT or SIGTERM stops it)"
            )
            await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
