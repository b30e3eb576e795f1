"""The validating gateway: SMS's ``/v3/sources`` API, with every change checked against the chart.

``PUT /v3/sources/{source_id}/changestate`` goes through the :class:`~sms_flow.engine.Engine`
for a legal change (claim, journal, look, push, read back; the caller is the journal's
actor; the look is the read-back of the service's own last change of the source when that
is fresh, :meth:`~sms_flow.serve.owner.ServiceRun.current`) and is answered as SMS answers
it: ``200 {}`` with SMS's ``X-Request-Id``. An illegal change is refused before SMS sees
it, in SMS's error shape (``error_code``, ``error_msg``, ``error_param``, ``details``).
``GET /v3/sources`` and ``GET /v3/sources/{source_id}`` pass through: SMS's answer is
relayed as it came (status, body, ``X-Request-Id``), credentials removed from it. Any other
route under ``/v3`` is not served (404).

Who calls is decided by :class:`~sms_flow.serve.access.CallerKeys`: a caller's IAM token is
passed on to SMS with each request made for it (reads, push, read-back); an AK/SK caller is
verified here, and the gateway's requests for it are signed with the gateway's own
credentials. Each change goes out under the service's run in the journal (kind ``serve``,
:class:`~sms_flow.serve.owner.ServiceRun`; each entry names the caller as its actor), which
claims the source for the change and frees it when the answer is ready, so the gateway holds
a source only while it changes it: a wave (or ``sms-flow set``) driving a source is another
live driver, and a change through the gateway is refused while it does. Changes of one
source through the gateway and the API are made one at a time, in order of arrival.

Error codes of the gateway (``error_code`` of the error body; SMS's own answers, such as a
404 for an unknown source or a 403 for a bad token, are relayed unchanged):

============== ====== ====================================================================
code           status meaning
============== ====== ====================================================================
SMSFLOW.0001   400    the chart refuses the change: not a legal move from the source's
                      current state; ``error_msg`` gives the reasons and the shortest legal
                      path, ``details`` each reason and the path in full. Nothing sent.
SMSFLOW.0002   400    the source is frozen: SMS would answer 200 and change nothing (wait
                      for the service to move it). Nothing sent.
SMSFLOW.0003   409    another live driver (a wave run, ``sms-flow set``, another gateway
                      request) holds the source. Nothing sent; try again once it is done.
SMSFLOW.0004   409    not applied: the source was not where the change starts (moved by
                      someone else), or the read-back shows it did not take. Journalled.
SMSFLOW.0005   502    pushed, and nothing proves whether it landed (journalled
                      ``unverified``; settled by the next read of the source).
SMSFLOW.0006   400    the request is malformed (body not JSON or not an object, neither
                      field, an unknown value, a bad source id, a body over 10,240 bytes);
                      ``error_param`` names the offending field, as SMS does.
SMSFLOW.0007   401    no credentials: send ``X-Auth-Token`` or sign with AK/SK.
SMSFLOW.0008   403    credentials refused: a bad AK/SK signature, an unknown access key, a
                      wrong ``X-Project-Id``, an ``X-Sdk-Date`` over 15 minutes off.
SMSFLOW.0009   500    the journal failed (nothing is sent when the intent cannot be written;
                      ``error_msg`` says what failed).
SMSFLOW.0010   502    SMS could not be reached (no answer); see ``error_msg``.
SMSFLOW.0011   404    the gateway does not serve this route.
============== ====== ====================================================================
"""

from __future__ import annotations

import contextvars
import json
import time
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

import aiohttp
from aiohttp import web
from yarl import URL

from sms_flow._answers import Redactor
from sms_flow.auth import Auth
from sms_flow.chart import Chart
from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.errors import (
    ApiError,
    ConflictError,
    IgnoredByServiceError,
    InputError,
    InvalidRequestError,
    JournalError,
    NotAppliedError,
    OwnedError,
    TransitionRejected,
    TransportError,
    UnknownValueError,
    UnverifiedError,
    truncate,
)
from sms_flow.journal import DEFAULT_LEASE, Journal
from sms_flow.log import get_logger
from sms_flow.machine import LifecycleMachine
from sms_flow.metrics import Metrics
from sms_flow.planner import ReasonCode, Verdict
from sms_flow.serve.access import Caller, CallerKeys, Refusal
from sms_flow.serve.owner import ServiceRun
from sms_flow.states import StateRequest
from sms_flow.wire import (
    BODY_MAX_BYTES,
    ERROR_FIELD_MAX,
    ChangeStateRequest,
    validate_source_id,
)

