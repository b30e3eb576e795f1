"""``sms-flow get`` and ``sms-flow set``: one source, read from and changed at the service.

Credentials come from the environment (:meth:`SmsClient.from_env
<sms_flow.client.SmsClient.from_env>`); ``set`` checks the change against the chart before
anything is sent, then pushes, reads back and journals it through the
:class:`~sms_flow.engine.Engine`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sms_flow.chart import By, Edge
from sms_flow.cli import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NOT_APPLIED,
    EXIT_OK,
    EXIT_REJECTED,
)
from sms_flow.cli._output import (
    err,
    error_document,
    out,
    print_json,
    print_steps,
    print_verdict,
)
from sms_flow.cli.model import chart_from
from sms_flow.errors import ConfigError, InputError, SmsFlowError
from sms_flow.planner import Verdict, step_dict
from sms_flow.states import StateRequest

if TYPE_CHECKING:
    from sms_flow.client import SmsClient
    from sms_flow.engine import Engine, StepResult

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
            f"{e.trigger} → {e.dest}"
            + ("" if e.pushable else f" [by {e.by.value}]")
            + (" ⚠" if e.irreversible else "")
            for e in chart.edges_from(pair)
        ]
        out(f"  next:  {'; '.join(moves) if moves else 'none'}")
    return EXIT_OK


def set_state(args: argparse.Namespace) -> int:
    """Check, push, read back and journal a change of one source (``sms-flow set``)."""
    return asyncio.run(_set(args))


def _result_line(r: StepResult, *, verified: bool) -> str:
    if r.outcome.value == "applied":
        check = ", read back" if verified else ""
        tries = f"{r.attempts} attempt{'s' if r.attempts != 1 else ''}"
        return (
            f"applied: {r.trigger}  {r.from_state} → {r.to_state}  "
            f"(request_id {r.request_id or '-'}, {tries}{check})"
        )
    return (
        f"{r.outcome.value}: {r.trigger or 'move'}  {r.from_state} → {r.to_state}  "
        "(made by the service)"
    )


async def _set(args: argparse.Namespace) -> int:
    from sms_flow.auth import auth_from_env
    from sms_flow.engine import Engine
    from sms_flow.errors import OwnedError
    from sms_flow.journal import Lease
    from sms_flow.journals import open_journal
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
    if not args.path:
        given = [
            flag
            for flag, on in (
                ("--yes", args.yes),
                ("--allow", bool(args.allow)),
                ("--wait", args.wait is not None),
                ("--wait-for-action", args.wait_for_action),
            )
            if on
        ]
        if given:
            raise InputError(
                f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --path (a change of "
                "more than one step); add --path, or leave them out for one move"
            )
    chart = chart_from(args)
    allowed = set(args.allow or ())
    unknown = sorted(allowed - set(chart.triggers))
    if unknown:
        marked = sorted({e.trigger for e in chart.edges if e.irreversible})
        raise InputError(
            f"--allow {unknown[0]}: no move of chart {chart.name!r} has that trigger; the "
            f"irreversible ones are: {', '.join(marked) or 'none'}"
        )
    journal = None if args.no_journal else open_journal(args.journal)
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
            if taken is not None and taken.ended_at is None and not args.json:
                out(f"taken over from {taken.describe()}: {args.reason}")
            current = await engine.refresh(args.source_id)
            verdict = engine.planner.check(current, requested)
            if verdict.noop:
                if args.json:
                    print_json(_document("noop", EXIT_OK, args.source_id, str(current), []))
                else:
                    out(f"source {args.source_id} is already {current}; nothing sent")
                return EXIT_OK
            frozen = not verdict.allowed and ReasonCode.FROZEN in verdict.codes
            forceable = verdict.edge is not None and verdict.codes <= {
                ReasonCode.FROZEN,
                ReasonCode.NOT_BY_CLIENT,
            }
            if not verdict.allowed and not args.path and not (args.force and forceable):
                return _refuse(args, verdict, frozen=frozen, forceable=forceable)
            if (
                not verdict.allowed
                and args.path
                and verdict.path
                and not (args.force and forceable)
            ):
                return await _follow(args, engine, verdict, requested, allowed)
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
        state = str(results[-1].to_state) if results else None
        print_json(_document("applied", EXIT_OK, args.source_id, state, results))
        return EXIT_OK
    for r in results:
        out(_result_line(r, verified=not args.no_verify))
    return EXIT_OK


def _document(
    status: str,
    exit_code: int,
    source_id: str,
    state: str | None,
    results: Sequence[StepResult],
    **extra: Any,
) -> dict[str, Any]:
    """``set --json`` when it did what was asked: the steps done and where the source is."""
    return {
        "status": status,
        "exit_code": exit_code,
        "source_id": source_id,
        "state": state,
        "steps": [r.to_dict() for r in results],
        **extra,
    }


def _refuse(args: argparse.Namespace, verdict: Verdict, *, frozen: bool, forceable: bool) -> int:
    """A change the chart refuses, without --path: the verdict, and what to do."""
    if args.force:
        note = (
            "--force only lifts the refusal to push from a frozen state or a move the service "
            f"makes; the chart permits no move from {verdict.current} to {verdict.requested}"
        )
        code = EXIT_REJECTED
    elif frozen:
        assert verdict.current is not None
        hint = " Wait for the service" + (
            ", or --force --reason TEXT to push anyway." if forceable else "."
        )
        note = (
            f"not applied: {verdict.current.copystate.value} is frozen; the service would "
            f"answer 200 and change nothing.{hint}"
        )
        code = EXIT_NOT_APPLIED
    else:
        note = ""
        code = EXIT_REJECTED
    if args.json:
        message = verdict.explain() + (f". {note}" if note else "")
        print_json(
            error_document(
                code,
                "frozen" if code == EXIT_NOT_APPLIED else "rejected",
                message,
                status="rejected",
                source_id=args.source_id,
                verdict=verdict.to_dict(),
            )
        )
        return code
    print_verdict(verdict)
    if note:
        out(note)
    return code


# -- set --path: the plan first, consent, then each step as it is applied -----------------


async def _follow(
    args: argparse.Namespace,
    engine: Engine,
    verdict: Verdict,
    requested: StateRequest,
    allowed: set[str],
) -> int:
    """Take the verdict's shortest legal path, with the person's consent, step by step.

    The plan is printed first. An irreversible step the request does not ask for (its
    destination is not the requested state) is refused unless ``--allow`` names its trigger;
    more than one step needs ``--yes`` or a yes at the terminal (off a terminal: refused,
    exit 2). Each step is printed as it is applied. Ctrl-C stops after the step in flight (a
    wait for the service is cut short; a second Ctrl-C cuts a push short too), a failure
    stops at once: either way the steps applied and where the source is now (read back)
    are printed, and the command exits 130 or with the failure's exit code.
    """
    from sms_flow.planner import unasked_irreversible

    source_id = args.source_id
    path = verdict.path
    plan_doc = [step_dict(e) for e in path]
    show = sys.stderr if args.json else sys.stdout
    n = len(path)
    if not args.json or (n > 1 and not args.yes and sys.stdin.isatty()):
        out(
            f"plan for source {source_id}: {verdict.current} → {verdict.target} in {n} "
            f"step{'s' if n != 1 else ''}",
            stream=show,
        )
        print_steps(path, stream=show)
        actions = [e for e in path if e.by is By.ACTION]
        if actions and not args.wait_for_action:
            first = actions[0]
            out(
                f"step {path.index(first) + 1} ({first.trigger}) is made by another API call: "
                "sms-flow stops before it and says what to call (--wait-for-action waits for "
                "it instead)",
                stream=show,
            )
    unasked = [e for e in unasked_irreversible(path, requested) if e.trigger not in allowed]
    if unasked:
        names = ", ".join(f"{e.trigger} ({e.source} → {e.dest})" for e in unasked)
        flags = " ".join(f"--allow {t}" for t in dict.fromkeys(e.trigger for e in unasked))
        message = (
            f"refused: the path to {requested} goes through {len(unasked)} irreversible "
            f"step{'s' if len(unasked) != 1 else ''} you did not ask for: {names}. Nothing was "
            f"sent. If you mean it, name {'each' if len(unasked) != 1 else 'it'}: {flags}; or "
            f"ask for {unasked[0].dest} itself first"
        )
        return _stop_before(args, EXIT_REJECTED, "irreversible", message, plan_doc)
    if n > 1 and not args.yes and not sys.stdin.isatty():
        message = (
            f"set --path would take {n} steps (the plan above) and standard input is not a "
            "terminal to confirm them; nothing was sent. Give --yes to take them"
        )
        return _stop_before(args, EXIT_BAD_INPUT, "confirmation_needed", message, plan_doc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    step_task: asyncio.Future[StepResult] | None = None

    def interrupted() -> None:
        if stop.is_set() and step_task is not None and not step_task.done():
            step_task.cancel()  # a second Ctrl-C: cut the push in flight short
        stop.set()

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        if n > 1 and not args.yes:
            answer = await _ask(f"take these {n} steps on source {source_id}? [y/N] ", stop)
            if answer is None:
                message = "interrupted before anything was sent"
                return _stop_before(args, EXIT_INTERRUPTED, "interrupted", message, plan_doc)
            if not answer:
                message = "not confirmed; nothing was sent"
                return _stop_before(args, EXIT_REJECTED, "not_confirmed", message, plan_doc)
        applied: list[StepResult] = []
        failure: BaseException | None = None
        for i, step in enumerate(path, 1):
            if stop.is_set():
                break
            pushed = step.pushable and not engine.chart.is_frozen(step.source)
            if not pushed and not args.json and (step.by is By.SERVICE or args.wait_for_action):
                limit = args.wait if args.wait is not None else engine.wait_policy.timeout
                out(f"waiting up to {limit:g}s for the service: {step.trigger} → {step.dest}")
                sys.stdout.flush()
            step_task = asyncio.ensure_future(
                engine.take(
                    source_id,
                    step,
                    actor=args.actor,
                    reason=args.reason,
                    within=args.wait,
                    wait_for_action=args.wait_for_action,
                )
            )
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({step_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not step_task.done() and not pushed:
                    step_task.cancel()  # a wait: nothing was sent
                await asyncio.wait({step_task})
            finally:
                stopping.cancel()
            if step_task.cancelled():
                break
            exc = step_task.exception()
            if exc is not None:
                failure = exc
                break
            result = step_task.result()
            applied.append(result)
            if not args.json:
                out(f"{i}/{n} " + _result_line(result, verified=not args.no_verify))
                sys.stdout.flush()
        if failure is None and not stop.is_set() and len(applied) == n:
            if args.json:
                doc = _document(
                    "applied", EXIT_OK, source_id, str(applied[-1].to_state), applied, plan=plan_doc
                )
                print_json(doc)
            return EXIT_OK
        return await _stopped(args, engine, path, applied, failure, plan_doc)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _ask(question: str, stop: asyncio.Event) -> bool | None:
    """Ask at the terminal; True for y/yes, False otherwise, None when Ctrl-C came first.

    The answer is read from standard input (a terminal) without blocking the event loop, so
    the run's lease keeps being renewed while the person reads the plan.
    """
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    answer: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 1024)
        except OSError:
            data = b""
        if not answer.done():
            answer.set_result(data)

    sys.stderr.write(question)
    sys.stderr.flush()
    loop.add_reader(fd, readable)
    stopping = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {answer, stopping}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(fd)
        stopping.cancel()
    if not answer.done():
        sys.stderr.write("\n")
        return None
    return answer.result().strip().lower() in (b"y", b"yes")


def _stop_before(
    args: argparse.Namespace, code: int, error_code: str, message: str, plan: list[dict[str, Any]]
) -> int:
    """Nothing was sent: say why (text on standard error, or the JSON document)."""
    if args.json:
        status = "interrupted" if code == EXIT_INTERRUPTED else "refused"
        print_json(
            error_document(
                code, error_code, message, status=status, source_id=args.source_id, plan=plan
            )
        )
    else:
        err(f"sms-flow: {message}")
    return code


async def _stopped(
    args: argparse.Namespace,
    engine: Engine,
    path: Sequence[Edge],
    applied: list[StepResult],
    failure: BaseException | None,
    plan: list[dict[str, Any]],
) -> int:
    """The path stopped early: what was applied, where the source is (read back), the error."""
    from sms_flow.cli import report_error

    source_id = args.source_id
    try:
        state: str | None = str(await engine.refresh(source_id))
        where = f"source {source_id} is now {state} (read back)"
    except SmsFlowError as exc:
        known = engine.states.get(source_id)
        state = None
        where = (
            f"source {source_id} could not be read back ({exc}); last known: "
            f"{known if known is not None else '-'}"
        )
    done = len(applied)
    left = [f"{e.trigger} → {e.dest}" for e in path[done:]]
    why = "interrupted" if failure is None else "stopped by an error"
    summary = [
        f"{why}: {done} of {len(path)} steps applied"
        + (": " + ", ".join(f"{r.trigger} → {r.to_state}" for r in applied) if applied else ""),
        where,
    ]
    if left:
        summary.append("not done: " + ", ".join(left))
    extra = {
        "source_id": source_id,
        "state": state,
        "steps": [r.to_dict() for r in applied],
        "plan": plan,
        "not_done": [step_dict(e) for e in path[done:]],
    }
    if failure is None:
        if args.json:
            message = "; ".join(summary)
            print_json(
                error_document(
                    EXIT_INTERRUPTED, "interrupted", message, status="interrupted", **extra
                )
            )
        else:
            for line in summary:
                out(line)
        return EXIT_INTERRUPTED
    if not args.json:
        for line in summary:
            out(line)
        sys.stdout.flush()
    return report_error(failure, json_mode=args.json, extra=extra)
