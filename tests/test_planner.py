"""Validation and planning: every rejection reason, partial requests, shortest legal paths."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms_flow.chart import Chart, Edge
from sms_flow.errors import InputError, TransitionRejected
from sms_flow.machine import LifecycleMachine
from sms_flow.planner import Planner, ReasonCode, check, plan
from sms_flow.states import CopyState, MigrationCycle, StatePair, StateRequest, parse_pair


def bfs_distance(chart: Chart, start: StatePair, goal: StatePair) -> int | None:
    """An independent breadth-first search, to hold the planner to."""
    seen = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            return seen[node]
        for edge in chart.edges_from(node):
            if edge.dest not in seen:
                seen[edge.dest] = seen[node] + 1
                queue.append(edge.dest)
    return None


pairs_of = st.builds(
    lambda cs, cy: StatePair(cs, cy), st.sampled_from(CopyState), st.sampled_from(MigrationCycle)
)


# -- allowed ------------------------------------------------------------------------------


def test_the_issue_examples(planner: Planner) -> None:
    ok = planner.check("SYNCING/syncing", "CUTOVERING/cutovering")
    assert ok.allowed and ok.trigger == "cutover"
    no = planner.check("WAITING/checking", "FINISHED/cutovered")
    assert not no.allowed
    assert [e.trigger for e in no.path] == ["configure", "start", "replicate", "cutover", "finish"]
    assert no.path[-1].dest == parse_pair("FINISHED/cutovered")


def test_seed_example_waiting_cutovered(planner: Planner) -> None:
    verdict = planner.check("cleared/cutovered", "WAITING/cutovered")
    assert verdict.allowed and verdict.trigger == "requeue"
    far = planner.check("SYNCING/syncing", "WAITING/cutovered")
    assert not far.allowed
    assert far.path[-1].dest == parse_pair("WAITING/cutovered")
    assert far.path[-1].trigger == "requeue"


def test_either_field_may_be_left_out(planner: Planner) -> None:
    only_copystate = planner.check("SYNCING/syncing", StateRequest(CopyState.CUTOVERING, None))
    assert only_copystate.allowed and str(only_copystate.target) == "CUTOVERING/cutovering"
    only_cycle = planner.check("WAITING/checking", StateRequest(None, MigrationCycle.SETTING))
    assert only_cycle.allowed and only_cycle.trigger == "configure"
    keeps_cycle = planner.check("SYNCING/syncing", "ERROR")
    assert keeps_cycle.allowed and str(keeps_cycle.target) == "ERROR/syncing"


def test_already_there_is_allowed_with_nothing_to_send(planner: Planner) -> None:
    verdict = planner.check("SYNCING/syncing", "SYNCING")
    assert verdict.allowed and verdict.noop and verdict.trigger is None
    assert "nothing to send" in verdict.explain()


def test_repeated_checks_are_answered_from_the_table(planner: Planner) -> None:
    current = StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
    requested = StateRequest(CopyState.CUTOVERING, None)
    assert planner.check(current, requested) is planner.check(current, requested)
    assert planner.check(("SYNCING", "syncing"), ("CUTOVERING", None)) is planner.check(
        current, requested
    )


# -- every rejection reason -----------------------------------------------------------------


def test_unknown_value(planner: Planner) -> None:
    verdict = planner.check("SYNCING/syncing", "CUTOVER")
    assert verdict.codes == {ReasonCode.UNKNOWN_VALUE}
    assert "'CUTOVER'" in verdict.explain() and "CUTOVERING" in verdict.explain()
    verdict = planner.check("SYNCNG/syncing", "CUTOVERING")
    assert verdict.codes == {ReasonCode.UNKNOWN_VALUE}


def test_empty_request(planner: Planner) -> None:
    verdict = planner.check("SYNCING/syncing", StateRequest())
    assert verdict.codes == {ReasonCode.EMPTY_REQUEST}


def test_current_not_a_state_of_the_chart(planner: Planner) -> None:
    verdict = planner.check("SYNCING/checking", "CUTOVERING")
    assert verdict.codes == {ReasonCode.INVALID_CURRENT}
    assert "SYNCING takes migrationcycle syncing" in verdict.explain()


def test_cycle_not_permitted(planner: Planner) -> None:
    verdict = planner.check("INIT/replicating", "SYNCING/checking")
    assert verdict.codes == {ReasonCode.CYCLE_NOT_PERMITTED}
    assert (
        "SYNCING cannot be paired with migrationcycle checking; it takes: syncing"
        in verdict.explain()
    )


def test_no_permitted_transition_carries_the_shortest_path(planner: Planner, chart: Chart) -> None:
    verdict = planner.check("INIT/replicating", "SYNCING/syncing")
    assert verdict.codes == {ReasonCode.NO_TRANSITION}
    assert [e.trigger for e in verdict.path] == ["replicate", "sync"]
    assert "replicate → REPLICATE/replicating" in verdict.explain()


def test_frozen(planner: Planner) -> None:
    verdict = planner.check("STOPPED/syncing", "SYNCING/syncing")
    assert ReasonCode.FROZEN in verdict.codes
    assert ReasonCode.NOT_BY_CLIENT in verdict.codes
    assert verdict.edge is not None and verdict.edge.trigger == "resume"
    assert [e.trigger for e in verdict.path] == ["resume"]
    assert "ignores changestate while the source is STOPPED" in verdict.explain()


def test_not_by_client_out_of_a_live_state(planner: Planner) -> None:
    verdict = planner.check("WAITING/checking", "DELETING")
    assert verdict.codes == {ReasonCode.NOT_BY_CLIENT}
    assert "not a changestate call" in verdict.explain()


def test_unreachable(planner: Planner) -> None:
    verdict = planner.check("DELETING/checking", "WAITING/checking")
    assert verdict.codes == {ReasonCode.FROZEN, ReasonCode.NO_TRANSITION, ReasonCode.UNREACHABLE}
    assert verdict.path == ()
    p = planner.plan("DELETING/checking", "WAITING/checking")
    assert not p.found and {r.code for r in p.reasons} == {ReasonCode.UNREACHABLE}


def test_rejection_as_exception_explains_itself(planner: Planner) -> None:
    err = TransitionRejected("src-1", planner.check("WAITING/checking", "FINISHED/cutovered"))
    assert str(err).startswith("source src-1: rejected: WAITING/checking → FINISHED/cutovered")
    assert "Shortest legal path (5 steps)" in str(err)


def test_module_level_helpers_use_the_default_chart() -> None:
    assert check("SYNCING/syncing", "CUTOVERING").allowed
    assert plan("WAITING/checking", "FINISHED").found


def test_verdict_json_is_complete(planner: Planner) -> None:
    data = planner.check("WAITING/checking", "FINISHED/cutovered").to_dict()
    assert data["allowed"] is False
    assert data["reasons"][0]["code"] == "no_transition"
    assert [s["trigger"] for s in data["path"]][-1] == "finish"


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(current=pairs_of, requested=pairs_of)
def test_check_agrees_with_the_machine(
    planner: Planner,
    machine: LifecycleMachine,
    chart: Chart,
    current: StatePair,
    requested: StatePair,
) -> None:
    verdict = planner.check(current, requested)
    if not chart.is_permitted(current) or not chart.is_permitted(requested):
        assert not verdict.allowed
        return
    pushable = [
        e
        for e in chart.edges_from(current)
        if e.dest == requested and e.pushable and not chart.is_frozen(current)
    ]
    assert verdict.allowed == (current == requested or bool(pushable))
    if verdict.allowed and verdict.trigger is not None:
        assert machine.fire(current, verdict.trigger) == requested


@settings(max_examples=300)
@given(current=pairs_of, target=pairs_of)
def test_plans_are_legal_and_shortest(
    planner: Planner, machine: LifecycleMachine, chart: Chart, current: StatePair, target: StatePair
) -> None:
    result = planner.plan(current, target)
    if not (chart.is_permitted(current) and chart.is_permitted(target)):
        assert not result.found
        return
    expected = bfs_distance(chart, current, target)
    if expected is None:
        assert not result.found
        return
    assert result.found
    assert len(result.steps) == expected
    state = current
    for step in result.steps:
        assert step.source == state
        state = machine.fire(state, step.trigger)
    assert state == target


@given(st.data())
def test_random_trigger_sequences_keep_the_pair_valid(
    machine: LifecycleMachine, chart: Chart, data: st.DataObject
) -> None:
    state = chart.initial
    for _ in range(data.draw(st.integers(1, 60))):
        trigger = data.draw(st.sampled_from(chart.triggers))
        if machine.may(state, trigger):
            state = machine.fire(state, trigger)
        else:
            with pytest.raises(TransitionRejected):
                machine.fire(state, trigger)
        assert chart.is_permitted(state)
        assert chart.pair(*state) is state


@given(
    current=pairs_of,
    requested=st.builds(
        StateRequest,
        st.none() | st.sampled_from(CopyState),
        st.none() | st.sampled_from(MigrationCycle),
    ),
)
def test_partial_requests_name_a_full_target_that_matches(
    planner: Planner, chart: Chart, current: StatePair, requested: StateRequest
) -> None:
    verdict = planner.check(current, requested)
    if verdict.allowed:
        assert verdict.target is not None
        if requested.copystate is not None:
            assert verdict.target.copystate == requested.copystate
        if requested.migrationcycle is not None:
            assert verdict.target.migrationcycle == requested.migrationcycle
    else:
        assert verdict.reasons
        if verdict.path:
            last: Edge = verdict.path[-1]
            assert requested.copystate in (None, last.dest.copystate)
            assert requested.migrationcycle in (None, last.dest.migrationcycle)


NOT_STATES: list[object] = [
    None,
    5,
    2.5,
    True,
    {"copystate": "SYNCING"},
    b"SYNCING/syncing",
    ["SYNCING", "syncing"],
    ("SYNCING", "syncing", "extra"),
]


@pytest.mark.parametrize("value", NOT_STATES, ids=repr)
def test_a_value_of_the_wrong_type_is_an_input_error_naming_it(
    planner: Planner, value: object
) -> None:
    shown = repr(value)
    for call, args in (
        (planner.check, (value, "CUTOVERING")),
        (planner.plan, (value, "CUTOVERING")),
        (planner.check, ("SYNCING/syncing", value)),
        (planner.plan, ("SYNCING/syncing", value)),
    ):
        with pytest.raises(InputError) as info:
            call(*args)
        assert shown in str(info.value)
        assert "(copystate, migrationcycle) tuple" in str(info.value)
    assert planner.check(("SYNCING", "syncing"), "CUTOVERING").allowed  # a tuple is a state
