"""The simulator's HTTP side: the SMS routes, the test-control routes, and error bodies.

``/v3`` routes behave like the documented service (auth, faults, limits, error bodies);
``/_simulator`` routes are test controls: never a fault, and open unless credentials are
configured (then they take the same ones, or the control token: :mod:`.access`). Every
answer carries a fresh ``X-Request-Id`` (a hex uuid4), errors included. A body that has not
arrived ``body_timeout`` seconds after its request's headers is answered 408 and the
connection closed.

Error codes (``error_code`` of the JSON error body):

========== ====== ==============================================================
code       status meaning
========== ====== ==============================================================
SMS.9004   403    authentication failed (documented 403 body shape; wrong or
                  missing token, bad signature, X-Sdk-Date more than 15 minutes
                  off, wrong X-Project-Id)
SMS.2004   400    request body over 10,240 bytes (documented code)
SMS.2007   500    internal error, and injected 500/503 faults (documented code)
APIG.0308  429    injected throttling, with ``Retry-After`` (API gateway code)
APIG.0101  404    no such route or method (API gateway code)
SMS.SIM1   400    strict mode: the change is not a client move of the chart
SMS.SIM2   400    invalid request: body not JSON or not an object, neither field,
                  unknown enum value, bad source id, bad query or registration
SMS.SIM3   404    unknown source server
SMS.SIM4   409    control route: the chart has no such move from the current state
SMS.SIM5   408    the request body did not arrive within the header timeout
SMS.SIM6   503    too many open connections, none of them idle (the connection cap)
========== ====== ==============================================================

The ``SMS.SIM*`` codes are the simulator's own: the real service's codes for these cases
are not published.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from sms_flow.errors import InputError, InvalidRequestError, UnknownValueError
from sms_flow.log import get_logger
from sms_flow.simulator.access import Access
from sms_flow.simulator.config import HEADER_TIMEOUT
from sms_flow.simulator.faults import FaultInjector, FaultKind, Faults
from sms_flow.simulator.store import Outcome, SourceStore
from sms_flow.states import (
    StatePair,
    parse_service_copystate,
    parse_service_cycle,
)
from sms_flow.wire import (
    BODY_MAX_BYTES,
    ChangeStateRequest,
    RegisterSourceRequest,
    validate_source_id,
)

__all__ = ["ErrorCode", "SimulatorApp", "SimulatorStats"]

_log = get_logger("sms_flow.simulator")

REQUEST_ID_HEADER: Final = "X-Request-Id"
LIST_LIMIT_MAX: Final = 200
REGISTER_MANY_MAX: Final = 100_000
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_OK_BODY: Final = b"{}"
_MSG_MAX: Final = 255

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
V3Handler = Callable[[web.Request, str, bytes], Awaitable[web.StreamResponse]]
ControlHandler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
PlainHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]

ROUTE_CHANGESTATE: Final = "PUT /v3/sources/{source_id}/changestate"
ROUTE_SHOW: Final = "GET /v3/sources/{source_id}"
ROUTE_LIST: Final = "GET /v3/sources"
ROUTE_REGISTER: Final = "POST /v3/sources"
ROUTE_UNMATCHED: Final = "unmatched"
DROPPED: Final = "dropped"
CANCELLED: Final = "cancelled"


class ErrorCode(StrEnum):
    """The ``error_code`` values the simulator answers (see the module docstring)."""

    AUTH = "SMS.9004"
    BODY_TOO_LARGE = "SMS.2004"
    INTERNAL = "SMS.2007"
    THROTTLED = "APIG.0308"
    NO_ROUTE = "APIG.0101"
    STRICT = "SMS.SIM1"
    INVALID = "SMS.SIM2"
    NO_SOURCE = "SMS.SIM3"
    CONTROL_REFUSED = "SMS.SIM4"
    REQUEST_TIMEOUT = "SMS.SIM5"
    TOO_MANY_CONNECTIONS = "SMS.SIM6"


@dataclass(frozen=True, slots=True)
class SimulatorStats:
    """Counts since the simulator started (a copy; it does not change afterwards)."""

    requests: Mapping[str, Mapping[int | str, int]]
    """Route → status → count; ``dropped`` and ``cancelled`` count requests never answered."""
    puts_per_source: Mapping[str, int]
    """changestate calls per known source, whatever their outcome."""
    changestate: Mapping[str, int]
    """changestate outcomes: applied, noop, ignored_frozen, refused_strict, invalid."""
    faults: Mapping[str, int] = field(default_factory=dict)
    """Faults injected, by kind (latency, drop, throttle, error_500, error_503,
    apply_then_fail)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": {
                route: {str(status): n for status, n in by_status.items()}
                for route, by_status in self.requests.items()
            },
            "puts_per_source": dict(self.puts_per_source),
            "changestate": dict(self.changestate),
            "faults": dict(self.faults),
        }


