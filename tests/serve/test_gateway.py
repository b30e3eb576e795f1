"""The gateway of ``sms-flow serve`` with the official SDK and sms-flow's own client in front,
and a simulator behind: legal changes applied and journalled with the caller, illegal ones
refused before SMS sees them, in SMS's error shape; token and AK/SK callers; the read side
passed through."""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdksms.v3 import (
    ListServersRequest,
    PutCopyStateReq,
    ShowServerRequest,
    UpdateCopyStateRequest,
)

from sms_flow.auth import TokenAuth
from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.errors import AuthError, NotFoundError, ServerError
from sms_flow.journal import Lease, Outcome
from sms_flow.retry import RetryPolicy
from sms_flow.serve import Service
from sms_flow.simulator import Simulator
from sms_flow.states import CopyState, MigrationCycle, StatePair, StateRequest
from tests.serve.conftest import (
    CALLER_AK,
    SECRETS,
    SERVE_SIMULATOR,
    SIM_TOKEN,
    ServeFactory,
    in_thread,
    sdk_client,
)

pytestmark = SERVE_SIMULATOR

CHANGESTATE = "PUT /v3/sources/{source_id}/changestate"
TOKEN_ACTOR = "token:" + hashlib.sha256(SIM_TOKEN.encode()).hexdigest()[:8]


def update(source_id: str, copystate: str, cycle: str) -> UpdateCopyStateRequest:
    return UpdateCopyStateRequest(
        source_id=source_id, body=PutCopyStateReq(copystate=copystate, migrationcycle=cycle)
    )


def pushed_to_sms(sim: Simulator) -> int:
    return sum(sim.stats.requests.get(CHANGESTATE, {}).values())


