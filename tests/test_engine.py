"""The engine against the real simulator over loopback: push, verify, journal, commit."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from transitions import EventData
from transitions.core import Condition

from sms_flow.auth import TokenAuth
from sms_flow.client import SmsClient
from sms_flow.engine import Engine, WaitPolicy
from sms_flow.errors import (
    ActionNeededError,
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    IgnoredByServiceError,
    InputError,
    OwnedError,
    ReadBackMismatchError,
    ServerError,
    TransitionRejected,
    UnverifiedError,
    WaitTimeoutError,
)
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.log import configure
from sms_flow.planner import ReasonCode
from sms_flow.retry import RetryPolicy
from sms_flow.simulator import Faults, Simulator
from sms_flow.states import parse_pair
from tests.conftest import eventually

TOKEN = "engine-test-token-0123456789"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, total_time=5.0, timeout=2.0)
GET_ROUTE = "GET /v3/sources/{source_id}"

pytestmark = pytest.mark.simulator(token=TOKEN, service_delay=0.05, seed=1)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[SmsClient]:
    async with SmsClient(sim.url, auth=TokenAuth(TOKEN), retry=FAST) as c:
        yield c


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    async with SqliteJournal(tmp_path / "journal.sqlite") as j:
        yield j


@pytest.fixture
async def engine(client: SmsClient, journal: SqliteJournal) -> AsyncIterator[Engine]:
    async with Engine(
        client, journal=journal, wait=WaitPolicy(timeout=5.0, first_delay=0.02, max_delay=0.1)
    ) as engine:
        yield engine


def puts(sim: Simulator, source_id: str) -> int:
    return sim.stats.puts_per_source.get(source_id, 0)


def reads(sim: Simulator) -> int:
    """The ``GET /v3/sources/{id}`` requests the simulator answered."""
    return sum(sim.stats.requests.get(GET_ROUTE, {}).values())


class Faulty:
    """The real client, with the simulator's faults switched on around each push.

    ``during`` are the faults while the PUT (and its retries) runs; ``after`` those left on
    once it returned or raised, so that the read-back meets them.
    """

    def __init__(self, client: SmsClient, sim: Simulator, during: Faults, after: Faults) -> None:
        self.client, self.sim, self.during, self.after = client, sim, during, after
        self.endpoint = client.endpoint

    async def change_state(
        self, source_id: str, copystate: Any = None, migrationcycle: Any = None
    ) -> Any:
        self.sim.set_faults(self.during)
        try:
            return await self.client.change_state(source_id, copystate, migrationcycle)
        finally:
            self.sim.set_faults(self.after)

    async def get_source(self, source_id: str) -> Any:
        return await self.client.get_source(source_id)


async def test_fire_pushes_verifies_journals_and_commits(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-1")
    result = await engine.fire(sid, "configure", actor="alice", reason="ticket 42")
    assert str(result.to_state) == "WAITING/setting"
    assert str(sim.source(sid).pair) == "WAITING/setting"
    assert engine.states[sid] == result.to_state
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.APPLIED
    assert (entry.trigger, entry.from_state, entry.to_state) == (
        "configure",
        "WAITING/checking",
        "WAITING/setting",
    )
    assert (entry.actor, entry.reason, entry.forced) == ("alice", "ticket 42", False)
    assert entry.request_id == result.request_id == sim.history(sid)[-1].request_id
    assert entry.attempts == 1


async def test_main_path_step_by_step(sim: Simulator, engine: Engine) -> None:
    sid = await sim.register("db-1")
    for trigger in ("configure", "start", "replicate", "sync", "cutover", "finish"):
        await engine.fire(sid, trigger)
    assert str(sim.source(sid).pair) == "FINISHED/cutovered"
    assert [h.trigger for h in sim.history(sid)] == [
        "configure",
        "start",
        "replicate",
        "sync",
        "cutover",
        "finish",
    ]


async def test_rejected_trigger_sends_nothing_and_is_journalled(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-2")
    await engine.refresh(sid)
    with pytest.raises(TransitionRejected, match="'finish' is not permitted from WAITING/checking"):
        await engine.fire(sid, "finish")
    assert puts(sim, sid) == 0
    assert str(engine.states[sid]) == "WAITING/checking"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.REJECTED


async def test_frozen_state_is_refused_unless_forced_with_a_reason(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-3")
    await sim.move(sid, pair="STOPPED/syncing")
    with pytest.raises(TransitionRejected) as info:
        await engine.fire(sid, "resume")
    assert ReasonCode.FROZEN in info.value.verdict.codes
    assert puts(sim, sid) == 0
    with pytest.raises(InputError, match="needs a reason"):
        await engine.fire(sid, "resume", force=True)
    # Forced: pushed, the service answers 200 and ignores it, the read-back shows it.
    with pytest.raises(
        IgnoredByServiceError, match="ignores changestate while the source is STOPPED"
    ):
        await engine.fire(sid, "resume", force=True, reason="operator bob: agent restarted by hand")
    assert puts(sim, sid) == 1
    assert str(engine.states[sid]) == "STOPPED/syncing"
    entries = await journal.history(source_id=sid)
    assert [e.outcome for e in entries] == [Outcome.REJECTED, Outcome.IGNORED]
    assert entries[-1].forced and entries[-1].reason == "operator bob: agent restarted by hand"


async def test_failed_push_leaves_local_state_unchanged(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-4")
    # Every attempt of the PUT fails; the read-back after it shows the push did not land.
    engine = Engine(Faulty(client, sim, Faults(error_rate=1.0), Faults()), journal=journal)
    await engine.refresh(sid)
    with pytest.raises(ServerError) as info:
        await engine.fire(sid, "configure")
    assert info.value.attempts == FAST.attempts
    assert str(engine.states[sid]) == "WAITING/checking"
    assert str(sim.source(sid).pair) == "WAITING/checking"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.FAILED
    assert "HTTP 50" in (entry.error or "")
    await engine.aclose()


async def test_bad_credentials_fail_without_retry_and_change_nothing(
    sim: Simulator, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-5")
    async with SmsClient(sim.url, auth=TokenAuth("wrong-token"), retry=FAST) as bad:
        engine = Engine(bad, journal=journal)
        engine.track(sid, parse_pair("WAITING/checking"))
        with pytest.raises(AuthError) as info:
            await engine.fire(sid, "configure")
    assert info.value.error_code == "SMS.9004"
    assert info.value.attempts == 1
    assert "wrong-token" not in str(info.value)
    assert str(engine.states[sid]) == "WAITING/checking"
    assert str(sim.source(sid).pair) == "WAITING/checking"


class SomeoneElse:
    """The real client, plus another operator who changes the source right after each push."""

    def __init__(self, client: SmsClient, sim: Simulator, to: str) -> None:
        self.client, self.sim, self.to = client, sim, to

    async def change_state(
        self, source_id: str, copystate: Any = None, migrationcycle: Any = None
    ) -> Any:
        result = await self.client.change_state(source_id, copystate, migrationcycle)
        await self.sim.move(source_id, pair=self.to)
        return result

    async def get_source(self, source_id: str) -> Any:
        return await self.client.get_source(source_id)


async def test_read_back_mismatch_is_a_typed_error_and_a_conflict(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-6")
    engine = Engine(SomeoneElse(client, sim, "ERROR/setting"), journal=journal)
    await engine.refresh(sid)
    with pytest.raises(ReadBackMismatchError) as info:
        await engine.fire(sid, "configure")
    assert (info.value.expected, info.value.observed) == ("WAITING/setting", "ERROR/setting")
    assert str(engine.states[sid]) == "WAITING/checking"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.CONFLICT


async def test_verify_off_reads_nothing_back(
    sim: Simulator, client: SmsClient, engine: Engine
) -> None:
    sid = await sim.register("web-7")
    unverified = Engine(client, verify=False, look=False)
    unverified.track(sid, parse_pair("WAITING/checking"))
    await unverified.fire(sid, "configure")
    assert reads(sim) == 0
    assert str(unverified.states[sid]) == "WAITING/setting"
    assert str(sim.source(sid).pair) == "WAITING/setting"
    # The same step with verify on (the default) reads the source back: the count is live.
    engine.track(sid, parse_pair("WAITING/setting"), read_at=time.monotonic())
    await engine.fire(sid, "start")
    assert reads(sim) == 1
    # Verify off, looking on (the default): the source is read before each push instead.
    looking = Engine(client, verify=False)
    looking.track(sid, parse_pair("INIT/replicating"))
    await looking.fire(sid, "replicate")
    assert reads(sim) == 2


async def test_transitions_for_one_source_are_serialized_in_order(
    sim: Simulator, engine: Engine
) -> None:
    sid = await sim.register("web-8")
    sim.set_faults(Faults(latency=0.02, latency_jitter=0.03))
    triggers = ["configure", "start", "replicate", "sync", "cutover", "finish"]
    results = await asyncio.gather(*(engine.fire(sid, t) for t in triggers))
    assert [r.trigger for r in results] == triggers
    assert [h.trigger for h in sim.history(sid)] == triggers
    # each step started from the state the previous one left
    assert all(a.to_state == b.from_state for a, b in itertools.pairwise(results))


async def test_different_sources_run_concurrently_and_all_land(
    sim: Simulator, engine: Engine
) -> None:
    ids = [await sim.register(f"bulk-{i}") for i in range(40)]
    sim.set_faults(Faults(latency=0.01))
    results = await asyncio.gather(*(engine.fire(s, "configure") for s in ids))
    assert {str(r.to_state) for r in results} == {"WAITING/setting"}
    assert all(str(sim.source(s).pair) == "WAITING/setting" for s in ids)
    assert len(engine._locks) == 0, "no lock is kept once its source is idle"


async def test_change_to_a_target_pushes_the_path_and_waits_for_the_service(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-9")
    with pytest.raises(TransitionRejected) as info:
        await engine.change(sid, "SYNCING/syncing")
    assert [e.trigger for e in info.value.verdict.path] == [
        "configure",
        "start",
        "replicate",
        "sync",
    ]
    assert puts(sim, sid) == 0
    steps = await engine.change(sid, "SYNCING/syncing", follow_path=True)
    assert [s.trigger for s in steps] == ["configure", "start", "replicate", "sync"]
    # STOPPING → STOPPED is the service's move: pushed stop, then waited for stopped.
    steps = await engine.change(sid, "STOPPED", follow_path=True)
    assert [(s.trigger, s.outcome) for s in steps] == [
        ("stop", Outcome.APPLIED),
        ("stopped", Outcome.OBSERVED),
    ]
    assert str(sim.source(sid).pair) == "STOPPED/syncing"
    entries = await journal.history(source_id=sid)
    assert entries[-1].outcome is Outcome.OBSERVED and entries[-1].actor == "service"


async def test_waiting_for_an_action_times_out_with_the_reason(
    sim: Simulator, engine: Engine
) -> None:
    sid = await sim.register("web-10")
    await sim.move(sid, pair="STOPPED/syncing")
    await engine.refresh(sid)
    edge = engine.chart.edge(engine.states[sid], "resume")
    with pytest.raises(WaitTimeoutError, match="Task action start"):
        await engine.wait_for_service(sid, edge, within=0.2)


async def test_a_path_stops_at_once_before_a_move_only_another_api_makes(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-10b")
    await sim.move(sid, pair="STOPPED/syncing")
    await engine.refresh(sid)
    entries = len(await journal.history(source_id=sid))
    with pytest.raises(ActionNeededError) as info:
        await engine.change(sid, "SYNCING/syncing", follow_path=True)
    assert info.value.trigger == "resume" and info.value.state == "STOPPED/syncing"
    assert info.value.call == 'POST /v3/tasks/{task_id}/action {"operation": "start"}'
    assert f"GET /v3/tasks?source_server_id={sid}" in str(info.value)
    assert len(await journal.history(source_id=sid)) == entries, "nothing journalled or sent"
    # Once someone made the call, the same change records the service's move.
    await sim.move(sid, trigger="resume")
    steps = await engine.change(sid, "SYNCING/syncing", follow_path=True)
    assert [(s.trigger, s.outcome) for s in steps] == [("resume", Outcome.OBSERVED)]


async def test_a_path_waits_for_a_move_another_api_makes_when_asked(
    sim: Simulator, engine: Engine
) -> None:
    sid = await sim.register("web-10c")
    await sim.move(sid, pair="STOPPED/syncing")
    await engine.refresh(sid)
    waiting = asyncio.create_task(
        engine.change(sid, "SYNCING/syncing", follow_path=True, wait_for_actions=True, within=30)
    )
    refreshed = reads(sim)
    await eventually(lambda: reads(sim) > refreshed + 1)  # it polls: it waits
    await sim.move(sid, trigger="resume")
    steps = await waiting
    assert [(s.trigger, s.outcome) for s in steps] == [("resume", Outcome.OBSERVED)]


async def test_an_observed_jump_the_chart_forbids_is_flagged(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("web-11")
    await sim.move(sid, pair="STOPPED/syncing")
    await engine.refresh(sid)
    refreshed = reads(sim)
    waiting = asyncio.create_task(engine.wait_for_service(sid, None, within=30))
    # Once the engine has polled and seen STOPPED, someone else jumps the source.
    await eventually(lambda: reads(sim) > refreshed)
    await sim.move(sid, pair="FINISHED/cutovered")
    result = await waiting
    assert result.outcome is Outcome.OBSERVED
    assert result.note is not None and "does not permit" in result.note
    assert str(engine.states[sid]) == "FINISHED/cutovered"
    entries = await journal.history(source_id=sid)
    assert entries[-1].outcome is Outcome.OBSERVED and "does not permit" in (
        entries[-1].error or ""
    )


async def test_unknown_source_is_a_not_found_error(engine: Engine) -> None:
    with pytest.raises(ApiError) as info:
        await engine.fire("00000000-0000-4000-8000-000000000000", "configure")
    assert info.value.status == 404


async def test_steps_are_logged_with_ids_and_no_secret(sim: Simulator, engine: Engine) -> None:
    sid = await sim.register("web-12")
    await engine.refresh(sid)
    configure(level="debug", json=True)
    try:
        with structlog.testing.capture_logs() as logs:
            await engine.fire(sid, "configure")
            with pytest.raises(TransitionRejected):
                await engine.fire(sid, "finish")
    finally:
        configure(level="warning", json=True)
    applied = [e for e in logs if e["event"] == "applied"]
    assert applied and applied[0]["source_id"] == sid and applied[0]["trigger"] == "configure"
    assert applied[0]["request_id"]
    assert any(e["event"] == "rejected" for e in logs)
    assert TOKEN not in repr(logs)
    client_lines = [e for e in logs if "attempt" in e]
    assert client_lines and all("source_id" in e and "request_id" in e for e in client_lines)


async def test_tracking_keeps_one_shared_pair_per_state(engine: Engine) -> None:
    pair = parse_pair("SYNCING/syncing")
    engine.track_many((f"s{i}", parse_pair("SYNCING/syncing")) for i in range(1000))
    assert len({id(engine.states[f"s{i}"]) for i in range(1000)}) == 1
    assert engine.states["s1"] == pair


# -- the transitions machine as an extension point ------------------------------------------


def _configure_transition(engine: Engine) -> Any:
    [transition] = engine.machine.machine.get_transitions("configure", "WAITING/checking")
    return transition


async def test_a_condition_on_the_machine_blocks_the_push(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("cond-1")
    await engine.refresh(sid)
    asked: list[tuple[str, str]] = []

    def change_window_open(event: EventData) -> bool:
        asked.append((event.kwargs["source_id"], event.kwargs["actor"]))
        return False

    _configure_transition(engine).conditions.append(Condition(change_window_open))
    with pytest.raises(TransitionRejected, match="change_window_open") as info:
        await engine.fire(sid, "configure", actor="carol")
    assert info.value.verdict.codes == {ReasonCode.CONDITION}
    assert asked == [(sid, "carol")]
    assert puts(sim, sid) == 0, "the simulator saw no PUT"
    assert str(engine.states[sid]) == "WAITING/checking"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.REJECTED and "change_window_open" in (entry.error or "")
    assert (entry.from_state, entry.to_state) == ("WAITING/checking", "WAITING/setting")


async def test_an_after_callback_sees_the_committed_state(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("after-1")
    seen: list[tuple[str, str, str, str]] = []

    def after(event: EventData) -> None:
        seen.append(
            (
                cast(Any, event.model).state,  # transitions types the model as object
                str(engine.states[sid]),
                str(sim.source(sid).pair),
                str(event.kwargs["edge"].dest),
            )
        )

    _configure_transition(engine).add_callback("after", after)
    result = await engine.fire(sid, "configure", wave="w1")
    assert seen == [("WAITING/setting",) * 4]
    assert str(result.to_state) == "WAITING/setting"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.APPLIED


async def test_a_before_callback_that_raises_stops_the_push(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("before-1")
    await engine.refresh(sid)

    def snapshot_first(event: EventData) -> None:
        raise RuntimeError(f"no snapshot of {event.kwargs['source_id']} yet")

    engine.machine.machine.before_state_change.append(snapshot_first)
    with pytest.raises(RuntimeError, match="no snapshot"):
        await engine.fire(sid, "configure")
    assert puts(sim, sid) == 0, "the simulator saw no PUT"
    assert str(engine.states[sid]) == "WAITING/checking"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.FAILED
    assert "not sent" in (entry.error or "") and "RuntimeError" in (entry.error or "")


async def test_a_callback_that_raises_after_the_change_does_not_undo_it(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("after-2")

    def notify(event: EventData) -> None:
        raise ConnectionError("the chat server is down")

    engine.machine.machine.after_state_change.append(notify)
    with pytest.raises(ConnectionError, match="chat server") as info:
        await engine.fire(sid, "configure")
    assert any("happened all the same" in note for note in info.value.__notes__)
    assert str(sim.source(sid).pair) == "WAITING/setting"
    assert str(engine.states[sid]) == "WAITING/setting"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.APPLIED
    # The engine goes on from the state the service has.
    engine.machine.machine.after_state_change.remove(notify)
    assert str((await engine.fire(sid, "start")).from_state) == "WAITING/setting"


async def test_a_move_the_service_makes_runs_the_after_callbacks(
    sim: Simulator, engine: Engine
) -> None:
    sid = await sim.register("svc-1")
    await sim.move(sid, pair="SYNCING/syncing")
    seen: list[tuple[str, str]] = []
    [stopped] = engine.machine.machine.get_transitions("stopped", "STOPPING/syncing")
    stopped.add_callback(
        "after", lambda event: seen.append((event.model.state, event.kwargs["actor"]))
    )
    steps = await engine.change(sid, "STOPPED", follow_path=True)
    assert [(s.trigger, s.outcome) for s in steps][-1] == ("stopped", Outcome.OBSERVED)
    assert seen == [("STOPPED/syncing", "service")]


def test_the_engine_does_not_configure_logging() -> None:
    code = (
        "import structlog; from sms_flow.engine import Engine; Engine(object()); "
        "print(structlog.is_configured())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0),
        ("timeout", math.inf),
        ("first_delay", -0.5),
        ("first_delay", 0.0),
        ("max_delay", math.nan),
        ("factor", 0.5),
        ("factor", math.inf),
        ("timeout", "300"),
    ],
)
def test_wait_policy_refuses_unusable_values(field: str, value: Any) -> None:
    with pytest.raises(
        ConfigError, match=rf"WaitPolicy\.{field} is {re.escape(repr(value))}; give"
    ):
        WaitPolicy(**{field: value})


# -- re-settling open intents (recovery) --------------------------------------------------------


def _intent(source_id: str) -> Intent:
    return Intent(source_id, "configure", "WAITING/checking", "WAITING/setting", "wave:r", None)


async def test_resettle_settles_an_open_entry_by_what_the_source_shows(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    landed, never, elsewhere = [await sim.register(f"rs-{i}") for i in range(3)]
    gone = "00000000-0000-4000-8000-00000000beef"
    ids = [landed, never, elsewhere, gone]
    for sid in ids:
        await journal.begin(_intent(sid))
    await sim.move(landed, trigger="configure")
    await sim.move(elsewhere, pair="ERROR/setting")
    entries = {e.source_id: e for e in await journal.open_intents()}
    done = {sid: await engine.resettle(entries[sid]) for sid in ids}
    assert {sid: d.result for sid, d in done.items()} == {
        landed: "applied",
        never: "pushed again",
        elsewhere: "conflict",
        gone: "gone",
    }
    assert done[elsewhere].observed == "ERROR/setting"
    assert [h.trigger for h in sim.history(landed)] == ["configure"], "not pushed twice"
    assert str(sim.source(never).pair) == "WAITING/setting"
    assert str(sim.source(elsewhere).pair) == "ERROR/setting", "a conflict is not overwritten"
    assert {sid: str(engine.states[sid]) for sid in (landed, never, elsewhere)} == {
        landed: "WAITING/setting",
        never: "WAITING/setting",
        elsewhere: "ERROR/setting",
    }
    outcomes = {e.source_id: e.outcome for e in await journal.history()}
    assert outcomes == {
        landed: Outcome.APPLIED,
        never: Outcome.APPLIED,
        elsewhere: Outcome.CONFLICT,
        gone: Outcome.FAILED,
    }
    assert await journal.open_intents() == []


async def test_resettle_leaves_an_entry_open_when_the_source_cannot_be_read(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("rs-unread")
    await journal.begin(_intent(sid))
    [entry] = await journal.open_intents()
    sim.set_faults(Faults(error_rate=1.0))
    try:
        done = await engine.resettle(entry)
    finally:
        sim.set_faults(Faults())
    assert done.result == "unread" and "HTTP 50" in (done.error or "")
    assert [e.id for e in await journal.open_intents()] == [entry.id]
    assert puts(sim, sid) == 0


async def test_resettle_uses_a_reading_given_to_it(
    sim: Simulator, engine: Engine, journal: SqliteJournal, client: SmsClient
) -> None:
    sid = await sim.register("rs-given")
    await journal.begin(_intent(sid))
    [entry] = await journal.open_intents()
    reading = await client.get_source(sid)  # WAITING/checking: the push did not land
    await sim.move(sid, trigger="configure")  # ... but it lands after the reading
    done = await engine.resettle(entry, reading)
    assert done.result == "pushed again"
    assert [h.trigger for h in sim.history(sid)] == ["configure"]


# -- outcomes that say only what is known (issue 9, point 3) ----------------------------------


async def test_a_push_answered_200_whose_read_back_fails_is_unverified_not_failed(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    sid = await sim.register("uv-200")
    engine = Engine(Faulty(client, sim, Faults(), Faults(error_rate=1.0)), journal=journal)
    await engine.refresh(sid)
    with pytest.raises(UnverifiedError, match="may have landed") as info:
        await engine.fire(sid, "configure")
    assert "sms-flow recover" in str(info.value)
    assert str(sim.source(sid).pair) == "WAITING/setting", "it did land"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.UNVERIFIED
    assert [e.id for e in await journal.open_intents()] == [entry.id], "still open"
    await engine.aclose()


@pytest.mark.simulator(token=TOKEN, service_delay=0.05, seed=2)
async def test_a_retried_push_that_landed_and_ended_on_429_is_applied(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    sid = await sim.register("uv-429")
    # Seed 2: the first attempt is carried out and answered 503, the next two meet a 429.
    during = Faults(apply_then_fail_rate=1.0, throttle_rate=0.5, retry_after=0.01)
    engine = Engine(Faulty(client, sim, during, Faults()), journal=journal)
    await engine.refresh(sid)
    result = await engine.fire(sid, "configure")
    assert sim.stats.faults.get("apply_then_fail") == 1 and sim.stats.faults.get("throttle") == 2
    assert result.outcome is Outcome.APPLIED
    assert str(engine.states[sid]) == "WAITING/setting"
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.APPLIED
    assert "429" in (entry.error or ""), "the answer that ended the call is kept"
    assert [h.trigger for h in sim.history(sid)] == ["configure"]
    await engine.aclose()


async def test_a_final_5xx_whose_read_back_failed_too_is_unverified(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    sid = await sim.register("uv-5xx")
    engine = Engine(
        Faulty(client, sim, Faults(apply_then_fail_rate=1.0), Faults(error_rate=1.0)),
        journal=journal,
    )
    await engine.refresh(sid)
    with pytest.raises(UnverifiedError):
        await engine.fire(sid, "configure")
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.UNVERIFIED
    assert "HTTP 503" in (entry.error or "") and "HTTP 50" in (entry.error or "")
    assert str(engine.states[sid]) == "WAITING/checking", "the last state known for sure"
    await engine.aclose()


async def test_an_unverified_push_is_settled_once_by_the_next_read(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    landed, lost = await sim.register("uv-next-1"), await sim.register("uv-next-2")
    engine = Engine(Faulty(client, sim, Faults(), Faults(error_rate=1.0)), journal=journal)
    for sid in (landed, lost):
        await engine.refresh(sid)
        with pytest.raises(UnverifiedError):
            await engine.fire(sid, "configure")
        sim.set_faults(Faults())
    await sim.move(lost, pair="WAITING/checking")  # as if the push had not taken
    # The next step's look reads the source: the open entry is settled, then the step runs.
    engine.client = client
    result = await engine.fire(landed, "start")
    assert (str(result.from_state), str(result.to_state)) == ("WAITING/setting", "INIT/replicating")
    assert await engine.settle_unverified(lost) is not None
    assert await engine.settle_unverified(lost) is None, "settled once"
    outcomes = [(e.source_id, e.trigger, e.outcome) for e in await journal.history()]
    assert outcomes == [
        (landed, "configure", Outcome.APPLIED),
        (lost, "configure", Outcome.IGNORED),
        (landed, "start", Outcome.APPLIED),
    ]
    assert await journal.open_intents() == []
    assert [h.trigger for h in sim.history(landed)] == ["configure", "start"]
    await engine.aclose()


# -- looking before pushing (issue 9, point 2) ------------------------------------------------


async def test_a_source_moved_by_someone_else_is_a_conflict_and_not_pushed(
    sim: Simulator, engine: Engine, journal: SqliteJournal
) -> None:
    sid = await sim.register("look-1")
    await engine.refresh(sid)
    await sim.move(sid, pair="WAITING/setting")  # the console, after our read
    await sim.move(sid, pair="ERROR/setting")
    engine.max_age = 0.0  # our read is too old: look again before pushing
    with pytest.raises(ConflictError) as info:
        await engine.fire(sid, "configure")
    assert (info.value.expected, info.value.observed) == ("WAITING/checking", "ERROR/setting")
    assert puts(sim, sid) == 0
    [entry] = await journal.history(source_id=sid)
    assert entry.outcome is Outcome.CONFLICT and "not pushed" in (entry.error or "")
    assert str(engine.states[sid]) == "ERROR/setting", "the engine tracks what it saw"


async def test_a_fresh_read_is_not_repeated_before_the_push(sim: Simulator, engine: Engine) -> None:
    sid = await sim.register("look-2")
    await engine.refresh(sid)
    before = reads(sim)
    await engine.fire(sid, "configure")  # the refresh is fresh: no read before, one after
    await engine.fire(sid, "start")  # the previous step's read-back is fresh enough
    assert reads(sim) - before == 2


async def test_looking_can_be_turned_off(sim: Simulator, client: SmsClient) -> None:
    sid = await sim.register("look-3")
    blind = Engine(client, look=False)
    blind.track(sid, parse_pair("WAITING/checking"))
    await sim.move(sid, pair="ERROR/setting")
    await blind.fire(sid, "configure")  # pushed from what it believed, as before
    assert str(sim.source(sid).pair) == "WAITING/setting"


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 7, 1.5, {"id": "x"}, b"abc", ["a"]])
async def test_fire_and_change_refuse_ids_and_triggers_that_are_not_strings(
    engine: Engine, value: Any
) -> None:
    with pytest.raises(InputError, match=re.escape(repr(value))):
        await engine.fire(value, "configure")
    with pytest.raises(InputError, match=re.escape(repr(value))):
        await engine.fire("00000000-0000-4000-8000-000000000001", value)
    with pytest.raises(InputError, match=re.escape(repr(value))):
        await engine.change(value, "WAITING/setting")


# -- an engine's own run (library use) ---------------------------------------------------------


async def test_an_engine_without_a_run_starts_its_own_and_claims_as_it_goes(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    one, two = await sim.register("own-1"), await sim.register("own-2")
    first = Engine(client, journal=journal)
    await first.fire(one, "configure")
    [run] = await journal.runs()
    assert (run.kind, run.exclusive, run.actor, run.endpoint) == (
        "engine",
        False,
        "sms-flow",
        sim.url,
    )
    [entry] = await journal.history(source_id=one)
    assert (entry.run_id, entry.endpoint) == (run.run_id, sim.url)

    async with Engine(client, journal=journal, actor="runbook") as second:
        with pytest.raises(OwnedError, match=f"pid {os.getpid()}") as info:
            await second.fire(one, "start")
        assert info.value.owner is not None and info.value.owner.run_id == run.run_id
        assert puts(sim, one) == 1, "nothing sent"
        await second.fire(two, "configure")  # another source is free
        await first.aclose()  # ends its run: its source is free at once
        assert (await second.fire(one, "start")).outcome is Outcome.APPLIED
    assert await journal.runs() == [], "both runs ended"


async def test_engines_sharing_a_machine_share_its_callbacks(
    sim: Simulator, client: SmsClient, journal: SqliteJournal
) -> None:
    """A machine given to several engines (the gateway makes one engine a request) is built
    once, and a callback registered on it runs for every engine's steps."""
    from sms_flow.chart import default_chart, default_chart_path, load_chart
    from sms_flow.errors import ConfigError
    from sms_flow.machine import LifecycleMachine

    chart = default_chart()
    shared = LifecycleMachine(chart)
    seen: list[str] = []
    shared.machine.after_state_change.append(lambda event: seen.append(event.kwargs["source_id"]))
    first, second = await sim.register("shared-1"), await sim.register("shared-2")
    for sid in (first, second):
        async with Engine(client, journal=journal, machine=shared) as engine:
            assert engine.machine is shared and engine.chart is chart
            await engine.fire(sid, "configure")
    assert seen == [first, second]
    assert str(sim.source(second).pair) == "WAITING/setting"
    other = LifecycleMachine(load_chart(default_chart_path()))  # the same file, another chart
    with pytest.raises(ConfigError, match="built for another chart"):
        Engine(client, chart=chart, machine=other)
