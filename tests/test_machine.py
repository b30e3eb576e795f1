"""The shared transitions machine: firing, hooks before the change, many sources at once."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_flow.chart import Chart, Edge
from sms_flow.errors import TransitionRejected
from sms_flow.machine import LifecycleMachine
from sms_flow.states import parse_pair

WAITING = parse_pair("WAITING/checking")


class PushFailed(Exception):
    pass


def test_fire_moves_along_an_edge(machine: LifecycleMachine) -> None:
    assert str(machine.fire(WAITING, "configure")) == "WAITING/setting"


def test_hook_sees_the_edge_before_the_change(machine: LifecycleMachine) -> None:
    seen: list[Edge] = []
    new = machine.fire(WAITING, "configure", before=seen.append)
    assert [str(e) for e in seen] == ["configure: WAITING/checking → WAITING/setting"]
    assert new == seen[0].dest


def test_a_hook_that_raises_leaves_the_state_unchanged(machine: LifecycleMachine) -> None:
    state = WAITING

    def push(edge: Edge) -> None:
        raise PushFailed(str(edge))

    with pytest.raises(PushFailed):
        state = machine.fire(state, "configure", before=push)
    assert state == WAITING


async def test_async_hook_that_raises_leaves_the_state_unchanged(machine: LifecycleMachine) -> None:
    async def push(edge: Edge) -> None:
        await asyncio.sleep(0)
        raise PushFailed(str(edge))

    state = WAITING
    with pytest.raises(PushFailed):
        state = await machine.afire(state, "configure", before=push)
    assert state == WAITING


async def test_many_sources_share_one_machine_concurrently(
    machine: LifecycleMachine, chart: Chart
) -> None:
    states = {f"src-{i}": WAITING for i in range(200)}

    async def advance(source_id: str, trigger: str) -> None:
        async def push(edge: Edge) -> None:
            await asyncio.sleep(0.001 * (hash(source_id) % 5))
            if source_id.endswith("7"):
                raise PushFailed(source_id)

        with contextlib.suppress(PushFailed):
            states[source_id] = await machine.afire(states[source_id], trigger, before=push)

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
def test_afire_reaches_the_state_fire_reaches_through_transitions(
    machine: LifecycleMachine, chart: Chart, data: st.DataObject
) -> None:
    state = data.draw(st.sampled_from(chart.pairs))
    trigger = data.draw(st.sampled_from(chart.triggers))
    if not machine.may(state, trigger):
        with pytest.raises(TransitionRejected):
            asyncio.run(machine.afire(state, trigger))
        return
    assert asyncio.run(machine.afire(state, trigger)) == machine.fire(state, trigger)