async def test_a_legal_change_with_the_sdk_is_applied_and_journalled_with_the_caller(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    with sdk_client(gateway.url) as client:
        response = await in_thread(client.update_copy_state, update(sid, "SYNCING", "syncing"))
    assert response.status_code == 200
    assert sim.source(sid).pair == StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
    pushed = sim.history(sid)[-1]
    assert pushed.trigger == "sync"
    entries = await gateway.journal.history(source_id=sid)
    assert [(e.trigger, e.outcome, e.actor) for e in entries] == [
        ("sync", Outcome.APPLIED, f"ak:{CALLER_AK}")
    ]
    # The journal and the SDK name the same SMS request.
    assert entries[0].request_id == pushed.request_id
    assert (entries[0].from_state, entries[0].to_state) == (
        "REPLICATE/replicating",
        "SYNCING/syncing",
    )


async def test_an_illegal_change_raises_smsflow_0001_with_the_path_and_sms_sees_nothing(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    with sdk_client(gateway.url) as client:
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(client.update_copy_state, update(sid, "CUTOVERING", "cutovering"))
    error = caught.value
    assert (error.status_code, error.error_code) == (400, "SMSFLOW.0001")
    assert "WAITING/checking → CUTOVERING/cutovering" in error.error_msg
    assert "no permitted move leads there" in error.error_msg
    assert (
        "Shortest legal path: configure → WAITING/setting, start → INIT/replicating, "
        "replicate → REPLICATE/replicating, cutover → CUTOVERING/cutovering" in error.error_msg
    )
    assert len(error.error_msg) <= 255
    assert error.request_id  # the SDK reads X-Request-Id, as from SMS
    assert pushed_to_sms(sim) == 0
    assert sim.source(sid).pair == StatePair(CopyState.WAITING, MigrationCycle.CHECKING)
    entries = await gateway.journal.history(source_id=sid)
    assert [(e.outcome, e.actor, e.to_state) for e in entries] == [
        (Outcome.REJECTED, f"ak:{CALLER_AK}", "CUTOVERING/cutovering")
    ]


async def test_the_refusal_lists_every_reason_and_the_path_in_details(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{gateway.url}/v3/sources/{sid}/changestate",
            json={"copystate": "CUTOVERING", "migrationcycle": "cutovering"},
            headers={"X-Auth-Token": SIM_TOKEN},
        ) as resp:
            body = await resp.json()
    assert resp.status == 400
    assert body["error_code"] == "SMSFLOW.0001"
    assert body["error_param"] == [
        f"source_id={sid}",
        "current=WAITING/checking",
        "requested=CUTOVERING/cutovering",
    ]
    codes = [d["error_code"] for d in body["details"]]
    assert codes == ["no_transition", "shortest_path"]
    assert "check_failed → UNAVAILABLE/checking" in body["details"][0]["error_msg"]


async def test_a_frozen_source_is_refused_with_smsflow_0002(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("UNAVAILABLE", "checking"))
    with sdk_client(gateway.url) as client:
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(client.update_copy_state, update(sid, "WAITING", "setting"))
    assert (caught.value.status_code, caught.value.error_code) == (400, "SMSFLOW.0002")
    assert "frozen" in caught.value.error_msg
    assert pushed_to_sms(sim) == 0


async def test_a_source_another_live_driver_holds_is_refused_with_smsflow_0003(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    wave = Lease(gateway.journal, "wave", actor="wave:w1", name="w1", endpoint=sim.url)
    await wave.start()
    try:
        assert sid in (await wave.claim(sim.url, [sid])).granted
        with sdk_client(gateway.url) as client:
            with pytest.raises(ClientRequestException) as caught:
                await in_thread(client.update_copy_state, update(sid, "SYNCING", "syncing"))
    finally:
        await wave.end()
    assert (caught.value.status_code, caught.value.error_code) == (409, "SMSFLOW.0003")
    assert "wave w1" in caught.value.error_msg
    assert pushed_to_sms(sim) == 0


async def test_the_gateway_holds_a_source_only_while_it_changes_it(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    with sdk_client(gateway.url) as client:
        await in_thread(client.update_copy_state, update(sid, "SYNCING", "syncing"))
    wave = Lease(gateway.journal, "wave", actor="wave:w1", name="w1", endpoint=sim.url)
    await wave.start()
    try:
        claimed = await wave.claim(sim.url, [sid])
    finally:
        await wave.end()
    assert list(claimed.granted) == [sid]
    assert claimed.refused == {}


async def test_a_token_caller_is_passed_on_and_journalled_by_a_hash_of_its_token(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as client:
        result = await client.change_state(sid, "SYNCING", "syncing")
    assert result.status == 200
    assert result.request_id == sim.history(sid)[-1].request_id
    assert sim.source(sid).pair == StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
    entries = await gateway.journal.history(source_id=sid)
    assert [(e.outcome, e.actor) for e in entries] == [(Outcome.APPLIED, TOKEN_ACTOR)]
    assert SIM_TOKEN not in json.dumps([e.to_dict() for e in entries])


async def test_a_token_sms_refuses_gets_smss_own_403(sim: Simulator, gateway: Service) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    async with SmsClient(gateway.url, auth=TokenAuth("not-the-token-" + "x" * 20)) as client:
        with pytest.raises(AuthError) as caught:
            await client.change_state(sid, "SYNCING", "syncing")
    assert (caught.value.status, caught.value.error_code) == (403, "SMS.9004")
    assert pushed_to_sms(sim) == 0
    assert sim.source(sid).pair == StatePair(CopyState.REPLICATE, MigrationCycle.REPLICATING)


async def test_a_bad_signature_is_refused_in_smss_403_shape_and_sms_sees_nothing(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    with sdk_client(gateway.url, sk="not-the-secret-key") as client:
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(client.update_copy_state, update(sid, "WAITING", "setting"))
        with pytest.raises(ClientRequestException) as reading:
            await in_thread(client.show_server, ShowServerRequest(source_id=sid))
    for error in (caught.value, reading.value):
        assert (error.status_code, error.error_code) == (403, "SMSFLOW.0008")
        assert "signature mismatch" in error.error_msg
        assert "not-the-secret-key" not in error.error_msg
    assert sim.stats.requests == {}


async def test_an_unknown_access_key_and_a_wrong_project_are_refused(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    with sdk_client(gateway.url, ak="AKSTRANGER") as client:
        with pytest.raises(ClientRequestException) as stranger:
            await in_thread(client.update_copy_state, update(sid, "WAITING", "setting"))
    with sdk_client(gateway.url, project_id="another-project") as client:
        with pytest.raises(ClientRequestException) as elsewhere:
            await in_thread(client.update_copy_state, update(sid, "WAITING", "setting"))
    assert (stranger.value.status_code, stranger.value.error_code) == (403, "SMSFLOW.0008")
    assert "unknown access key" in stranger.value.error_msg
    assert (elsewhere.value.status_code, elsewhere.value.error_code) == (403, "SMSFLOW.0008")
    assert "X-Project-Id" in elsewhere.value.error_msg
    assert pushed_to_sms(sim) == 0


async def test_no_credentials_get_a_401(sim: Simulator, gateway: Service) -> None:
    sid = await sim.register("web-01")
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{gateway.url}/v3/sources/{sid}/changestate", json={"copystate": "WAITING"}
        ) as resp:
            body = await resp.json()
    assert resp.status == 401
    assert body["error_code"] == "SMSFLOW.0007"
    assert "X-Auth-Token" in body["error_msg"]
    assert pushed_to_sms(sim) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"copystate": "BOGUS"}',
        b'{"copystate": 7}',
        b'{"migrationcycle": "nowhere", "copystate": "WAITING"}',
    ],
    ids=["not-json", "array", "empty", "unknown-value", "not-a-string", "unknown-cycle"],
)
async def test_a_malformed_body_gets_the_400_sms_gives(
    sim: Simulator, gateway: Service, body: bytes
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    answers = []
    async with aiohttp.ClientSession() as http:
        for base in (sim.url, gateway.url):
            async with http.put(
                f"{base}/v3/sources/{sid}/changestate",
                data=body,
                headers={"X-Auth-Token": SIM_TOKEN, "Content-Type": "application/json"},
            ) as resp:
                answers.append((resp.status, await resp.json()))
    (sms_status, sms), (status, ours) = answers
    assert status == sms_status == 400
    assert ours["error_code"] == "SMSFLOW.0006"
    assert ours["error_msg"] == sms["error_msg"]
    assert ours["error_param"] == sms["error_param"]
    # Only the simulator's own request reached it.
    assert pushed_to_sms(sim) == 1


async def test_a_body_over_the_limit_is_refused(sim: Simulator, gateway: Service) -> None:
    sid = await sim.register("web-01")
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{gateway.url}/v3/sources/{sid}/changestate",
            data=b'{"copystate": "WAITING", "pad": "' + b"x" * 11_000 + b'"}',
            headers={"X-Auth-Token": SIM_TOKEN},
        ) as resp:
            body = await resp.json()
    assert (resp.status, body["error_code"], body["error_param"]) == (
        400,
        "SMSFLOW.0006",
        ["body"],
    )


async def test_the_read_side_passes_through(sim: Simulator, gateway: Service) -> None:
    first = await sim.register("web-01")
    second = await sim.register("db-01")
    await sim.move(second, pair=("INIT", "replicating"))
    with sdk_client(gateway.url) as client:
        shown = await in_thread(client.show_server, ShowServerRequest(source_id=second))
        listed = await in_thread(client.list_servers, ListServersRequest(state="initialize"))
        paged = await in_thread(client.list_servers, ListServersRequest(limit=1, offset=0))
    assert (shown.id, shown.name, shown.state) == (second, "db-01", "initialize")
    assert [s.id for s in listed.source_servers] == [second]
    assert (paged.count, [s.id for s in paged.source_servers]) == (2, [first])
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as ours:
        assert (await ours.get_source(first)).name == "web-01"
        with pytest.raises(NotFoundError) as missing:
            await ours.get_source("no-such-source")
    assert missing.value.error_code == "SMS.SIM3"  # SMS's own answer, relayed


async def test_a_change_of_an_unknown_source_gets_smss_404(
    sim: Simulator, gateway: Service
) -> None:
    with sdk_client(gateway.url) as client:
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(
                client.update_copy_state, update("no-such-source", "WAITING", "setting")
            )
    assert (caught.value.status_code, caught.value.error_code) == (404, "SMS.SIM3")


async def test_other_routes_are_not_served(gateway: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gateway.url}/v3/sources", json={"name": "x"}, headers={"X-Auth-Token": SIM_TOKEN}
        ) as resp:
            body = await resp.json()
    assert (resp.status, body["error_code"]) == (404, "SMSFLOW.0011")
    assert "POST /v3/sources" in body["error_msg"]


async def test_a_simulator_that_is_down_gives_smsflow_0010(
    sim: Simulator, serve_factory: ServeFactory
) -> None:
    sid = await sim.register("web-01")
    gateway = await serve_factory(endpoint="http://127.0.0.1:9")  # discard: nothing listens
    once = RetryPolicy(attempts=1)
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN), retry=once) as client:
        with pytest.raises(ServerError) as caught:
            await client.change_state(sid, "WAITING", "setting")
    assert (caught.value.status, caught.value.error_code) == (502, "SMSFLOW.0010")
    assert "cannot connect to http://127.0.0.1:9" in (caught.value.error_msg or "")


