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


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_credentials(host: str) -> None:
    assert SimulatorConfig(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "sim.example.com"])
def test_any_other_host_needs_credentials(host: str) -> None:
    with pytest.raises(ValueError, match=f"host '{host}' is not a loopback address.*give a token"):
        SimulatorConfig(host=host)
    assert SimulatorConfig(host=host, token=TOKEN).host == host
    assert SimulatorConfig(host=host, ak=AK, sk=SK, project_id=PROJECT).host == host


def test_the_control_token_is_hidden_and_the_guards_have_bounds() -> None:
    config = SimulatorConfig(control_token="ctl-secret-0001")
    assert "ctl-secret-0001" not in repr(config)
    assert (config.header_timeout, config.max_connections) == (30.0, 512)
    with pytest.raises(ValueError, match="header_timeout"):
        SimulatorConfig(header_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        SimulatorConfig(max_connections=0)
