"""The simulator's configuration (``sms_flow/simulator/config.py``)."""

from __future__ import annotations

import pytest

from sms_flow.simulator import SimulatorConfig
from tests.simulator.conftest import AK, PROJECT, SK, TOKEN


def test_config_hides_secrets_and_wants_complete_aksk() -> None:
    config = SimulatorConfig(token=TOKEN, ak=AK, sk=SK, project_id=PROJECT)
    assert TOKEN not in repr(config)
    assert SK not in repr(config)
    with pytest.raises(ValueError, match="project_id"):
        SimulatorConfig(ak=AK, sk=SK)
