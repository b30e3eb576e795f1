"""A pytest plugin: run the SMS simulator in your own tests.

Setup, in your project::

    pip install 'sms-flow[pytest]'      # sms-flow with pytest and pytest-asyncio

    # pyproject.toml
    [tool.pytest.ini_options]
    asyncio_mode = "auto"                        # async tests and fixtures need no marker
    asyncio_default_fixture_loop_scope = "function"

Installing sms-flow registers this plugin (a ``pytest11`` entry point), so there is nothing
more to do; without the entry point, add ``pytest_plugins = ["sms_flow.testing"]`` to your
top-level ``conftest.py`` or run ``pytest -p sms_flow.testing``. In pytest-asyncio's
``strict`` mode the plugin works too: mark your tests ``@pytest.mark.asyncio``.

Loading the plugin (the entry point) imports nothing. When pytest starts, it registers the
fixtures (:func:`pytest_configure`, from :mod:`sms_flow.testing._fixtures`), which import
pytest-asyncio only if it is installed and the simulator only when a test asks for one: a
test run that uses none of them is not touched, whether pytest-asyncio is installed or not.
Without pytest-asyncio, a test that asks for a fixture fails, saying how to install it.

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
    of them are stopped at teardown (annotate it with :class:`SimulatorFactory`)::

        async def test_signed(sms_simulator_factory):
            sim = await sms_simulator_factory(ak="AK", sk="SK", project_id="p1", strict=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    import pytest

    from sms_flow.simulator import Simulator, SimulatorConfig

__all__ = ["SimulatorFactory"]

_FIXTURES: Final = "sms_flow.testing._fixtures"


class SimulatorFactory(Protocol):
    """Starts a simulator; stopped when the test ends."""

    async def __call__(
        self, config: SimulatorConfig | None = None, **options: Any
    ) -> Simulator: ...


def pytest_configure(config: pytest.Config) -> None:
    """Register the fixtures (once, however the plugin was loaded)."""
    if not config.pluginmanager.has_plugin(_FIXTURES):
        config.pluginmanager.import_plugin(_FIXTURES)
