"""The shared transitions machine: steps through it, its callbacks, many sources at once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transitions import EventData, MachineError
from transitions.core import Condition

from sms_flow.chart import Chart, Edge
from sms_flow.errors import ConfigError, TransitionRejected
from sms_flow.machine import LifecycleMachine
from sms_flow.planner import ReasonCode
from sms_flow.states import StatePair, parse_pair

WAITING = parse_pair("WAITING/checking")
SETTING = parse_pair("WAITING/setting")


class PushFailed(Exception):
    pass


class BoundModel(Protocol):
    """A model bound to a machine: ``transitions`` adds its state and its trigger method."""

    state: str

    def trigger(self, name: str) -> bool: ...


def state_of(event: EventData) -> str:
    """The state of the model a callback's event is about (``transitions`` types it ``object``)."""
    state: str = cast(Any, event.model).state
    return state


@pytest.fixture
def own(chart: Chart) -> LifecycleMachine:
    """A machine of this test's own, to register callbacks on."""
    return LifecycleMachine(chart)


@pytest.fixture(scope="module")
def bound(chart: Chart) -> tuple[LifecycleMachine, BoundModel]:
    """A machine with one model bound to it: transitions' own trigger, for comparison."""
    machine = LifecycleMachine(chart)

    class Model:
        pass

    model = Model()
    machine.machine.add_model(model, initial=str(WAITING))
    return machine, cast(BoundModel, model)


@pytest.fixture(scope="module")
def watched(chart: Chart) -> tuple[LifecycleMachine, list[str]]:
    """A machine with on_exit and on_enter callbacks on every state, and what they saw."""
    machine = LifecycleMachine(chart)
    seen: list[str] = []
    for name, state in machine.machine.states.items():
        state.add_callback("exit", lambda event, name=name: seen.append(f"exit {name}"))
        state.add_callback("enter", lambda event, name=name: seen.append(f"enter {name}"))
    return machine, seen


def test_fire_moves_along_an_edge(machine: LifecycleMachine) -> None:
    assert str(machine.fire(WAITING, "configure")) == "WAITING/setting"


def test_before_callbacks_see_the_edge_before_the_change(own: LifecycleMachine) -> None:
    seen: list[tuple[str, str]] = []

    def before(event: EventData) -> None:
        seen.append((str(event.kwargs["edge"]), state_of(event)))

    own.machine.before_state_change.append(before)
    new = own.fire(WAITING, "configure")
    assert seen == [("configure: WAITING/checking → WAITING/setting", "WAITING/checking")]
    assert new == SETTING


def test_a_before_callback_that_raises_leaves_the_state_unchanged(own: LifecycleMachine) -> None:
    reached: list[str] = []

    def push(event: EventData) -> None:
        raise PushFailed(str(event.kwargs["edge"]))

    own.machine.get_transitions("configure", str(WAITING))[0].add_callback("before", push)
    own.machine.states[str(WAITING)].add_callback("exit", lambda event: reached.append("exit"))
    own.machine.states[str(SETTING)].add_callback("enter", lambda event: reached.append("enter"))
    own.machine.after_state_change.append(lambda event: reached.append(event.model.state))
    with pytest.raises(PushFailed, match="configure: WAITING/checking → WAITING/setting"):
        own.fire(WAITING, "configure")
    assert reached == [], "no state was left or entered, nothing after the change ran"
    assert not own.machine.models, "no source is left bound to the machine"


def test_a_step_commits_only_when_told(own: LifecycleMachine) -> None:
    """begin → (the push, elsewhere) → commit → finish; a firing never committed changes nothing."""
    log: list[str] = []
    transition = own.machine.get_transitions("configure", str(WAITING))[0]
    transition.add_callback("before", lambda event: log.append("before"))
    transition.add_callback("after", lambda event: log.append(f"after {event.model.state}"))
    own.machine.states[str(WAITING)].add_callback("exit", lambda event: log.append("exit"))
    own.machine.states[str(SETTING)].add_callback("enter", lambda event: log.append("enter"))
    abandoned = own.begin(WAITING, "configure")
    assert log == ["before"]
    del abandoned  # the push failed: nothing else runs, no state changed anywhere
    firing = own.begin(WAITING, "configure", source_id="s1")
    new = firing.commit()
    assert new == SETTING and log == ["before", "before", "exit", "enter"]
    firing.finish()
    assert log == ["before", "before", "exit", "enter", "after WAITING/setting"]


