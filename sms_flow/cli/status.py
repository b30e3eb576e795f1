"""``sms-flow status WAVE``: where a wave's sources are, from its journal, while it runs or after.

Everything comes from the journal (no request to the service): how many of the wave's
sources are in each state (:meth:`~sms_flow.journal.Journal.wave_status`), the sources
whose latest step failed, the open intents, and the live driver (the run that holds the
wave, with its process and heartbeat), or the workers of its latest session of joined runs
(``run --join``: each one's host, pid, sources held and done, last heartbeat, or how it
ended). The counting and filtering run in SQLite, so the
answer comes at once and memory stays flat however long the journal; it reads a journal a
running wave is writing (WAL mode), from another terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from sms_flow.cli import EXIT_BAD_INPUT, EXIT_OK
from sms_flow.cli._output import err, out, print_json
from sms_flow.cli.journal import existing_journal
from sms_flow.errors import did_you_mean
from sms_flow.journal import Entry, Run, Worker, iso_utc

__all__ = ["status"]

_SHOWN = 25
"""Failures and open intents listed in the text output (``--json`` gives 200)."""


def status(args: argparse.Namespace) -> int:
    """Show a wave's counts per state, failures, open intents and live driver."""
    return asyncio.run(_status(args))


async def _status(args: argparse.Namespace) -> int:
    from sms_flow.journals import describe, open_journal

    location = existing_journal(args)
    path = describe(location)
    async with open_journal(location) as journal:
        found = await journal.wave_status(args.wave, shown=200 if args.json else _SHOWN)
        runs = [r for r in await journal.runs(live=True) if r.name == args.wave]
        workers = await journal.workers(args.wave)
        known = await journal.waves() if not (found.members or found.entries) else []
    if not (found.members or found.entries):
        hint = did_you_mean(args.wave, known)
        listed = ", ".join(known[-10:]) if known else "none yet"
        err(
            f"sms-flow: no wave or drill named {args.wave!r} in journal {path}{hint}; waves "
            f"it knows: {listed} (give --journal PATH for another journal)"
        )
        return EXIT_BAD_INPUT
    now = time.time()
    live = [r for r in runs if r.live(now)]
    if args.json:
        print_json(
            {
                "wave": found.wave,
                "journal": str(path),
                "members": found.members,
                "entries": found.entries,
                "last_activity": iso_utc(found.last_activity) if found.last_activity else None,
                "states": found.states,
                "failed": found.failed,
                "failures": [_entry(e) for e in found.failures],
                "open_intents": found.open_intents,
                "open": [_entry(e) for e in found.open],
                "live_runs": [_run(r, now) for r in live],
                "workers": [w.to_dict(now) for w in workers],
            }
        )
        return EXIT_OK
    last = (
        f", last entry {iso_utc(found.last_activity)} ({now - found.last_activity:,.0f} s ago)"
        if found.last_activity
        else ""
    )
    out(f"wave {found.wave} ({path}): {found.members:,} sources, {found.entries:,} entries{last}")
    joined = {w.run.run_id for w in workers}
    for run in live:
        if run.run_id not in joined:
            out(f"  driven by: {run.describe(now)}")
    if workers:
        _print_workers(workers, now)
    if not live:
        out("  no live driver (the wave is not running; sms-flow run WAVE.yaml resumes it)")
    out("  sources by state (the last the journal knows):")
    width = max(len(state) for state in found.states)
    for state, count in sorted(found.states.items(), key=lambda kv: (-kv[1], kv[0])):
        note = "  (nothing journalled yet: where the service had it)" if state == "unknown" else ""
        out(f"    {state.ljust(width)}  {count:>8,}{note}")
    out(f"  failing: {found.failed:,}" + (" (their latest step)" if found.failed else ""))
    for e in found.failures:
        rid = f", request_id {e.request_id}" if e.request_id else ""
        out(
            f"    {e.source_id}  {e.from_state} -{e.trigger or '?'}→ {e.to_state}  "
            f"{e.outcome.value}{rid}: {_short(e.error or e.reason or '')}"
        )
    if found.failed > len(found.failures):
        out(
            f"    … {found.failed - len(found.failures):,} more (sms-flow history --wave "
            f"{found.wave} --outcome failed,conflict,ignored,unverified)"
        )
    out(f"  open intents: {found.open_intents:,}")
    for e in found.open:
        out(
            f"    entry {e.id}  {e.source_id}  {e.trigger or '?'} {e.from_state} → {e.to_state}  "
            f"{e.outcome.value} since {iso_utc(e.created_at)}"
        )
    if found.open_intents > len(found.open):
        out(f"    … {found.open_intents - len(found.open):,} more")
    if found.open_intents and not live:
        out(f"    (the next run settles them, or: sms-flow recover --wave {found.wave})")
    return EXIT_OK


def _print_workers(workers: list[Worker], now: float) -> None:
    """The workers of the wave's latest session of joined runs (``run --join``)."""
    sessions = sorted({w.session for w in workers})
    alive = sum(1 for w in workers if w.run.live(now))
    where = f"session {sessions[0][:8]}" if len(sessions) == 1 else f"{len(sessions)} sessions"
    out(
        f"  workers ({where}): {alive} live of {len(workers)}, "
        f"{sum(w.done for w in workers):,} sources done"
    )
    for w in workers:
        run = w.run
        if run.live(now):
            state = f"live, holds {w.claims:,}, last heartbeat {now - run.heartbeat_at:.0f} s ago"
        else:
            state = f"{run.end_reason or 'ended'}" + (
                f" {now - run.ended_at:.0f} s ago" if run.ended_at is not None else ""
            )
        out(
            f"    run {run.run_id[:8]}  pid {run.pid} on {run.host}  since "
            f"{iso_utc(run.started_at)}  done {w.done:,}  {state}"
        )


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _entry(e: Entry) -> dict[str, Any]:
    data = e.to_dict()
    data["created_at"] = iso_utc(e.created_at)
    data["settled_at"] = iso_utc(e.settled_at) if e.settled_at else None
    return data


def _run(run: Run, now: float) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "name": run.name,
        "endpoint": run.endpoint,
        "actor": run.actor,
        "host": run.host,
        "pid": run.pid,
        "started_at": iso_utc(run.started_at),
        "heartbeat_at": iso_utc(run.heartbeat_at),
        "expires_at": iso_utc(run.expires_at),
        "description": run.describe(now),
    }