async def test_nothing_secret_in_any_answer_or_log(
    sim: Simulator, gateway: Service, capfd: pytest.CaptureFixture[str]
) -> None:
    from sms_flow.log import configure

    configure(level="debug", json=True)
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    bodies: list[str] = []
    async with aiohttp.ClientSession() as http:
        for headers, body in [
            ({"X-Auth-Token": SIM_TOKEN}, {"copystate": "SYNCING", "migrationcycle": "syncing"}),
            ({"X-Auth-Token": SIM_TOKEN}, {"copystate": "CUTOVERED", "migrationcycle": "x"}),
            ({"X-Auth-Token": "wrong-" + SIM_TOKEN}, {"copystate": "WAITING"}),
        ]:
            async with http.put(
                f"{gateway.url}/v3/sources/{sid}/changestate", json=body, headers=headers
            ) as resp:
                bodies.append(json.dumps(dict(resp.headers)) + await resp.text())
            async with http.get(f"{gateway.url}/v3/sources/{sid}", headers=headers) as resp:
                bodies.append(json.dumps(dict(resp.headers)) + await resp.text())
    with sdk_client(gateway.url, sk="wrong-" + "x" * 20) as client:
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(client.update_copy_state, update(sid, "WAITING", "setting"))
    bodies.append(str(caught.value))
    out, err = capfd.readouterr()
    journal = json.dumps([e.to_dict() for e in await gateway.journal.history()])
    for text in [*bodies, out, err, journal]:
        for secret in SECRETS:
            assert secret not in text
            assert secret[:12] not in text
    assert "sync" in journal  # the applied change is there, without its credentials


