"""Tests for sms_flow.client, over loopback against the simulator (and a tiny app for shapes).

Nothing in our HTTP layer is mocked: every test sends real requests to a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import re
import socket
import textwrap
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import structlog.testing
from aiohttp import web
from yarl import URL

from sms_flow.auth import AkSkAuth, Auth, TokenAuth
from sms_flow.client import ClientStats, PushResult, SmsClient, endpoint_for_region
from sms_flow.errors import (
    AnswerTooLargeError,
    ApiError,
    AuthError,
    ConfigError,
    ConnectError,
    InputError,
    InvalidRequestError,
    NotFoundError,
    RequestTimeoutError,
    ServerError,
    SupersededError,
    ThrottledError,
    TransportError,
    UnknownValueError,
    UsageError,
)
from sms_flow.retry import RetryPolicy
from sms_flow.simulator import Faults, Simulator
from sms_flow.states import CopyState, MigrationCycle, Spelling
from sms_flow.testing import SimulatorFactory
from sms_flow.wave import WaveSession, WaveSpec
from sms_flow.wire import ANSWER_MAX_BYTES
from tests.conftest import Spawner, eventually
from tests.test_retry import MaxJitter
from tests.test_secrecy import Proxy

TOKEN = "tok-" + "Q" * 60
AK = "AKCLIENTTEST"
SK = "SKclientTEST-secret-0123456789"
PROJECT = "proj-client"
SECRETS = (TOKEN, SK)

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02, total_time=5.0, timeout=2.0)


class CountingAuth:
    """Signs with ``inner`` and counts how often it was asked to."""

    def __init__(self, inner: Auth) -> None:
        self.inner = inner
        self.calls = 0

    def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        self.calls += 1
        return self.inner.sign(method, url, headers, body)


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        shown = str(text)
        for secret in SECRETS:
            assert secret not in shown
            assert secret[:12] not in shown


# --- a tiny app for answers the simulator never gives ------------------------------------


class Recorder:
    """What the tiny app received, and what it answers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, Answer] = {}


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def tiny() -> AsyncIterator[tuple[Recorder, str]]:
    """An app answering changestate with whatever the test sets per source id."""
    rec = Recorder()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec.requests.append(
            {
                "method": request.method,
                "raw_path": request.rel_url.raw_path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        answer = rec.answers.get(request.match_info["sid"])
        if answer is None:
            return web.json_response({}, headers={"X-Request-Id": "req-ok"})
        return answer(request)

    app = web.Application()
    app.router.add_route("*", "/v3/sources/{sid}/changestate", handle)
    app.router.add_route("*", "/v3/sources/{sid}", handle)
    runner, url = await _serve(app)
    try:
        yield rec, url
    finally:
        await runner.cleanup()


Answer = Callable[[web.Request], web.Response]


def _answer(
    status: int, body: str, content_type: str = "application/json", **headers: str
) -> Answer:
    def respond(request: web.Request) -> web.Response:
        return web.Response(
            status=status,
            text=body,
            content_type=content_type,
            headers={"X-Request-Id": f"req-{status}", **headers},
        )

    return respond


async def test_sends_exactly_the_documented_request(tiny: tuple[Recorder, str]) -> None:
    rec, url = tiny
    async with SmsClient(url, auth=TokenAuth(TOKEN), retry=FAST) as client:
        result = await client.change_state("dcdbe339-é~", "waiting", MigrationCycle.CUTOVERED)
    assert result == PushResult("dcdbe339-é~", 200, "req-ok", 1, result.elapsed)
    assert result.elapsed > 0
    (sent,) = rec.requests
    assert sent["method"] == "PUT"
    assert sent["raw_path"] == "/v3/sources/dcdbe339-%C3%A9~/changestate"
    assert sent["body"] == b'{"copystate": "WAITING", "migrationcycle": "cutovered"}'
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["X-Auth-Token"] == TOKEN


async def test_lower_spelling_and_partial_change(tiny: tuple[Recorder, str]) -> None:
    rec, url = tiny
    async with SmsClient(url, retry=FAST, spelling=Spelling.LOWER) as client:
        await client.change_state("s1", CopyState.CLEARING)
        await client.change_state("s1", "SYNCING", "syncing")
        await client.change_state("s1", migrationcycle="checking")
    assert [r["body"] for r in rec.requests] == [
        b'{"copystate": "clearing"}',
        b'{"copystate": "syncing", "migrationcycle": "syncing"}',
        b'{"migrationcycle": "checking"}',
    ]


DOCUMENTED_403 = json.dumps(
    {
        "error_code": "SMS.9004",
        "error_msg": "The current account does not have the permission",
        "encoded_authorization_message": "ENCODED",
        "error_param": ["You do not have permission to perform action XXX"],
        "details": [{"error_code": "SMS.9004", "error_msg": "no permission"}],
    }
)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind", "code", "msg"),
    [
        (403, DOCUMENTED_403, "application/json", AuthError, "SMS.9004", "The current account"),
        (
            400,
            '{"errorCode": "SMS.1201", "errorMsg": "bad"}',
            "application/json",
            ApiError,
            "SMS.1201",
            "bad",
        ),
        (
            409,
            '{"code": "APIG.0101", "message": "gone"}',
            "application/json",
            ApiError,
            "APIG.0101",
            "gone",
        ),
        (
            404,
            '{"error": {"code": "APIG.0101", "message": "no route"}}',
            "application/json",
            NotFoundError,
            "APIG.0101",
            "no route",
        ),
        (502, "<html>Bad Gateway</html>", "text/html", ServerError, None, None),
    ],
    ids=["documented", "camelCase", "code-message", "apig-nested", "not-json"],
)
async def test_error_shapes_are_parsed(
    tiny: tuple[Recorder, str],
    status: int,
    body: str,
    content_type: str,
    kind: type[ApiError],
    code: str | None,
    msg: str | None,
) -> None:
    rec, url = tiny
    rec.answers["s1"] = _answer(status, body, content_type)
    policy = RetryPolicy(attempts=1)
    async with SmsClient(url, auth=TokenAuth(TOKEN), retry=policy) as client:
        with pytest.raises(kind) as caught:
            await client.change_state("s1", "WAITING")
    err = caught.value
    assert type(err) is kind
    assert (err.status, err.error_code, err.request_id, err.attempts) == (
        status,
        code,
        f"req-{status}",
        1,
    )
    assert err.method == "PUT" and err.url == "/v3/sources/s1/changestate"
    assert err.error_msg == msg or (msg and err.error_msg and err.error_msg.startswith(msg))
    if kind is AuthError:
        assert err.encoded_authorization_message == "ENCODED"
        assert err.error_param == ["You do not have permission to perform action XXX"]
        assert err.details == [{"error_code": "SMS.9004", "error_msg": "no permission"}]
    if code is None:  # not JSON: the status, the content type and the body still show
        assert "HTTP 502" in str(err) and "Bad Gateway" in str(err) and "text/html" in str(err)
    assert f"req-{status}" in str(err)
    assert_no_secret(err, repr(err))


async def test_long_non_json_body_is_truncated(tiny: tuple[Recorder, str]) -> None:
    rec, url = tiny
    rec.answers["s1"] = _answer(418, "x" * 5000, "text/plain")
    async with SmsClient(url, retry=FAST) as client:
        with pytest.raises(ApiError) as caught:
            await client.change_state("s1", "WAITING")
    assert caught.value.status == 418 and caught.value.attempts == 1  # a 4xx is never retried
    assert len(str(caught.value)) < 600 and "more characters" in str(caught.value)
    assert len(rec.requests) == 1


async def test_echoed_credentials_are_redacted(tiny: tuple[Recorder, str]) -> None:
    """A proxy that echoes the request headers must not put a credential into a message."""
    rec, url = tiny

    def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {"error_code": "PROXY", "error_msg": json.dumps(dict(request.headers))}, status=400
        )

    rec.answers["s1"] = echo
    for auth in (TokenAuth(TOKEN), AkSkAuth(AK, SK, PROJECT)):
        async with SmsClient(url, auth=auth, retry=FAST) as client:
            with pytest.raises(ApiError) as caught:
                await client.change_state("s1", "WAITING")
        sent = rec.requests[-1]["headers"]
        secret = sent.get("X-Auth-Token") or sent["Authorization"].rpartition("Signature=")[2]
        assert secret and secret not in str(caught.value) and secret not in caught.value.body
        assert "PROXY" in str(caught.value)


