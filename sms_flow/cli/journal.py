"""The journal's commands: ``history`` (what happened to a source, or to a wave's sources),
``journal check`` (is the file sound, what does it hold) and ``recover`` (settle the intents
any driver left open)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sms_flow.cli import EXIT_API, EXIT_OK, EXIT_OWNED
from sms_flow.cli._output import console, err, out, print_json
from sms_flow.errors import InputError, JournalError

__all__ = ["check", "history", "recover"]


def _existing_journal(args: argparse.Namespace) -> Path:
    from sms_flow.cli._paths import check_readable_file
    from sms_flow.journal import default_journal_path

    path = Path(args.journal) if args.journal else default_journal_path()
    check_readable_file(path, "journal", hint="give --journal PATH (or set SMS_FLOW_JOURNAL)")
    return path


def history(args: argparse.Namespace) -> int:
    """The journal's entries for one source, or every source of a wave, oldest first."""
    return asyncio.run(_history(args))


async def _history(args: argparse.Namespace) -> int:
    from sms_flow.journal_sqlite import SqliteJournal

    if not args.source_id and not args.wave:
        raise InputError("give a SOURCE_ID or --wave NAME")
    if args.limit is not None and args.limit < 0:
        raise InputError(f"--limit {args.limit} is below 0; give the number of entries to show")
    path = _existing_journal(args)
    async with SqliteJournal(path) as journal:
        entries = await journal.history(source_id=args.source_id, wave=args.wave, limit=args.limit)
    if args.json:
        print_json([e.to_dict() for e in entries])
        return EXIT_OK
    if not entries:
        what = f"source {args.source_id}" if args.source_id else f"wave {args.wave}"
        out(f"no journal entries for {what} in {path}")
        return EXIT_OK
    from datetime import UTC, datetime

    from rich.table import Table

    title = f"source {args.source_id}" if args.source_id else f"wave {args.wave}"
    table = Table(title=f"history of {title} ({len(entries)} entries, {path})", header_style="bold")
    for col in (
        "#",
        "time (UTC)",
        "source",
        "trigger",
        "from → to",
        "outcome",
        "actor",
        "request_id",
        "note",
    ):
        table.add_column(col, overflow="fold")
    for e in entries:
        when = datetime.fromtimestamp(e.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        note = e.error or e.reason or ""
        if e.forced:
            note = f"FORCED: {note}"
        if len(note) > 90:
            note = note[:89] + "… (--json shows all)"
        table.add_row(
            str(e.id),
            when,
            e.source_id if not args.source_id else e.source_id[:8],
            e.trigger or "-",
            f"{e.from_state} → {e.to_state}",
            e.outcome.value,
            e.actor,
            e.request_id or "-",
            note,
        )
    console().print(table)
    return EXIT_OK


def check(args: argparse.Namespace) -> int:
    """``sms-flow journal check``: the full integrity check, and what the journal holds."""
    return asyncio.run(_check(args))


async def _check(args: argparse.Namespace) -> int:
    from sms_flow.journal_sqlite import SqliteJournal

    path = _existing_journal(args)
    try:
        # Opened without the quick check that refuses a damaged file: this reports on it.
        async with SqliteJournal(path, quick_check=False) as journal:
            found = await journal.check()
    except JournalError as exc:  # so damaged that SQLite gave up reading it
        if args.json:
            print_json({"journal": str(path), "ok": False, "problems": [str(exc)]})
        else:
            out(f"journal {path}: DAMAGED: {exc}")
        err(f"sms-flow: journal {path} is damaged; keep a copy, then restore it from a backup")
        return EXIT_API
    if args.json:
        print_json(
            {
                "journal": found.location,
                "ok": found.ok,
                "problems": found.problems,
                "schema_version": found.schema_version,
                "entries": found.entries,
                "open_intents": found.open_intents,
                "live_runs": [run.describe() for run in found.live_runs],
                "claims": found.claims,
            }
        )
    else:
        if found.ok:
            out(f"journal {found.location}: sound (integrity_check: ok)")
        else:
            out(f"journal {found.location}: DAMAGED, integrity_check reports:")
            for problem in found.problems[:50]:
                out(f"  - {problem}")
        out(f"  schema version {found.schema_version}")
        out(f"  entries: {found.entries:,}, open intents: {found.open_intents:,}")
        out(f"  live runs: {len(found.live_runs)}")
        for run in found.live_runs:
            out(f"    - {run.describe()}")
        out(f"  sources held by live runs: {found.claims:,}")
    if not found.ok:
        err(
            f"sms-flow: journal {found.location} is damaged; keep a copy, then restore it from a "
            f"backup or recover what SQLite can read (sqlite3 {found.location} .recover)"
        )
        return EXIT_API
    return EXIT_OK


def recover(args: argparse.Namespace) -> int:
    """``sms-flow recover``: settle the intents any driver left open, on one endpoint."""
    return asyncio.run(_recover(args))


async def _recover(args: argparse.Namespace) -> int:
    from sms_flow.auth import auth_from_env
    from sms_flow.cli.service import client_from
    from sms_flow.engine import Engine
    from sms_flow.journal import Lease
    from sms_flow.journal_sqlite import SqliteJournal
    from sms_flow.wave.recovery import recover as settle_open

    path = _existing_journal(args)
    async with client_from(args) as client, SqliteJournal(path) as journal:
        lease = Lease(
            journal,
            "recover",
            actor="cli:recover",
            name=args.wave,
            endpoint=client.endpoint,
            project=getattr(auth_from_env(), "project_id", None),
            seconds=args.lease,
        )
        await lease.start()
        try:
            engine = Engine(
                client,
                journal=journal,
                actor="cli:recover",
                endpoint=client.endpoint,
                project=lease.project,
                lease=lease,
            )
            report = await settle_open(
                engine,
                journal,
                client=client,
                wave=args.wave,
                source_ids=args.source,
                unknown_endpoint=args.unknown_endpoint,
            )
        finally:
            await lease.end()
    if args.json:
        print_json({"journal": str(path), "endpoint": client.endpoint, **report.to_dict()})
    else:
        what = f"wave {args.wave}" if args.wave else "every driver"
        out(
            f"recover {what} on {client.endpoint} ({path}): {report.total} settled: "
            f"{report.applied} applied, {report.pushed_again} pushed again, {report.ignored} "
            f"did not take, {report.conflicts} conflicts, {report.failed} failed"
        )
        for detail in report.details:
            note = detail.get("error") or detail.get("observed") or ""
            out(f"  entry {detail['entry']}  {detail['source_id']}  {detail['result']}  {note}")
        if report.unknown_endpoint:
            out(
                f"  {report.unknown_endpoint} open intents of unknown endpoint (journalled before "
                "sms-flow recorded endpoints) left open: add --unknown-endpoint to settle them "
                "against this endpoint"
            )
    if report.unread:
        err(f"sms-flow: {report.unread} open intents could not be read back; run it again")
        return EXIT_API
    if report.held:
        err(f"sms-flow: {report.held} open intents are held by a live driver; left to it")
        return EXIT_OWNED
    return EXIT_OK
