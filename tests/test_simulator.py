"""The simulator over real loopback HTTP: routes, auth, limits, the chart, faults, persistence.

Raw requests go through an aiohttp ClientSession; signed ones through sms-flow's own
AK/SK signer. Nothing of the HTTP layer is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from sms_flow import testing as sms_testing
from sms_flow.auth import AkSkAuth
from sms_flow.chart import default_chart
from sms_flow.errors import ConfigError, InvalidRequestError, UsageError
from sms_flow.simulator import (
    ErrorCode,
    Faults,
    MovedBy,
    Simulator,
    SimulatorConfig,
)
from sms_flow.states import CopyState, MigrationCycle, StatePair
from tests.conftest import REPO

pytest_plugins = ["pytester"]

# The plugin's fixtures, used here as a user would use them.
sms_simulator = sms_testing.sms_simulator
sms_simulator_factory = sms_testing.sms_simulator_factory

Factory = Callable[..., Awaitable[Simulator]]

AK, SK, PROJECT = "AKSIMTEST", "SKSIMTEST-secret", "proj-0001"
TOKEN = "tok-" + "x" * 40
HEX32 = re.compile(r"[0-9a-f]{32}")
AUTH_KEYS = {"error_code", "error_msg", "encoded_authorization_message", "error_param", "details"}


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


def put_url(sim: Simulator, source_id: str) -> str:
    return f"{sim.url}/v3/sources/{source_id}/changestate"


def pair(copystate: str, cycle: str) -> StatePair:
    return StatePair(CopyState(copystate), MigrationCycle(cycle))


def assert_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.raw
    assert HEX32.fullmatch(answer.request_id)
    body: dict[str, Any] = answer.json
    assert body["error_code"] == code
    assert body["error_msg"]
    return body


@pytest.fixture
async def sim(sms_simulator_factory: Factory) -> Simulator:
    return await sms_simulator_factory(service_delay=60.0)


# -- changestate -----------------------------------------------------------------------------


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


async def test_a_field_left_out_keeps_its_value(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    assert (
        await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    ).status == 200
    assert sim.source(sid).pair == pair("WAITING", "setting")
    assert (await call(http, "PUT", put_url(sim, sid), body={"copystate": "ERROR"})).status == 200
    assert sim.source(sid).pair == pair("ERROR", "setting")


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


FROZEN = [p for p in default_chart().pairs if default_chart().is_frozen(p)]


@pytest.mark.parametrize("frozen", FROZEN, ids=str)
async def test_frozen_states_answer_200_and_change_nothing(
    sim: Simulator, http: aiohttp.ClientSession, frozen: StatePair
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=frozen)
    before = sim.history(sid)
    for raw in (
        b'{"copystate": "SYNCING", "migrationcycle": "syncing"}',
        b'{"copystate": "BOGUS"}',
    ):
        answer = await call(
            http, "PUT", put_url(sim, sid), data=raw, headers={"Content-Type": "application/json"}
        )
        assert (answer.status, answer.json) == (200, {})
    assert sim.source(sid).pair == frozen
    assert sim.history(sid) == before
    assert sim.stats.changestate["ignored_frozen"] == 2


async def test_a_put_to_the_current_state_is_not_history_but_is_counted(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    for _ in range(3):
        answer = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
        assert answer.status == 200
    assert [e.to_pair for e in sim.history(sid)] == [pair("WAITING", "setting")]
    stats = sim.stats
    assert stats.puts_per_source[sid] == 3
    assert (stats.changestate["applied"], stats.changestate["noop"]) == (1, 2)
    assert stats.requests["PUT /v3/sources/{source_id}/changestate"][200] == 3

    history = await call(http, "GET", f"{sim.url}/_simulator/sources/{sid}/history")
    assert history.status == 200
    [entry] = history.json["history"]
    assert history.json["source_id"] == sid
    assert entry["from"] == "WAITING/checking"
    assert entry["to"] == "WAITING/setting"
    assert entry["by"] == "client"
    assert entry["seq"] == 1
    assert isinstance(entry["time"], int)
    assert HEX32.fullmatch(entry["request_id"])


# -- service moves and strict mode ------------------------------------------------------------


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_service_moves_wait_for_the_delay(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("STOPPING", "syncing"))
    answer = await call(http, "GET", f"{sim.url}/v3/sources/{sid}")
    assert answer.json["state"] == "stopping"  # service_delay is 60 s here
    assert len(sim.history(sid)) == 1


async def test_service_moves_happen_after_the_delay_stamped_when_due(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(service_delay=0.05)
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("STOPPING", "syncing"))
    entered = sim.history(sid)[-1].time

    async def read_state() -> str:
        state: str = (await call(http, "GET", f"{sim.url}/v3/sources/{sid}")).json["state"]
        return state

    deadline = time.monotonic() + 5
    while await read_state() != "stopped":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    stop_move = sim.history(sid)[-1]
    assert (stop_move.by, stop_move.trigger) == (MovedBy.SERVICE, "stopped")
    assert stop_move.time == pytest.approx(entered + 0.05, abs=1e-6)
    assert sim.source(sid).state_action_time == int(stop_move.time * 1000)

    # clearing has two service edges; the first listed (clear_done → cleared) wins.
    other = await sim.register("web-02")
    await sim.move(other, pair=("FINISHED", "cutovered"))
    await sim.move(other, trigger="clear")
    await until(lambda: sim.source(other).copystate is CopyState.CLEARED)
    assert [e.by for e in sim.history(other)] == [MovedBy.CONTROL, MovedBy.CONTROL, MovedBy.SERVICE]


async def test_strict_mode_refuses_moves_the_chart_does_not_permit(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    strict = await sms_simulator_factory(strict=True)
    loose = await sms_simulator_factory()
    jump = {"copystate": "INIT", "migrationcycle": "replicating"}
    for sim in (strict, loose):
        sid = await sim.register("web-01")
        answer = await call(http, "PUT", put_url(sim, sid), body=jump)
        if sim is loose:
            assert answer.status == 200
            assert sim.source(sid).pair == pair("INIT", "replicating")
            continue
        body = assert_error(answer, 400, ErrorCode.STRICT)
        assert body["error_code"] == "SMS.SIM1"
        assert body["error_param"] == ["INIT/replicating"]
        assert "WAITING/checking to INIT/replicating" in body["error_msg"]
        assert sim.source(sid).pair == pair("WAITING", "checking")
        ok = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
        assert ok.status == 200
        same = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
        assert same.status == 200  # a no-op is no move at all
        assert (await call(http, "PUT", put_url(sim, sid), body=jump)).status == 200  # start
        assert [e.trigger for e in sim.history(sid)] == ["configure", "start"]
        assert sim.stats.changestate["refused_strict"] == 1


# -- the read side and registration -------------------------------------------------------------


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
    await asyncio.sleep(0.01)
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


async def test_unknown_route_is_404_with_an_error_body(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(token=TOKEN)
    for method, path in (("GET", "/v3/nothing"), ("DELETE", "/v3/sources/abc"), ("GET", "/")):
        assert_error(await call(http, method, sim.url + path), 404, ErrorCode.NO_ROUTE)


# -- auth ----------------------------------------------------------------------------------


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


async def test_token_auth(sms_simulator_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sms_simulator_factory(token=TOKEN)
    sid = await sim.register("web-01")
    body = {"migrationcycle": "setting"}
    wrong = await call(http, "PUT", put_url(sim, sid), body=body, headers={"X-Auth-Token": "nope"})
    assert "X-Auth-Token" in assert_auth_refused(wrong, TOKEN)
    missing = await call(http, "PUT", put_url(sim, sid), body=body)
    assert_auth_refused(missing, TOKEN)
    listing = await call(http, "GET", f"{sim.url}/v3/sources")
    assert_auth_refused(listing, TOKEN)
    assert sim.history(sid) == []
    ok = await call(http, "PUT", put_url(sim, sid), body=body, headers={"X-Auth-Token": TOKEN})
    assert ok.status == 200
    shown = await call(http, "GET", f"{sim.url}/v3/sources/{sid}", headers={"X-Auth-Token": TOKEN})
    assert shown.status == 200
    # Test controls need no auth.
    assert (await call(http, "GET", f"{sim.url}/_simulator/sources/{sid}/history")).status == 200
    assert wrong.request_id != missing.request_id


async def test_aksk_auth(sms_simulator_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sms_simulator_factory(ak=AK, sk=SK, project_id=PROJECT)
    sid = await sim.register("web-01")
    body = {"migrationcycle": "setting"}
    good = AkSkAuth(AK, SK, PROJECT)
    assert (await signed(http, good, "PUT", put_url(sim, sid), body)).status == 200
    assert (await signed(http, good, "GET", f"{sim.url}/v3/sources?limit=5&name=web")).status == 200

    wrong_sk = await signed(
        http, AkSkAuth(AK, "not-the-sk", PROJECT), "PUT", put_url(sim, sid), body
    )
    assert "signature mismatch" in assert_auth_refused(wrong_sk, SK, "not-the-sk")
    signature = wrong_sk.raw.decode()
    assert not re.search(r"[0-9a-f]{64}", signature)  # no signature, received or expected

    def skewed(minutes: float) -> AkSkAuth:
        return AkSkAuth(
            AK, SK, PROJECT, clock=lambda: datetime.now(UTC) - timedelta(minutes=minutes)
        )

    late = await signed(http, skewed(20), "PUT", put_url(sim, sid), {"copystate": "ERROR"})
    assert "X-Sdk-Date" in assert_auth_refused(late, SK)
    early = await signed(http, skewed(-20), "PUT", put_url(sim, sid), {"copystate": "ERROR"})
    assert_auth_refused(early, SK)
    within = await signed(http, skewed(14), "GET", f"{sim.url}/v3/sources/{sid}")
    assert within.status == 200

    other_project = await signed(
        http, AkSkAuth(AK, SK, "proj-other"), "PUT", put_url(sim, sid), {"copystate": "ERROR"}
    )
    assert "X-Project-Id" in assert_auth_refused(other_project, SK)
    unsigned = await call(http, "PUT", put_url(sim, sid), body={"copystate": "ERROR"})
    assert_auth_refused(unsigned, SK)
    assert sim.source(sid).pair == pair("WAITING", "setting")


async def test_token_and_aksk_together_accept_either(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(token=TOKEN, ak=AK, sk=SK, project_id=PROJECT)
    sid = await sim.register("web-01")
    by_token = await call(
        http, "GET", f"{sim.url}/v3/sources/{sid}", headers={"X-Auth-Token": TOKEN}
    )
    assert by_token.status == 200
    by_signature = await signed(
        http, AkSkAuth(AK, SK, PROJECT), "GET", f"{sim.url}/v3/sources/{sid}"
    )
    assert by_signature.status == 200
    assert_auth_refused(await call(http, "GET", f"{sim.url}/v3/sources/{sid}"), TOKEN, SK)


def test_config_hides_secrets_and_wants_complete_aksk() -> None:
    config = SimulatorConfig(token=TOKEN, ak=AK, sk=SK, project_id=PROJECT)
    assert TOKEN not in repr(config)
    assert SK not in repr(config)
    with pytest.raises(ValueError, match="project_id"):
        SimulatorConfig(ak=AK, sk=SK)
    with pytest.raises(ValueError, match="may not exceed 1"):
        Faults(drop_rate=0.5, error_rate=0.6)


# -- faults ----------------------------------------------------------------------------------


async def test_error_rate_answers_5xx_with_body_and_request_id(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(seed=1, faults=Faults(error_rate=1.0))
    sid = await sim.register("web-01")
    answers = [
        await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
        for _ in range(4)
    ]
    assert [a.status for a in answers] == [500, 503, 500, 503]
    for answer in answers:
        assert_error(answer, answer.status, ErrorCode.INTERNAL)
    assert len({a.request_id for a in answers}) == 4
    assert sim.history(sid) == []
    # Test controls are never faulted.
    assert (await call(http, "GET", f"{sim.url}/_simulator/stats")).status == 200
    assert sim.stats.faults == {"error_500": 2, "error_503": 2}


async def test_a_seed_makes_random_faults_repeat(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    faults = Faults(error_rate=0.3, throttle_rate=0.3, error_mode="random")
    runs = []
    for _ in range(2):
        sim = await sms_simulator_factory(seed=42, faults=faults)
        runs.append([(await call(http, "GET", f"{sim.url}/v3/sources")).status for _ in range(30)])
    assert runs[0] == runs[1]
    assert {200, 429} <= set(runs[0])
    assert set(runs[0]) & {500, 503}


async def test_throttle_answers_429_with_retry_after(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(faults=Faults(throttle_rate=1.0, retry_after=3))
    sid = await sim.register("web-01")
    answer = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    body = assert_error(answer, 429, "APIG.0308")
    assert "throttling threshold has been reached" in body["error_msg"]
    assert answer.headers["Retry-After"] == "3"
    assert sim.history(sid) == []


async def test_drop_closes_the_connection_without_an_answer(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(faults=Faults(drop_rate=1.0))
    sid = await sim.register("web-01")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    assert sim.history(sid) == []
    assert sim.stats.requests["PUT /v3/sources/{source_id}/changestate"]["dropped"] >= 1


async def test_latency_delays_and_a_client_that_gives_up_changes_nothing(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(faults=Faults(latency=0.3))
    sid = await sim.register("web-01")
    started = time.monotonic()
    answer = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    assert answer.status == 200
    assert time.monotonic() - started >= 0.3

    with pytest.raises(asyncio.TimeoutError):
        await call(http, "PUT", put_url(sim, sid), body={"copystate": "ERROR"}, give_up_after=0.05)
    route = "PUT /v3/sources/{source_id}/changestate"
    await until(lambda: sim.stats.requests[route].get("cancelled", 0) == 1)
    await asyncio.sleep(0.35)  # past the latency: the abandoned change must never land
    assert sim.source(sid).pair == pair("WAITING", "setting")
    assert len(sim.history(sid)) == 1


async def test_apply_then_fail_applies_the_change_then_answers_503(
    sms_simulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    sim = await sms_simulator_factory(faults=Faults(apply_then_fail_rate=1.0))
    sid = await sim.register("web-01")
    answer = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    assert_error(answer, 503, ErrorCode.INTERNAL)
    assert sim.source(sid).pair == pair("WAITING", "setting")
    assert sim.history(sid)[-1].request_id == answer.request_id
    assert sim.stats.faults == {"apply_then_fail": 1}


async def test_faults_change_at_run_time(sim: Simulator, http: aiohttp.ClientSession) -> None:
    lst = f"{sim.url}/v3/sources"
    assert (await call(http, "GET", lst)).status == 200
    answer = await call(http, "PUT", f"{sim.url}/_simulator/faults", body={"error_rate": 1.0})
    assert answer.status == 200
    assert answer.json["error_rate"] == 1.0
    assert (await call(http, "GET", lst)).status == 500
    bad = await call(http, "PUT", f"{sim.url}/_simulator/faults", body={"error_rate": 2})
    assert assert_error(bad, 400, ErrorCode.INVALID)["error_param"] == ["error_rate"]
    sim.set_faults(Faults(throttle_rate=1.0))
    assert (await call(http, "GET", lst)).status == 429
    sim.faults = Faults()
    assert (await call(http, "GET", lst)).status == 200
    shown = await call(http, "GET", f"{sim.url}/_simulator/faults")
    assert shown.json == Faults().model_dump()


# -- control routes and the Python API -------------------------------------------------------------


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


async def test_python_api_moves_and_refusals(sim: Simulator) -> None:
    sid = await sim.register("web-01")
    snap = await sim.move(sid, trigger="configure")
    assert snap.pair == pair("WAITING", "setting")
    with pytest.raises(ValueError, match="no move 'resume'"):
        await sim.move(sid, trigger="resume")
    assert (await sim.move(sid, pair="ERROR/setting")).copystate is CopyState.ERROR
    with pytest.raises(InvalidRequestError, match="no source 'nope'"):
        sim.source("nope")
    with pytest.raises(UsageError, match="exactly one of trigger= or pair="):
        await sim.move(sid)
    assert await sim.register_many(0) == []


# -- persistence ---------------------------------------------------------------------------------


async def test_state_file_keeps_sources_and_history_across_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state = tmp_path / "sim.db"
    async with Simulator(state_file=state, service_delay=0.05) as first:
        sid = await first.register("web-01", ip="10.0.0.1")
        moving = await first.register("web-02")
        ids = await first.register_many(50)
        answer = await call(http, "PUT", put_url(first, sid), body={"migrationcycle": "setting"})
        assert answer.status == 200
        results = await asyncio.gather(
            *(call(http, "PUT", put_url(first, i), body={"copystate": "ERROR"}) for i in ids)
        )
        assert {r.status for r in results} == {200}
        await first.move(moving, pair=("STOPPING", "replicating"))
        stopping_at = first.history(moving)[-1].time
    async with Simulator(state_file=state, service_delay=0.05) as second:
        assert [s.id for s in second.sources()][:2] == [sid, moving]
        snap = second.source(sid)
        assert (snap.pair, snap.name, snap.extra["ip"]) == (
            pair("WAITING", "setting"),
            "web-01",
            "10.0.0.1",
        )
        [entry] = second.history(sid)
        assert entry.request_id == answer.request_id
        assert all(second.source(i).copystate is CopyState.ERROR for i in ids)
        await until(lambda: second.source(moving).copystate is CopyState.STOPPED)
        assert second.history(moving)[-1].time == pytest.approx(stopping_at + 0.05, abs=1e-6)
        shown = await call(http, "GET", f"{second.url}/v3/sources/{sid}")
        assert shown.json["migration_cycle"] == "setting"


# -- the command line ---------------------------------------------------------------------------


def start_cli(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sms_flow.simulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    return proc, first


async def test_cli_prints_the_url_first_serves_and_exits_0_on_sigterm(
    http: aiohttp.ClientSession,
) -> None:
    proc, url = await asyncio.to_thread(
        start_cli, "--port", "0", "--sources", "2", env={"SMS_FLOW_SIM_TOKEN": TOKEN}
    )
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        assert proc.stdout is not None
        ids = [await asyncio.to_thread(proc.stdout.readline) for _ in range(2)]
        sid = ids[0].strip()
        refused = await call(http, "GET", f"{url}/v3/sources/{sid}")
        assert refused.status == 403
        shown = await call(http, "GET", f"{url}/v3/sources/{sid}", headers={"X-Auth-Token": TOKEN})
        assert (shown.status, shown.json["name"]) == (200, "src-0001")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 10)
        assert proc.stdout is not None and proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0, stderr
    assert TOKEN not in stderr


async def test_cli_state_survives_sigkill(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    state = str(tmp_path / "state.db")
    proc, url = await asyncio.to_thread(start_cli, "--state-file", state, "--sources", "1")
    assert proc.stdout is not None and proc.stderr is not None
    sid = (await asyncio.to_thread(proc.stdout.readline)).strip()
    answer = await call(http, "PUT", put_url_of(url, sid), body={"copystate": "ERROR"})
    assert answer.status == 200
    proc.kill()  # SIGKILL: no chance to flush anything after the 200
    await asyncio.to_thread(proc.wait, 10)
    proc.stdout.close()
    proc.stderr.close()
    async with Simulator(state_file=Path(state)) as again:
        assert again.source(sid).pair == pair("ERROR", "checking")
        assert again.history(sid)[0].request_id == answer.request_id


def put_url_of(base: str, source_id: str) -> str:
    return f"{base}/v3/sources/{source_id}/changestate"


def test_cli_refuses_bad_options_with_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sms_flow.simulator", "--error-rate", "2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "error_rate" in done.stderr
    assert done.stdout == ""


# -- the pytest plugin ---------------------------------------------------------------------------


async def test_the_fixture_gives_a_running_default_simulator(
    sms_simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    assert sms_simulator.running
    assert sms_simulator.config == SimulatorConfig()
    sid = await sms_simulator.register("web-01")
    answer = await call(
        http, "PUT", put_url(sms_simulator, sid), body={"migrationcycle": "setting"}
    )
    assert answer.status == 200


PLUGIN_USER_TESTS = """
import aiohttp
import pytest