async def test_redirects_are_not_followed(tiny: tuple[Recorder, str]) -> None:
    """A redirect would resend credentials elsewhere; it is an error instead."""
    rec, url = tiny
    rec.answers["s1"] = _answer(307, "", Location="http://127.0.0.1:1/elsewhere")
    async with SmsClient(url, auth=TokenAuth(TOKEN), retry=FAST) as client:
        with pytest.raises(ApiError) as caught:
            await client.change_state("s1", "WAITING")
    assert caught.value.status == 307 and len(rec.requests) == 1


async def test_any_2xx_body_is_success_but_a_bad_read_is_an_error(
    tiny: tuple[Recorder, str],
) -> None:
    rec, url = tiny
    rec.answers["s1"] = _answer(200, "OK", "text/plain")
    async with SmsClient(url, retry=FAST) as client:
        result = await client.change_state("s1", "WAITING")
        with pytest.raises(TransportError, match="not a source server") as caught:
            await client.get_source("s1")
    assert result.status == 200 and result.request_id == "req-200"
    assert type(caught.value) is TransportError and "req-200" in str(caught.value)


async def test_retry_after_as_http_date(tiny: tuple[Recorder, str]) -> None:
    rec, url = tiny
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    rec.answers["s1"] = _answer(429, '{"error_code": "APIG.0308"}', **{"Retry-After": when})
    async with SmsClient(url, retry=RetryPolicy(total_time=5.0)) as client:
        with pytest.raises(ThrottledError) as caught:
            await client.change_state("s1", "WAITING")
    assert caught.value.retry_after is not None and 55 < caught.value.retry_after <= 61
    assert caught.value.attempts == 1 and len(rec.requests) == 1


async def test_a_callers_session_is_used_and_left_open(tiny: tuple[Recorder, str]) -> None:
    rec, url = tiny
    async with aiohttp.ClientSession() as session:
        async with SmsClient(url, session=session, retry=FAST) as client:
            await client.change_state("s1", "WAITING")
        assert not session.closed and len(rec.requests) == 1
        with pytest.raises(ConfigError, match="session"):
            SmsClient(url, session=session, verify_tls=False)


# --- configuration ------------------------------------------------------------------------


def test_endpoint_for_region() -> None:
    assert endpoint_for_region("cn-north-4") == "https://sms.cn-north-4.myhuaweicloud.com"
    assert endpoint_for_region("ap-southeast-3") == "https://sms.ap-southeast-3.myhuaweicloud.com"
    assert endpoint_for_region("ru-moscow-1") == "https://sms-api.ru-moscow-1.myhuaweicloud.com"
    for bad in ("", "CN-NORTH-4", "cn north", "evil.com/x", "cn-north-4.evil.com"):
        with pytest.raises(ConfigError, match="region"):
            endpoint_for_region(bad)


def test_exactly_one_of_endpoint_and_region() -> None:
    assert (
        SmsClient(region="ru-moscow-1").endpoint == "https://sms-api.ru-moscow-1.myhuaweicloud.com"
    )
    assert SmsClient("http://127.0.0.1:8080/").endpoint == "http://127.0.0.1:8080"
    with pytest.raises(ConfigError, match="exactly one"):
        SmsClient()
    with pytest.raises(ConfigError, match="exactly one"):
        SmsClient("https://x.example", region="cn-north-4")
    for bad in ("ftp://x.example", "sms.cn-north-4.myhuaweicloud.com", "https://x.example/?a=b"):
        with pytest.raises(ConfigError, match="endpoint"):
            SmsClient(bad)
    with pytest.raises(ConfigError) as caught:
        SmsClient("https://user:hunter2@x.example")
    assert "hunter2" not in str(caught.value)


def test_from_env_resolves_endpoint_and_auth() -> None:
    env = {"SMS_FLOW_REGION": "ru-moscow-1", "SMS_FLOW_TOKEN": TOKEN}
    client = SmsClient.from_env(env)
    assert client.endpoint == "https://sms-api.ru-moscow-1.myhuaweicloud.com"
    assert "TokenAuth" in repr(client)
    env = {
        "SMS_FLOW_ENDPOINT": "http://127.0.0.1:9",
        "CLOUD_SDK_AK": AK,
        "CLOUD_SDK_SK": SK,
        "CLOUD_SDK_PROJECT_ID": PROJECT,
    }
    client = SmsClient.from_env(env, retry=FAST)
    assert client.endpoint == "http://127.0.0.1:9" and client.retry == FAST
    assert "AkSkAuth" in repr(client)
    assert_no_secret(repr(client))
    # an explicit option wins over the environment
    assert SmsClient.from_env(env, region="cn-north-4").endpoint.startswith(
        "https://sms.cn-north-4"
    )


