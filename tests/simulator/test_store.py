"""The simulated sources' rules (``sms_flow/simulator/store.py``), seen through the HTTP API:
a field left out keeps its value, frozen states, no-ops, the service's own moves, strict mode."""

from __future__ import annotations

import aiohttp
import pytest

from sms_flow.chart import default_chart
from sms_flow.simulator import ErrorCode, MovedBy, Simulator
from sms_flow.states import CopyState, StatePair
from sms_flow.testing import SimulatorFactory
from tests.conftest import eventually
from tests.simulator.conftest import (
    HEX32,
    SIMULATOR,
    assert_error,
    call,
    pair,
    put_url,
)

pytestmark = SIMULATOR


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


async def test_service_moves_wait_for_the_delay(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("STOPPING", "syncing"))
    answer = await call(http, "GET", f"{sim.url}/v3/sources/{sid}")
    assert answer.json["state"] == "stopping"  # service_delay is 60 s here
    assert len(sim.history(sid)) == 1


@pytest.mark.simulator(service_delay=0.05)
async def test_service_moves_happen_after_the_delay_stamped_when_due(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("STOPPING", "syncing"))
    entered = sim.history(sid)[-1].time

    async def stopped() -> bool:  # the move is made when the source is read
        state = (await call(http, "GET", f"{sim.url}/v3/sources/{sid}")).json["state"]
        return bool(state == "stopped")

    await eventually(stopped)
    stop_move = sim.history(sid)[-1]
    assert (stop_move.by, stop_move.trigger) == (MovedBy.SERVICE, "stopped")
    assert stop_move.time == pytest.approx(entered + 0.05, abs=1e-6)
    assert sim.source(sid).state_action_time == int(stop_move.time * 1000)

    # clearing has two service edges; the first listed (clear_done → cleared) wins.
    other = await sim.register("web-02")
    await sim.move(other, pair=("FINISHED", "cutovered"))
    await sim.move(other, trigger="clear")
    await eventually(lambda: sim.source(other).copystate is CopyState.CLEARED)
    assert [e.by for e in sim.history(other)] == [MovedBy.CONTROL, MovedBy.CONTROL, MovedBy.SERVICE]


async def test_strict_mode_refuses_moves_the_chart_does_not_permit(
    sms_simulator_factory: SimulatorFactory, http: aiohttp.ClientSession
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
