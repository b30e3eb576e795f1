"""``sms-flow get`` and ``sms-flow set``: one source, read from and changed at the service.

Credentials come from the environment (:meth:`SmsClient.from_env
<sms_flow.client.SmsClient.from_env>`); ``set`` checks the change against the chart before
anything is sent, then pushes, reads back and journals it through the
:class:`~sms_flow.engine.Engine`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from sms_flow.cli import EXIT_NOT_APPLIED, EXIT_OK, EXIT_REJECTED
from sms_flow.cli._output import out, print_json, print_verdict
from sms_flow.cli.model import chart_from
from sms_flow.errors import ConfigError, InputError

if TYPE_CHECKING:
    from sms_flow.client import SmsClient

__all__ = ["client_from", "get", "set_state"]


def client_from(args: argparse.Namespace) -> SmsClient:
    """A client for the endpoint or region the options (else the environment) name."""
    from sms_flow.client import SmsClient
    from sms_flow.retry import RetryPolicy

    overrides: dict[str, Any] = {}
    if args.endpoint:
        overrides["endpoint"] = args.endpoint
    if args.region:
        overrides["region"] = args.region
    if getattr(args, "insecure", False):
        overrides["verify_tls"] = False
    try:
        overrides["retry"] = RetryPolicy(
            attempts=args.attempts, timeout=args.timeout, total_time=args.total_time
        )
    except ConfigError as exc:  # name the options, not the class behind them
        options = {"attempts": "--attempts", "timeout": "--timeout", "total_time": "--total-time"}
        message = str(exc)
        for field, option in options.items():
            message = message.replace(f"RetryPolicy.{field}", option)
        message = message.replace("or None to retry until total_time", "or leave it out")
        raise InputError(message) from None
    return SmsClient.from_env(**overrides)


def get(args: argparse.Namespace) -> int:
    """Read a source and show its state, its flags and the moves the chart permits from it."""
    return asyncio.run(_get(args))


async def _get(args: argparse.Namespace) -> int:
    async with client_from(args) as client:
        src = await client.get_source(args.source_id)
    if args.json:
        print_json(src.model_dump(mode="json"))
        return EXIT_OK
    pair = src.pair
    out(f"source {src.id}" + (f" ({src.name})" if src.name else ""))
    out(
        f"  state: {pair if pair is not None else src.describe_state() + '  (not a state sms-flow knows)'}"
    )
    chart = chart_from(args)
    if pair is not None and chart.is_permitted(pair):
        flags = [
            f
            for f, on in (("frozen", chart.is_frozen(pair)), ("final", chart.is_final(pair)))
            if on
        ]
        if flags:
            out(f"  flags: {', '.join(flags)}")
        moves = [
            f"{e.trigger} → {e.dest}" + ("" if e.pushable else f" [by {e.by.value}]")
            for e in chart.edges_from(pair)
        ]
        out(f"  next:  {'; '.join(moves) if moves else 'none'}")
    return EXIT_OK


def set_state(args: argparse.Namespace) -> int:
    """Check, push, read back and journal a change of one source (``sms-flow set``)."""
    return asyncio.run(_set(args))


async def _set(args: argparse.Namespace) -> int:
    from sms_flow.auth import auth_from_env
    from sms_flow.engine import Engine
    from sms_flow.errors import OwnedError
    from sms_flow.journal import Lease, default_journal_path
    from sms_flow.journal_sqlite import SqliteJournal
    from sms_flow.planner import ReasonCode
    from sms_flow.states import StateRequest, parse_copystate, parse_cycle

    if args.copystate is None and args.migrationcycle is None:
        raise InputError(
            "give --copystate, --migrationcycle or both: a change naming neither changes nothing"
        )
    if args.force and not args.reason:
        raise InputError("--force needs --reason TEXT saying who asked and why; it is journalled")
    requested = StateRequest(
        parse_copystate(args.copystate) if args.copystate else None,
        parse_cycle(args.migrationcycle) if args.migrationcycle else None,
    )
    chart = chart_from(args)
    journal = None if args.no_journal else SqliteJournal(args.journal or default_journal_path())
    async with client_from(args) as client:
        lease = None
        if journal is not None:
            await journal.open()
        try:
            project = getattr(auth_from_env(), "project_id", None)
            if journal is not None:
                lease = Lease(
                    journal,
                    "set",
                    actor=args.actor,
                    endpoint=client.endpoint,
                    project=project,
                    seconds=args.lease,
                )
                await lease.start()
            engine = Engine(
                client,
                chart=chart,
                journal=journal,
                verify=not args.no_verify,
                actor=args.actor,
                endpoint=client.endpoint,
                project=project,
                lease=lease,
            )
            # Own the source first: a live driver's (a wave's) is refused, or taken with --force.
            claimed = await engine.claim([args.source_id], steal=args.force, reason=args.reason)
            owner = claimed.refused.get(args.source_id)
            if owner is not None:
                raise OwnedError(
                    f"source {args.source_id} on {client.endpoint} is driven by another live "
                    f"driver: {owner.describe()}; nothing was sent. Wait for it to finish, or take "
                    "the source from it with --force --reason TEXT (journalled; it then leaves "
                    "the source alone)",
                    owner=owner,
                )
            taken = claimed.taken_from.get(args.source_id)
            if taken is not None and taken.ended_at is None:
                out(f"taken over from {taken.describe()}: {args.reason}")
            current = await engine.refresh(args.source_id)
            verdict = engine.planner.check(current, requested)
            if verdict.noop:
                out(f"source {args.source_id} is already {current}; nothing sent")
                return EXIT_OK
            frozen = not verdict.allowed and ReasonCode.FROZEN in verdict.codes
            forceable = verdict.edge is not None and verdict.codes <= {
                ReasonCode.FROZEN,
                ReasonCode.NOT_BY_CLIENT,
            }
            if not verdict.allowed and not args.path and not (args.force and forceable):
                print_verdict(verdict)
                if args.force:
                    out(
                        "--force only lifts the refusal to push from a frozen state or a move the "
                        f"service makes; the chart permits no move from {current} to {requested}"
                    )
                    return EXIT_REJECTED
                if frozen:
                    hint = " Wait for the service" + (
                        ", or --force --reason TEXT to push anyway." if forceable else "."
                    )
                    out(
                        f"not applied: {current.copystate.value} is frozen; the service would "
                        f"answer 200 and change nothing.{hint}"
                    )
                    return EXIT_NOT_APPLIED
                return EXIT_REJECTED
            results = await engine.change(
                args.source_id,
                requested,
                follow_path=args.path,
                actor=args.actor,
                reason=args.reason,
                force=args.force,
            )
        finally:
            if lease is not None:
                await lease.end()
            if journal is not None:
                await journal.close()
    if args.json:
        print_json([r.to_dict() for r in results])
        return EXIT_OK
    for r in results:
        if r.outcome.value == "applied":
            check = "" if args.no_verify else ", read back"
            tries = f"{r.attempts} attempt{'s' if r.attempts != 1 else ''}"
            out(
                f"applied: {r.trigger}  {r.from_state} → {r.to_state}  (request_id {r.request_id or '-'}, {tries}{check})"
            )
        else:
            out(
                f"{r.outcome.value}: {r.trigger or 'move'}  {r.from_state} → {r.to_state}  (made by the service)"
            )
    return EXIT_OK
