"""Shared by the simulator's tests: raw HTTP against it, and the shapes its answers must have.

Raw requests go through an aiohttp ClientSession (the ``http`` fixture and :func:`call`);
signed ones through sms-flow's own AK/SK signer (:func:`signed`). Nothing of the HTTP layer
is mocked. The simulator is the suite's ``sim`` (``tests/conftest.py``); these tests run it
with ``pytestmark = SIMULATOR`` unless a test needs a configuration of its own.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from sms_flow.auth import AkSkAuth
from sms_flow.simulator import Simulator
from sms_flow.states import CopyState, MigrationCycle, StatePair

SIMULATOR = pytest.mark.simulator(service_delay=60.0)
"""The ``sim`` of these tests: the service's own moves wait a minute, so none happens unasked."""

AK, SK, PROJECT = "AKSIMTEST", "SKSIMTEST-secret", "proj-0001"
TOKEN = "tok-" + "x" * 40
HEX32 = re.compile(r"[0-9a-f]{32}")
AUTH_KEYS = {"error_code", "error_msg", "encoded_authorization_message", "error_param", "details"}
PUT_ROUTE = "PUT /v3/sources/{source_id}/changestate"


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def request_id(self) -> str:
        return self.headers["X-Request-Id"]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    give_up_after: float | None = None,
) -> Answer:
    if body is not None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    async with http.request(
        method,
        url,
        data=data,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=give_up_after),
    ) as resp:
        return Answer(resp.status, resp.headers.copy(), await resp.read())


async def signed(
    http: aiohttp.ClientSession,
    auth: AkSkAuth,
    method: str,
    url: str,
    body: Any = None,
) -> Answer:
    u = URL(url)
    data = json.dumps(body).encode() if body is not None else b""
    headers = auth.sign(method, u, {"Content-Type": "application/json"}, data)
    async with http.request(method, u, data=data or None, headers=headers) as resp:
        return Answer(resp.status, resp.headers.copy(), await resp.read())


def put_url(sim: Simulator | str, source_id: str) -> str:
    """The changestate URL of ``source_id`` on ``sim`` (a simulator or its base URL)."""
    base = sim if isinstance(sim, str) else sim.url
    return f"{base}/v3/sources/{source_id}/changestate"


def pair(copystate: str, cycle: str) -> StatePair:
    return StatePair(CopyState(copystate), MigrationCycle(cycle))


def assert_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.raw
    assert HEX32.fullmatch(answer.request_id)
    body: dict[str, Any] = answer.json
    assert body["error_code"] == code
    assert body["error_msg"]
    return body


def assert_auth_refused(answer: Answer, *secrets: str) -> str:
    """The exact documented 403 shape, with nothing secret in it; returns the reason."""
    body = assert_error(answer, 403, "SMS.9004")
    assert set(body) == AUTH_KEYS
    assert isinstance(body["error_param"], list)
    assert len(body["error_param"]) == 1
    assert isinstance(body["error_param"][0], str)
    [detail] = body["details"]
    assert set(detail) == {"error_code", "error_msg"}
    assert detail["error_code"] == "SMS.9004"
    assert isinstance(body["encoded_authorization_message"], str)
    decoded = base64.b64decode(body["encoded_authorization_message"]).decode()
    for secret in secrets:
        assert secret not in answer.raw.decode()
        assert secret not in decoded
    reason: str = body["error_param"][0]
    return reason
