"""The lifecycle as a ``transitions`` state machine, shared by every tracked source server.

One :class:`LifecycleMachine` is built from a chart: its states are the chart's pairs
(named ``COPYSTATE/cycle``), its transitions the chart's edges. A source server is not a
model bound to the machine (``Machine.add_model`` costs about 0.4 ms and 17 KB a model);
its state is one shared :class:`~sms_flow.states.StatePair` held wherever the caller keeps
it. Each step runs on a small throw-away cursor model that starts in the source's state, so
any number of sources, in any number of coroutines, share one machine.

**The extension point.** ``transitions`` callbacks registered on the shared machine
(:attr:`LifecycleMachine.machine`) run for every step the engine takes, in ``transitions``'
own order, with the push to the service as the state change:

1. *the gate*, before anything is sent: the machine's ``prepare_event``, the transition's
   ``prepare`` and its ``conditions``/``unless``, evaluated by ``transitions``' own
   ``may_<trigger>`` machinery (``Machine._can_trigger``). A step they refuse raises
   :class:`~sms_flow.errors.TransitionRejected` with reason ``condition``; the engine
   journals it as rejected and sends nothing;
2. the machine's ``before_state_change``, then the transition's ``before``. One that raises
   stops the step: nothing is sent, the state is unchanged, the exception reaches the caller;
3. (the engine pushes the change and reads it back; if that fails, the step ends here and
   nothing below runs);
4. the state change: the source state's ``on_exit``, the cursor's new state, the
   destination's ``on_enter`` (:meth:`Firing.commit`); then the transition's ``after`` and
   the machine's ``after_state_change`` (:meth:`Firing.finish`).

For example, a change window and a notice after each change::

    from transitions.core import Condition

    machine = engine.machine.machine
    for transition in machine.get_transitions("cutover"):
        transition.conditions.append(Condition(lambda event: in_window(event.kwargs["source_id"])))
    machine.after_state_change.append(lambda event: notify(event.model.state))

Each callback runs once a step. Callbacks get an ``EventData`` (the machine sends events):
``event_data.model.state`` is the cursor's state name, ``event_data.kwargs`` holds what the
caller passed (the engine passes ``source_id``, ``actor``, ``reason``, ``forced`` and
``wave``) and ``edge``, the chart's :class:`~sms_flow.chart.Edge`. The gate sees the
``EventData`` of ``transitions``' ``may_`` check; steps 2 and 4 share another one. Give
callables (or dotted import paths), not method names: a name is looked up on the cursor.
The machine-level ``finalize_event`` and ``on_exception`` belong to ``transitions``' own
trigger loop, which a step split around an asynchronous push does not run: a step refuses
to start while either is set. The chart decides which moves exist; add callbacks to its
transitions (``machine.get_transitions(trigger, source)``), not transitions of your own.

A step through the machine costs about a third of one synchronous ``transitions`` trigger
(measured side by side on a busy 2-core machine: 7-8 µs against 23 µs), because what could
only be a no-op is skipped: when nothing is registered at the gate, ``may_`` is not asked (it
could only answer yes), and when neither state has ``on_exit``/``on_enter`` callbacks (nor is
final), the state change is the machine's ``set_state`` alone. ``transitions``'
``AsyncMachine`` costs four to six times a trigger.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

from transitions import EventData, Machine, Transition

from sms_flow.chart import Chart, Edge
from sms_flow.errors import ConfigError, TransitionRejected
from sms_flow.planner import Planner, Reason, ReasonCode, Verdict
from sms_flow.states import StatePair, StateRequest

__all__ = ["Firing", "LifecycleMachine"]


class _Cursor:
    """The model a single step runs on; it exists for the length of one step."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


