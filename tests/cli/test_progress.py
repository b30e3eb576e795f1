"""The live display of a wave (``sms_flow/cli/progress.py``), as its status lines show it when
the output is not a terminal: queued sources apart, counters, retries, elapsed time and ETA."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from sms_flow.cli.progress import WaveDisplay
from sms_flow.simulator import Faults, Simulator
from sms_flow.wave import EventKind, WaveSession, state_counts
from tests.wave.conftest import RETRY, WAVE_SIMULATOR, spec

pytestmark = WAVE_SIMULATOR


async def test_status_lines_show_queued_sources_retries_and_an_eta(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = await sim.register_many(12, prefix="d")
    sim.set_faults(Faults(throttle_rate=0.3, retry_after=0.01))
    screen = io.StringIO()
    async with WaveSession(
        spec(name="shown", sources={"ids": ids}, concurrency=2),
        endpoint=sim.url,
        journal_path=tmp_path / "j.sqlite",
        client_options=RETRY,
    ) as session:
        runner = session.runner
        display = WaveDisplay(
            Console(file=screen, width=300),
            wave="shown",
            target="FINISHED/cutovered",
            counts=lambda: state_counts(runner.engine, runner.members),
            total=lambda: len(runner.members),
            interval=0,
        )
        runner.subscribe(display.on_event)
        runner.subscribe(lambda e: display.refresh() if e.kind is EventKind.SOURCE_DONE else None)
        with display:
            report = await runner.run()
    sim.set_faults(Faults())
    assert report.ok
    lines = screen.getvalue().splitlines()
    first, last = lines[0], lines[-1]
    # After the first source is done, 10 are still queued: two are driven at a time.
    assert first.startswith("shown: 1/12 sources done, 10 queued;"), first
    assert "ETA " in first and "elapsed 0:0" in first
    assert re.search(r"now: [A-Z]+ 1\b", first), "the queued sources are not counted in a state"
    assert last.startswith("shown: 12/12 sources done, 0 queued;"), last
    retries = int(re.search(r"retries (\d+) \(429: (\d+)\)", last).group(1))  # type: ignore[union-attr]
    assert retries > 0 and retries == report.retries["total"]
    assert "now: FINISHED 12" in last
