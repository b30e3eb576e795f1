"""The plugin's fixtures (registered by :func:`sms_flow.testing.pytest_configure`).

With pytest-asyncio installed they are ``pytest_asyncio`` fixtures; without it, each one
fails the test that asks for it, saying how to install pytest-asyncio (nothing else is
touched: a test run that uses none of them passes as before).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final, NoReturn

import pytest

if TYPE_CHECKING:
    from sms_flow.simulator import Simulator, SimulatorConfig
    from sms_flow.testing import SimulatorFactory

__all__ = ["sms_simulator", "sms_simulator_factory"]

_INSTALL: Final = (
    "the sms_flow.testing fixture {name} needs pytest-asyncio, which is not installed: "
    "pip install 'sms-flow[pytest]' (or pytest-asyncio), and set asyncio_mode = \"auto\" in "
    "your pytest configuration"
)

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def sms_simulator() -> AsyncIterator[Simulator]:
        """A running simulator with the default config, stopped after the test."""
        from sms_flow.simulator import Simulator, SimulatorConfig

        async with Simulator(SimulatorConfig()) as sim:
            yield sim

    @pytest_asyncio.fixture
    async def sms_simulator_factory() -> AsyncIterator[SimulatorFactory]:
        """An async callable ``factory(config=None, **options) -> Simulator``; all stopped after."""
        from sms_flow.simulator import Simulator

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

else:

    @pytest.fixture(name="sms_simulator")
    def _no_simulator() -> NoReturn:
        pytest.fail(_INSTALL.format(name="sms_simulator"), pytrace=False)

    @pytest.fixture(name="sms_simulator_factory")
    def _no_simulator_factory() -> NoReturn:
        pytest.fail(_INSTALL.format(name="sms_simulator_factory"), pytrace=False)
