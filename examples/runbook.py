"""A runbook that handles failures: run a wave, sort the failed sources by what went wrong,
act on each kind, and run the wave again until it is done or only humans can help.

Run: python examples/runbook.py

Against the simulator (a stand-in for the service), some sources start out stuck:
  - STOPPED by someone: the service ignores changestate there; the task must be started
    again (POST /v3/tasks/{task_id}/action "start"). The wave fails such a source at once
    (ActionNeededError, saying what to call); the runbook makes the call, then resumes.
  - gone (404): nothing to do but tell a person.
and the service throws 5xx and 429 answers now and then, which retries absorb.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from sms_flow.simulator import Faults, Simulator, SimulatorConfig
from sms_flow.wave import SourceOutcome, WaveReport, WaveSpec, run_wave

MISSING = "00000000-0000-4000-8000-0000000000aa"


async def start_task_again(sim: Simulator, source_id: str) -> None:
    """Stand-in for the task action "start" (the SMS task API), which resumes a stopped task."""
    await sim.move(source_id, trigger="resume")


async def main() -> int:
    journal = Path(tempfile.mkdtemp(prefix="sms-flow-runbook-")) / "journal.sqlite"
    async with Simulator(SimulatorConfig(service_delay=0.05, seed=4)) as sim:
        ids = await sim.register_many(30, prefix="app")
        for source_id in ids[:3]:
            await sim.move(source_id, pair="STOPPED/syncing")
        sim.set_faults(Faults(error_rate=0.05, throttle_rate=0.03, retry_after=0.02))
        spec = WaveSpec.model_validate(
            {
                "name": "runbook",
                "endpoint": sim.url,
                "sources": {"ids": [*ids, MISSING]},
                "concurrency": 8,
            }
        )
        for attempt in range(1, 4):
            report: WaveReport = await run_wave(spec, journal_path=journal)
            print(
                f"pass {attempt}: {report.count(SourceOutcome.FINISHED) + report.count(SourceOutcome.ALREADY)} at target, {len(report.failed)} failed"
            )
            if report.ok:
                break
            by_kind: dict[str, list[str]] = defaultdict(list)
            for record in report.failed:
                by_kind[record.error_type or "?"].append(record.source_id)
            for source_id in by_kind.pop("ActionNeededError", []):
                print(f"  {source_id}: needs a task action; starting the task again")
                await start_task_again(sim, source_id)
            for kind in ("ServerError", "ConnectError", "RequestTimeoutError", "ThrottledError"):
                for source_id in by_kind.pop(kind, []):
                    print(f"  {source_id}: {kind}; the next pass retries it")
            for kind, sources in by_kind.items():
                for source_id in sources:
                    print(f"  {source_id}: {kind}: needs a person (left out of the next pass)")
            stuck = {s for sources in by_kind.values() for s in sources}
            remaining = [s for s in spec.sources.ids or [] if s not in stuck]
            spec = spec.model_copy(
                update={"sources": spec.sources.model_copy(update={"ids": remaining})}
            )
        at_target = sum(1 for s in ids if str(sim.source(s).pair) == "FINISHED/cutovered")
        print(
            f"done: {at_target} of {len(ids)} registered sources at FINISHED/cutovered; journal {journal}"
        )
        return 0 if at_target == len(ids) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