class _Counters:
    __slots__ = ("changestate", "puts", "requests")

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int | str]] = Counter()
        self.puts: Counter[str] = Counter()
        self.changestate: Counter[str] = Counter()


class _BadRequest(Exception):
    """Answer 400 ``SMS.SIM2`` with this message and these parameters."""

    def __init__(self, message: str, params: list[str]) -> None:
        super().__init__(message)
        self.params = params


# -- answers ------------------------------------------------------------------------------


def json_response(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(), headers=_JSON_HEADERS)


def error_response(
    status: int, code: str, message: str, params: list[str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"error_code": code, "error_msg": message[:_MSG_MAX]}
    if params:
        body["error_param"] = params[:20]
    return json_response(status, body)


def auth_error(reason: str, request_id: str) -> web.Response:
    """403 with exactly the documented body shape (the changestate page's example)."""
    encoded = base64.b64encode(
        json.dumps(
            {"request_id": request_id, "reason": reason, "issuer": "sms-flow simulator"}
        ).encode()
    ).decode()
    return json_response(
        403,
        {
            "error_code": ErrorCode.AUTH.value,
            "error_msg": f"Authentication failed: {reason}"[:_MSG_MAX],
            "encoded_authorization_message": encoded,
            "error_param": [reason],
            "details": [{"error_code": ErrorCode.AUTH.value, "error_msg": reason}],
        },
    )


def _service_unavailable() -> web.Response:
    return error_response(
        503, ErrorCode.INTERNAL, "Service temporarily unavailable; try again later"
    )


def _bad(message: str, *params: str) -> web.Response:
    return error_response(400, ErrorCode.INVALID, message, list(params) or None)


def _clip(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


async def read_body(request: web.BaseRequest) -> bytes | None:
    """The body, or None when it is over the limit (never reads more than limit + 1 bytes)."""
    length = request.content_length
    if length is not None and length > BODY_MAX_BYTES:
        return None
    content = request.content
    data = await content.read(BODY_MAX_BYTES + 1)
    if not data or content.at_eof():
        return data if len(data) <= BODY_MAX_BYTES else None
    chunks = [data]
    total = len(data)
    while total <= BODY_MAX_BYTES:
        chunk = await content.read(BODY_MAX_BYTES + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks) if total <= BODY_MAX_BYTES else None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise _BadRequest(
            "the request body is not JSON; send a JSON object such as "
            '{"copystate": "WAITING", "migrationcycle": "cutovered"}',
            ["body"],
        ) from None
    if not isinstance(data, dict):
        raise _BadRequest(
            f"the request body is JSON {type(data).__name__}, not an object", ["body"]
        )
    return data


def _unknown_source(source_id: str) -> web.Response:
    try:
        validate_source_id(source_id)
    except InputError as exc:
        return _bad(str(exc), f"source_id={_clip(source_id)}")
    return error_response(
        404,
        ErrorCode.NO_SOURCE,
        f"source server {_clip(source_id, 64)} does not exist",
        [f"source_id={_clip(source_id)}"],
    )


# -- the application ----------------------------------------------------------------------


class SimulatorApp:
    """Builds the aiohttp application over a store, an injector and an access check.

    ``body_timeout`` bounds the wait for a request's body once its headers are in.
    """

    def __init__(
        self,
        store: SourceStore,
        injector: FaultInjector,
        access: Access,
        *,
        body_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.store = store
        self.injector = injector
        self.access = access
        self.body_timeout = body_timeout
        self._counters = _Counters()

    def stats(self) -> SimulatorStats:
        requests: dict[str, dict[int | str, int]] = {}
        for (route, status), n in sorted(self._counters.requests.items(), key=str):
            requests.setdefault(route, {})[status] = n
        return SimulatorStats(
            requests=requests,
            puts_per_source=dict(self._counters.puts),
            changestate=dict(self._counters.changestate),
            faults={kind.value: n for kind, n in self.injector.counts.items()},
        )

    def build(self, middlewares: Sequence[Middleware] = ()) -> web.Application:
        """The aiohttp application; ``middlewares`` run around every route (the server's
        connection gate counts requests in progress with one)."""
        app = web.Application(client_max_size=BODY_MAX_BYTES + 1, middlewares=list(middlewares))
        r = app.router
        r.add_put(
            "/v3/sources/{source_id}/changestate", self._v3(ROUTE_CHANGESTATE, self._changestate)
        )
        r.add_get("/v3/sources/{source_id}", self._v3(ROUTE_SHOW, self._show), allow_head=False)
        r.add_get("/v3/sources", self._v3(ROUTE_LIST, self._list), allow_head=False)
        r.add_post("/v3/sources", self._v3(ROUTE_REGISTER, self._register))
        control: list[tuple[str, str, ControlHandler]] = [
            ("GET", "/_simulator/sources/{source_id}", self._control_show),
            ("GET", "/_simulator/sources/{source_id}/history", self._control_history),
            ("POST", "/_simulator/sources/{source_id}/move", self._control_move),
            ("POST", "/_simulator/sources", self._control_register),
            ("GET", "/_simulator/stats", self._control_stats),
            ("GET", "/_simulator/faults", self._control_get_faults),
            ("PUT", "/_simulator/faults", self._control_put_faults),
        ]
        for method, path, handler in control:
            r.add_route(method, path, self._control(f"{method} {path}", handler))
        r.add_route("*", "/{tail:.*}", self._plain(ROUTE_UNMATCHED, self._unmatched))
        return app

    # -- wrappers -----------------------------------------------------------------------------

    def _v3(self, route: str, handler: V3Handler) -> Handler:
        """Request id, faults, body limit, auth, error safety net and counting for a /v3 route."""
        counters = self._counters.requests
        injector = self.injector
        access = self.access

        async def endpoint(request: web.Request) -> web.StreamResponse:
            request_id = uuid.uuid4().hex
            resp: web.StreamResponse
            try:
                kind: FaultKind | None = None
                if injector.active:
                    delay, kind = injector.roll()
                    if delay:
                        await asyncio.sleep(delay)
                        if request.transport is None or request.transport.is_closing():
                            counters[(route, CANCELLED)] += 1
                            return web.Response()  # the client is gone: do nothing
                if kind is not None:
                    if kind is FaultKind.DROP:
                        return self._drop(request, route)
                    resp = self._fault(kind)
                else:
                    body = await self._read_body(request)
                    if isinstance(body, web.Response):
                        resp = body
                    elif body is None:
                        resp = error_response(
                            400,
                            ErrorCode.BODY_TOO_LARGE,
                            f"The request body is over {BODY_MAX_BYTES:,} bytes",
                            ["body"],
                        )
                    else:
                        refused = access.check(request, body) if access.enabled else None
                        if refused is not None:
                            resp = auth_error(refused, request_id)
                        else:
                            resp = await handler(request, request_id, body)
            except _BadRequest as exc:
                resp = _bad(str(exc), *exc.params)
            except asyncio.CancelledError:
                counters[(route, CANCELLED)] += 1
                raise
            except Exception:
                _log.exception("sim.request_failed", route=route, request_id=request_id)
                resp = error_response(500, ErrorCode.INTERNAL, "Background exception")
            resp.headers[REQUEST_ID_HEADER] = request_id
            counters[(route, resp.status)] += 1
            return resp

        return endpoint

    async def _read_body(self, request: web.BaseRequest) -> bytes | web.Response | None:
        """The body (None when over the limit), or a 408 when it does not come in time."""
        try:
            async with asyncio.timeout(self.body_timeout):
                return await read_body(request)
        except TimeoutError:
            resp = error_response(
                408,
                ErrorCode.REQUEST_TIMEOUT,
                f"The request body did not arrive within {self.body_timeout:g} s",
                ["body"],
            )
            resp.force_close()
            return resp

    def _control(self, route: str, handler: ControlHandler) -> Handler:
        """A test control: its body, then the access check for controls (never a fault)."""
        access = self.access

        async def endpoint(request: web.Request, request_id: str) -> web.StreamResponse:
            body = await self._read_body(request)
            if isinstance(body, web.Response):
                return body
            if body is None:
                raise _BadRequest(f"the request body is over {BODY_MAX_BYTES:,} bytes", ["body"])
            refused = access.check_control(request, body) if access.control_enabled else None
            if refused is not None:
                return auth_error(refused, request_id)
            return await handler(request, body)

        return self._plain(route, endpoint)

    def _plain(self, route: str, handler: PlainHandler) -> Handler:
        """Request id, error safety net and counting for a route that is never faulted."""
        counters = self._counters.requests

        async def endpoint(request: web.Request) -> web.StreamResponse:
            request_id = uuid.uuid4().hex
            resp: web.StreamResponse
            try:
                resp = await handler(request, request_id)
            except _BadRequest as exc:
                resp = _bad(str(exc), *exc.params)
            except Exception:
                _log.exception("sim.request_failed", route=route, request_id=request_id)
                resp = error_response(500, ErrorCode.INTERNAL, "Background exception")
            resp.headers[REQUEST_ID_HEADER] = request_id
            counters[(route, resp.status)] += 1
            return resp

        return endpoint

    def _drop(self, request: web.BaseRequest, route: str) -> web.StreamResponse:
        """Close the connection with no answer at all."""
        self._counters.requests[(route, DROPPED)] += 1
        transport = request.transport
        if transport is not None:
            transport.abort()
        # aiohttp finds the transport closed and writes nothing of this.
        return web.Response()

    def _fault(self, kind: FaultKind) -> web.Response:
        if kind is FaultKind.THROTTLE:
            retry_after = self.injector.faults.retry_after
            resp = error_response(
                429,
                ErrorCode.THROTTLED,
                "The throttling threshold has been reached: policy user over ratelimit",
            )
            resp.headers["Retry-After"] = f"{retry_after:g}"
            return resp
        if kind is FaultKind.ERROR_500:
            return error_response(500, ErrorCode.INTERNAL, "Background exception")
        return _service_unavailable()

    # -- /v3 ------------------------------------------------------------------------------

    async def _changestate(
        self, request: web.Request, request_id: str, body: bytes
    ) -> web.StreamResponse:
        store = self.store
        counts = self._counters.changestate
        source_id = request.match_info["source_id"]
        rec = store.lookup(source_id)
        if rec is None:
            return _unknown_source(source_id)
        self._counters.puts[source_id] += 1
        if store.is_frozen(rec):
            # As the service documents: parameters are not even checked, nothing changes.
            counts["ignored_frozen"] += 1
            return self._ok_or_fail()
        try:
            change = _change_request(body)
        except _BadRequest:
            counts["invalid"] += 1
            raise
        result = store.change(rec, change.copystate, change.migrationcycle, request_id)
        if result.outcome is Outcome.REFUSED:
            counts["refused_strict"] += 1
            return error_response(400, ErrorCode.STRICT, result.refusal, [str(result.pair)])
        if result.commit is not None:
            await result.commit
        counts[result.outcome.value] += 1
        return self._ok_or_fail()

    def _ok_or_fail(self) -> web.Response:
        if self.injector.active and self.injector.apply_then_fail():
            return _service_unavailable()
        return web.Response(body=_OK_BODY, headers=_JSON_HEADERS)

    async def _show(self, request: web.Request, request_id: str, body: bytes) -> web.Response:
        source_id = request.match_info["source_id"]
        rec = self.store.lookup(source_id)
        if rec is None:
            return _unknown_source(source_id)
        return json_response(200, self.store.snapshot(rec).to_wire())

    async def _list(self, request: web.Request, request_id: str, body: bytes) -> web.Response:
        query = request.rel_url.query
        limit = _int_param(query, "limit", LIST_LIMIT_MAX, 1, LIST_LIMIT_MAX)
        offset = _int_param(query, "offset", 0, 0, None)
        state = query.get("state", "").strip()
        cycle = query.get("migration_cycle", "").strip()
        # An unknown value is no error on the read side: it just matches nothing.
        want_cs = parse_service_copystate(state) if state else None
        want_cy = parse_service_cycle(cycle) if cycle else None
        name = query.get("name", "").strip().casefold()
        sid = query.get("id", "").strip().casefold()
        matches = [
            rec
            for rec in self.store.records()
            if (not state or rec.pair.copystate is want_cs)
            and (not cycle or rec.pair.migrationcycle is want_cy)
            and (not name or name in rec.name.casefold())
            and (not sid or sid == rec.id.casefold())
        ]
        page = matches[offset : offset + limit]
        return json_response(
            200,
            {
                "count": len(matches),
                "source_servers": [self.store.snapshot(rec).to_wire() for rec in page],
            },
        )

    async def _register(self, request: web.Request, request_id: str, body: bytes) -> web.Response:
        data = _json_object(body)
        try:
            reg = RegisterSourceRequest.model_validate(data)
        except ValidationError as exc:
            raise _invalid("registration", exc) from None
        source_id, commit = self.store.register(reg.name, data)
        if commit is not None:
            await commit
        return json_response(200, {"id": source_id})

    # -- /_simulator -----------------------------------------------------------------------

    async def _unmatched(self, request: web.Request, request_id: str) -> web.Response:
        return error_response(
            404,
            ErrorCode.NO_ROUTE,
            f"The API does not exist: {request.method} {_clip(request.rel_url.path, 120)}",
        )

    async def _control_show(self, request: web.Request, body: bytes) -> web.Response:
        rec = self.store.lookup(request.match_info["source_id"])
        if rec is None:
            return _unknown_source(request.match_info["source_id"])
        snap = self.store.snapshot(rec)
        return json_response(
            200,
            {
                "id": snap.id,
                "name": snap.name,
                "copystate": snap.copystate.value,
                "migrationcycle": snap.migrationcycle.value,
                "frozen": self.store.is_frozen(rec),
                "state_action_time": snap.state_action_time,
                "stage_action_time": snap.stage_action_time,
            },
        )

    async def _control_history(self, request: web.Request, body: bytes) -> web.Response:
        source_id = request.match_info["source_id"]
        rec = self.store.lookup(source_id)
        if rec is None:
            return _unknown_source(source_id)
        return json_response(
            200,
            {"source_id": source_id, "history": [e.to_dict() for e in self.store.history(rec)]},
        )

    async def _control_move(self, request: web.Request, body: bytes) -> web.Response:
        source_id = request.match_info["source_id"]
        rec = self.store.lookup(source_id)
        if rec is None:
            return _unknown_source(source_id)
        data = _json_object(body)
        trigger = data.get("trigger")
        before = rec.pair
        if trigger is not None:
            if not isinstance(trigger, str) or "copystate" in data or "migrationcycle" in data:
                raise _BadRequest(
                    'give either {"trigger": NAME} or copystate and/or migrationcycle, not both',
                    ["trigger"],
                )
            result = self.store.move_by_trigger(rec, trigger)
        else:
            change = _change_request(data)
            result = self.store.move_to(
                rec,
                StatePair(
                    change.copystate or before.copystate,
                    change.migrationcycle or before.migrationcycle,
                ),
            )
        if result.outcome is Outcome.REFUSED:
            return error_response(
                409, ErrorCode.CONTROL_REFUSED, result.refusal, [f"trigger={_clip(trigger)}"]
            )
        if result.commit is not None:
            await result.commit
        return json_response(
            200,
            {
                "source_id": source_id,
                "applied": result.outcome is Outcome.APPLIED,
                "from": str(before),
                "to": str(rec.pair),
                "entry": result.entry.to_dict() if result.entry is not None else None,
            },
        )

    async def _control_register(self, request: web.Request, body: bytes) -> web.Response:
        data = _json_object(body)
        if "count" in data:
            count, prefix = data["count"], data.get("prefix", "src")
            if not isinstance(count, int) or not 1 <= count <= REGISTER_MANY_MAX:
                raise _BadRequest(
                    f"count must be an integer from 1 to {REGISTER_MANY_MAX:,}, not {_clip(count)}",
                    ["count"],
                )
            if not isinstance(prefix, str) or not 1 <= len(prefix) <= 200:
                raise _BadRequest("prefix must be a string of 1 to 200 characters", ["prefix"])
            ids, commit = self.store.register_many(count, prefix)
        else:
            name = data.get("name")
            if not isinstance(name, str) or not 1 <= len(name) <= 255:
                raise _BadRequest(
                    'give {"name": NAME} (1 to 255 characters) or {"count": N, "prefix": P}',
                    ["name"],
                )
            source_id, commit = self.store.register(name, data)
            ids = [source_id]
        if commit is not None:
            await commit
        return json_response(200, {"ids": ids})

    async def _control_stats(self, request: web.Request, body: bytes) -> web.Response:
        return json_response(200, self.stats().to_dict())

    async def _control_get_faults(self, request: web.Request, body: bytes) -> web.Response:
        return json_response(200, self.injector.faults.model_dump())

    async def _control_put_faults(self, request: web.Request, body: bytes) -> web.Response:
        data = _json_object(body)
        try:
            faults = Faults.model_validate(data)
        except ValidationError as exc:
            raise _invalid("faults", exc) from None
        self.injector.faults = faults
        return json_response(200, faults.model_dump())


def _invalid(what: str, exc: ValidationError) -> _BadRequest:
    where = [".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()]
    problems = "; ".join(
        f"{w}: {e['msg'].removeprefix('Value error, ')}"
        for w, e in zip(where, exc.errors(), strict=True)
    )
    return _BadRequest(f"invalid {what}: {problems}", where)


def _change_request(body: bytes | Mapping[str, Any]) -> ChangeStateRequest:
    """A changestate body (or a control move's fields) read with the wire model.

    Its errors become a 400 ``SMS.SIM2`` naming the offending field and value.
    """
    data = body if isinstance(body, Mapping) else _json_object(body)
    try:
        return ChangeStateRequest.from_body(data)
    except UnknownValueError as exc:
        raise _BadRequest(str(exc), [f"{exc.field}={_clip(exc.value)}"]) from None
    except InvalidRequestError as exc:
        field = exc.field
        if field is not None and field in data:
            params = [f"{field}={_clip(data[field])}"]
        else:
            params = list(_CHANGE_FIELDS)
        raise _BadRequest(str(exc), params) from None


_CHANGE_FIELDS: Final = ("copystate", "migrationcycle")


def _int_param(
    query: Mapping[str, str], name: str, default: int, low: int, high: int | None
) -> int:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _BadRequest(
            f"{name} must be an integer {span}, not {_clip(raw)}", [f"{name}={_clip(raw)}"]
        )
    return value
