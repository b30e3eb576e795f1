"""The README shows the current diagram and the two quick-start commands."""

from __future__ import annotations

from sms_flow.chart import Chart
from sms_flow.diagram import to_mermaid
from tests.conftest import REPO


def test_readme_diagram_is_current(chart: Chart) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{to_mermaid(chart)}```" in readme, (
        "README's mermaid block is stale: paste `sms-flow diagram`"
    )


def test_readme_quick_start() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
