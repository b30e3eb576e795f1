"""The pytest plugin (``sms_flow/testing.py``): its fixtures, as a user's tests use them, in
pytest-asyncio's strict and auto modes."""

from __future__ import annotations

from importlib import metadata

import aiohttp
import pytest

from sms_flow.simulator import Simulator, SimulatorConfig

pytest_plugins = ["pytester"]


async def test_the_fixture_gives_a_running_default_simulator(sms_simulator: Simulator) -> None:
    assert sms_simulator.running
    assert sms_simulator.config == SimulatorConfig()
    sid = await sms_simulator.register("web-01")
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{sms_simulator.url}/v3/sources/{sid}/changestate", json={"migrationcycle": "setting"}
        ) as answer,
    ):
        assert answer.status == 200
    assert sms_simulator.source(sid).migrationcycle.value == "setting"


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


@pytest.mark.slow
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
