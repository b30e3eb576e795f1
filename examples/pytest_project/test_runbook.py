"""A test of your own code against the SMS simulator: the sms_simulator fixture.

The plugin comes with sms-flow (a pytest11 entry point): no conftest.py is needed. The setup
is in pyproject.toml beside this file.
"""

from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.simulator import Simulator


async def my_runbook(endpoint: str, source_id: str) -> None:
    """Your code: here, take a new source to SYNCING/syncing along the chart's path."""
    async with SmsClient(endpoint) as client:
        await Engine(client).change(source_id, "SYNCING/syncing", follow_path=True)


async def test_my_runbook(sms_simulator: Simulator) -> None:  # running; stopped afterwards
    source_id = await sms_simulator.register("db-01")
    await my_runbook(sms_simulator.url, source_id)
    assert str(sms_simulator.source(source_id).pair) == "SYNCING/syncing"
