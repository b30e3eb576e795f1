"""sms-flow's own JSON API under ``/api/v1``: check and plan, sources, history, changes, waves.

============================================ ======== =========================================
route                                        role     answer
============================================ ======== =========================================
``GET  /api/v1/check?from=..&to=..``         viewer   the planner's verdict
``POST /api/v1/check`` ``{"from", "to"}``    viewer   the same, from a JSON body
``POST /api/v1/plan`` ``{"from", "to"}``     viewer   the shortest legal sequence of moves
``GET  /api/v1/sources/{id}``                viewer   the journal's last known state and a
                                                      live read from SMS
``GET  /api/v1/sources/{id}/history``        viewer   the journal's entries of the source
``POST /api/v1/sources/{id}/changes``        operator a change, checked, pushed, read back,
                                                      journalled
``GET  /api/v1/waves``                       viewer   every wave: members, counts, failures
``GET  /api/v1/waves/{name}``                viewer   one wave: counts, failures, open
                                                      entries, its last report
``GET  /api/v1/openapi.json``                viewer   the OpenAPI 3.1 document of these routes
============================================ ======== =========================================

``from`` is a full pair (``WAITING/checking``); ``to`` may leave a part out, as on the command
line (``CUTOVERING``, ``/cutovering``). ``history`` takes ``limit`` (the last N entries),
``since`` and ``until`` (ISO-8601 or a duration ago: ``2h``), ``outcome`` (comma-separated)
and ``actor``, as ``sms-flow history`` does.

A change takes ``to``, ``reason``, ``actor`` (who asked; journalled after the API token's
role, ``api:operator:alice``), ``path`` (take the shortest legal path), ``allow`` (the
irreversible triggers on the way consented to by name) and ``yes`` (consent to a path of
more than one step). It is refused as ``sms-flow set`` refuses it, for the same reasons.

Every error is one JSON shape, ``{"error_code": ..., "error_msg": ...}`` (and ``details``
where there is more to say), with the gateway's codes (:mod:`sms_flow.serve.gateway`) and
these of the API's own:

============== ====== ====================================================================
SMSFLOW.0012   400    the path goes through an irreversible step not asked for, and
                      ``allow`` does not name its trigger. Nothing sent.
SMSFLOW.0013   400    the path has more than one step and ``yes`` is not true. Nothing sent.
SMSFLOW.0014   404    no such source (neither the journal nor SMS knows it) or wave.
============== ====== ====================================================================
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from sms_flow.client import SmsClient
from sms_flow.engine import Engine, StepResult
from sms_flow.errors import (
    ActionNeededError,
    ApiError,
    ConflictError,
    InputError,
    JournalError,
    NotAppliedError,
    NotFoundError,
    OwnedError,
    SmsFlowError,
    TransitionRejected,
    TransportError,
    UnverifiedError,
    truncate,
)
from sms_flow.journal import (
    DEFAULT_LEASE,
    Entry,
    Journal,
    Lease,
    Outcome,
    iso_utc,
    parse_moment,
    parse_outcomes,
)
from sms_flow.machine import LifecycleMachine
from sms_flow.planner import Planner, ReasonCode, Verdict, step_dict, unasked_irreversible
from sms_flow.serve.access import Role
from sms_flow.serve.gateway import GatewayCode
from sms_flow.serve.owner import ServiceRun
from sms_flow.states import StatePair, StateRequest, parse_pair, parse_request
from sms_flow.wire import ERROR_FIELD_MAX, validate_source_id

__all__ = ["Api", "ApiCode"]

_LIMIT_MAX: Final = 10_000
_TEXT_MAX: Final = 255
_SETTLED: Final = frozenset({Outcome.APPLIED, Outcome.OBSERVED})
Handler = Callable[[web.Request], Awaitable[web.Response]]
_CHANGE_FIELDS: Final = frozenset({"to", "actor", "reason", "path", "allow", "yes"})


class ApiCode:
    """The API's own ``error_code`` values (beside :class:`GatewayCode`)."""

    IRREVERSIBLE: Final = "SMSFLOW.0012"
    CONFIRMATION: Final = "SMSFLOW.0013"
    NOT_FOUND: Final = "SMSFLOW.0014"


class _Refused(Exception):
    """An answer other than 200, raised from anywhere in a handler."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """The API's one error shape: ``error_code``, ``error_msg`` and what more there is."""
    body: dict[str, Any] = {"error_code": code, "error_msg": message, **extra}
    return web.json_response(body, status=status)


