"""B5: recovery: the time to settle a journal of 10,000 open intents.

What is measured: wall time of ``sms_flow.wave.recover(engine, journal, client=client)``
(its default concurrency) in a process that has just started: a fresh :class:`~sms_flow.engine.Engine`
(read-back on, as by default), a fresh :class:`~sms_flow.client.SmsClient` signing with
AK/SK, and the journal reopened from its file.

Setup (not timed): a simulator process registers ``intents`` sources, all at
``WAITING/checking``; a fresh :class:`~sms_flow.journal_sqlite.SqliteJournal` gets one open intent
per source (``configure``: ``WAITING/checking → WAITING/setting``) through
``SqliteJournal.begin``. Then, as if the process had died with every push in flight:

* a third of the sources are moved to the intent's destination (the push landed): recovery
  settles them as applied after reading them back;
* a third are left where they were (the push never landed): recovery pushes again, reads
  back, and settles;
* a third are moved elsewhere (``INIT/replicating``: someone else changed them): recovery
  settles them as conflicts and leaves them alone.

The report's counts are checked against that split. No baseline: the figure is absolute;
the simulator runs in its own process and shares the machine's cores.

Target: under 10 s for 10,000 open intents (a smaller ``intents`` is scaled linearly for the
verdict).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    AK,
    PROJECT_ID,
    SHARED_CORES_NOTE,
    SK,
    CpuClock,
    Figure,
    SimulatorProcess,
    simulator,
)
from sms_flow.auth import AkSkAuth
from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.journal import Intent
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.states import CopyState, MigrationCycle
from sms_flow.wave import recover

TARGET_INTENTS = 10_000
TARGET_SECONDS = 10.0
_SETUP_CONCURRENCY = 64


async def _setup(sim: SimulatorProcess, journal_path: Path) -> dict[str, int]:
    """Write one open intent per source, then move the sources as the split says."""
    ids = sim.ids
    landed, never, elsewhere = ids[0::3], ids[1::3], ids[2::3]
    async with SqliteJournal(journal_path) as journal:
        await asyncio.gather(
            *(
                journal.begin(
                    Intent(
                        source_id=sid,
                        trigger="configure",
                        from_state="WAITING/checking",
                        to_state="WAITING/setting",
                        actor="bench:b5",
                        reason=None,
                        wave="bench-b5",
                        endpoint=sim.url,
                    )
                )
                for sid in ids
            )
        )
        if len(await journal.open_intents()) != len(ids):
            raise AssertionError("B5: the journal does not hold one open intent per source")
    gate = asyncio.Semaphore(_SETUP_CONCURRENCY)
    async with SmsClient(sim.url, auth=AkSkAuth(AK, SK, PROJECT_ID)) as client:

        async def move(sid: str, copystate: CopyState, cycle: MigrationCycle) -> None:
            async with gate:
                await client.change_state(sid, copystate, cycle)

        await asyncio.gather(
            *(move(s, CopyState.WAITING, MigrationCycle.SETTING) for s in landed),
            *(move(s, CopyState.INIT, MigrationCycle.REPLICATING) for s in elsewhere),
        )
    return {"applied": len(landed), "pushed_again": len(never), "conflicts": len(elsewhere)}


async def _recover(sim: SimulatorProcess, journal_path: Path) -> tuple[Any, CpuClock]:
    async with (
        SqliteJournal(journal_path) as journal,
        SmsClient(sim.url, auth=AkSkAuth(AK, SK, PROJECT_ID)) as client,
    ):
        async with Engine(client, journal=journal) as engine:
            with CpuClock(sim.pid) as clock:
                report = await recover(engine, journal, client=client)
        left = len(await journal.open_intents())
    if left:
        raise AssertionError(f"B5: {left} intents still open after recovery")
    return report, clock


def run_once(intents: int) -> dict[str, Any]:
    with (
        simulator(intents) as sim,
        tempfile.TemporaryDirectory(prefix="sms-flow-bench-b5-") as tmp,
    ):
        journal_path = Path(tmp) / "journal.sqlite"
        expected = asyncio.run(_setup(sim, journal_path))
        report, clock = asyncio.run(_recover(sim, journal_path))
    got = {
        "applied": report.applied,
        "pushed_again": report.pushed_again,
        "conflicts": report.conflicts,
    }
    if got != expected or report.failed:
        raise AssertionError(
            f"B5: recovery settled {got} (failed {report.failed}), expected {expected}"
        )
    return {"intents": intents, **got, **clock.shares()}


def run(*, intents: int = TARGET_INTENTS, repeat: int = 1, **_unused: Any) -> list[Figure]:
    started = time.perf_counter()
    runs = [run_once(intents) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["wall_seconds"])
    seconds = best["wall_seconds"]
    at_target = seconds * TARGET_INTENTS / intents
    scaled = "" if intents == TARGET_INTENTS else f"; x{TARGET_INTENTS / intents:g} for the target"
    return [
        Figure(
            id="B5",
            what=f"recover {intents:,} open intents (1/3 landed, 1/3 not, 1/3 moved)",
            value=seconds,
            unit="s",
            better="lower",
            target=f"< {TARGET_SECONDS:g} s for {TARGET_INTENTS:,}",
            met=at_target < TARGET_SECONDS,
            note=f"best of {repeat}, read-back on; {SHARED_CORES_NOTE}{scaled}",
            details={
                "runs": runs,
                "seconds_per_10k": at_target,
                "benchmark_seconds": time.perf_counter() - started,
            },
        )
    ]
