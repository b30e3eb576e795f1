"""Diagrams: the committed page is current, and both renderings show what they should."""

from __future__ import annotations

from sms_flow.chart import Chart
from sms_flow.diagram import to_dot, to_markdown, to_mermaid
from tests.conftest import REPO


def test_committed_diagram_is_current(chart: Chart) -> None:
    committed = (REPO / "statecharts" / "sms-source.md").read_text(encoding="utf-8")
    assert committed == to_markdown(chart), (
        "statecharts/sms-source.md is stale: run `make diagram` (sms-flow diagram --format markdown "
        "--output statecharts/sms-source.md) and commit it"
    )


def test_mermaid_marks_frozen_states_and_draws_every_edge(chart: Chart) -> None:
    text = to_mermaid(chart)
    assert text.startswith("stateDiagram-v2\n")
    for cs, info in chart.states.items():
        line = next(
            line for line in text.splitlines() if line.strip().endswith(f" as s_{cs.value}")
        )
        assert ("❄ frozen" in line) == info.frozen
    class_line = next(
        line
        for line in text.splitlines()
        if line.strip().startswith("class ") and line.endswith(" frozen")
    )
    assert "s_STOPPED" in class_line and "s_SYNCING" not in class_line
    arrows = [line.strip() for line in text.splitlines() if " --> s_" in line]
    for edge in chart.edges:
        head = f"s_{edge.source.copystate.value} --> s_{edge.dest.copystate.value} : "
        [arrow] = [a for a in arrows if a.startswith(head)]  # one arrow per pair of copystates
        assert edge.trigger in arrow[len(head) :].split()
    assert "[*] --> s_WAITING : registered (checking)" in text
    assert "s_FINISHED --> [*]" in text


def test_groups_are_coloured(chart: Chart) -> None:
    text = to_mermaid(chart)
    groups = {info.group for info in chart.states.values()}
    for group in groups:
        assert f"classDef {group} " in text


def test_dot_has_a_cluster_per_group_and_dashed_service_moves(chart: Chart) -> None:
    text = to_dot(chart)
    assert text.count("subgraph ") == len({i.group for i in chart.states.values()})
    assert 's_STOPPING -> s_STOPPED [label="stopped [by service]", style=dashed];' in text
    assert 's_SYNCING -> s_CUTOVERING [label="cutover → cutovering ⚠"];' in text
    assert 's_REPLICATE -> s_SYNCING [label="sync → syncing"];' in text
    assert text.count("{") == text.count("}")


def test_markdown_lists_every_transition_entry(chart: Chart) -> None:
    text = to_markdown(chart)
    assert "| `requeue` | cleared | WAITING/cutovered | client |  |  | inferred |" in text
    assert (
        "| `clear` | FINISHED, clearfailed | clearing/cutovered | action | ⚠ yes | "
        '`POST /v3/tasks/{task_id}/action {"operation": "clear"}` | documented |'
    ) in text
    assert text.count("\n| `") == len(chart.states) + len({e.entry for e in chart.edges})