async def test_changes_of_one_source_are_served_one_at_a_time(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as client:
        first, second = await asyncio.gather(
            client.change_state(sid, "SYNCING", "syncing"),
            client.change_state(sid, "SYNCING", "syncing"),
        )
    # The second waited for the first, then found the source already there: nothing to send.
    assert (first.status, second.status) == (200, 200)
    assert [e.trigger for e in sim.history(sid)].count("sync") == 1
    assert pushed_to_sms(sim) == 1
    entries = await gateway.journal.history(source_id=sid)
    assert [(e.trigger, e.outcome) for e in entries] == [("sync", Outcome.APPLIED)]


async def test_the_answer_names_smss_request_and_the_journal_entry(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{gateway.url}/v3/sources/{sid}/changestate",
            json={"copystate": "SYNCING", "migrationcycle": "syncing"},
            headers={"X-Auth-Token": SIM_TOKEN},
        ) as resp:
            assert (resp.status, await resp.json()) == (200, {})
            headers = resp.headers
    [entry] = await gateway.journal.history(source_id=sid)
    assert headers["X-Request-Id"] == sim.history(sid)[-1].request_id == entry.request_id
    assert headers["X-Sms-Flow-Entry"] == str(entry.id)


def read_from_sms(sim: Simulator) -> int:
    return sum(sim.stats.requests.get("GET /v3/sources/{source_id}", {}).values())


async def test_a_source_walked_step_by_step_is_read_before_its_first_change_only(
    sim: Simulator, gateway: Service
) -> None:
    # The read-back of the service's own last change stands for the next change's look
    # (fresh, nothing else journalled since): two requests to SMS a change instead of three.
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    steps = [("SYNCING", "syncing"), ("CUTOVERING", "cutovering"), ("FINISHED", "cutovered")]
    reads = []
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as client:
        for copystate, cycle in steps:
            before = read_from_sms(sim)
            await client.change_state(sid, copystate, cycle)
            reads.append(read_from_sms(sim) - before)
    assert reads == [2, 1, 1]  # look and read-back, then the read-back alone
    assert pushed_to_sms(sim) == 3
    assert sim.source(sid).pair == StatePair(CopyState.FINISHED, MigrationCycle.CUTOVERED)
    entries = await gateway.journal.history(source_id=sid)
    assert [(str(e.from_state), e.outcome) for e in entries] == [
        ("REPLICATE/replicating", Outcome.APPLIED),
        ("SYNCING/syncing", Outcome.APPLIED),
        ("CUTOVERING/cutovering", Outcome.APPLIED),
    ]


async def test_a_change_journalled_by_another_driver_since_makes_the_gateway_read_again(
    sim: Simulator, gateway: Service
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as through:
        await through.change_state(sid, "SYNCING", "syncing")
        # An operator's `sms-flow set` moves it on, in the same journal, a moment later.
        async with (
            SmsClient(sim.url, auth=TokenAuth(SIM_TOKEN)) as direct,
            Engine(direct, journal=gateway.journal, actor="operator") as engine,
        ):
            await engine.change(sid, StateRequest(CopyState.CUTOVERING, MigrationCycle.CUTOVERING))
        before, pushed = read_from_sms(sim), pushed_to_sms(sim)
        # Asked for where it is now: the gateway reads it, finds it there, sends nothing.
        await through.change_state(sid, "CUTOVERING", "cutovering")
    assert read_from_sms(sim) - before == 1
    assert pushed_to_sms(sim) == pushed
    entries = await gateway.journal.history(source_id=sid)
    assert [e.actor for e in entries] == [TOKEN_ACTOR, "operator"]
