"""``/api/v1``: a change checked, and a source's history from the journal, as JSON."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sms_flow.auth import TokenAuth
from sms_flow.client import SmsClient
from sms_flow.serve import ApiTokens, Service
from sms_flow.simulator import Simulator
from tests.serve.conftest import SERVE_SIMULATOR, SIM_TOKEN, ServeFactory
from tests.serve.test_gateway import TOKEN_ACTOR

pytestmark = SERVE_SIMULATOR


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers or {}) as resp:
            return resp.status, await resp.json()


async def test_check_gives_the_verdict_with_the_shortest_path(gateway: Service) -> None:
    status, body = await get(
        f"{gateway.url}/api/v1/check?from=WAITING/checking&to=REPLICATE/replicating"
    )
    assert status == 200
    assert (body["allowed"], body["current"], body["target"]) == (
        False,
        "WAITING/checking",
        "REPLICATE/replicating",
    )
    assert [s["trigger"] for s in body["path"]] == ["configure", "start", "replicate"]
    status, allowed = await get(f"{gateway.url}/api/v1/check?from=REPLICATE/replicating&to=SYNCING")
    assert (status, allowed["allowed"], allowed["trigger"]) == (200, True, "sync")


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("", "give from and to"),
        ("?from=WAITING/checking", "give to"),
        ("?from=NOWHERE/checking&to=SYNCING", "NOWHERE"),
        ("?from=WAITING&to=SYNCING", "both parts are needed"),
    ],
)
async def test_check_names_a_bad_parameter(gateway: Service, query: str, said: str) -> None:
    status, body = await get(f"{gateway.url}/api/v1/check{query}")
    assert (status, body["error_code"]) == (400, "SMSFLOW.0006")
    assert said in body["error_msg"]


async def test_history_shows_who_asked_why_and_the_request_id(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as client:
        pushed = await client.change_state(sid, "SYNCING", "syncing")
    status, body = await get(f"{gateway.url}/api/v1/sources/{sid}/history")
    assert status == 200
    assert body["source_id"] == sid
    [entry] = body["entries"]
    assert (entry["trigger"], entry["outcome"], entry["actor"]) == ("sync", "applied", TOKEN_ACTOR)
    assert entry["reason"] == "through the sms-flow serve gateway"
    assert entry["request_id"] == pushed.request_id
    status, none = await get(f"{gateway.url}/api/v1/sources/unknown-source/history")
    assert (status, none) == (200, {"source_id": "unknown-source", "entries": []})
    status, bad = await get(f"{gateway.url}/api/v1/sources/{sid}/history?limit=lots")
    assert (status, bad["error_code"]) == (400, "SMSFLOW.0006")


@pytest.mark.parametrize(
    "path", ["/api/v1/check?from=WAITING/checking&to=SYNCING", "/api/v1/sources/x/history"]
)
async def test_the_api_needs_a_token_once_tokens_are_configured(
    serve_factory: ServeFactory, path: str
) -> None:
    viewer, operator = "viewer-token-" + "v" * 24, "operator-token-" + "o" * 24
    service = await serve_factory(tokens=ApiTokens.parse(f"viewer:{viewer},operator:{operator}"))
    status, body = await get(service.url + path)
    assert (status, body["error_code"]) == (401, "SMSFLOW.0007")
    for token in (viewer, operator):
        status, _ = await get(service.url + path, {"Authorization": f"Bearer {token}"})
        assert status == 200