def test_from_env_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as caught:
        SmsClient.from_env({"SMS_FLOW_TOKEN": TOKEN})
    assert "SMS_FLOW_ENDPOINT" in str(caught.value) and "SMS_FLOW_REGION" in str(caught.value)
    assert_no_secret(caught.value)
    with pytest.raises(ConfigError, match="both"):
        SmsClient.from_env(
            {"SMS_FLOW_ENDPOINT": "https://x.example", "SMS_FLOW_REGION": "cn-north-4"}
        )


def test_tls_options_are_checked(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="ca_file"):
        SmsClient("https://x.example", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="verify_tls"):
        SmsClient("https://x.example", ca_file=str(tmp_path / "missing.pem"), verify_tls=False)


# --- transport failures -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_a_connect_error_retried_to_the_last_attempt() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    async with SmsClient(endpoint, auth=TokenAuth(TOKEN), retry=FAST) as client:
        with pytest.raises(ConnectError) as caught:
            await client.change_state("s1", "WAITING")
    # Refused at once each time: a connect error, not a timeout of FAST.timeout per attempt.
    assert type(caught.value) is ConnectError
    assert "cannot connect" in str(caught.value)
    assert caught.value.attempts == FAST.attempts
    assert endpoint in str(caught.value) and "SMS_FLOW_ENDPOINT" in str(caught.value)
    assert_no_secret(caught.value)


async def test_unopened_client_says_how_to_open() -> None:
    client = SmsClient("http://127.0.0.1:9")
    with pytest.raises(UsageError, match="async with") as caught:
        await client.change_state("s1", "WAITING")
    assert isinstance(caught.value, RuntimeError)  # what it was before it had a class
    await client.open()
    await client.aclose()
    with pytest.raises(UsageError, match="session was closed"):
        await client.get_source("s1")


# --- against the simulator ----------------------------------------------------------------

PUT_ROUTE = "PUT /v3/sources/{source_id}/changestate"
GET_ROUTE = "GET /v3/sources/{source_id}"
POST_ROUTE = "POST /v3/sources"


pytestmark = pytest.mark.simulator(token=TOKEN, ak=AK, sk=SK, project_id=PROJECT, seed=7)


@pytest.fixture
async def sid(sim: Simulator) -> str:
    return await sim.register("web-01")


def client_for(sim: Simulator, auth: Auth | None = None, **options: Any) -> SmsClient:
    options.setdefault("retry", FAST)
    return SmsClient(sim.url, auth=auth or TokenAuth(TOKEN), **options)


def count(sim: Simulator, route: str, status: int | str | None = None) -> int:
    """Requests the simulator saw on ``route`` (with ``status``, or all of them)."""
    by_status = sim.stats.requests.get(route, {})
    return sum(by_status.values()) if status is None else by_status.get(status, 0)


def total_requests(sim: Simulator) -> int:
    return sum(sum(by_status.values()) for by_status in sim.stats.requests.values())


async def fail_first_then_heal(
    sim: Simulator, faults: Faults, call: Awaitable[PushResult]
) -> PushResult:
    """Start ``call`` with ``faults`` on; heal the simulator once the first request is in."""
    sim.set_faults(faults)
    task = asyncio.ensure_future(call)
    await eventually(lambda: count(sim, PUT_ROUTE) >= 1)
    sim.set_faults(Faults())
    return await task


def slow_retry(**options: Any) -> RetryPolicy:
    """A first backoff of exactly base_delay (with MaxJitter): time to change the faults."""
    values: dict[str, Any] = {"attempts": 4, "base_delay": 0.2, "max_delay": 0.2, "timeout": 2.0}
    return RetryPolicy(**{**values, **options})


@pytest.mark.parametrize("mode", ["token", "aksk"])
async def test_push_changes_the_state(sim: Simulator, sid: str, mode: str) -> None:
    auth: Auth = TokenAuth(TOKEN) if mode == "token" else AkSkAuth(AK, SK, PROJECT)
    async with client_for(sim, auth) as client:
        result = await client.change_state(sid, CopyState.WAITING, "setting")
    assert (result.source_id, result.status, result.attempts) == (sid, 200, 1)
    assert sim.source(sid).pair == (CopyState.WAITING, MigrationCycle.SETTING)
    assert result.request_id and sim.history(sid)[-1].request_id == result.request_id


@pytest.mark.parametrize("mode", ["token", "aksk"])
async def test_wrong_credentials_are_an_auth_error_not_retried(
    sim: Simulator, sid: str, mode: str
) -> None:
    wrong = "tok-" + "W" * 60 if mode == "token" else "SKwrong-secret-9876543210"
    auth: Auth = TokenAuth(wrong) if mode == "token" else AkSkAuth(AK, wrong, PROJECT)
    async with client_for(sim, auth) as client:
        with pytest.raises(AuthError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    err = caught.value
    assert (err.status, err.error_code, err.attempts) == (403, "SMS.9004", 1)
    assert err.request_id and err.request_id in str(err)
    assert count(sim, PUT_ROUTE) == 1 and count(sim, PUT_ROUTE, 403) == 1
    assert sim.source(sid).migrationcycle is MigrationCycle.CHECKING
    assert wrong not in str(err) and wrong not in repr(err)
    assert_no_secret(err, repr(err), repr(client))


async def test_unknown_source_is_not_found(sim: Simulator) -> None:
    async with client_for(sim) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.change_state("no-such-source", "WAITING")
        with pytest.raises(NotFoundError):
            await client.get_source("no-such-source")
    assert caught.value.status == 404 and caught.value.attempts == 1
    assert caught.value.request_id and "check the source_id" in str(caught.value)
    assert count(sim, PUT_ROUTE) == 1 and count(sim, GET_ROUTE) == 1


@pytest.mark.simulator(token=TOKEN, strict=True)
async def test_refused_change_is_a_400_with_error_param_not_retried(sim: Simulator) -> None:
    sid = await sim.register("web-01")
    async with client_for(sim) as client:
        with pytest.raises(ApiError) as caught:
            await client.change_state(sid, "FINISHED", "cutovered")
    err = caught.value
    assert type(err) is ApiError
    assert (err.status, err.error_code, err.attempts) == (400, "SMS.SIM1", 1)
    assert err.error_param == ["FINISHED/cutovered"] and err.request_id
    assert count(sim, PUT_ROUTE) == 1


async def test_5xx_is_retried_then_succeeds(sim: Simulator, sid: str) -> None:
    signer = CountingAuth(AkSkAuth(AK, SK, PROJECT))
    async with client_for(sim, signer, retry=slow_retry(), rng=MaxJitter()) as client:
        result = await fail_first_then_heal(
            sim, Faults(error_rate=1.0), client.change_state(sid, "WAITING", "setting")
        )
    assert result.attempts == 2 and result.status == 200
    assert count(sim, PUT_ROUTE, 500) == 1 and count(sim, PUT_ROUTE, 200) == 1
    assert sim.source(sid).migrationcycle is MigrationCycle.SETTING
    assert signer.calls == 2  # signed afresh for the retry


async def test_429_waits_for_retry_after(sim: Simulator, sid: str) -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)
    async with client_for(sim, retry=policy, rng=MaxJitter()) as client:
        result = await fail_first_then_heal(
            sim,
            Faults(throttle_rate=1.0, retry_after=0.4),
            client.change_state(sid, "WAITING", "setting"),
        )
    assert result.attempts == 2 and count(sim, PUT_ROUTE, 429) == 1
    assert result.elapsed >= 0.4  # the backoff alone would have been 1 ms
    assert sim.source(sid).migrationcycle is MigrationCycle.SETTING