class Firing:
    """One step between its start and its commit (:meth:`LifecycleMachine.begin`).

    The gate and the ``before`` callbacks have run. :meth:`commit` makes the state change
    through the machine once the change is known to have happened; :meth:`finish` runs the
    ``after`` callbacks. Dropping a firing without committing leaves every state unchanged.
    """

    __slots__ = ("_by_name", "_cursor", "_data", "_transition", "edge")

    def __init__(
        self,
        edge: Edge,
        transition: Transition,
        cursor: _Cursor,
        data: EventData,
        by_name: dict[str, StatePair],
    ) -> None:
        self.edge = edge
        self._transition = transition
        self._cursor = cursor
        self._data = data
        self._by_name = by_name

    def commit(self) -> StatePair:
        """Change the state through the machine (``on_exit``, the state, ``on_enter``).

        Returns the state the machine reached, which is the edge's destination.
        """
        transition, data = self._transition, self._data
        machine = data.machine
        dest_name = cast(str, transition.dest)  # a chart edge always has a destination
        dest = machine.states[dest_name]
        if machine.states[transition.source].on_exit or dest.on_enter or dest.final:
            # transitions' own state change: the part of Transition.execute between the before
            # and the after callbacks (exit, set_state, enter), once the push has landed.
            transition._change_state(data)
        else:
            # Nothing registered to run on the way: the state change is set_state alone.
            machine.set_state(dest, self._cursor)
            data.update(dest_name)
        return self._by_name[self._cursor.state]

    def finish(self) -> None:
        """Run the transition's ``after`` callbacks, then the machine's ``after_state_change``."""
        machine = self._data.machine
        after = self._transition.after
        if after or machine.after_state_change:  # (else there is nothing to run)
            machine.callbacks(itertools.chain(after, machine.after_state_change), self._data)


