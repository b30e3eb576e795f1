"""``sms-flow list``: the service's source servers, filtered, with their states.

The listing (``GET /v3/sources``) is read page by page and printed as it comes: the service
filters by state, migration cycle and part of the name; ``--name`` keeps the names that start
with the prefix given. ``--limit`` stops after that many.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from sms_flow.cli import EXIT_OK
from sms_flow.cli.service import client_from
from sms_flow.errors import InputError

__all__ = ["list_sources"]

_FLUSH_EVERY = 200


def list_sources(args: argparse.Namespace) -> int:
    """Print the sources of the service matching the options (``sms-flow list``)."""
    return asyncio.run(_list(args))


async def _list(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} is below 1; give how many sources to show")
    stream = sys.stdout
    shown = 0
    async with client_from(args) as client:
        if not args.json:
            stream.write(f"{'source id':<36}  {'state':<28}  name\n")
        else:
            stream.write("[")
        async for src in client.iter_sources(
            state=args.state, migration_cycle=args.cycle, name=args.name
        ):
            if args.name and not (src.name or "").startswith(args.name):
                continue
            pair = src.pair
            state = str(pair) if pair is not None else src.describe_state()
            if args.json:
                item = {
                    "id": src.id,
                    "name": src.name,
                    "state": state,
                    "copystate": src.state,
                    "migration_cycle": src.migration_cycle,
                }
                stream.write(("\n  " if not shown else ",\n  ") + json.dumps(item))
            else:
                stream.write(f"{src.id:<36}  {state:<28}  {src.name or ''}\n")
            shown += 1
            if shown % _FLUSH_EVERY == 0:
                stream.flush()
            if args.limit is not None and shown >= args.limit:
                break
    if args.json:
        stream.write("\n]\n" if shown else "]\n")
    else:
        stream.write(f"{shown:,} source{'' if shown == 1 else 's'}\n")
    return EXIT_OK
