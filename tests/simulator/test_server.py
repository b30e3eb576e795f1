"""The :class:`~sms_flow.simulator.Simulator` itself (``sms_flow/simulator/server.py``): its
Python API for tests."""

from __future__ import annotations

import pytest

from sms_flow.errors import InvalidRequestError, UsageError
from sms_flow.simulator import Simulator
from sms_flow.states import CopyState
from tests.simulator.conftest import SIMULATOR, pair

pytestmark = SIMULATOR


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