__all__ = ["Gateway", "GatewayCode", "PassOnAuth"]

_log = get_logger("sms_flow.serve")

REQUEST_ID_HEADER: Final = "X-Request-Id"
ENTRY_HEADER: Final = "X-Sms-Flow-Entry"
"""The journal entry of a change the gateway pushed (its answer's header)."""
REASON: Final = "through the sms-flow serve gateway"
_JSON: Final = "application/json"
_RELAYED_HEADERS: Final = ("Content-Type", REQUEST_ID_HEADER, "Retry-After")
_CHANGE_FIELDS: Final = ("copystate", "migrationcycle")

_caller_token: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sms_flow_serve_caller_token", default=None
)


class GatewayCode(StrEnum):
    """The gateway's own ``error_code`` values (see the module docstring)."""

    REJECTED = "SMSFLOW.0001"
    FROZEN = "SMSFLOW.0002"
    OWNED = "SMSFLOW.0003"
    NOT_APPLIED = "SMSFLOW.0004"
    UNVERIFIED = "SMSFLOW.0005"
    INVALID = "SMSFLOW.0006"
    NO_CREDENTIALS = "SMSFLOW.0007"
    REFUSED = "SMSFLOW.0008"
    JOURNAL = "SMSFLOW.0009"
    UNREACHABLE = "SMSFLOW.0010"
    NO_ROUTE = "SMSFLOW.0011"


class PassOnAuth:
    """Signs the gateway's requests to SMS: the caller's token when it sent one, else its own.

    The token of the caller being served is in a context variable, set for the request's
    task only (:meth:`Gateway.changestate`), so concurrent callers never see each other's.
    """

    __slots__ = ("_own",)

    def __init__(self, own: Auth | None) -> None:
        self._own = own

    def __repr__(self) -> str:
        return f"PassOnAuth(own={type(self._own).__name__ if self._own else None})"

    def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        token = _caller_token.get()
        if token is not None:
            out = {
                k: v
                for k, v in headers.items()
                if k.lower() not in ("x-auth-token", "authorization", "x-sdk-date", "x-project-id")
            }
            out["X-Auth-Token"] = token
            return out
        if self._own is None:
            return dict(headers)
        return self._own.sign(method, url, headers, body)


# -- answers ---------------------------------------------------------------------------------


def error_body(
    code: str,
    message: str,
    params: list[str] | None = None,
    details: list[dict[str, str]] | None = None,
) -> bytes:
    """An error body in SMS's shape; ``error_msg`` clipped to its documented 255 characters."""
    body: dict[str, Any] = {"error_code": code, "error_msg": _clip(message, ERROR_FIELD_MAX)}
    if params:
        body["error_param"] = params[:20]
    if details:
        body["details"] = details[:20]
    return json.dumps(body).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    params: list[str] | None = None,
    details: list[dict[str, str]] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(code, message, params, details),
        content_type=_JSON,
        headers={REQUEST_ID_HEADER: uuid.uuid4().hex},
    )