def test_a_condition_refuses_the_step_before_anything_runs(own: LifecycleMachine) -> None:
    calls: list[str] = []

    def within_window(event: EventData) -> bool:
        source_id: str = event.kwargs["source_id"]
        calls.append(source_id)
        return source_id != "frozen-by-policy"

    transition = own.machine.get_transitions("configure", str(WAITING))[0]
    transition.conditions.append(Condition(within_window))
    transition.add_callback("before", lambda event: calls.append("before"))
    with pytest.raises(TransitionRejected) as info:
        own.begin(WAITING, "configure", source_id="frozen-by-policy")
    assert info.value.verdict.codes == {ReasonCode.CONDITION}
    assert info.value.source_id == "frozen-by-policy"
    assert "within_window" in str(info.value)
    assert calls == ["frozen-by-policy"], "no before callback ran"
    assert own.fire(WAITING, "configure", source_id="ok") == SETTING
    assert calls == ["frozen-by-policy", "ok", "before"]


def test_unless_and_prepare_are_asked_at_the_gate(own: LifecycleMachine) -> None:
    prepared: list[str] = []
    own.machine.prepare_event.append(lambda event: prepared.append(event.event.name))
    transition = own.machine.get_transitions("configure", str(WAITING))[0]
    transition.conditions.append(Condition(lambda event: event.kwargs.get("hold", False), False))
    assert own.fire(WAITING, "configure") == SETTING
    with pytest.raises(TransitionRejected, match="unless"):
        own.fire(WAITING, "configure", hold=True)
    assert prepared == ["configure", "configure"]


def test_machine_callbacks_the_steps_cannot_run_are_refused(own: LifecycleMachine) -> None:
    own.machine.finalize_event = [lambda event: None]
    with pytest.raises(ConfigError, match="finalize_event or on_exception"):
        own.begin(WAITING, "configure")


def test_follow_skips_the_gate_and_runs_the_change(own: LifecycleMachine) -> None:
    stopping = parse_pair("STOPPING/syncing")
    seen: list[str] = []
    transition = own.machine.get_transitions("stopped", str(stopping))[0]
    transition.conditions.append(Condition(lambda event: False))
    transition.add_callback("before", lambda event: seen.append("before"))
    transition.add_callback("after", lambda event: seen.append(event.model.state))
    firing = own.follow(stopping, "stopped")
    assert str(firing.commit()) == "STOPPED/syncing"
    firing.finish()
    assert seen == ["STOPPED/syncing"]


async def test_many_sources_share_one_machine_concurrently(
    machine: LifecycleMachine, chart: Chart
) -> None:
    states = {f"src-{i}": WAITING for i in range(200)}

    async def advance(source_id: str, trigger: str) -> None:
        firing = machine.begin(states[source_id], trigger, source_id=source_id)
        with contextlib.suppress(PushFailed):
            await asyncio.sleep(0.001 * (hash(source_id) % 5))
            if source_id.endswith("7"):
                raise PushFailed(source_id)
            states[source_id] = firing.commit()
            firing.finish()

    await asyncio.gather(*(advance(s, "configure") for s in states))
    moved = {s for s, p in states.items() if str(p) == "WAITING/setting"}
    stayed = {s for s, p in states.items() if p == WAITING}
    assert stayed == {s for s in states if s.endswith("7")}
    assert moved | stayed == set(states)
    assert not machine.machine.models, "no source is ever bound to the machine as a model"


def test_unpermitted_and_unknown_triggers_are_rejected(machine: LifecycleMachine) -> None:
    with pytest.raises(TransitionRejected, match="'finish' is not permitted from WAITING/checking"):
        machine.fire(WAITING, "finish")
    with pytest.raises(TransitionRejected, match="unknown trigger 'launch'"):
        machine.fire(WAITING, "launch")


def test_service_moves_can_be_followed(machine: LifecycleMachine) -> None:
    # The machine knows every edge, including those the service makes, so a driver can
    # follow what it observes.
    assert str(machine.fire(parse_pair("STOPPING/syncing"), "stopped")) == "STOPPED/syncing"
    assert machine.triggers(parse_pair("clearing/cutovered")) == ["clear_done", "clear_failed"]


@given(st.data())
def test_the_machine_decides_the_committed_state(
    bound: tuple[LifecycleMachine, BoundModel],
    watched: tuple[LifecycleMachine, list[str]],
    chart: Chart,
    data: st.DataObject,
) -> None:
    """A step's committed state is the one transitions' own trigger reaches on a bound model,
    whether the states have callbacks to run on the way or not."""
    machine, model = bound
    with_callbacks, seen = watched
    state: StatePair = data.draw(st.sampled_from(chart.pairs))
    trigger: str = data.draw(st.sampled_from(chart.triggers))
    machine.machine.set_state(str(state), model)
    edge: Edge | None = chart.edge(state, trigger)
    if edge is None:
        with pytest.raises(TransitionRejected):
            machine.begin(state, trigger)
        with pytest.raises(MachineError):
            model.trigger(trigger)
        return
    firing = machine.begin(state, trigger)
    committed = firing.commit()
    firing.finish()
    assert model.trigger(trigger) is True
    assert str(committed) == model.state
    assert committed == edge.dest
    seen.clear()
    assert with_callbacks.fire(state, trigger) == committed
    assert seen == [f"exit {state}", f"enter {committed}"]
