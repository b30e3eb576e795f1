"""``sms-flow history``: what the journal says happened to a source, or to a wave's sources."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sms_flow.cli import EXIT_OK
from sms_flow.cli._output import console, out, print_json
from sms_flow.errors import InputError

__all__ = ["history"]


def history(args: argparse.Namespace) -> int:
    """The journal's entries for one source, or every source of a wave, oldest first."""
    return asyncio.run(_history(args))


async def _history(args: argparse.Namespace) -> int:
    from sms_flow.cli._paths import check_readable_file
    from sms_flow.journal import default_journal_path
    from sms_flow.journal_sqlite import SqliteJournal

    if not args.source_id and not args.wave:
        raise InputError("give a SOURCE_ID or --wave NAME")
    if args.limit is not None and args.limit < 0:
        raise InputError(f"--limit {args.limit} is below 0; give the number of entries to show")
    path = Path(args.journal) if args.journal else default_journal_path()
    check_readable_file(path, "journal", hint="give --journal PATH (or set SMS_FLOW_JOURNAL)")
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