def refusal_response(refusal: Refusal) -> web.Response:
    """401 (no credentials) or 403 (refused), in SMS's 401/403 shape."""
    code = GatewayCode.NO_CREDENTIALS if refusal.status == 401 else GatewayCode.REFUSED
    return error_response(
        refusal.status,
        code,
        f"Authentication failed: {refusal.reason}",
        [refusal.reason],
        [{"error_code": code.value, "error_msg": refusal.reason}],
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _param(name: str, value: object) -> str:
    shown = value if isinstance(value, str) else repr(value)
    return f"{name}={_clip(shown, 80)}"


async def _read_body(request: web.BaseRequest) -> bytes | None:
    """The body, or None when it is over BODY_MAX_BYTES (never reads more than one byte over)."""
    if request.content_length is not None and request.content_length > BODY_MAX_BYTES:
        return None
    chunks: list[bytes] = []
    total = 0
    while total <= BODY_MAX_BYTES:
        chunk = await request.content.read(BODY_MAX_BYTES + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks) if total <= BODY_MAX_BYTES else None


_SHORT_REASONS: Final = {
    ReasonCode.NO_TRANSITION: "no permitted move leads there",
    ReasonCode.UNREACHABLE: "no sequence of permitted moves leads there",
    ReasonCode.FROZEN: "the source is frozen: SMS ignores changestate in this state",
    ReasonCode.NOT_BY_CLIENT: "the service makes this move itself",
    ReasonCode.CYCLE_NOT_PERMITTED: "that copystate does not pair with that cycle",
    ReasonCode.INVALID_CURRENT: "sms-flow does not know the source's current state",
    ReasonCode.EMPTY_REQUEST: "the change names neither field",
    ReasonCode.UNKNOWN_VALUE: "an unknown value",
}


def _steps(verdict: Verdict) -> str:
    return ", ".join(
        f"{e.trigger} → {e.dest}" + ("" if e.pushable else f" [by {e.by.value}: wait]")
        for e in verdict.path
    )


def rejection_message(verdict: Verdict) -> str:
    """The ``error_msg`` of a refused change: what was asked, why not, the shortest legal path.

    Short enough for SMS's 255 characters in the usual case; ``details`` hold the reasons in
    full (a condition's own words, for instance).
    """
    cur = str(verdict.current) if verdict.current is not None else "?"
    req = str(verdict.requested) if verdict.requested is not None else "?"
    why = "; ".join(dict.fromkeys(_SHORT_REASONS.get(r.code, r.message) for r in verdict.reasons))
    text = f"refused by the statechart: {cur} → {req}: {why}."
    if verdict.path:
        text += f" Shortest legal path: {_steps(verdict)}"
    else:
        text += " No legal path leads there."
    return text


class _Invalid(Exception):
    def __init__(self, message: str, params: list[str]) -> None:
        super().__init__(message)
        self.params = params


def _change_request(body: bytes) -> ChangeStateRequest:
    """The body read as SMS reads it; its errors name the offending field, as SMS's 400 does."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    try:
        return ChangeStateRequest.from_body(data if isinstance(data, dict) else body)
    except UnknownValueError as exc:
        raise _Invalid(str(exc), [_param(str(exc.field), exc.value)]) from None
    except InvalidRequestError as exc:
        field = exc.field
        if isinstance(data, dict) and field is not None and field in data:
            params = [_param(field, data[field])]
        elif field == "body":
            params = ["body"]
        else:
            params = list(_CHANGE_FIELDS)
        raise _Invalid(str(exc), params) from None


# -- the gateway -------------------------------------------------------------------------------


class Gateway:
    """The ``/v3`` routes of ``sms-flow serve`` (see the module docstring).

    ``client`` is the service's :class:`SmsClient`, built with ``auth`` (a
    :class:`PassOnAuth`); ``session`` the aiohttp session the read side passes through (the
    client's), each read given ``timeout`` seconds. ``project`` is the project the gateway's
    own credentials sign in, when known. ``owner`` is the service's run the changes go
    out under, one at a time for a source (:class:`~sms_flow.serve.owner.ServiceRun`; the API
    shares it); by default one of the gateway's own.
    """

    def __init__(
        self,
        client: SmsClient,
        auth: PassOnAuth,
        session: aiohttp.ClientSession,
        journal: Journal,
        keys: CallerKeys,
        metrics: Metrics,
        *,
        chart: Chart,
        project: str | None = None,
        owner: ServiceRun | None = None,
        lease_seconds: float = DEFAULT_LEASE,
        timeout: float = 30.0,
    ) -> None:
        self.client = client
        self.auth = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.session = session
        self.journal = journal
        self.keys = keys
        self.metrics = metrics
        self.chart = chart
        self._machine = LifecycleMachine(chart)  # one for every change (each builds an Engine)
        self.project = project
        self.lease_seconds = lease_seconds
        self.owner = owner or ServiceRun(
            journal, endpoint=client.endpoint, project=project, seconds=lease_seconds
        )
        """The service's run every change goes out under (shared with the API's changes)."""
        self._redact = Redactor()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put("/v3/sources/{source_id:[^/]+}/changestate", self.changestate),
            web.get("/v3/sources/{source_id:[^/]+}", self.pass_through, allow_head=False),
            web.get("/v3/sources", self.pass_through, allow_head=False),
            web.route("*", "/v3/{tail:.*}", self.unmatched),
        ]

    def _identify(self, request: web.Request, body: bytes) -> Caller | Refusal:
        return self.keys.identify(
            method=request.method,
            raw_path=request.rel_url.raw_path,
            query=request.rel_url.query,
            headers=request.headers,
            body=body,
        )

    # -- changestate ---------------------------------------------------------------------

    async def changestate(self, request: web.Request) -> web.Response:
        body = await _read_body(request)
        if body is None:
            return self._refused(
                400,
                GatewayCode.INVALID,
                f"the request body is over {BODY_MAX_BYTES:,} bytes",
                ["body"],
            )
        caller = self._identify(request, body)
        if isinstance(caller, Refusal):
            self.metrics.refusals.labels(
                (GatewayCode.NO_CREDENTIALS if caller.status == 401 else GatewayCode.REFUSED).value
            ).inc()
            return refusal_response(caller)
        source_id = request.match_info["source_id"]
        try:
            validate_source_id(source_id)
            change = _change_request(body)
        except InputError as exc:
            return self._refused(
                400, GatewayCode.INVALID, str(exc), [_param("source_id", source_id)]
            )
        except _Invalid as exc:
            return self._refused(400, GatewayCode.INVALID, str(exc), exc.params)
        requested = StateRequest(change.copystate, change.migrationcycle)
        return await self._change(caller, source_id, requested)

    def _refused(
        self,
        status: int,
        code: GatewayCode,
        message: str,
        params: list[str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> web.Response:
        self.metrics.refusals.labels(code.value).inc()
        return error_response(status, code, message, params, details)

    async def _change(
        self, caller: Caller, source_id: str, requested: StateRequest
    ) -> web.Response:
        started = time.monotonic()
        token = _caller_token.set(caller.token)
        verdict: Verdict | None = None
        outcome = "failed"
        try:
            async with self.owner.holding(source_id) as lease:
                engine = Engine(
                    self.client,
                    machine=self._machine,
                    journal=self.journal,
                    actor=caller.actor,
                    endpoint=self.client.endpoint,
                    project=self.project,
                    lease=lease,
                )
                claimed = await engine.claim([source_id])
                owner = claimed.refused.get(source_id)
                if owner is not None:
                    outcome = "owned"
                    return self._refused(
                        409,
                        GatewayCode.OWNED,
                        f"source {source_id} is driven by another live driver: "
                        f"{owner.describe()}; nothing was sent. Try again once it is done",
                        [_param("source_id", source_id)],
                    )
                current = await self.owner.current(engine, source_id)
                verdict = engine.planner.check(current, requested)
                results = await engine.change(
                    source_id, requested, actor=caller.actor, reason=REASON
                )
                self.owner.changed(engine, source_id, results)
            if not results:
                outcome = "noop"
                return web.Response(
                    body=b"{}", content_type=_JSON, headers={REQUEST_ID_HEADER: uuid.uuid4().hex}
                )
            step = results[-1]
            outcome = step.outcome.value
            headers = {REQUEST_ID_HEADER: step.request_id or uuid.uuid4().hex}
            if step.journal_id is not None:
                headers[ENTRY_HEADER] = str(step.journal_id)
            return web.Response(body=b"{}", content_type=_JSON, headers=headers)
        except TransitionRejected as exc:
            outcome = "rejected"
            return self._rejected(source_id, exc.verdict)
        except OwnedError as exc:
            outcome = "owned"
            return self._refused(409, GatewayCode.OWNED, str(exc), [_param("source_id", source_id)])
        except UnverifiedError as exc:
            outcome = "unverified"
            return self._refused(
                502, GatewayCode.UNVERIFIED, str(exc), [_param("source_id", source_id)]
            )
        except NotAppliedError as exc:
            outcome = (
                "conflict"
                if isinstance(exc, ConflictError)
                else "ignored"
                if isinstance(exc, IgnoredByServiceError)
                else "failed"
            )
            return self._refused(
                409, GatewayCode.NOT_APPLIED, str(exc), [_param("source_id", source_id)]
            )
        except ApiError as exc:
            return self._relay_error(exc)
        except TransportError as exc:
            return self._refused(
                502, GatewayCode.UNREACHABLE, str(exc), [_param("source_id", source_id)]
            )
        except JournalError as exc:
            return self._journal_failed(source_id, exc)
        finally:
            _caller_token.reset(token)
            trigger = verdict.trigger if verdict is not None else None
            if outcome != "noop":  # a change to where the source is: no transition
                self.metrics.transition(trigger, outcome, time.monotonic() - started)
            _log.info(
                "serve.change",
                source_id=source_id,
                actor=caller.actor,
                requested=str(requested),
                trigger=trigger,
                outcome=outcome,
            )

    def _journal_failed(self, source_id: str, exc: JournalError) -> web.Response:
        _log.error("serve.journal_failed", source_id=source_id, error=str(exc))
        return self._refused(
            500,
            GatewayCode.JOURNAL,
            f"the journal failed: {exc}; read the source (GET) before trying again",
            [_param("source_id", source_id)],
        )

    def _rejected(self, source_id: str, verdict: Verdict) -> web.Response:
        frozen = ReasonCode.FROZEN in verdict.codes
        code = GatewayCode.FROZEN if frozen else GatewayCode.REJECTED
        details = [{"error_code": r.code.value, "error_msg": r.message} for r in verdict.reasons]
        if verdict.path:
            details.append({"error_code": "shortest_path", "error_msg": _steps(verdict)})
        params = [_param("source_id", source_id)]
        if verdict.current is not None:
            params.append(_param("current", str(verdict.current)))
        if verdict.requested is not None:
            params.append(_param("requested", str(verdict.requested)))
        return self._refused(400, code, rejection_message(verdict), params, details)

    def _relay_error(self, exc: ApiError) -> web.Response:
        """SMS's error answer, as SMS gave it (the client removed every credential from it)."""
        body: dict[str, Any] = {}
        if exc.error_code is not None:
            body["error_code"] = exc.error_code
        if exc.error_msg is not None:
            body["error_msg"] = exc.error_msg
        if exc.encoded_authorization_message is not None:
            body["encoded_authorization_message"] = exc.encoded_authorization_message
        if exc.error_param:
            body["error_param"] = exc.error_param
        if exc.details:
            body["details"] = exc.details
        headers = {REQUEST_ID_HEADER: exc.request_id or uuid.uuid4().hex}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        return web.Response(
            status=exc.status, body=json.dumps(body).encode(), content_type=_JSON, headers=headers
        )

    # -- the read side ---------------------------------------------------------------------

    async def pass_through(self, request: web.Request) -> web.StreamResponse:
        """Relay a read to SMS with the caller's token (or, for AK/SK callers, the gateway's
        own credentials) and answer what SMS answered."""
        body = await _read_body(request)
        caller = self._identify(request, body or b"")
        if isinstance(caller, Refusal):
            return refusal_response(caller)
        url = URL(self.client.endpoint + request.rel_url.raw_path_qs, encoded=True)
        token = _caller_token.set(caller.token)
        try:
            sent = self.auth.sign("GET", url, {"Accept": _JSON}, b"")
        finally:
            _caller_token.reset(token)
        try:
            async with self.session.get(
                url, headers=sent, allow_redirects=False, timeout=self._timeout
            ) as resp:
                data = await resp.read()
                status = resp.status
                relayed = {h: resp.headers[h] for h in _RELAYED_HEADERS if h in resp.headers}
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return error_response(
                502,
                GatewayCode.UNREACHABLE,
                f"GET {request.rel_url.path}: SMS at {self.client.endpoint} gave no answer "
                f"({type(exc).__name__}); try again, or check the gateway's --endpoint",
            )
        redact = self._redact.bind(sent)
        return web.Response(
            status=status,
            body=redact(data),
            headers={k: redact(v) for k, v in relayed.items()},
        )

    async def unmatched(self, request: web.Request) -> web.Response:
        return error_response(
            404,
            GatewayCode.NO_ROUTE,
            f"the sms-flow gateway does not serve {request.method} "
            f"{truncate(request.rel_url.path, 120)}: it serves PUT /v3/sources/{{id}}/changestate, "
            "GET /v3/sources and GET /v3/sources/{id}; call SMS directly for the rest",
        )
