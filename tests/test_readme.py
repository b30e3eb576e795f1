"""The README shows the current overview diagram, its views, and the two quick-start commands."""

from __future__ import annotations

from sms_flow.chart import Chart
from sms_flow.diagram import to_mermaid
from tests.conftest import REPO


def test_readme_diagram_is_current(chart: Chart) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    overview = to_mermaid(chart, chart.views["overview"])
    assert f"```mermaid\n{overview}```" in readme, (
        "README's mermaid block is stale: paste `sms-flow diagram --view overview`"
    )
    for view in chart.views.values():  # the table of views names each one
        assert view.name == "overview" or f"| `{view.name}` | {view.title} |" in readme


def test_readme_quick_start() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