def _bad(message: str) -> _Refused:
    return _Refused(400, GatewayCode.INVALID.value, message)


def _text(value: object, name: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{name} must be a non-empty string, not {truncate(repr(value), 60)}")
    if len(value) > _TEXT_MAX:
        raise _bad(f"{name} is {len(value)} characters; give at most {_TEXT_MAX}")
    return value.strip()


async def _json_object(request: web.Request, known: frozenset[str]) -> dict[str, Any]:
    """The request's body as a JSON object with only ``known`` fields (else 400)."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _bad(
            "the body must be a JSON object, e.g. "
            '{"from": "SYNCING/syncing", "to": "CUTOVERING/cutovering"}; got '
            f"{truncate(repr(raw[:60]), 80)}"
        )
    unknown = sorted(set(data) - known)
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r}; the fields are: {', '.join(sorted(known))}")
    return data


def _pair_and_request(given: Mapping[str, object]) -> tuple[StatePair, StateRequest]:
    missing = [name for name in ("from", "to") if not given.get(name)]
    if missing:
        raise _bad(
            f"give {' and '.join(missing)}: from a full pair (SYNCING/syncing), to a requested "
            "state (CUTOVERING/cutovering, CUTOVERING or /cutovering)"
        )
    current = _text(given["from"], "from", required=True)
    requested = _text(given["to"], "to", required=True)
    assert current is not None and requested is not None
    try:
        return parse_pair(current), parse_request(requested)
    except InputError as exc:
        raise _bad(str(exc)) from None


# ``since``/``until`` and ``outcome`` read as ``sms-flow history`` reads its options (cli and
# serve are one layer and import nothing of each other, so the few lines are here too).


def _moment(text: str, name: str) -> float:
    try:
        return parse_moment(text, name)
    except InputError as exc:
        raise _bad(str(exc)) from None


def _outcomes(given: list[str]) -> list[Outcome]:
    try:
        return parse_outcomes(given)
    except InputError as exc:
        raise _bad(str(exc)) from None


def _source_id(request: web.Request) -> str:
    source_id = request.match_info["source_id"]
    try:
        validate_source_id(source_id)
    except InputError as exc:
        raise _bad(str(exc)) from None
    return source_id


def _entry_state(entry: Entry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {
        "state": entry.to_state if entry.outcome in _SETTLED else entry.from_state,
        "settled": entry.outcome in _SETTLED,
        "since": iso_utc(entry.settled_at or entry.created_at),
        "entry": entry.to_dict(),
    }


@dataclass(frozen=True, slots=True)
class _Asked:
    """A change a caller asked for (``POST /api/v1/sources/{id}/changes``)."""

    source_id: str
    requested: StateRequest
    actor: str
    reason: str | None
    path: bool
    allowed: frozenset[str]
    yes: bool


class Api:
    """The ``/api/v1`` handlers over a planner, a journal and (for sources and changes) the
    service's :class:`SmsClient`.

    ``reports``: the folder where ``sms-flow run`` writes a wave's report when the wave file
    names none (``reports/`` beside the journal); ``None`` when the journal is not a file.
    ``tokens``: whether API tokens are configured (a change's actor then names the role).
    ``owner``: the service's run changes go out under, one at a time for a source
    (:class:`~sms_flow.serve.owner.ServiceRun`, shared with the gateway); by default one of
    the API's own.
    """

    def __init__(
        self,
        planner: Planner,
        journal: Journal,
        client: SmsClient | None = None,
        *,
        project: str | None = None,
        reports: Path | None = None,
        tokens: bool = False,
        owner: ServiceRun | None = None,
        lease_seconds: float = DEFAULT_LEASE,
    ) -> None:
        self.planner = planner
        self._machine = LifecycleMachine(planner.chart, planner=planner)  # one for every change
        self.journal = journal
        self.client = client
        self.project = project
        self.reports = reports
        self.tokens = tokens
        self.lease_seconds = lease_seconds
        self.owner = owner or ServiceRun(
            journal,
            endpoint=client.endpoint if client is not None else "",
            project=project,
            seconds=lease_seconds,
        )

    def routes(self) -> list[tuple[str, str, Role, Handler]]:
        """``(method, path, role, handler)`` of every route (the role a token needs)."""
        viewer, operator = Role.VIEWER, Role.OPERATOR
        return [
            ("GET", "/api/v1/check", viewer, self.check),
            ("POST", "/api/v1/check", viewer, self.check_body),
            ("POST", "/api/v1/plan", viewer, self.plan),
            ("GET", "/api/v1/sources/{source_id}", viewer, self.source),
            ("GET", "/api/v1/sources/{source_id}/history", viewer, self.history),
            ("POST", "/api/v1/sources/{source_id}/changes", operator, self.change),
            ("GET", "/api/v1/waves", viewer, self.waves),
            ("GET", "/api/v1/waves/{name}", viewer, self.wave),
            ("GET", "/api/v1/openapi.json", viewer, self.openapi),
        ]

    async def unmatched(self, request: web.Request) -> web.Response:
        """Any other method or path under ``/api/v1``: 404 in the API's error shape."""
        served = ", ".join(f"{m} {p}" for m, p, _, _ in self.routes())
        return error(
            404,
            GatewayCode.NO_ROUTE.value,
            f"/api/v1 does not serve {request.method} {truncate(request.rel_url.path, 120)}; "
            f"it serves {served}",
        )

    @staticmethod
    async def _answer(work: Awaitable[dict[str, Any]]) -> web.Response:
        try:
            return web.json_response(await work)
        except _Refused as exc:
            return error(exc.status, exc.code, str(exc), **exc.extra)

    # -- check and plan ----------------------------------------------------------------

    async def check(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            query = request.rel_url.query
            given = {name: query.get(name, "").strip() for name in ("from", "to")}
            return self.planner.check(*_pair_and_request(given)).to_dict()

        return await self._answer(work())

    async def check_body(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            given = await _json_object(request, frozenset({"from", "to"}))
            return self.planner.check(*_pair_and_request(given)).to_dict()

        return await self._answer(work())

    async def plan(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            given = await _json_object(request, frozenset({"from", "to"}))
            return self.planner.plan(*_pair_and_request(given)).to_dict()

        return await self._answer(work())

    # -- sources -----------------------------------------------------------------------

    async def source(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            source_id = _source_id(request)
            found = [e async for e in self.journal.iter_history(source_id=source_id, last=1)]
            latest = found[0] if found else None
            known = (await self.journal.last_applied([source_id])).get(source_id)
            live: dict[str, Any] | None = None
            live_error: dict[str, Any] | None = None
            if self.client is not None:
                try:
                    server = await self.client.get_source(source_id)
                    live = {
                        "state": server.describe_state(),
                        "known": server.pair is not None,
                        "name": server.name,
                    }
                except NotFoundError as exc:
                    if latest is None:
                        raise _Refused(
                            404,
                            ApiCode.NOT_FOUND,
                            f"no source {source_id}: SMS does not know it and the journal holds "
                            "nothing of it; check the id (GET /v3/sources lists them)",
                        ) from None
                    live_error = {"error_code": exc.error_code or "404", "error_msg": str(exc)}
                except (ApiError, TransportError) as exc:
                    code = getattr(exc, "error_code", None) or GatewayCode.UNREACHABLE.value
                    live_error = {"error_code": code, "error_msg": _clip(str(exc))}
            return {
                "source_id": source_id,
                "journal": _entry_state(known),
                "latest_entry": latest.to_dict() if latest is not None else None,
                "live": live,
                "live_error": live_error,
            }

        return await self._answer(work())

    async def history(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            source_id = _source_id(request)
            query = request.rel_url.query
            unknown = sorted(set(query) - {"limit", "since", "until", "outcome", "actor"})
            if unknown:
                raise _bad(
                    f"unknown parameter {unknown[0]!r}; history takes limit, since, until, "
                    "outcome and actor"
                )
            raw = query.get("limit", "").strip()
            limit: int | None = None
            if raw:
                limit = int(raw) if raw.isdigit() else 0
                if not 1 <= limit <= _LIMIT_MAX:
                    raise _bad(
                        f"limit must be an integer from 1 to {_LIMIT_MAX:,}, not {raw[:40]!r}"
                    )
            since = _moment(query["since"], "since") if "since" in query else None
            until = _moment(query["until"], "until") if "until" in query else None
            wanted = _outcomes(query.getall("outcome")) if "outcome" in query else None
            if since is not None and until is not None and since >= until:
                raise _bad(
                    f"since {query['since']!r} is not before until {query['until']!r}; give a "
                    "since earlier than until"
                )
            actor = query.get("actor") or None
            entries = [
                e.to_dict()
                async for e in self.journal.iter_history(
                    source_id=source_id,
                    since=since,
                    until=until,
                    outcomes=wanted or None,
                    actor=actor,
                    last=limit,
                )
            ]
            return {"source_id": source_id, "entries": entries}

        return await self._answer(work())

    # -- a change ------------------------------------------------------------------------

    async def change(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            source_id = _source_id(request)
            body = await _json_object(request, _CHANGE_FIELDS)
            to = _text(body.get("to"), "to", required=True)
            assert to is not None
            try:
                requested = parse_request(to)
            except InputError as exc:
                raise _bad(str(exc)) from None
            who = _text(body.get("actor"), "actor")
            reason = _text(body.get("reason"), "reason")
            path, yes = body.get("path", False), body.get("yes", False)
            allow = body.get("allow", [])
            for name, value in (("path", path), ("yes", yes)):
                if not isinstance(value, bool):
                    raise _bad(f"{name} must be true or false, not {truncate(repr(value), 60)}")
            if not isinstance(allow, list) or not all(isinstance(t, str) for t in allow):
                raise _bad(f"allow must be a list of triggers, not {truncate(repr(allow), 60)}")
            if not path and (yes or allow):
                given = [n for n, on in (("yes", yes), ("allow", bool(allow))) if on]
                raise _bad(
                    f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with path "
                    '(a change of more than one step); add "path": true, or leave them out'
                )
            chart = self.planner.chart
            unknown = sorted(set(allow) - set(chart.triggers))
            if unknown:
                marked = sorted({e.trigger for e in chart.edges if e.irreversible})
                raise _bad(
                    f"allow {unknown[0]!r}: no move of chart {chart.name!r} has that trigger; "
                    f"the irreversible ones are: {', '.join(marked) or 'none'}"
                )
            role = "operator" if self.tokens else "local"
            actor = f"api:{role}" + (f":{who}" if who else "")
            asked = _Asked(source_id, requested, actor, reason, path, frozenset(allow), yes)
            return await self._change(asked)

        return await self._answer(work())

    async def _change(self, asked: _Asked) -> dict[str, Any]:
        if self.client is None:
            raise _Refused(
                502, GatewayCode.UNREACHABLE.value, "this API has no SMS endpoint to push to"
            )
        client = self.client
        try:
            async with self.owner.holding(asked.source_id) as lease:
                return await self._change_held(lease, client, asked)
        except JournalError as exc:
            raise _journal_failed(exc) from None

    async def _change_held(self, lease: Lease, client: SmsClient, asked: _Asked) -> dict[str, Any]:
        source_id, requested, actor = asked.source_id, asked.requested, asked.actor
        reason, path, allowed, yes = asked.reason, asked.path, asked.allowed, asked.yes
        try:
            engine = Engine(
                client,
                machine=self._machine,
                journal=self.journal,
                actor=actor,
                endpoint=client.endpoint,
                project=self.project,
                lease=lease,
            )
            claimed = await engine.claim([source_id])
            owner = claimed.refused.get(source_id)
            if owner is not None:
                raise _Refused(
                    409,
                    GatewayCode.OWNED.value,
                    f"source {source_id} is driven by another live driver: {owner.describe()}; "
                    "nothing was sent. Try again once it is done",
                )
            current = await self.owner.current(engine, source_id)
            verdict = engine.planner.check(current, requested)
            if verdict.noop:
                return _done("noop", source_id, str(current), [])
            if not verdict.allowed and not (path and verdict.path):
                raise _rejected(verdict)
            plan: list[dict[str, Any]] = []
            if not verdict.allowed:
                self._consent(verdict, requested, allowed, yes)
                plan = [step_dict(e) for e in verdict.path]
            results = await engine.change(
                source_id, requested, follow_path=path, actor=actor, reason=reason
            )
            self.owner.changed(engine, source_id, results)
            state = str(results[-1].to_state) if results else str(current)
            return _done("applied", source_id, state, results, plan=plan)
        except TransitionRejected as exc:
            raise _rejected(exc.verdict) from None
        except OwnedError as exc:
            raise _Refused(409, GatewayCode.OWNED.value, _clip(str(exc))) from None
        except UnverifiedError as exc:
            raise _Refused(502, GatewayCode.UNVERIFIED.value, _clip(str(exc))) from None
        except (NotAppliedError, ConflictError, ActionNeededError) as exc:
            raise _Refused(409, GatewayCode.NOT_APPLIED.value, _clip(str(exc))) from None
        except NotFoundError as exc:
            raise _Refused(404, ApiCode.NOT_FOUND, _clip(str(exc))) from None
        except ApiError as exc:  # SMS refused a read or the push: its code, our status
            code = exc.error_code or GatewayCode.UNREACHABLE.value
            raise _Refused(502, code, _clip(str(exc))) from None
        except TransportError as exc:
            raise _Refused(502, GatewayCode.UNREACHABLE.value, _clip(str(exc))) from None
        except JournalError as exc:
            raise _journal_failed(exc) from None
        except InputError as exc:
            raise _bad(str(exc)) from None
        except SmsFlowError as exc:
            raise _Refused(409, GatewayCode.NOT_APPLIED.value, _clip(str(exc))) from None

    @staticmethod
    def _consent(
        verdict: Verdict, requested: StateRequest, allowed: frozenset[str], yes: bool
    ) -> None:
        """Refuse a path as ``sms-flow set --path`` does without a terminal to ask at."""
        steps = [step_dict(e) for e in verdict.path]
        unasked = [
            e for e in unasked_irreversible(verdict.path, requested) if e.trigger not in allowed
        ]
        if unasked:
            names = ", ".join(f"{e.trigger} ({e.source} → {e.dest})" for e in unasked)
            triggers = list(dict.fromkeys(e.trigger for e in unasked))
            raise _Refused(
                400,
                ApiCode.IRREVERSIBLE,
                f"refused: the path to {requested} goes through {len(unasked)} irreversible "
                f"step{'s' if len(unasked) != 1 else ''} you did not ask for: {names}. Nothing "
                f"was sent. If you mean it, name {'each' if len(unasked) != 1 else 'it'}: "
                f'"allow": {json.dumps(triggers)}; or ask for {unasked[0].dest} itself first',
                plan=steps,
            )
        if len(verdict.path) > 1 and not yes:
            raise _Refused(
                400,
                ApiCode.CONFIRMATION,
                f"the path to {requested} takes {len(verdict.path)} steps (see plan); nothing "
                'was sent. Give "yes": true to take them',
                plan=steps,
            )

    # -- waves ---------------------------------------------------------------------------

    async def waves(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            found = []
            for name in await self.journal.waves():
                status = await self.journal.wave_status(name, shown=0)
                found.append(
                    {
                        "name": name,
                        "members": status.members,
                        "states": status.states,
                        "failed": status.failed,
                        "open_intents": status.open_intents,
                        "entries": status.entries,
                        "last_activity": _iso(status.last_activity),
                    }
                )
            return {"waves": found}

        return await self._answer(work())

    async def wave(self, request: web.Request) -> web.Response:
        async def work() -> dict[str, Any]:
            name = request.match_info["name"]
            if name not in await self.journal.waves():
                raise _Refused(
                    404,
                    ApiCode.NOT_FOUND,
                    f"no wave {truncate(name, 80)!r} in the journal; GET /api/v1/waves lists them",
                )
            status = await self.journal.wave_status(name)
            return {
                "name": name,
                "members": status.members,
                "states": status.states,
                "failed": status.failed,
                "failures": [e.to_dict() for e in status.failures],
                "open_intents": status.open_intents,
                "open": [e.to_dict() for e in status.open],
                "entries": status.entries,
                "last_activity": _iso(status.last_activity),
                "report": self._report(name),
            }

        return await self._answer(work())

    def _report(self, name: str) -> dict[str, Any] | None:
        """The wave's last report (``reports/NAME.json`` beside the journal), when readable."""
        if self.reports is None or "/" in name or name.startswith("."):
            return None
        try:
            data = json.loads((self.reports / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- the document --------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        from sms_flow.serve.openapi import document

        return web.json_response(document())


def _iso(t: float | None) -> str | None:
    return iso_utc(t) if t is not None else None


def _clip(text: str) -> str:
    return truncate(text, ERROR_FIELD_MAX * 4)


def _done(
    status: str,
    source_id: str,
    state: str | None,
    results: list[StepResult],
    **extra: Any,
) -> dict[str, Any]:
    """As ``sms-flow set --json`` when it did what was asked."""
    return {
        "status": status,
        "source_id": source_id,
        "state": state,
        "steps": [r.to_dict() for r in results],
        **extra,
    }


def _rejected(verdict: Verdict) -> _Refused:
    frozen = ReasonCode.FROZEN in verdict.codes
    code = GatewayCode.FROZEN if frozen else GatewayCode.REJECTED
    return _Refused(400, code.value, verdict.explain(), verdict=verdict.to_dict())


def _journal_failed(exc: JournalError) -> _Refused:
    return _Refused(
        500,
        GatewayCode.JOURNAL.value,
        f"the journal failed: {_clip(str(exc))}; read the source before trying again",
    )
