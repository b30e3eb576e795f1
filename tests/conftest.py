"""Shared fixtures: the default chart, its planner and machine, and a chart-file writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sms_flow.chart import Chart, default_chart, default_chart_path
from sms_flow.machine import LifecycleMachine
from sms_flow.planner import Planner

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def chart() -> Chart:
    return default_chart()


@pytest.fixture(scope="session")
def planner(chart: Chart) -> Planner:
    return Planner(chart)


@pytest.fixture(scope="session")
def machine(chart: Chart) -> LifecycleMachine:
    return LifecycleMachine(chart)


@pytest.fixture(scope="session")
def default_chart_text() -> str:
    return default_chart_path().read_text(encoding="utf-8")


@pytest.fixture
def write_chart(tmp_path: Path) -> Callable[[str], Path]:
    """Write chart YAML text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "chart.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    """Tests log at WARNING and above, to standard error, as the CLI does by default."""
    from sms_flow.log import configure

    configure(level="warning", json=True)
