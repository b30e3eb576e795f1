"""The official Huawei Cloud SDK (huaweicloudsdksms) talks to the simulator as to the service.

The SDK is synchronous, so its calls run in a worker thread while the simulator serves on
the test's event loop. It signs with AK/SK exactly as it does against the real endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import (
    ClientRequestException,
    ServerResponseException,
)
from huaweicloudsdksms.v3 import (
    ListServersRequest,
    PostSourceServerBody,
    PutCopyStateReq,
    RegisterServerRequest,
    ShowServerRequest,
    SmsClient,
    UpdateCopyStateRequest,
)

from sms_flow.simulator import Faults, Simulator
from sms_flow.states import CopyState, MigrationCycle, StatePair

AK, SK, PROJECT = "AKSDKINTEROP", "SK-sdk-interop-secret", "0a1b2c3d4e5f"

pytestmark = pytest.mark.simulator(ak=AK, sk=SK, project_id=PROJECT)

T = TypeVar("T")


@contextmanager
def sdk_client(sim: Simulator, *, sk: str = SK, project_id: str = PROJECT) -> Iterator[Any]:
    """An SmsClient pointed at the simulator (plain HTTP, the SDK's default of no retries)."""
    client = (
        SmsClient.new_builder()
        .with_credentials(BasicCredentials(AK, sk, project_id))
        .with_endpoints([sim.url])
        .build()
    )
    try:
        yield client
    finally:
        client.get_http_client().close()


async def in_thread(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


async def test_update_copy_state_follows_the_chart(sim: Simulator) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    with sdk_client(sim) as client:
        request = UpdateCopyStateRequest(
            source_id=sid, body=PutCopyStateReq(copystate="SYNCING", migrationcycle="syncing")
        )
        response = await in_thread(client.update_copy_state, request)
    assert response.status_code == 200
    assert sim.source(sid).pair == StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
    entry = sim.history(sid)[-1]
    assert entry.trigger == "sync"
    assert entry.request_id is not None


async def test_update_copy_state_is_accepted_and_changes_the_state(sim: Simulator) -> None:
    sid = await sim.register("web-01")
    with sdk_client(sim) as client:
        request = UpdateCopyStateRequest(
            source_id=sid, body=PutCopyStateReq(copystate="REPLICATE", migrationcycle="replicating")
        )
        response = await in_thread(client.update_copy_state, request)
    assert response.status_code == 200
    assert sim.source(sid).pair == StatePair(CopyState.REPLICATE, MigrationCycle.REPLICATING)


async def test_a_wrong_sk_gives_sms_9004_with_the_simulators_request_id(sim: Simulator) -> None:
    sid = await sim.register("web-01")
    with sdk_client(sim, sk="not-the-secret") as client:
        request = UpdateCopyStateRequest(
            source_id=sid, body=PutCopyStateReq(copystate="REPLICATE", migrationcycle="replicating")
        )
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(client.update_copy_state, request)
    error = caught.value
    assert error.status_code == 403
    assert error.error_code == "SMS.9004"
    assert "signature mismatch" in error.error_msg
    assert SK not in error.error_msg
    assert sim.history(sid) == []
    # The SDK reports the X-Request-Id header; the simulator wrote the same id into the body.
    assert error.request_id is not None
    issued = json.loads(base64.b64decode(error.encoded_auth_msg))
    assert issued["request_id"] == error.request_id
    assert sim.stats.requests["PUT /v3/sources/{source_id}/changestate"] == {403: 1}


async def test_a_wrong_project_id_is_refused(sim: Simulator) -> None:
    sid = await sim.register("web-01")
    with sdk_client(sim, project_id="another-project") as client:
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(client.show_server, ShowServerRequest(source_id=sid))
    assert (caught.value.status_code, caught.value.error_code) == (403, "SMS.9004")


async def test_show_server_and_list_servers_parse_the_answers(sim: Simulator) -> None:
    first = await sim.register("web-01")
    second = await sim.register("db-01")
    await sim.move(second, pair=("INIT", "replicating"))
    with sdk_client(sim) as client:
        shown = await in_thread(client.show_server, ShowServerRequest(source_id=second))
        listed = await in_thread(client.list_servers, ListServersRequest(state="initialize"))
        paged = await in_thread(client.list_servers, ListServersRequest(limit=1, offset=0))
    assert (shown.id, shown.name) == (second, "db-01")
    assert (shown.state, shown.migration_cycle) == ("initialize", "replicating")
    assert shown.connected is True
    assert isinstance(shown.state_action_time, int)
    assert shown.state_action_time >= shown.add_date
    assert listed.count == 1
    assert [s.id for s in listed.source_servers] == [second]
    assert paged.count == 2
    assert [s.id for s in paged.source_servers] == [first]


async def test_register_server_creates_a_source(sim: Simulator) -> None:
    body = PostSourceServerBody(ip="10.1.2.3", name="agent-registered", os_type="LINUX")
    with sdk_client(sim) as client:
        created = await in_thread(client.register_server, RegisterServerRequest(body=body))
        shown = await in_thread(client.show_server, ShowServerRequest(source_id=created.id))
    assert (shown.name, shown.ip, shown.state) == ("agent-registered", "10.1.2.3", "waiting")
    assert sim.source(created.id).name == "agent-registered"


async def test_unknown_source_and_injected_5xx_reach_the_sdk_as_errors(sim: Simulator) -> None:
    with sdk_client(sim) as client:
        with pytest.raises(ClientRequestException) as missing:
            await in_thread(client.show_server, ShowServerRequest(source_id="no-such-source"))
        assert (missing.value.status_code, missing.value.error_code) == (404, "SMS.SIM3")
        sim.set_faults(Faults(error_rate=1.0))
        with pytest.raises(ServerResponseException) as failed:
            await in_thread(client.list_servers, ListServersRequest())
    assert failed.value.status_code == 500
    assert failed.value.error_code == "SMS.2007"
    assert failed.value.request_id is not None
