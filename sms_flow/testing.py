"""A pytest plugin: run the SMS simulator in your own tests.

Enable it in your top-level ``conftest.py``::

    pytest_plugins = ["sms_flow.testing"]

or on the command line with ``pytest -p sms_flow.testing``. (When sms-flow is installed,
its ``pytest11`` entry point may already load it; then there is nothing to do.) It needs
pytest-asyncio, and works in both its ``strict`` and ``auto`` modes: the fixtures are
``pytest_asyncio`` fixtures, so in strict mode mark your tests ``@pytest.mark.asyncio``.

Fixtures (function scope):

``sms_simulator``
    A running :class:`~sms_flow.simulator.Simulator` with the default config (no auth, no
    faults, the default statechart). ``sms_simulator.url`` is its base URL::

        async def test_push(sms_simulator):
            source_id = await sms_simulator.register("web-01")
            ...  # point your code at sms_simulator.url
            assert sms_simulator.source(source_id).copystate.value == "REPLICATE"

``sms_simulator_factory``
    An async callable that starts simulators with the config you give (a
    :class:`~sms_flow.simulator.SimulatorConfig`, or its fields as keyword arguments); all
    of them are stopped at teardown::

        async def test_signed(sms_simulator_factory):
            sim = await sms_simulator_factory(ak="AK", sk="SK", project_id="p1", strict=True)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest_asyncio

from sms_flow.simulator import Simulator, SimulatorConfig

__all__ = ["SimulatorFactory", "sms_simulator", "sms_simulator_factory"]


class SimulatorFactory(Protocol):
    """Starts a simulator; stopped when the test ends."""

    async def __call__(
        self, config: SimulatorConfig | None = None, **options: Any
    ) -> Simulator: ...


@pytest_asyncio.fixture
async def sms_simulator() -> AsyncIterator[Simulator]:
    """A running simulator with the default config, stopped after the test."""
    async with Simulator(SimulatorConfig()) as sim:
        yield sim


@pytest_asyncio.fixture
async def sms_simulator_factory() -> AsyncIterator[SimulatorFactory]:
    """An async callable ``factory(config=None, **options) -> Simulator``; all stopped after."""
    started: list[Simulator] = []

    async def factory(config: SimulatorConfig | None = None, **options: Any) -> Simulator:
        sim = Simulator(config, **options)
        await sim.start()
        started.append(sim)
        return sim

    try:
        yield factory
    finally:
        for sim in reversed(started):
            await sim.stop()