class LifecycleMachine:
    """One ``transitions`` machine for a chart, fired on behalf of any number of sources."""

    __slots__ = ("_by_name", "_machine", "_transitions", "chart", "planner")

    def __init__(self, chart: Chart, *, planner: Planner | None = None) -> None:
        self.chart = chart
        self.planner = planner or Planner(chart)
        self._by_name: dict[str, StatePair] = {str(p): p for p in chart.pairs}
        self._machine = Machine(
            model=None,
            states=list(self._by_name),
            initial=None,
            auto_transitions=False,
            send_event=True,
        )
        # The transitions object of each chart edge, by the edge's identity (hashing an Edge
        # costs more than the rest of the lookup); the chart hands out the same Edge objects.
        self._transitions: dict[int, Transition] = {}
        for edge in chart.edges:
            source = str(edge.source)
            self._machine.add_transition(edge.trigger, source, str(edge.dest))
            self._transitions[id(edge)] = self._machine.events[edge.trigger].transitions[source][-1]

    @property
    def machine(self) -> Machine:
        """The underlying ``transitions`` machine (states named ``COPYSTATE/cycle``).

        Register callbacks here; they run for every step (see the module's docstring).
        """
        return self._machine

    def may(self, state: StatePair, trigger: str) -> bool:
        """True when the chart permits ``trigger`` from ``state`` (whoever makes the move).

        Only the chart is asked; conditions registered on the machine are asked when a
        step begins.
        """
        return self.chart.edge(state, trigger) is not None

    def triggers(self, state: StatePair) -> list[str]:
        """The triggers permitted from ``state``, in chart order."""
        return [e.trigger for e in self.chart.edges_from(state)]

    def _edge_or_reject(self, state: StatePair, trigger: str, source_id: str | None) -> Edge:
        edge = self.chart.edge(state, trigger)
        if edge is None:
            raise TransitionRejected(source_id, self.explain_trigger(state, trigger))
        return edge

    def explain_trigger(self, state: StatePair, trigger: str) -> Verdict:
        """Why ``trigger`` cannot fire from ``state``: a rejected verdict naming the permitted ones."""
        if not self.chart.is_permitted(state):
            return self.planner.check(state, StateRequest(state.copystate, None))
        moves = ", ".join(self.triggers(state)) or "none"
        known = trigger in self.chart.triggers
        problem = (
            f"trigger {trigger!r} is not permitted from {state} (permitted: {moves})"
            if known
            else f"unknown trigger {trigger!r}; the chart's triggers are: {', '.join(self.chart.triggers)}"
        )
        return Verdict(
            False,
            state,
            None,
            reasons=(
                Reason(ReasonCode.NO_TRANSITION if known else ReasonCode.UNKNOWN_VALUE, problem),
            ),
        )

    def begin(self, state: StatePair, trigger: str, **context: Any) -> Firing:
        """Start a step: check it against the chart, ask the gate, run the ``before`` callbacks.

        ``context`` reaches every callback as ``event_data.kwargs`` (with ``edge`` added);
        a ``source_id`` in it names the source in a refusal. Raises
        :class:`~sms_flow.errors.TransitionRejected` when the chart has no such move
        (reason ``no_transition`` or ``unknown_value``) or the gate refuses it (reason
        ``condition``), and whatever a ``before`` callback raises. Nothing has changed then.
        """
        source_id = context.get("source_id")
        edge = self._edge_or_reject(state, trigger, source_id)
        transition = self._transitions[id(edge)]
        machine = self._machine
        if machine.finalize_event or machine.on_exception:
            raise self._unsupported()
        context["edge"] = edge
        cursor = _Cursor(str(state))
        if (
            (machine.prepare_event or transition.prepare or transition.conditions)
            # transitions' own may_<trigger>: prepare_event, prepare, then the conditions.
            and not machine._can_trigger(cursor, trigger, **context)
        ):
            raise TransitionRejected(source_id, self._refusal(edge, transition))
        firing = self._firing(edge, transition, cursor, context)
        if machine.before_state_change or transition.before:  # (else there is nothing to run)
            machine.callbacks(
                itertools.chain(machine.before_state_change, transition.before), firing._data
            )
        return firing

    def follow(self, state: StatePair, trigger: str, **context: Any) -> Firing:
        """A firing for a move the service made itself (it has happened: no gate, no ``before``).

        Commit it and finish it to run the state change and the ``after`` callbacks. Raises
        :class:`~sms_flow.errors.TransitionRejected` when the chart has no such move.
        """
        edge = self._edge_or_reject(state, trigger, context.get("source_id"))
        if self._machine.finalize_event or self._machine.on_exception:
            raise self._unsupported()
        context["edge"] = edge
        return self._firing(edge, self._transitions[id(edge)], _Cursor(str(state)), context)

    def _firing(
        self, edge: Edge, transition: Transition, cursor: _Cursor, context: dict[str, Any]
    ) -> Firing:
        machine = self._machine
        data = EventData(
            machine.states[cursor.state], machine.events[edge.trigger], machine, cursor, (), context
        )
        data.transition = transition
        return Firing(edge, transition, cursor, data, self._by_name)

    @staticmethod
    def _unsupported() -> ConfigError:
        return ConfigError(
            "the shared state machine has finalize_event or on_exception callbacks, which "
            "sms-flow's steps do not run; remove them, and register after_state_change "
            "callbacks, or handle errors inside your own callbacks, instead"
        )

    def fire(self, state: StatePair, trigger: str, **context: Any) -> StatePair:
        """Follow a move in the model alone: :meth:`begin`, then commit and finish at once.

        Every callback runs as for a step the engine pushes; nothing is sent anywhere.
        Returns the new state; raises as :meth:`begin` does.
        """
        firing = self.begin(state, trigger, **context)
        new = firing.commit()
        firing.finish()
        return new

    def _refusal(self, edge: Edge, transition: Transition) -> Verdict:
        names = ", ".join(
            f"{'unless ' if not c.target else ''}{getattr(c.func, '__qualname__', c.func)}"
            for c in transition.conditions
        )
        return Verdict(
            False,
            edge.source,
            StateRequest(edge.dest.copystate, edge.dest.migrationcycle),
            target=edge.dest,
            edge=edge,
            reasons=(
                Reason(
                    ReasonCode.CONDITION,
                    f"{edge.trigger} from {edge.source} is refused by a condition registered on "
                    f"the state machine ({names}); nothing was sent. Find out why the condition says no, "
                    "or remove it from the machine",
                ),
            ),
        )
