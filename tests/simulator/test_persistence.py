"""The simulator's state file (``sms_flow/simulator/persistence.py``): sources and histories
that outlive a restart; an unusable file refused with its name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from sms_flow.errors import ConfigError
from sms_flow.simulator import Simulator
from sms_flow.states import CopyState
from tests.conftest import eventually
from tests.simulator.conftest import call, pair, put_url


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
        await eventually(lambda: second.source(moving).copystate is CopyState.STOPPED)
        assert second.history(moving)[-1].time == pytest.approx(stopping_at + 0.05, abs=1e-6)
        shown = await call(http, "GET", f"{second.url}/v3/sources/{sid}")
        assert shown.json["migration_cycle"] == "setting"


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
