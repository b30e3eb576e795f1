"""Diagrams: the committed page is current, and both renderings show what they should."""

from __future__ import annotations

import pytest

from sms_flow.chart import Chart
from sms_flow.diagram import select_view, to_dot, to_markdown, to_mermaid
from sms_flow.errors import InputError
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


def test_a_view_draws_its_edges_and_the_states_they_join(chart: Chart) -> None:
    text = to_mermaid(chart, chart.views["stop"])
    nodes = {line.split(" as ")[1] for line in text.splitlines() if " as s_" in line}
    assert nodes == {"s_INIT", "s_REPLICATE", "s_SYNCING", "s_STOPPING", "s_STOPPED"}
    assert "s_STOPPING --> s_STOPPED : stopped [by service]" in text
    assert "resume [by action]" in text
    assert "fail" not in text and "delete" not in text
    assert "[*]" not in text  # no move out of registration, no final state entered
    assert "classDef failure" not in text  # only the groups it shows
    # A group keeps its colour in every view.
    whole = to_mermaid(chart)
    for line in text.splitlines():
        if line.strip().startswith("classDef stop "):
            assert line in whole.splitlines()


def test_the_overview_starts_at_registration_and_ends_at_finished(chart: Chart) -> None:
    text = to_mermaid(chart, chart.views["overview"])
    assert "[*] --> s_WAITING : registered (checking)" in text
    assert "s_FINISHED --> [*]" in text
    assert "s_ERROR" not in text and "s_DELETING" not in text
    dot = to_dot(chart, chart.views["deletion"])
    # Only the final state it moves into ends; FINISHED and cleared are left, not entered.
    assert [line.strip() for line in dot.splitlines() if "-> end" in line] == ["s_DELETING -> end;"]
    assert dot.count("{") == dot.count("}")
    dot = to_dot(chart, chart.views["stop"])
    assert "start [" not in dot and "start ->" not in dot  # no move out of registration


def test_markdown_has_the_overview_first_then_every_view(chart: Chart) -> None:
    text = to_markdown(chart)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    titles = [v.title for v in chart.views.values()]
    assert headings[0] == "## The main path"
    assert headings[: len(titles) + 1] == [
        "## The main path",
        *(f"## {t}" for t in titles if t != "The main path"),
        "## The whole chart",
    ]
    for name in chart.views:
        assert f"`sms-flow diagram --view {name}`" in text


def test_select_view_names_the_views_there_are(chart: Chart) -> None:
    assert select_view(chart, None) is None and select_view(chart, "all") is None
    assert select_view(chart, "drill") is chart.views["drill"]
    with pytest.raises(InputError, match="no view 'bogus'; its views: overview, check"):
        select_view(chart, "bogus")
