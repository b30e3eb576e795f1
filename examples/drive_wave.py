"""Drive a wave from Python: build the wave in code, watch its events, read the report.

Run: python examples/drive_wave.py [--sources N]

Uses the embedded simulator (with a few faults, to show retries at work) and a journal in
a temporary folder; a real endpoint is `endpoint="https://sms.<region>.myhuaweicloud.com"`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

from sms_flow.wave import Event, EventKind, WaveSession, WaveSpec


async def main(n_sources: int) -> int:
    folder = Path(tempfile.mkdtemp(prefix="sms-flow-wave-"))
    spec = WaveSpec.model_validate(
        {
            "name": "python-wave",
            "sources": {"count": n_sources},
            "target": "FINISHED/cutovered",
            "concurrency": 16,
            "simulator": {
                "error_rate": 0.05,
                "throttle_rate": 0.02,
                "retry_after": 0.01,
                "seed": 3,
            },
        }
    )
    steps: Counter[str] = Counter()

    def on_event(event: Event) -> None:  # called for every event, in order
        if event.kind is EventKind.STEP and event.step is not None:
            steps[event.step.trigger or "?"] += 1

    async with WaveSession(
        spec, journal_path=folder / "journal.sqlite", on_event=on_event
    ) as session:
        runner = session.runner

        async def watch() -> None:  # the same events, as an async iterator
            async for event in runner.events():
                if event.kind is EventKind.SOURCE_DONE and event.outcome is not None:
                    if event.outcome.value == "failed":
                        print(f"  {event.source_id} failed: {event.error}")
                elif event.kind is EventKind.WAVE_DONE:
                    print("  wave done")

        watcher = asyncio.create_task(watch())
        report = await runner.run()
        await watcher
        path = session.write_report(report)

    totals = report.to_dict()["totals"]
    print(f"{totals['finished']} of {totals['sources']} sources reached {report.target}")
    print(f"{report.applied} transitions applied: {dict(sorted(steps.items()))}")
    print(f"report: {path}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=25)
    sys.exit(asyncio.run(main(parser.parse_args().sources)))
