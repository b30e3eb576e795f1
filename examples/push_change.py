"""Push state changes from Python: check, push, verify, journal, commit.

Run: python examples/push_change.py

Against the real service, set SMS_FLOW_ENDPOINT (or SMS_FLOW_REGION) and credentials
(SMS_FLOW_TOKEN, or CLOUD_SDK_AK/CLOUD_SDK_SK/CLOUD_SDK_PROJECT_ID) and pass a source id:
    python examples/push_change.py dcdbe339-b02d-4578-95a1-9c9c547d0000
Without them it starts an SMS simulator in this process and registers a source there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from sms_flow import IgnoredByServiceError, TransitionRejected
from sms_flow.auth import TokenAuth
from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.simulator import Simulator, SimulatorConfig


async def push(
    client: SmsClient, source_id: str, journal_path: Path, sim: Simulator | None
) -> None:
    async with SqliteJournal(journal_path) as journal:
        engine = Engine(client, journal=journal, actor="example:push_change")
        state = await engine.refresh(source_id)
        print(f"{source_id} is {state}")

        # One trigger: validated, journalled, pushed, read back, then committed.
        step = await engine.fire(source_id, "configure", reason="target configured by the team")
        print(
            f"applied {step.trigger}: {step.from_state} → {step.to_state} (request_id {step.request_id})"
        )

        # A target instead of a trigger: refused when it is not one move ...
        try:
            await engine.change(source_id, "SYNCING/syncing")
        except TransitionRejected as exc:
            print(f"refused: {exc.verdict.explain()}")
        # ... or pushed step by step along the shortest legal path.
        for step in await engine.change(source_id, "SYNCING/syncing", follow_path=True):
            print(f"applied {step.trigger}: {step.to_state}")

        if sim is not None:
            # A frozen state: the service would answer 200 and change nothing.
            await sim.move(source_id, pair="STOPPED/syncing")
            await engine.refresh(source_id)
            try:
                await engine.fire(source_id, "resume")
            except TransitionRejected as exc:
                print(f"refused: {exc.verdict.reasons[0].message}")
            try:
                await engine.fire(
                    source_id, "resume", force=True, reason="drill: see what the service does"
                )
            except IgnoredByServiceError as exc:
                print(f"forced, and as predicted: {exc}")

        print("journal:")
        for entry in await journal.history(source_id=source_id):
            print(
                f"  #{entry.id} {entry.trigger or '-'}: {entry.from_state} → {entry.to_state}: {entry.outcome.value}"
            )


async def main(argv: list[str]) -> int:
    journal_path = Path(tempfile.mkdtemp(prefix="sms-flow-example-")) / "journal.sqlite"
    if argv and (os.environ.get("SMS_FLOW_ENDPOINT") or os.environ.get("SMS_FLOW_REGION")):
        async with SmsClient.from_env() as client:
            await push(client, argv[0], journal_path, None)
        return 0
    async with Simulator(SimulatorConfig(token="example-token")) as sim:
        source_id = await sim.register("web-01")
        async with SmsClient(sim.url, auth=TokenAuth("example-token")) as client:
            await push(client, source_id, journal_path, sim)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
