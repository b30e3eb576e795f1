"""The simulator's HTTP side (``sms_flow/simulator/app.py``): the SMS routes, the test-control
routes, and their answers and error bodies, over real loopback HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sms_flow.chart import default_chart
from sms_flow.simulator import ErrorCode, MovedBy, Simulator
from tests.conftest import eventually
from tests.simulator.conftest import (
    HEX32,
    SIMULATOR,
    TOKEN,
    assert_error,
    call,
    pair,
    put_url,
)

pytestmark = SIMULATOR


async def test_changestate_answers_200_empty_json_and_records_the_change(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    answer = await call(
        http, "PUT", put_url(sim, sid), body={"copystate": "WAITING", "migrationcycle": "setting"}
    )
    assert answer.status == 200
    assert answer.json == {}
    assert answer.headers["Content-Type"].startswith("application/json")
    assert HEX32.fullmatch(answer.request_id)
    assert sim.source(sid).pair == pair("WAITING", "setting")
    [entry] = sim.history(sid)
    assert (entry.seq, entry.by, entry.trigger) == (1, MovedBy.CLIENT, "configure")
    assert entry.from_pair == pair("WAITING", "checking")
    assert entry.request_id == answer.request_id


@pytest.mark.parametrize(
    ("copystate", "cycle", "expected"),
    [
        ("REPLICATE", "replicating", ("REPLICATE", "replicating")),
        ("replicate", "REPLICATING", ("REPLICATE", "replicating")),
        ("initialize", "replicating", ("INIT", "replicating")),
        ("CLEARED", "Cutovered", ("cleared", "cutovered")),
        ("premigready", "syncing", ("premigready", "syncing")),
    ],
)
async def test_both_enum_spellings_are_accepted(
    sim: Simulator,
    http: aiohttp.ClientSession,
    copystate: str,
    cycle: str,
    expected: tuple[str, str],
) -> None:
    sid = await sim.register("web-01")
    answer = await call(
        http, "PUT", put_url(sim, sid), body={"copystate": copystate, "migrationcycle": cycle}
    )
    assert answer.status == 200
    assert sim.source(sid).pair == pair(*expected)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"copystate": "BOGUS", "migrationcycle": "setting"}, "copystate=BOGUS"),
        ({"copystate": "WAITING", "migrationcycle": "testing"}, "migrationcycle=testing"),
        ({"migrationcycle": "nowhere"}, "migrationcycle=nowhere"),
        ({"copystate": 5}, "copystate=5"),
    ],
)
async def test_unknown_enum_value_is_400_naming_field_and_value(
    sim: Simulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    sid = await sim.register("web-01")
    answer = await call(http, "PUT", put_url(sim, sid), body=body)
    assert assert_error(answer, 400, ErrorCode.INVALID)["error_param"] == [param]
    assert sim.source(sid).pair == pair("WAITING", "checking")
    assert sim.history(sid) == []


@pytest.mark.parametrize(
    "raw",
    [b'{"copystate": "WAITING"', b"", b"\xff\xfe{}", b'["WAITING"]', b"{}", b'{"copystate": null}'],
    ids=["truncated", "empty", "not-utf8", "array", "empty-object", "null-only"],
)
async def test_malformed_or_empty_body_is_400(
    sim: Simulator, http: aiohttp.ClientSession, raw: bytes
) -> None:
    sid = await sim.register("web-01")
    answer = await call(
        http, "PUT", put_url(sim, sid), data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 400, ErrorCode.INVALID)
    assert sim.history(sid) == []


async def test_body_over_10240_bytes_is_400_sms_2004(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    base = b'{"migrationcycle": "setting"}'
    exact = base + b" " * (10_240 - len(base))
    over = exact + b" "
    answer = await call(
        http, "PUT", put_url(sim, sid), data=over, headers={"Content-Type": "application/json"}
    )
    assert assert_error(answer, 400, ErrorCode.BODY_TOO_LARGE)["error_code"] == "SMS.2004"
    assert sim.history(sid) == []

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the bytes are counted
        for _ in range(3):
            yield b" " * 5000

    async with http.put(
        put_url(sim, sid), data=chunks(), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error_code"] == "SMS.2004"

    answer = await call(
        http, "PUT", put_url(sim, sid), data=exact, headers={"Content-Type": "application/json"}
    )
    assert answer.status == 200
    assert sim.source(sid).pair == pair("WAITING", "setting")


async def test_unknown_source_is_404_and_a_bad_id_is_400(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    body = {"copystate": "WAITING"}
    missing = str(uuid.uuid4())
    answer = await call(http, "PUT", put_url(sim, missing), body=body)
    assert assert_error(answer, 404, ErrorCode.NO_SOURCE)["error_param"] == [f"source_id={missing}"]
    assert_error(await call(http, "GET", f"{sim.url}/v3/sources/{missing}"), 404, "SMS.SIM3")
    too_long = "a" * 256
    assert_error(await call(http, "PUT", put_url(sim, too_long), body=body), 400, "SMS.SIM2")


async def test_get_source_reports_state_as_the_read_side_does(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01", ip="10.0.0.7", os_type="WINDOWS")
    first = (await call(http, "GET", f"{sim.url}/v3/sources/{sid}")).json
    assert first["id"] == sid
    assert first["name"] == "web-01"
    assert (first["state"], first["migration_cycle"]) == ("waiting", "checking")
    assert (first["ip"], first["os_type"]) == ("10.0.0.7", "WINDOWS")
    assert first["connected"] is True
    assert first["agent_version"]
    # The next change falls in a later millisecond than the registration.
    await eventually(lambda: int(time.time() * 1000) > first["stage_action_time"])
    await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    second = (await call(http, "GET", f"{sim.url}/v3/sources/{sid}")).json
    assert second["state_action_time"] == first["state_action_time"]
    assert second["stage_action_time"] > first["stage_action_time"]
    await call(
        http, "PUT", put_url(sim, sid), body={"copystate": "INIT", "migrationcycle": "replicating"}
    )
    third = (await call(http, "GET", f"{sim.url}/v3/sources/{sid}")).json
    assert (third["state"], third["migration_cycle"]) == ("initialize", "replicating")
    assert third["state_action_time"] > first["state_action_time"]


async def test_list_pages_in_registration_order_and_filters_ignoring_case(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    ids = await sim.register_many(5, prefix="web")
    await sim.move(ids[1], pair=("SYNCING", "syncing"))
    await sim.move(ids[3], pair=("SYNCING", "syncing"))
    lst = f"{sim.url}/v3/sources"

    async def listing(query: str) -> Any:
        answer = await call(http, "GET", f"{lst}?{query}")
        assert answer.status == 200, answer.raw
        return answer.json

    everything = await listing("")
    assert everything["count"] == 5
    assert [s["id"] for s in everything["source_servers"]] == ids
    page = await listing("limit=2&offset=2")
    assert page["count"] == 5
    assert [s["id"] for s in page["source_servers"]] == ids[2:4]
    assert [s["id"] for s in (await listing("offset=4"))["source_servers"]] == ids[4:]
    assert (await listing("offset=9"))["source_servers"] == []
    syncing = await listing("state=SYNCING")
    assert (syncing["count"], [s["id"] for s in syncing["source_servers"]]) == (2, [ids[1], ids[3]])
    assert (await listing("migration_cycle=Checking&limit=1"))["count"] == 3
    assert (await listing("state=syncing&migration_cycle=syncing"))["count"] == 2
    assert (await listing("name=WEB-0003"))["source_servers"][0]["id"] == ids[2]
    assert (await listing(f"id={ids[4].upper()}"))["count"] == 1
    assert (await listing("state=nonsense"))["count"] == 0
    for bad in ("limit=0", "limit=201", "limit=ten", "offset=-1"):
        assert_error(await call(http, "GET", f"{lst}?{bad}"), 400, ErrorCode.INVALID)


async def test_post_sources_registers_a_source(sim: Simulator, http: aiohttp.ClientSession) -> None:
    answer = await call(
        http, "POST", f"{sim.url}/v3/sources", body={"name": "db-01", "hostname": "db01.lan"}
    )
    assert answer.status == 200
    sid = answer.json["id"]
    assert uuid.UUID(sid).version == 4
    shown = (await call(http, "GET", f"{sim.url}/v3/sources/{sid}")).json
    assert (shown["name"], shown["hostname"], shown["state"]) == ("db-01", "db01.lan", "waiting")
    assert sim.source(sid).pair == default_chart().initial
    for bad in ({"hostname": "x"}, {"name": ""}, {"name": "n" * 256}, {"name": 7}):
        body = assert_error(
            await call(http, "POST", f"{sim.url}/v3/sources", body=bad), 400, ErrorCode.INVALID
        )
        assert body["error_param"] == ["name"]
    assert len(sim.sources()) == 1


@pytest.mark.simulator(token=TOKEN)
async def test_unknown_route_is_404_with_an_error_body(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    for method, path in (("GET", "/v3/nothing"), ("DELETE", "/v3/sources/abc"), ("GET", "/")):
        assert_error(await call(http, method, sim.url + path), 404, ErrorCode.NO_ROUTE)


async def test_control_moves(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sid = await sim.register("web-01")
    move = f"{sim.url}/_simulator/sources/{sid}/move"
    to_stopped = await call(
        http, "POST", move, body={"copystate": "STOPPED", "migrationcycle": "syncing"}
    )
    assert (to_stopped.status, to_stopped.json["to"]) == (200, "STOPPED/syncing")
    resumed = await call(http, "POST", move, body={"trigger": "resume"})
    assert resumed.status == 200
    assert resumed.json["entry"]["trigger"] == "resume"
    assert sim.source(sid).pair == pair("SYNCING", "syncing")
    refused = await call(http, "POST", move, body={"trigger": "resume"})
    assert "no move 'resume'" in assert_error(refused, 409, ErrorCode.CONTROL_REFUSED)["error_msg"]
    both = await call(http, "POST", move, body={"trigger": "stop", "copystate": "ERROR"})
    assert_error(both, 400, ErrorCode.INVALID)
    missing = await call(
        http, "POST", f"{sim.url}/_simulator/sources/nope/move", body={"trigger": "stop"}
    )
    assert_error(missing, 404, ErrorCode.NO_SOURCE)
    assert [e.by for e in sim.history(sid)] == [MovedBy.CONTROL, MovedBy.CONTROL]

    created = await call(
        http, "POST", f"{sim.url}/_simulator/sources", body={"count": 3, "prefix": "db"}
    )
    assert len(created.json["ids"]) == 3
    assert [s.name for s in sim.sources()][-3:] == ["db-0001", "db-0002", "db-0003"]
    shown = await call(http, "GET", f"{sim.url}/_simulator/sources/{sid}")
    assert (shown.json["copystate"], shown.json["frozen"]) == ("SYNCING", False)
    stats = await call(http, "GET", f"{sim.url}/_simulator/stats")
    assert stats.json["requests"]["POST /_simulator/sources/{source_id}/move"]["200"] == 2
