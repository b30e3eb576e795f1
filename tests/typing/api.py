"""The public API, used as the README and the examples use it, checked by mypy (``make typecheck``).

Nothing here runs: pytest does not collect this module and nothing calls its functions. Each
``assert_type`` pins a type a user relies on; a change to a signature of the public API that
breaks such code fails ``make typecheck`` (as structlog and stamina keep in ``tests/typing``).
Correct usage only, without a ``type: ignore``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, assert_type

import sms_flow
from sms_flow import (
    AkSkAuth,
    ApiError,
    Chart,
    ConflictError,
    CopyState,
    DrillSpec,
    Edge,
    Engine,
    Entry,
    Event,
    EventKind,
    Intent,
    Journal,
    Lease,
    LifecycleMachine,
    MigrationCycle,
    NotAppliedError,
    Outcome,
    OwnedError,
    Plan,
    Planner,
    PushResult,
    ReasonCode,
    RetryPolicy,
    Run,
    SmsClient,
    SmsFlowError,
    SourceOutcome,
    SqliteJournal,
    StatePair,
    StateRequest,
    StepResult,
    TokenAuth,
    TransitionRejected,
    UnverifiedError,
    Verdict,
    WaitPolicy,
    WaveReport,
    WaveRunner,
    WaveSession,
    WaveSpec,
    auth_from_env,
    check,
    default_chart,
    load_chart,
    load_drill,
    load_wave,
    parse_pair,
    parse_request,
    plan,
    recover,
    run_drill,
    run_wave,
)
from sms_flow.auth import Auth
from sms_flow.simulator import Faults, HistoryEntry, Simulator, SimulatorConfig, SourceSnapshot
from sms_flow.testing import SimulatorFactory

# --- Validate a request ----------------------------------------------------------------------


def validate() -> None:
    planner = Planner(default_chart())
    verdict = planner.check("WAITING/checking", "FINISHED/cutovered")
    assert_type(verdict, Verdict)
    assert_type(verdict.allowed, bool)
    for reason in verdict.reasons:
        assert_type(reason.code, ReasonCode)
        assert_type(reason.message, str)
    for step in verdict.path:
        assert_type(step, Edge)
        assert_type(step.trigger, str)
        assert_type(step.source, StatePair)
        assert_type(step.pushable, bool)
    assert_type(verdict.trigger, str | None)
    assert_type(verdict.target, StatePair | None)
    assert_type(verdict.explain(), str)

    current = StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
    assert_type(planner.check(current, "CUTOVERING").trigger, str | None)
    result = planner.plan(current, "FINISHED/cutovered")
    assert_type(result, Plan)
    assert_type(result.found, bool)
    assert_type(result.steps, tuple[Edge, ...])
    assert_type(result.explain(), str)

    assert_type(check("SYNCING/syncing", StateRequest(CopyState.CUTOVERING, None)), Verdict)
    assert_type(plan(parse_pair("WAITING/checking"), parse_request("FINISHED")), Plan)
    assert_type(load_chart(Path("my-chart.yaml")), Chart)
    machine = LifecycleMachine(default_chart())
    assert_type(machine.fire(current, "cutover"), StatePair)


# --- Push changes to SMS -----------------------------------------------------------------------


async def push() -> None:
    async with SmsClient.from_env() as client, SqliteJournal("journal.sqlite") as journal:
        assert_type(client, SmsClient)
        assert_type(journal, SqliteJournal)
        engine = Engine(client, journal=journal, actor="runbook:cutover")
        source_id = "dcdbe339-b02d-4578-95a1-9c9c547d0000"
        assert_type(await engine.refresh(source_id), StatePair)
        step = await engine.fire(source_id, "cutover", reason="window 2")
        assert_type(step, StepResult)
        assert_type(step.to_state, StatePair)
        assert_type(step.request_id, str | None)
        assert_type(step.outcome, Outcome)
        try:
            steps = await engine.change(source_id, "FINISHED/cutovered", follow_path=True)
            assert_type(steps, list[StepResult])
        except TransitionRejected as exc:
            assert_type(exc.verdict, Verdict)
        except NotAppliedError as exc:
            assert_type(exc, NotAppliedError)
        assert_type(engine.states, Mapping[str, StatePair])

    pushed = await SmsClient("http://127.0.0.1:8080").change_state("s1", "WAITING", "setting")
    assert_type(pushed, PushResult)
    assert_type(pushed.status, int)


def credentials() -> None:
    assert_type(auth_from_env(), Auth | None)
    auth: Auth = AkSkAuth("AK", "SK", "project")
    auth = TokenAuth("token")
    policy = RetryPolicy(attempts=4, base_delay=0.2, total_time=30.0)
    client = SmsClient(region="cn-north-4", auth=auth, retry=policy)
    assert_type(client, SmsClient)
    assert_type(WaitPolicy(timeout=60.0), WaitPolicy)


def errors(exc: SmsFlowError) -> None:
    if isinstance(exc, ApiError):
        assert_type(exc.status, int)
        assert_type(exc.error_code, str | None)
        assert_type(exc.request_id, str | None)


# --- The journal ---------------------------------------------------------------------------


async def journal(journal: Journal) -> None:
    entry_id = await journal.begin(
        Intent("s1", "start", "WAITING/setting", "INIT/replicating", "cli:alice", "ticket 7")
    )
    assert_type(entry_id, int)
    await journal.settle(entry_id, Outcome.APPLIED, request_id="req-1")
    assert_type(await journal.open_intents(), list[Entry])
    assert_type(await journal.history(source_id="s1"), list[Entry])


# --- The simulator, and in your own tests -----------------------------------------------------


async def simulator() -> None:
    async with Simulator(SimulatorConfig(token="t", seed=1)) as sim:
        assert_type(sim, Simulator)
        source_id = await sim.register("web-01")
        assert_type(source_id, str)
        assert_type(sim.url, str)
        sim.set_faults(Faults(error_rate=0.1))
        assert_type(sim.source(source_id), SourceSnapshot)
        assert_type(sim.source(source_id).pair, StatePair)
        assert_type(sim.history(source_id), list[HistoryEntry])


async def test_my_runbook(
    sms_simulator: Simulator, sms_simulator_factory: SimulatorFactory
) -> None:
    assert_type(await sms_simulator.register("db-01"), str)
    strict = await sms_simulator_factory(SimulatorConfig(strict=True))
    assert_type(strict, Simulator)
    assert_type(await sms_simulator_factory(token="t0ken"), Simulator)


# --- Waves and drills ----------------------------------------------------------------------------


def page_someone(source_id: str | None, error: str | None) -> None: ...


async def waves(url: str, ids: list[str]) -> None:
    report = await run_wave("examples/wave.yaml", on_event=print)
    assert_type(report, WaveReport)

    spec = WaveSpec.model_validate({"name": "w2", "endpoint": url, "sources": {"ids": ids}})
    async with WaveSession(spec) as session:
        assert_type(session.runner, WaveRunner)
        events = session.runner.events()
        assert_type(events, AsyncIterator[Event])

        async def watch() -> None:
            async for event in session.runner.events():
                if event.kind is EventKind.SOURCE_DONE and event.outcome is SourceOutcome.FAILED:
                    page_someone(event.source_id, event.error)

        watcher = asyncio.create_task(watch())
        report = await session.runner.run()
        await watcher
    assert_type(report.to_dict(), dict[str, Any])
    assert_type(report.ok, bool)
    assert_type(report.count(SourceOutcome.FINISHED), int)
    assert_type(load_wave("wave.yaml"), WaveSpec)


async def drills() -> None:
    def passes(source_id: str) -> bool:
        return not source_id.endswith("0")

    async def passes_later(source_id: str) -> bool:
        return True

    assert_type(load_drill("drill.yaml"), DrillSpec)
    assert_type(await run_drill("drill.yaml", check=passes), WaveReport)
    assert_type(await run_drill(load_drill("drill.yaml"), check=passes_later), WaveReport)


async def recovery(engine: Engine, journal: Journal, client: SmsClient) -> None:
    report = await recover(engine, journal, client=client, wave="w1")
    assert_type(report.total, int)
    assert_type(report.held, int)


async def ownership(client: SmsClient, journal: Journal) -> None:
    lease = Lease(journal, "runbook", actor="runbook:cutover", endpoint=client.endpoint)
    started = await lease.start()
    assert_type(started.run, Run)
    async with Engine(client, journal=journal, lease=lease, max_age=2.0) as engine:
        claimed = await engine.claim(["a", "b"])
        for source_id, owner in claimed.refused.items():
            assert_type(owner.describe(), str)
            assert_type(source_id, str)
        try:
            await engine.fire("a", "configure")
        except OwnedError as exc:  # another live driver holds it, or it was taken over
            assert_type(exc.owner, Run | None)
        except ConflictError as exc:  # someone else moved it: not pushed
            assert_type(exc.observed, str)
        except UnverifiedError as exc:  # it may have landed: the next read settles it
            assert_type(exc.entry_id, int | None)
            assert_type(await engine.settle_unverified("a"), StepResult | None)
    await lease.end()
    async with Engine(client, journal=journal) as implicit:  # its own run, ended on exit
        assert_type(implicit.lease, Lease | None)


def package() -> None:
    assert_type(sms_flow.__version__, str)
    assert_type(sms_flow.__all__, list[str])
