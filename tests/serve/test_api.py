"""``/api/v1``: check and plan, a source and its history, a change asked for, waves, as JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sms_flow.auth import TokenAuth
from sms_flow.client import SmsClient
from sms_flow.journal import Intent, Lease, Outcome
from sms_flow.serve import ApiTokens, Service
from sms_flow.simulator import Simulator
from tests.serve.conftest import SERVE_SIMULATOR, SIM_TOKEN, ServeFactory
from tests.serve.test_gateway import TOKEN_ACTOR

pytestmark = SERVE_SIMULATOR


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers or {}) as resp:
            return resp.status, await resp.json()


async def post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=headers or {}) as resp:
            return resp.status, await resp.json()


VIEWER, OPERATOR = "viewer-token-" + "v" * 24, "operator-token-" + "o" * 24
TOKENS = ApiTokens.parse(f"viewer:{VIEWER},operator:{OPERATOR}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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


async def test_check_and_plan_take_a_json_body(gateway: Service) -> None:
    url = gateway.url
    given = {"from": "WAITING/checking", "to": "REPLICATE/replicating"}
    status, verdict = await post(f"{url}/api/v1/check", given)
    _, same = await get(f"{url}/api/v1/check?from=WAITING/checking&to=REPLICATE/replicating")
    assert (status, verdict) == (200, same)
    status, plan = await post(f"{url}/api/v1/plan", given)
    assert (status, plan["found"], plan["target"]) == (200, True, "REPLICATE/replicating")
    assert [s["trigger"] for s in plan["steps"]] == ["configure", "start", "replicate"]
    status, none = await post(
        f"{url}/api/v1/plan", {"from": "SYNCING/syncing", "to": "SYNCING/cutovered"}
    )
    assert (status, none["found"]) == (200, False)
    assert none["reasons"]
    for body, said in [
        ([1, 2], "must be a JSON object"),
        ({"from": "WAITING/checking"}, "give to"),
        ({"from": "WAITING/checking", "to": "INIT", "extra": 1}, "unknown field 'extra'"),
        ({"from": 3, "to": "INIT"}, "from must be a non-empty string, not 3"),
    ]:
        status, bad = await post(f"{url}/api/v1/plan", body)
        assert (status, bad["error_code"]) == (400, "SMSFLOW.0006")
        assert said in bad["error_msg"]


async def test_a_source_shows_the_journal_state_and_a_live_read(
    sim: Simulator, serve_factory: ServeFactory
) -> None:
    service = await serve_factory(tokens=TOKENS)
    sid = await sim.register("db-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    url = f"{service.url}/api/v1/sources/{sid}"
    status, before = await get(url, bearer(VIEWER))
    assert status == 200
    assert (before["journal"], before["latest_entry"]) == (None, None)
    assert before["live"]["name"] == "db-01"
    assert before["live"]["state"].upper() == "REPLICATE/REPLICATING"
    status, done = await post(f"{url}/changes", {"to": "SYNCING"}, bearer(OPERATOR))
    assert (status, done["status"], done["state"]) == (200, "applied", "SYNCING/syncing")
    await sim.move(sid, pair=("CUTOVERING", "cutovering"))  # moved behind sms-flow's back
    status, after = await get(url, bearer(VIEWER))
    assert after["journal"]["state"] == "SYNCING/syncing"
    assert after["journal"]["entry"]["id"] == done["steps"][0]["journal_id"]
    assert after["live"]["state"].upper() == "CUTOVERING/CUTOVERING"
    status, unknown = await get(f"{service.url}/api/v1/sources/nobody-here", bearer(VIEWER))
    assert (status, unknown["error_code"]) == (404, "SMSFLOW.0014")
    assert "nobody-here" in unknown["error_msg"]


async def test_a_change_needs_an_operator_and_is_journalled_with_its_role(
    sim: Simulator, serve_factory: ServeFactory
) -> None:
    service = await serve_factory(tokens=TOKENS)
    sid = await sim.register("web-02")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    url = f"{service.url}/api/v1/sources/{sid}/changes"
    asked = {"to": "SYNCING/syncing", "actor": "alice", "reason": "CHG-1234 weekend window"}
    status, no_token = await post(url, asked)
    assert (status, no_token["error_code"]) == (401, "SMSFLOW.0007")
    status, viewer = await post(url, asked, bearer(VIEWER))
    assert (status, viewer["error_code"]) == (403, "SMSFLOW.0008")
    assert "operator" in viewer["error_msg"]
    assert sim.source(sid).copystate.value == "REPLICATE"  # nothing sent
    status, done = await post(url, asked, bearer(OPERATOR))
    assert status == 200
    [step] = done["steps"]
    assert (step["trigger"], step["outcome"]) == ("sync", "applied")
    assert sim.source(sid).copystate.value == "SYNCING"
    _, history = await get(f"{service.url}/api/v1/sources/{sid}/history", bearer(VIEWER))
    [entry] = history["entries"]
    assert (entry["actor"], entry["reason"]) == ("api:operator:alice", asked["reason"])
    assert entry["request_id"] == step["request_id"]
    status, again = await post(url, {"to": "SYNCING/syncing"}, bearer(OPERATOR))
    assert (status, again["status"], again["steps"]) == (200, "noop", [])


async def test_a_change_is_refused_as_set_refuses_it(sim: Simulator, gateway: Service) -> None:
    sid = await sim.register("app-03")
    await sim.move(sid, pair=("SYNCING", "syncing"))
    url = f"{gateway.url}/api/v1/sources/{sid}/changes"
    seen = len(sim.history(sid))
    to = "FINISHED/cutovered"
    status, rejected = await post(url, {"to": to})
    assert (status, rejected["error_code"]) == (400, "SMSFLOW.0001")
    assert [s["trigger"] for s in rejected["verdict"]["path"]] == ["cutover", "finish"]
    status, loose = await post(url, {"to": to, "yes": True})
    assert (status, loose["error_code"]) == (400, "SMSFLOW.0006")
    assert "yes goes with path" in loose["error_msg"]
    status, unknown = await post(url, {"to": to, "path": True, "allow": ["cutovr"]})
    assert (status, unknown["error_code"]) == (400, "SMSFLOW.0006")
    assert "cutovr" in unknown["error_msg"] and "cutover" in unknown["error_msg"]
    status, unasked = await post(url, {"to": to, "path": True, "yes": True})
    assert (status, unasked["error_code"]) == (400, "SMSFLOW.0012")
    assert '"allow": ["cutover"]' in unasked["error_msg"]
    assert [s["trigger"] for s in unasked["plan"]] == ["cutover", "finish"]
    status, unconfirmed = await post(url, {"to": to, "path": True, "allow": ["cutover"]})
    assert (status, unconfirmed["error_code"]) == (400, "SMSFLOW.0013")
    assert len(sim.history(sid)) == seen  # nothing reached the simulator
    assert (await gateway.journal.history(source_id=sid)) == []
    status, done = await post(
        url, {"to": to, "path": True, "allow": ["cutover"], "yes": True, "reason": "go-live"}
    )
    assert status == 200
    assert [(s["trigger"], s["outcome"]) for s in done["steps"]] == [
        ("cutover", "applied"),
        ("finish", "applied"),
    ]
    assert (done["state"], sim.source(sid).copystate.value) == (to, "FINISHED")


async def test_history_filters_as_the_history_command_does(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-04")
    await sim.move(sid, pair=("INIT", "replicating"))
    url = f"{gateway.url}/api/v1/sources/{sid}"
    await post(f"{url}/changes", {"to": "REPLICATE", "actor": "bob"})
    await post(f"{url}/changes", {"to": "SYNCING", "actor": "carol"})
    _, everything = await get(f"{url}/history")
    assert [e["trigger"] for e in everything["entries"]] == ["replicate", "sync"]
    _, carols = await get(f"{url}/history?actor=api:local:carol")
    assert [e["trigger"] for e in carols["entries"]] == ["sync"]
    _, last = await get(f"{url}/history?limit=1&outcome=applied,observed")
    assert [e["trigger"] for e in last["entries"]] == ["sync"]
    _, future = await get(f"{url}/history?since=2999-01-01")
    assert future["entries"] == []
    for query, said in [
        ("outcome=aplied", "unknown outcome 'aplied'"),
        ("since=yesterday", "since 'yesterday' is neither"),
        ("since=1h&until=2h", "is not before until"),
        ("page=2", "unknown parameter 'page'"),
    ]:
        status, bad = await get(f"{url}/history?{query}")
        assert (status, bad["error_code"]) == (400, "SMSFLOW.0006")
        assert said in bad["error_msg"]


async def test_waves_show_counts_failures_and_the_last_report(
    sim: Simulator, gateway: Service, tmp_path: Path
) -> None:
    ok, bad = await sim.register("w-ok"), await sim.register("w-bad")
    journal = gateway.journal
    await journal.add_members("w1", [ok, bad], endpoint=sim.url)
    for sid, outcome in ((ok, Outcome.OBSERVED), (bad, Outcome.FAILED)):
        intent = Intent(
            sid, "configure", "WAITING/checking", "WAITING/setting", "wave:w1", None, wave="w1"
        )
        await journal.record(intent, outcome, error="boom" if outcome is Outcome.FAILED else None)
    status, listed = await get(f"{gateway.url}/api/v1/waves")
    assert status == 200
    [wave] = listed["waves"]
    assert (wave["name"], wave["members"], wave["failed"]) == ("w1", 2, 1)
    assert wave["states"] == {"WAITING/setting": 1, "WAITING/checking": 1}
    status, detail = await get(f"{gateway.url}/api/v1/waves/w1")
    assert status == 200
    assert [(e["source_id"], e["error"]) for e in detail["failures"]] == [(bad, "boom")]
    assert detail["report"] is None
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "w1.json").write_text(json.dumps({"wave": "w1", "exit_code": 1}))
    _, reported = await get(f"{gateway.url}/api/v1/waves/w1")
    assert reported["report"] == {"wave": "w1", "exit_code": 1}
    status, missing = await get(f"{gateway.url}/api/v1/waves/w2")
    assert (status, missing["error_code"]) == (404, "SMSFLOW.0014")
    status, stray = await get(f"{gateway.url}/api/v1/nothing-here")
    assert (status, stray["error_code"]) == (404, "SMSFLOW.0011")
    assert "GET /api/v1/waves" in stray["error_msg"]


async def test_the_gateway_and_the_api_share_one_run_and_take_turns_on_a_source(
    sim: Simulator, gateway: Service
) -> None:
    """Every change goes out under the service's one run (no run written per change), one at
    a time for a source whichever door it came in by, its claim freed once it is done."""
    sid = await sim.register("web-01")
    other = await sim.register("web-02")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    await sim.move(other, pair=("REPLICATE", "replicating"))
    body = {"to": "SYNCING/syncing", "reason": "both doors"}
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as client:
        through_gateway, (status, answer) = await asyncio.gather(
            client.change_state(sid, "SYNCING", "syncing"),
            post(f"{gateway.url}/api/v1/sources/{sid}/changes", body),
        )
        await client.change_state(other, "SYNCING", "syncing")
    # One of them applied the move; the other waited, then found the source there.
    assert through_gateway.status == 200 and status == 200, answer
    assert [e.trigger for e in sim.history(sid)].count("sync") == 1
    runs = [r for r in await gateway.journal.runs(live=False) if r.kind == "serve"]
    assert len(runs) == 1 and runs[0].ended_at is None, runs
    entries = await gateway.journal.history()
    assert {e.run_id for e in entries} == {runs[0].run_id}
    # Its claims were freed as each change ended: a wave takes both sources at once.
    wave = Lease(gateway.journal, "wave", actor="wave:w1", name="w1", endpoint=sim.url)
    await wave.start()
    try:
        claimed = await wave.claim(sim.url, [sid, other])
    finally:
        await wave.end()
    assert sorted(claimed.granted) == sorted([sid, other]) and claimed.refused == {}
