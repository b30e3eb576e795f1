"""A migration drill with a Python check: premigready → premiging → check → premiged or
premigfailed → back to SYNCING, with a report per source.

Run: python examples/drill_with_check.py

The check here "tests" each drilled target: it passes most sources, fails one, and hangs on
another, which the drill times out and counts as failed. A real check would log in to the
drilled target, run smoke tests, compare data, and answer True or False.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from sms_flow.wave import DrillSpec, run_drill


async def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="sms-flow-drill-"))
    spec = DrillSpec.model_validate(
        {
            "name": "drill-python",
            "sources": {"count": 6},
            "prepare": True,  # the simulator's new sources are first taken to SYNCING/syncing
            "check": {
                "command": "true",
                "timeout": 0.5,
            },  # the Python check below replaces the command
        }
    )
    checked: list[str] = []

    async def check(source_id: str) -> bool:
        checked.append(source_id)
        if len(checked) == 2:
            return False  # a failed smoke test
        if len(checked) == 3:
            await asyncio.sleep(60)  # a check that hangs: timed out, counts as failed
        return True

    report = await run_drill(spec, check=check, journal_path=folder / "journal.sqlite")
    for record in report.sources.values():
        print(f"{record.source_id}: drill {record.detail.get('drill')}, now {record.state}")
    verdicts = [r.detail.get("drill") for r in report.sources.values()]
    print(
        f"passed {verdicts.count('passed')}, failed {verdicts.count('failed')}, timed out {verdicts.count('timeout')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