async def test_retry_after_beyond_total_time_gives_up_at_once(
    sim: Simulator, sid: str, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    sim.set_faults(Faults(throttle_rate=1.0, retry_after=30))
    policy = RetryPolicy(attempts=5, total_time=2.0)
    async with client_for(sim, retry=policy) as client:
        with pytest.raises(ThrottledError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    err = caught.value
    assert (err.status, err.error_code, err.retry_after, err.attempts) == (429, "APIG.0308", 30, 1)
    assert count(sim, PUT_ROUTE) == 1
    # It gave up on the answer, without waiting: no retry was scheduled.
    [give_up] = [e for e in debug_logs if e["event"] == "sms.give_up"]
    assert give_up["why"].startswith("Retry-After 30 s does not fit in the ")
    assert [e for e in debug_logs if e["event"] == "sms.retry"] == []


async def test_dropped_connection_is_retried(sim: Simulator, sid: str) -> None:
    async with client_for(sim, retry=slow_retry(), rng=MaxJitter()) as client:
        result = await fail_first_then_heal(
            sim, Faults(drop_rate=1.0), client.change_state(sid, "WAITING", "setting")
        )
    assert result.attempts == 2 and count(sim, PUT_ROUTE, "dropped") == 1
    assert sim.source(sid).migrationcycle is MigrationCycle.SETTING


async def test_dropped_connections_end_in_connect_error(sim: Simulator, sid: str) -> None:
    sim.set_faults(Faults(drop_rate=1.0))
    async with client_for(sim) as client:
        with pytest.raises(ConnectError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    assert caught.value.attempts == FAST.attempts == count(sim, PUT_ROUTE, "dropped")
    assert sim.url in str(caught.value)


async def test_applied_then_503_is_pushed_again_and_succeeds(sim: Simulator, sid: str) -> None:
    async with client_for(sim, retry=slow_retry(), rng=MaxJitter()) as client:
        result = await fail_first_then_heal(
            sim, Faults(apply_then_fail_rate=1.0), client.change_state(sid, "WAITING", "setting")
        )
    assert result.attempts == 2
    assert count(sim, PUT_ROUTE, 503) == 1 and count(sim, PUT_ROUTE, 200) == 1
    assert sim.stats.puts_per_source[sid] == 2
    # the first push landed; the retry pushed the same absolute state, changing nothing more
    assert [entry.to_pair for entry in sim.history(sid)] == [
        (CopyState.WAITING, MigrationCycle.SETTING)
    ]
    assert sim.stats.changestate.get("applied") == 1 and sim.stats.changestate.get("noop") == 1


async def test_retries_are_bounded_by_attempts(sim: Simulator, sid: str) -> None:
    sim.set_faults(Faults(error_rate=1.0))
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)
    async with client_for(sim, retry=policy) as client:
        with pytest.raises(ServerError) as caught:
            await client.change_state(sid, "WAITING", "setting")
        with pytest.raises(ServerError) as get_caught:
            await client.get_source(sid)
    assert caught.value.attempts == 3 and count(sim, PUT_ROUTE) == 3
    assert caught.value.error_code == "SMS.2007" and caught.value.request_id
    assert get_caught.value.attempts == 3 and count(sim, GET_ROUTE) == 3


async def test_retries_are_bounded_by_total_time(
    sim: Simulator, sid: str, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    sim.set_faults(Faults(error_rate=1.0))
    policy = RetryPolicy(attempts=1000, base_delay=0.05, max_delay=0.05, total_time=0.4)
    async with client_for(sim, retry=policy) as client:
        with pytest.raises(ServerError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    assert 2 <= caught.value.attempts < 1000
    assert count(sim, PUT_ROUTE) == caught.value.attempts
    # It stopped for total_time, not for attempts (1000 attempts would take 50 s).
    [give_up] = [e for e in debug_logs if e["event"] == "sms.give_up"]
    assert give_up["why"] == "the next attempt would start after total_time (0.4 s)"
    assert give_up["attempt"] == caught.value.attempts


async def test_slow_answers_time_out_after_the_attempts(sim: Simulator, sid: str) -> None:
    sim.set_faults(Faults(latency=1.0))
    policy = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001, timeout=0.15)
    async with client_for(sim, retry=policy) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    assert caught.value.attempts == 2
    assert "within 0.15 s" in str(caught.value) and sim.url in str(caught.value)
    # Both attempts were abandoned before the 1 s latency ran out: none was answered.
    await eventually(lambda: count(sim, PUT_ROUTE, "cancelled") == 2)
    assert count(sim, PUT_ROUTE) == 2
    assert sim.source(sid).migrationcycle is MigrationCycle.CHECKING


async def test_total_time_caps_a_single_attempt(sim: Simulator, sid: str) -> None:
    sim.set_faults(Faults(latency=1.0))
    policy = RetryPolicy(attempts=5, timeout=5.0, total_time=0.3)
    async with client_for(sim, retry=policy) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    assert caught.value.attempts == 1
    # The attempt's limit was what was left of total_time (0.3 s), not the 5 s timeout ...
    limit = re.search(r"within ([0-9.]+) s", str(caught.value))
    assert limit is not None and 0 < float(limit[1]) <= 0.3
    # ... so the request was abandoned before the 1 s latency ran out: it changed nothing.
    await eventually(lambda: count(sim, PUT_ROUTE, "cancelled") == 1)
    assert count(sim, PUT_ROUTE) == 1
    assert sim.source(sid).migrationcycle is MigrationCycle.CHECKING


async def test_newer_change_supersedes_a_retry(sim: Simulator, sid: str) -> None:
    other = await sim.register("web-02")
    async with client_for(sim, retry=slow_retry(), rng=MaxJitter()) as client:
        sim.set_faults(Faults(error_rate=1.0))
        older = asyncio.ensure_future(client.change_state(sid, "WAITING", "setting"))
        unrelated = asyncio.ensure_future(client.change_state(other, "WAITING", "setting"))
        await eventually(lambda: count(sim, PUT_ROUTE) >= 2)
        sim.set_faults(Faults())
        newer = await client.change_state(sid, "WAITING", "cutovered")
        with pytest.raises(SupersededError) as caught:
            await older
        assert (await unrelated).attempts == 2  # another source's change supersedes nothing
        assert not client._latest  # only in-flight sources are remembered
    assert newer.attempts == 1 and sid in str(caught.value)
    assert sim.source(sid).pair == (CopyState.WAITING, MigrationCycle.CUTOVERED)
    assert [e.to_pair.migrationcycle for e in sim.history(sid)] == [MigrationCycle.CUTOVERED]
    assert sim.stats.puts_per_source[sid] == 1  # the older call sent nothing after the newer


@pytest.mark.parametrize(
    ("source_id", "copystate", "cycle", "error"),
    [
        ("x" * 256, "WAITING", None, InvalidRequestError),
        ("a/b", "WAITING", None, InvalidRequestError),
        ("..", "WAITING", None, InvalidRequestError),
        ("", "WAITING", None, InvalidRequestError),
        ("ok-id", "WAITNG", None, UnknownValueError),
        ("ok-id", None, "launched", UnknownValueError),
        ("ok-id", None, "testing", UnknownValueError),
        ("ok-id", None, None, InvalidRequestError),
    ],
    ids=["overlong", "slash", "dotdot", "empty-id", "copystate", "cycle", "sdk-cycle", "empty"],
)
async def test_bad_input_sends_nothing(
    sim: Simulator,
    source_id: str,
    copystate: str | None,
    cycle: str | None,
    error: type[InputError],
) -> None:
    async with client_for(sim) as client:
        with pytest.raises(error):
            await client.change_state(source_id, copystate, cycle)
        with pytest.raises(UnknownValueError):
            await client.list_sources(state="bogus")
    assert total_requests(sim) == 0


async def test_read_side_and_registration(sim: Simulator) -> None:
    async with client_for(sim, AkSkAuth(AK, SK, PROJECT)) as client:
        first = await client.register_source("db-01", ip="10.0.0.7")
        ids = [first, *await sim.register_many(4)]
        await client.change_state(ids[1], "INIT", "replicating")
        server = await client.get_source(first)
        assert (server.id, server.name, server.state, server.migration_cycle) == (
            first,
            "db-01",
            "waiting",
            "checking",
        )
        assert server.copystate is CopyState.WAITING
        page = await client.list_sources(limit=2, offset=1)
        assert page.count == 5 and [s.id for s in page.source_servers] == ids[1:3]
        assert [s.id async for s in client.iter_sources(page_size=2)] == ids
        started = await client.list_sources(state=CopyState.INIT, migration_cycle="replicating")
        assert [s.id for s in started.source_servers] == [ids[1]]
        assert started.source_servers[0].state == "initialize"
        assert [s.id async for s in client.iter_sources(name="db-")] == [first]
    assert sim.source(first).extra.get("ip") == "10.0.0.7"


async def test_registration_is_retried_only_when_surely_not_processed(sim: Simulator) -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)
    async with client_for(sim, retry=policy) as client:
        sim.set_faults(Faults(error_rate=1.0))
        with pytest.raises(ServerError) as server_error:
            await client.register_source("db-01")
        sim.set_faults(Faults(drop_rate=1.0))
        with pytest.raises(ConnectError) as dropped:
            await client.register_source("db-01")
        sim.set_faults(Faults(throttle_rate=1.0, retry_after=0))
        with pytest.raises(ThrottledError) as throttled:
            await client.register_source("db-01")
    assert server_error.value.attempts == 1 and dropped.value.attempts == 1
    assert "may have been processed" in str(dropped.value)
    assert throttled.value.attempts == 3
    assert count(sim, POST_ROUTE) == 1 + 1 + 3 and sim.sources() == []


@pytest.fixture
def debug_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every event the client logs, debug included, whatever level the suite runs at."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


async def test_logs_say_why_and_hold_no_secret(
    sim: Simulator, sid: str, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    sim.set_faults(Faults(error_rate=1.0))
    policy = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001)
    async with client_for(sim, retry=policy) as client:
        with pytest.raises(ServerError):
            await client.change_state(sid, "WAITING", "setting")
    logs = debug_logs
    by_event = {entry["event"]: entry for entry in logs}
    retry, give_up = by_event["sms.retry"], by_event["sms.give_up"]
    assert retry["log_level"] == "info" and retry["reason"] == "HTTP 500 SMS.2007"
    assert retry["delay"] <= 0.001 and retry["source_id"] == sid and retry["attempt"] == 1
    assert retry["request_id"]
    assert give_up["log_level"] == "warning" and give_up["attempt"] == 2
    assert "attempts" in give_up["why"]
    assert {e["log_level"] for e in logs if e["event"] == "sms.answer"} == {"debug"}
    assert_no_secret(logs)


def test_a_real_endpoint_without_credentials_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(
        ConfigError, match=r"no credentials for https://sms\.cn-north-4\.myhuaweicloud\.com"
    ) as info:
        SmsClient.from_env({"SMS_FLOW_REGION": "cn-north-4"})
    assert "SMS_FLOW_TOKEN" in str(info.value) and "CLOUD_SDK_AK" in str(info.value)
    local = SmsClient.from_env({"SMS_FLOW_ENDPOINT": "http://127.0.0.1:9"})
    assert local.endpoint == "http://127.0.0.1:9"


# --- what a failed call says about the service: maybe_applied ------------------------------


async def test_maybe_applied_says_whether_any_attempt_may_have_been_processed(
    sim: Simulator, sid: str
) -> None:
    """H6's engine reads the source back before it records a failure when this is True."""
    once = RetryPolicy(attempts=1)
    async with client_for(sim, retry=once) as client:
        cases: list[tuple[Faults, type[ApiError | TransportError], bool]] = [
            (Faults(error_rate=1.0), ServerError, True),
            (Faults(drop_rate=1.0), ConnectError, True),
            (Faults(throttle_rate=1.0, retry_after=0), ThrottledError, False),
        ]
        for faults, kind, maybe in cases:
            sim.set_faults(faults)
            with pytest.raises((ApiError, TransportError)) as caught:
                await client.change_state(sid, "WAITING", "setting")
            assert type(caught.value) is kind and caught.value.maybe_applied is maybe, faults
        sim.set_faults(Faults())
        with pytest.raises(NotFoundError) as unknown:
            await client.change_state("no-such-source", "WAITING")
    assert unknown.value.maybe_applied is False
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    async with SmsClient(endpoint, retry=FAST) as refused_client:
        with pytest.raises(ConnectError) as refused:
            await refused_client.change_state("s1", "WAITING")
    assert refused.value.maybe_applied is False and refused.value.attempts == FAST.attempts


async def test_a_429_after_a_5xx_may_have_been_applied(sim: Simulator, sid: str) -> None:
    """The final error speaks for every attempt: the first one's 503 may have landed."""
    policy = slow_retry(attempts=3)
    async with client_for(sim, retry=policy, rng=MaxJitter()) as client:
        sim.set_faults(Faults(apply_then_fail_rate=1.0))
        task = asyncio.ensure_future(client.change_state(sid, "WAITING", "setting"))
        await eventually(lambda: count(sim, PUT_ROUTE) >= 1)
        sim.set_faults(Faults(throttle_rate=1.0, retry_after=0))
        with pytest.raises(ThrottledError) as caught:
            await task
    assert caught.value.maybe_applied is True and caught.value.attempts == 3
    assert count(sim, PUT_ROUTE, 503) == 1 and count(sim, PUT_ROUTE, 429) == 2
    # It did land: the service applied the first attempt before answering 503.
    assert sim.source(sid).migrationcycle is MigrationCycle.SETTING


async def test_a_timeout_may_have_been_applied(sim: Simulator, sid: str) -> None:
    sim.set_faults(Faults(latency=1.0))
    policy = RetryPolicy(attempts=1, timeout=0.15)
    async with client_for(sim, retry=policy) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    assert caught.value.maybe_applied is True


# --- retries that use the time they are given ----------------------------------------------

# The default policy (no bound on attempts, total_time 60 s) with short sleeps, for speed.
PATIENT = RetryPolicy(base_delay=0.01, max_delay=0.05, timeout=2.0)


async def test_an_outage_shorter_than_total_time_loses_no_call(
    sms_simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """The service stopped, then back on the same port: the call waits it out and succeeds."""
    port = _closed_port()
    config: dict[str, Any] = {"token": TOKEN, "port": port, "state_file": tmp_path / "sim.sqlite"}
    server = await sms_simulator_factory(**config)
    sid = await server.register("web-01")
    await server.stop()
    async with SmsClient(server_url(port), auth=TokenAuth(TOKEN), retry=PATIENT) as client:
        call = asyncio.ensure_future(client.change_state(sid, "WAITING", "setting"))
        # Proof of an outage longer than the old budget of 5 attempts: 8 refused connections.
        await eventually(lambda: client.stats().connect >= 8, timeout=30)
        assert not call.done()
        await server.start()  # the same port, the same sources
        result = await call
    assert result.status == 200 and result.attempts >= 9
    assert server.source(sid).pair == (CopyState.WAITING, MigrationCycle.SETTING)
    stats = client.stats()
    assert stats.connect == result.attempts - 1 == stats.retries


def server_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("faults", "cause"),
    [(Faults(drop_rate=1.0), "dropped"), (Faults(error_rate=1.0), "server")],
    ids=["dropped", "5xx"],
)
async def test_a_window_of_failures_is_ridden_out(
    sim: Simulator, sid: str, faults: Faults, cause: str
) -> None:
    async with client_for(sim, retry=PATIENT) as client:
        sim.set_faults(faults)
        call = asyncio.ensure_future(client.change_state(sid, "WAITING", "setting"))
        await eventually(lambda: getattr(client.stats(), cause) >= 8, timeout=30)
        assert not call.done()
        sim.set_faults(Faults())
        result = await call
    assert result.attempts >= 9 and count(sim, PUT_ROUTE, 200) == 1
    assert sim.source(sid).migrationcycle is MigrationCycle.SETTING


async def test_stats_count_the_retries_by_cause(sim: Simulator, sid: str) -> None:
    policy = slow_retry(attempts=3)
    async with client_for(sim, retry=policy, rng=MaxJitter()) as client:
        assert client.stats() == ClientStats() and client.stats().retries == 0
        for faults in (
            Faults(drop_rate=1.0),
            Faults(error_rate=1.0),
            Faults(throttle_rate=1.0, retry_after=0),
        ):
            sent = count(sim, PUT_ROUTE)
            sim.set_faults(faults)
            push = asyncio.ensure_future(client.change_state(sid, "WAITING", "setting"))
            await eventually(lambda: count(sim, PUT_ROUTE) > sent)  # noqa: B023
            sim.set_faults(Faults())
            assert (await push).attempts == 2
        sim.set_faults(Faults(latency=5.0))
        task = asyncio.ensure_future(client.get_source(sid))
        await eventually(lambda: count(sim, GET_ROUTE) >= 1)
        sim.set_faults(Faults())
        await task  # the first GET timed out after 2 s; the second was answered at once
    endpoint = server_url(_closed_port())
    async with SmsClient(endpoint, retry=policy) as refused:
        with pytest.raises(ConnectError):
            await refused.get_source("s1")
    assert client.stats() == ClientStats(connect=0, dropped=1, timeout=1, throttled=1, server=1)
    assert client.stats().retries == 4
    assert refused.stats().by_cause() == {
        "connect": 2,
        "dropped": 0,
        "timeout": 0,
        "429": 0,
        "5xx": 0,
    }


# --- every answer through the redactor --------------------------------------------------------


async def test_a_2xx_answer_echoing_credentials_is_redacted_before_use(
    tiny: tuple[Recorder, str],
) -> None:
    rec, url = tiny

    def echo_source(request: web.Request) -> web.Response:
        credential = request.headers.get("X-Auth-Token") or request.headers["Authorization"]
        source: dict[str, Any] = {"id": "s1", "state": "waiting", "migration_cycle": "checking"}
        # A server that knows the SK cannot exist, but if an answer held it, it goes too.
        source["echo"] = {**request.headers, "sk": SK}
        return web.json_response(source, headers={"X-Request-Id": credential})

    rec.answers["s1"] = echo_source
    for auth, own in ((TokenAuth(TOKEN), TOKEN), (AkSkAuth(AK, SK, PROJECT), SK)):
        async with SmsClient(url, auth=auth, retry=FAST) as client:
            pushed = await client.change_state("s1", "WAITING")
            server = await client.get_source("s1")
        sent = rec.requests[-1]["headers"]
        signature = sent.get("Authorization", "").rpartition("Signature=")[2]
        shown = server.model_dump_json()
        assert pushed.request_id == "<redacted>" and server.state == "waiting"
        assert shown.count("<redacted>") == (1 if own == TOKEN else 2)
        for secret in filter(None, (own, signature)):
            assert secret not in shown and secret not in repr(pushed)


async def test_a_2xx_that_is_not_a_source_quotes_no_credential(
    tiny: tuple[Recorder, str],
) -> None:
    rec, url = tiny
    rec.answers["s1"] = lambda request: web.json_response(dict(request.headers))
    async with SmsClient(url, auth=TokenAuth(TOKEN), retry=FAST) as client:
        with pytest.raises(TransportError, match="not a source server") as caught:
            await client.get_source("s1")
    assert "<redacted>" in str(caught.value)
    assert_no_secret(caught.value)


# --- bounded answers ----------------------------------------------------------------------

HUGE = 100 * 1024 * 1024


def gzip_of_zeros(size: int) -> bytes:
    """``size`` zero bytes, gzipped a MiB at a time (100 MiB make about 102 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(size >> 20)), packer.flush()])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_of_zeros(HUGE)


@pytest.fixture
async def huge(bomb: bytes) -> AsyncIterator[str]:
    """An app whose answers are too large: streamed, gzipped, or declared so up front."""

    async def streamed(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"Content-Type": "application/json"})
        await answer.prepare(request)
        block = b" " * (1 << 20)
        with contextlib.suppress(ConnectionResetError):  # the client stops reading
            for _ in range(HUGE >> 20):
                await answer.write(block)
            await answer.write_eof()
        return answer

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b" " * (ANSWER_MAX_BYTES + 1), content_type="application/json")

    async def page(request: web.Request) -> web.Response:
        """A page of 200 sources as large as SMS's get (each with 4 KB of fields): accepted."""
        sources = [
            {"id": f"s{i}", "state": "waiting", "migration_cycle": "checking", "pad": "x" * 4096}
            for i in range(200)
        ]
        return web.json_response({"count": 200, "source_servers": sources})

    app = web.Application()
    app.router.add_get("/v3/sources/streamed", streamed)
    app.router.add_get("/v3/sources/gzipped", gzipped)
    app.router.add_get("/v3/sources/declared", declared)
    app.router.add_get("/v3/sources", page)
    runner, url = await _serve(app)
    try:
        yield url
    finally:
        await runner.cleanup()


async def test_an_answer_over_the_cap_is_a_clear_error(huge: str) -> None:
    async with SmsClient(huge, retry=FAST) as client:
        page = await client.list_sources()
        assert len(page.source_servers) == 200
        for kind in ("streamed", "gzipped", "declared"):
            with pytest.raises(AnswerTooLargeError) as caught:
                await client.get_source(kind)
            error = caught.value
            assert isinstance(error, ApiError) and error.status == 200 and error.attempts == 1
            assert error.limit == ANSWER_MAX_BYTES == 8 * 1024 * 1024
            assert error.maybe_applied is True  # a 2xx: the service did answer it
            message = str(error)
            assert f"GET /v3/sources/{kind}" in message and huge in message
            assert "over 8,388,608 bytes" in message and "check that the endpoint" in message


async def test_memory_stays_flat_under_huge_answers(huge: str, spawn: Spawner) -> None:
    """A 100 MiB body and 102 KB of gzip that expands to 100 MiB: the peak RSS barely moves."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from sms_flow.client import SmsClient
        from sms_flow.errors import AnswerTooLargeError

        def peak_kb():
            with open("/proc/self/status") as status:
                return next(int(l.split()[1]) for l in status if l.startswith("VmHWM"))

        async def main(url):
            async with SmsClient(url) as client:
                await client.list_sources()  # everything imported and warm
                before = peak_kb()
                for kind in ("streamed", "gzipped"):
                    try:
                        await client.get_source(kind)
                    except AnswerTooLargeError:
                        pass
                    else:
                        sys.exit(f"{kind}: no AnswerTooLargeError")
                print(before, peak_kb())

        asyncio.run(main(sys.argv[1]))
        """
    )
    child = spawn.python("-c", script, huge)
    assert await child.await_exit() == 0, child.stderr
    before, after = map(int, child.stdout.split())
    # The cap is 8 MiB: reading up to it (and a chunk more) may add about twice that.
    assert after - before < 32 * 1024, f"peak RSS grew by {after - before} kB"


# --- reading the states of many sources --------------------------------------------------

LIST_ROUTE = "GET /v3/sources"


async def read_all(client: Any, ids: list[str], **options: Any) -> dict[str, Any]:
    """Every source of ``ids`` read by ``client`` (an SmsClient, or one wrapped by a rate limit)."""
    from sms_flow.client import read_sources

    return {source_id: src async for source_id, src in read_sources(client, ids, **options)}


async def test_read_sources_pages_through_the_listing_and_stops_once_all_are_found(
    sim: Simulator,
) -> None:
    ids = await sim.register_many(450)
    await sim.move(ids[3], pair="INIT/replicating")
    async with client_for(sim) as client:
        # 60 ids on the first page of 200: one page read, no GET of its own.
        first = await read_all(client, ids[:60])
        assert set(first) == set(ids[:60]) and count(sim, LIST_ROUTE) == 1
        assert count(sim, GET_ROUTE) == 0
        assert first[ids[3]].pair == (CopyState.INIT, MigrationCycle.REPLICATING)
        # One id the service does not know: every page is read, then that id alone is asked for.
        states = await read_all(client, [*ids[100:160], "no-such-source"])
        assert count(sim, LIST_ROUTE) == 1 + 3 and count(sim, GET_ROUTE) == 1
        assert states.pop("no-such-source") is None
        assert {s.id for s in states.values()} == set(ids[100:160])
        # Few ids: one GET each, the listing left alone.
        few = await read_all(client, ids[:5] + ids[:5], concurrency=2)
    assert set(few) == set(ids[:5])
    assert count(sim, LIST_ROUTE) == 4 and count(sim, GET_ROUTE) == 1 + 5


@pytest.mark.parametrize("status", [403, 404])
async def test_read_sources_reads_each_source_when_listing_is_refused(
    sim: Simulator, status: int, debug_logs: list[MutableMapping[str, Any]]
) -> None:
    ids = await sim.register_many(60)
    front = Proxy(sim.url)
    front.modes = {"GET": refuse_listing(status)}
    await front.start()
    try:
        async with SmsClient(front.url, auth=TokenAuth(TOKEN), retry=FAST) as client:
            states = await read_all(client, [*ids, "no-such-source"], concurrency=8)
    finally:
        await front.stop()
    assert states.pop("no-such-source") is None
    assert {source_id: src.id for source_id, src in states.items()} == {i: i for i in ids}
    assert count(sim, LIST_ROUTE) == 0 and count(sim, GET_ROUTE) == 61
    [refused] = [e for e in debug_logs if e["event"] == "sms.listing_refused"]
    assert refused["status"] == status and refused["sources"] == 61
    assert refused["log_level"] == "warning" and "GET /v3/sources/{source_id}" in refused["then"]


def refuse_listing(status: int) -> Callable[[web.Request, dict[str, str]], web.Response | None]:
    """A proxy mode: ``GET /v3/sources`` refused with ``status``, the rest forwarded."""
    body = {"error_code": "SMS.9004" if status == 403 else "APIG.0101", "error_msg": "no"}

    def mode(request: web.Request, headers: dict[str, str]) -> web.Response | None:
        if request.path == "/v3/sources":
            return web.json_response(body, status=status)
        return None

    return mode


async def test_read_sources_raises_what_it_cannot_get_past(sim: Simulator) -> None:
    ids = await sim.register_many(3)
    async with client_for(sim, TokenAuth("tok-" + "W" * 60)) as client:
        with pytest.raises(AuthError):
            await read_all(client, ids)
        with pytest.raises(InvalidRequestError, match="concurrency is 0"):
            client.read_sources(ids, concurrency=0)


async def test_read_sources_ends_when_a_wait_for_the_rate_limit_is_interrupted(
    sim: Simulator,
) -> None:
    """A run that stops interrupts the reads waiting for a rate-limit slot: the reader raises
    WaitInterrupted at once (it waited for ever when a reading task died of it unseen)."""
    from sms_flow.errors import WaitInterrupted
    from sms_flow.wave.ratelimit import interrupt_waits, limited

    ids = await sim.register_many(3)
    async with client_for(sim) as client:
        slow = limited(client, 0.01)  # one request every 100 s: the second one waits
        reading = asyncio.create_task(
            read_all(slow, ids, concurrency=2)  # the wrapper reads as the client does
        )
        await eventually(lambda: count(sim, "GET /v3/sources/{source_id}") >= 1)
        interrupt_waits(slow)
        with pytest.raises(WaitInterrupted):
            await asyncio.wait_for(reading, 10)


@pytest.mark.slow
async def test_a_wave_of_60_ids_runs_without_the_list_permission(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(60)
    front = Proxy(sim.url)
    front.modes = {"GET": refuse_listing(403)}
    await front.start()
    spec = WaveSpec.model_validate(
        {"name": "unlisted", "sources": {"ids": ids}, "target": "WAITING/setting"}
    )
    session = WaveSession(
        spec,
        endpoint=front.url,
        journal_path=tmp_path / "journal.sqlite",
        client_options={"auth": TokenAuth(TOKEN), "retry": FAST},
    )
    try:
        async with session:
            report = await session.runner.run()
    finally:
        await front.stop()
    assert report.ok and len(report.sources) == 60
    assert count(sim, LIST_ROUTE) == 0
    for source_id in ids:
        assert sim.source(source_id).pair == (CopyState.WAITING, MigrationCycle.SETTING)


@pytest.mark.slow
async def test_a_wave_rides_out_an_outage_and_every_source_reaches_the_target(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(20)
    spec = WaveSpec.model_validate({"name": "outage", "sources": {"ids": ids}, "concurrency": 10})
    session = WaveSession(
        spec,
        endpoint=sim.url,
        journal_path=tmp_path / "journal.sqlite",
        client_options={"auth": TokenAuth(TOKEN), "retry": PATIENT},
    )
    async with session:
        wave = asyncio.ensure_future(session.runner.run())
        await eventually(lambda: sum(len(sim.history(i)) for i in ids) >= 10, timeout=30)
        sim.set_faults(Faults(drop_rate=1.0))  # the service goes away mid-wave ...
        # ... for longer than the old budget of 5 attempts a call: 6 drops per source in flight.
        await eventually(lambda: session.client.stats().dropped >= 60, timeout=60)
        sim.set_faults(Faults())
        report = await wave
    assert report.ok, report.to_dict()["failures"]
    for source_id in ids:
        assert sim.source(source_id).pair == (CopyState.FINISHED, MigrationCycle.CUTOVERED)


async def test_a_guarded_push_is_stopped_unsent_when_the_guard_raises(sim: Simulator) -> None:
    """The engine's lease check runs just before each push leaves: what it raises stops the
    push before anything is sent (a process paused past its lease sends nothing on waking)."""
    from sms_flow._guard import guarded
    from sms_flow.errors import LeaseLostError

    [source_id] = await sim.register_many(1)

    def lost() -> None:
        raise LeaseLostError("lease lapsed")

    async with client_for(sim) as client:
        with guarded(lost):
            assert (await client.get_source(source_id)).id == source_id  # reads are not guarded
            with pytest.raises(LeaseLostError, match="lease lapsed"):
                await client.change_state(source_id, "WAITING", "setting")
        await client.change_state(source_id, "WAITING", "setting")  # outside: sent
    assert count(sim, "PUT /v3/sources/{source_id}/changestate") == 1
    assert [str(h.to_pair) for h in sim.history(source_id)] == ["WAITING/setting"]
