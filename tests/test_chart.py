"""The statechart: the default file, and the loader's checks with file name and entry."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_flow.chart import By, Chart, default_chart_path, load_chart
from sms_flow.errors import ChartError
from sms_flow.states import CopyState, MigrationCycle, StatePair, parse_pair
from tests.conftest import REPO

TINY = """\
name: tiny
initial: WAITING/checking
states:
  WAITING: {cycles: [checking, setting]}
  INIT: {cycles: [replicating]}
  FINISHED: {cycles: [cutovered], final: true, frozen: true}
transitions:
  - {trigger: configure, from: WAITING/checking, to: WAITING, cycle: setting, basis: inferred}
  - {trigger: start, from: WAITING/setting, to: INIT, cycle: replicating, basis: documented}
  - {trigger: finish, from: INIT, to: FINISHED, cycle: cutovered, basis: documented}
"""


def load_error(write_chart: Callable[[str], Path], text: str) -> ChartError:
    path = write_chart(text)
    with pytest.raises(ChartError) as info:
        load_chart(path)
    assert str(path) in str(info.value), "the error names the file"
    return info.value


# -- the default chart --------------------------------------------------------------------


def test_default_chart_names_every_copystate(chart: Chart) -> None:
    assert set(chart.states) == set(CopyState)


def test_default_chart_marks_the_documented_frozen_states(chart: Chart) -> None:
    frozen = {cs.value for cs, info in chart.states.items() if info.frozen}
    assert frozen == {
        "UNAVAILABLE",
        "STOPPING",
        "STOPPED",
        "DELETING",
        "FINISHED",
        "clearing",
        "clearfailed",
    }


def test_main_path_is_pushable(chart: Chart) -> None:
    path = ["WAITING/setting", "INIT/replicating", "REPLICATE/replicating", "SYNCING/syncing",
            "CUTOVERING/cutovering", "FINISHED/cutovered"]  # fmt: skip
    for a, b in itertools.pairwise(path):
        edges = [e for e in chart.edges_from(parse_pair(a)) if str(e.dest) == b]
        assert edges and edges[0].pushable, f"{a} → {b}"


def test_the_pages_example_is_a_legal_destination(chart: Chart) -> None:
    example = StatePair(CopyState.WAITING, MigrationCycle.CUTOVERED)
    assert chart.is_permitted(example)
    incoming = [e for e in chart.edges if e.dest == example]
    assert any(e.pushable and not chart.is_frozen(e.source) for e in incoming)
    assert example in chart.reachable_from(chart.initial)


def test_every_edge_is_marked_documented_or_inferred_with_a_note(chart: Chart) -> None:
    for edge in chart.edges:
        assert edge.basis.value in {"documented", "inferred"}
        assert edge.note, edge


def test_no_edge_out_of_a_frozen_state_is_pushed(chart: Chart) -> None:
    for edge in chart.edges:
        if chart.is_frozen(edge.source):
            assert edge.by is not By.CLIENT, edge


def test_every_state_is_reachable_from_registration(chart: Chart) -> None:
    assert chart.initial == StatePair(CopyState.WAITING, MigrationCycle.CHECKING)
    assert chart.reachable_from(chart.initial) == set(chart.pairs)


@given(st.data())
def test_from_every_non_final_state_a_final_state_is_reachable(
    chart: Chart, data: st.DataObject
) -> None:
    pair = data.draw(st.sampled_from(chart.pairs))
    reachable = chart.reachable_from(pair)
    assert any(chart.is_final(p) for p in reachable)


def test_pairs_are_shared_instances(chart: Chart) -> None:
    for edge in chart.edges:
        assert chart.pair(*edge.dest) is edge.dest


def test_user_chart_loads_instead_of_the_default(write_chart: Callable[[str], Path]) -> None:
    chart = load_chart(write_chart(TINY))
    assert chart.name == "tiny"
    assert len(chart.pairs) == 4
    assert [e.trigger for e in chart.edges] == ["configure", "start", "finish"]


def test_default_chart_path_is_the_checkouts_file() -> None:
    assert default_chart_path().name == "sms-source.yaml"
    assert default_chart_path().is_file()


# -- loader errors ------------------------------------------------------------------------


def test_unknown_state(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, TINY.replace("to: INIT,", "to: INITT,"))
    assert err.entry == "transitions[1] (trigger 'start').to"
    assert "unknown copystate 'INITT'" in err.problem


def test_state_not_described(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, TINY.replace("to: INIT,", "to: SYNCING,"))
    assert "transitions[1]" in err.entry
    assert "SYNCING is not described" in err.problem


def test_cycle_not_permitted_for_a_state(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, TINY.replace("cycle: replicating", "cycle: syncing"))
    assert err.entry == "transitions[1] (trigger 'start').to"
    assert "cycle syncing is not permitted for INIT" in err.problem


def test_kept_cycle_not_permitted_names_where_it_came_from(
    write_chart: Callable[[str], Path],
) -> None:
    err = load_error(write_chart, TINY.replace("cycle: replicating", "cycle: keep"))
    assert "kept from WAITING/setting" in err.problem


def test_unknown_cycle(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, TINY.replace("[checking, setting]", "[checking, seting]"))
    assert err.entry == "states.WAITING.cycles"
    assert "unknown migrationcycle 'seting'" in err.problem


def test_unreachable_state(write_chart: Callable[[str], Path]) -> None:
    text = TINY.replace(
        "  INIT: {cycles: [replicating]}\n",
        "  INIT: {cycles: [replicating]}\n  ERROR: {cycles: [replicating], final: true}\n",
    )
    err = load_error(write_chart, text)
    assert err.entry == "states.ERROR"
    assert "ERROR/replicating cannot be reached" in err.problem


def test_non_final_state_with_no_way_out(write_chart: Callable[[str], Path]) -> None:
    text = (
        TINY.replace("final: true, frozen: true", "frozen: true")
        + "  - {trigger: fail, from: INIT, to: ERROR, basis: inferred}\n"
    )
    text = text.replace(
        "  INIT: {cycles: [replicating]}\n",
        "  INIT: {cycles: [replicating]}\n  ERROR: {cycles: [replicating], final: true}\n",
    )
    err = load_error(write_chart, text)
    assert ("states.FINISHED", "FINISHED/cutovered is not final and has no way out") in err.problems


def test_trap_with_no_final_state(write_chart: Callable[[str], Path]) -> None:
    text = TINY + "  - {trigger: back, from: INIT, to: WAITING, cycle: setting, basis: inferred}\n"
    text = text.replace(
        "  - {trigger: finish, from: INIT, to: FINISHED, cycle: cutovered, basis: documented}\n", ""
    )
    text = text.replace(
        "  FINISHED: {cycles: [cutovered], final: true, frozen: true}\n",
        "  FINISHED: {cycles: [cutovered], final: true}\n",
    )
    err = load_error(write_chart, text)
    messages = " ".join(p for _, p in err.problems)
    assert "no final state can be reached from WAITING/checking" in messages
    assert "FINISHED/cutovered cannot be reached" in messages


def test_ambiguous_trigger(write_chart: Callable[[str], Path]) -> None:
    text = (
        TINY
        + "  - {trigger: start, from: WAITING/setting, to: FINISHED, cycle: cutovered, basis: inferred}\n"
    )
    err = load_error(write_chart, text)
    assert err.entry == "transitions[3] (trigger 'start')"
    assert "ambiguous from WAITING/setting" in err.problem
    assert "INIT/replicating" in err.problem and "FINISHED/cutovered" in err.problem


def test_pushed_edge_out_of_a_frozen_state(write_chart: Callable[[str], Path]) -> None:
    text = (
        TINY
        + "  - {trigger: reset, from: FINISHED, to: WAITING, cycle: checking, basis: inferred}\n"
    )
    err = load_error(write_chart, text)
    assert err.entry == "transitions[3] (trigger 'reset')"
    assert "FINISHED is frozen" in err.problem and "by: service" in err.problem


def test_structural_errors_name_the_field(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, TINY.replace(", basis: documented}", "}", 1))
    assert err.entry == "transitions[1] (trigger 'start').basis"
    err = load_error(write_chart, TINY.replace("basis: inferred}", "basis: guessed}"))
    assert "transitions[0]" in err.entry and "basis" in err.entry
    err = load_error(write_chart, TINY + "colour: blue\n")
    assert err.entry == "colour"


def test_bad_trigger_name(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, TINY.replace("trigger: finish", "trigger: finish-now"))
    assert "Python identifier" in err.problem


def test_yaml_syntax_error_gives_the_line(write_chart: Callable[[str], Path]) -> None:
    err = load_error(
        write_chart, TINY.replace("initial: WAITING/checking", "initial: [WAITING/checking")
    )
    assert err.entry.startswith("line ")
    assert "not valid YAML" in err.problem


def test_duplicate_key_is_refused(write_chart: Callable[[str], Path]) -> None:
    text = TINY.replace(
        "  INIT: {cycles: [replicating]}\n",
        "  INIT: {cycles: [replicating]}\n  INIT: {cycles: [syncing]}\n",
    )
    err = load_error(write_chart, text)
    assert "'INIT' is given twice" in err.problem


def test_initial_state_checked(write_chart: Callable[[str], Path]) -> None:
    err = load_error(
        write_chart, TINY.replace("initial: WAITING/checking", "initial: WAITING/syncing")
    )
    assert err.entry == "initial"
    assert "cycle syncing is not permitted for WAITING" in err.problem


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="no such file"):
        load_chart(tmp_path / "nope.yaml")
    with pytest.raises(ChartError, match="is a directory"):
        load_chart(tmp_path)


def test_every_problem_is_reported_at_once(write_chart: Callable[[str], Path]) -> None:
    text = TINY.replace("to: INIT,", "to: INITT,").replace(
        "[checking, setting]", "[checking, seting]"
    )
    err = load_error(write_chart, text)
    assert len(err.problems) >= 2
    assert str(err).splitlines()[0].endswith("problems")


def test_loading_the_default_text_twice_gives_equal_tables(default_chart_text: str) -> None:
    a = Chart.from_text(default_chart_text, source="a")
    b = Chart.from_text(default_chart_text, source="b")
    assert a.digest == b.digest
    assert [str(e) for e in a.edges] == [str(e) for e in b.edges]


def test_every_edge_of_the_default_chart_has_its_evidence(chart: Chart) -> None:
    """statecharts/README.md names the sources behind each edge: no edge may go unexplained."""
    evidence = (REPO / "statecharts" / "README.md").read_text(encoding="utf-8")
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in evidence.splitlines()
        if line.startswith("| ")
    ]
    for edge in chart.edges:
        found = [
            row
            for row in rows
            if len(row) == 6
            and edge.trigger in {t.strip() for t in row[0].split(",")}
            and row[2] == edge.by.value
            and row[3] == edge.basis.value
            and row[4].startswith("**yes**" if edge.irreversible else "no")
        ]
        assert found, (
            f"statecharts/README.md has no row for {edge.trigger} (by {edge.by.value}, "
            f"{edge.basis.value}, irreversible {edge.irreversible})"
        )


def test_the_moves_that_cannot_be_undone_are_marked(chart: Chart) -> None:
    marked = {e.trigger for e in chart.edges if e.irreversible}
    assert marked == {"cutover", "finish", "clear", "delete"}


def test_every_move_another_api_makes_says_what_to_call(chart: Chart) -> None:
    for edge in chart.edges:
        assert (edge.call is not None) == (edge.by is By.ACTION), edge
    clear = chart.edge(parse_pair("FINISHED/cutovered"), "clear")
    assert clear is not None
    assert clear.call == 'POST /v3/tasks/{task_id}/action {"operation": "clear"}'
    delete = chart.edge(parse_pair("ERROR/syncing"), "delete")
    assert delete is not None and delete.call == "DELETE /v3/sources/{source_id}"


def test_a_call_on_a_pushed_move_is_refused(write_chart: Callable[[str], Path]) -> None:
    text = TINY.replace(
        "basis: documented}", 'basis: documented, call: "POST /v3/tasks/{id}/action"}', 1
    )
    err = load_error(write_chart, text)
    assert err.entry == "transitions[1] (trigger 'start').call"
    assert "by: client" in err.problem and "by: action" in err.problem


def test_irreversible_must_be_a_boolean(write_chart: Callable[[str], Path]) -> None:
    err = load_error(
        write_chart, TINY.replace("basis: inferred}", "basis: inferred, irreversible: maybe}")
    )
    assert err.entry == "transitions[0] (trigger 'configure').irreversible"
    chart = load_chart(
        write_chart(TINY.replace("basis: inferred}", "basis: inferred, irreversible: true}"))
    )
    assert [e.trigger for e in chart.edges if e.irreversible] == ["configure"]


def test_no_file_points_outside_the_repository() -> None:
    """A user of sms-flow has only the repository: no file may refer to the team's shared notes."""
    outside = "shared" + "/reference"
    offenders = [
        str(path.relative_to(REPO))
        for pattern in ("sms_flow/**/*.py", "tests/**/*.py", "statecharts/*", "examples/*", "*.md")
        for path in REPO.glob(pattern)
        if path.is_file() and outside in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []


# -- files that must not be read whole, and YAML that must not crash -----------------------


def test_a_chart_nested_20000_deep_is_a_chart_error(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, "name: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert err.entry == "line 1, column 70"  # the mapping and 63 lists are 64 levels
    assert "nested more than 64 levels deep" in err.problem


def test_a_value_yaml_cannot_make_is_a_chart_error(write_chart: Callable[[str], Path]) -> None:
    err = load_error(write_chart, TINY.replace("name: tiny", "name: 2020-13-45"))
    assert err.entry == "line 1, column 7"
    assert "month must be in 1..12" in err.problem


def test_an_endless_or_huge_file_is_refused_unread(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match=r"/dev/zero: is not a regular file \(it is a character"):
        load_chart("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text(TINY + "#" * (1 << 20), encoding="utf-8")
    with pytest.raises(ChartError, match="is larger than 1,048,576 bytes"):
        load_chart(big)


# -- views ----------------------------------------------------------------------------------


def test_every_edge_of_the_default_chart_is_in_a_view(chart: Chart) -> None:
    """The views together draw the whole chart, and the overview is the main path."""
    drawn = {t for view in chart.views.values() for t in view.triggers}
    assert set(chart.triggers) <= drawn, set(chart.triggers) - drawn
    assert chart.views["overview"].triggers == (
        "configure",
        "start",
        "replicate",
        "sync",
        "cutover",
        "finish",
    )


def test_a_view_naming_an_unknown_trigger(write_chart: Callable[[str], Path]) -> None:
    text = TINY + "views:\n  main:\n    title: Main\n    triggers: [configure, launch]\n"
    error = load_error(write_chart, text)
    assert "views.main.triggers" in str(error)
    assert "'launch'" in str(error) and "the chart's triggers: configure" in str(error)


def test_a_view_needs_a_title_and_triggers(write_chart: Callable[[str], Path]) -> None:
    error = load_error(write_chart, TINY + "views:\n  main:\n    note: x\n")
    assert "views.main.title" in str(error) and "views.main.triggers" in str(error)
    error = load_error(write_chart, TINY + "views:\n  all:\n    title: A\n    triggers: [start]\n")
    assert "views.all" in str(error) and "not 'all'" in str(error)