from sms_flow.simulator import SimulatorConfig

STARTED = []


@pytest.mark.asyncio
async def test_default(sms_simulator):
    sid = await sms_simulator.register("web-01")
    async with aiohttp.ClientSession() as http:
        url = f"{sms_simulator.url}/v3/sources/{sid}/changestate"
        async with http.put(url, json={"migrationcycle": "setting"}) as resp:
            assert resp.status == 200
    assert sms_simulator.source(sid).migrationcycle.value == "setting"


@pytest.mark.asyncio
async def test_factory(sms_simulator_factory):
    a = await sms_simulator_factory(token="t0ken")
    b = await sms_simulator_factory(SimulatorConfig(strict=True))
    STARTED.extend([a, b])
    assert a.url != b.url and a.running and b.config.strict


def test_factory_stopped_them():
    assert len(STARTED) == 2 and not any(s.running for s in STARTED)
"""


def _plugin_autoloaded() -> bool:
    return any(ep.value == "sms_flow.testing" for ep in metadata.entry_points(group="pytest11"))


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_pytest_plugin_works_in_strict_and_auto_mode(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(test_user=PLUGIN_USER_TESTS)
    args = [] if _plugin_autoloaded() else ["-p", "sms_flow.testing"]
    result = pytester.runpytest_subprocess(*args, "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize("kind", ["directory", "not-sqlite"])
async def test_an_unusable_state_file_is_a_config_error_naming_it(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "state.db"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_text("this is not a database\n" * 100)
    with pytest.raises(ConfigError, match=r"state\.db"):
        async with Simulator(state_file=path):
            pass
