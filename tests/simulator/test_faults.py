"""Faults on demand (``sms_flow/simulator/faults.py``): 5xx, 429, drops, latency and
applied-then-503, seeded to repeat, changed at run time; never on the test controls."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from sms_flow.simulator import ErrorCode, Faults, Simulator
from sms_flow.testing import SimulatorFactory
from tests.conftest import eventually
from tests.simulator.conftest import (
    PUT_ROUTE,
    SIMULATOR,
    assert_error,
    call,
    pair,
    put_url,
)

pytestmark = SIMULATOR


def test_fault_rates_together_may_not_exceed_1() -> None:
    with pytest.raises(ValueError, match="may not exceed 1"):
        Faults(drop_rate=0.5, error_rate=0.6)


@pytest.mark.simulator(seed=1, faults=Faults(error_rate=1.0))
async def test_error_rate_answers_5xx_with_body_and_request_id(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
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
    sms_simulator_factory: SimulatorFactory, http: aiohttp.ClientSession
) -> None:
    faults = Faults(error_rate=0.3, throttle_rate=0.3, error_mode="random")
    runs = []
    for _ in range(2):
        sim = await sms_simulator_factory(seed=42, faults=faults)
        runs.append([(await call(http, "GET", f"{sim.url}/v3/sources")).status for _ in range(30)])
    assert runs[0] == runs[1]
    assert {200, 429} <= set(runs[0])
    assert set(runs[0]) & {500, 503}


@pytest.mark.simulator(faults=Faults(throttle_rate=1.0, retry_after=3))
async def test_throttle_answers_429_with_retry_after(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    answer = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    body = assert_error(answer, 429, "APIG.0308")
    assert "throttling threshold has been reached" in body["error_msg"]
    assert answer.headers["Retry-After"] == "3"
    assert sim.history(sid) == []


@pytest.mark.simulator(faults=Faults(drop_rate=1.0))
async def test_drop_closes_the_connection_without_an_answer(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    assert sim.history(sid) == []
    assert sim.stats.requests[PUT_ROUTE]["dropped"] >= 1


@pytest.mark.simulator(faults=Faults(latency=0.3))
async def test_latency_delays_and_a_client_that_gives_up_changes_nothing(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    started = time.monotonic()
    answer = await call(http, "PUT", put_url(sim, sid), body={"migrationcycle": "setting"})
    assert answer.status == 200
    assert time.monotonic() - started >= 0.3

    with pytest.raises(asyncio.TimeoutError):
        await call(http, "PUT", put_url(sim, sid), body={"copystate": "ERROR"}, give_up_after=0.05)
    # Counted as cancelled once its latency ran out with the client gone: its handler ended
    # there, without applying the change, so the change can never land.
    await eventually(lambda: sim.stats.requests[PUT_ROUTE].get("cancelled", 0) == 1)
    assert sim.source(sid).pair == pair("WAITING", "setting")
    assert len(sim.history(sid)) == 1


@pytest.mark.simulator(faults=Faults(apply_then_fail_rate=1.0))
async def test_apply_then_fail_applies_the_change_then_answers_503(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
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
