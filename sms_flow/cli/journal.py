"""The journal's commands: ``history`` (what happened to a source, or to a wave's sources,
streamed from the journal a page at a time as a table, CSV or JSON),
``journal check`` (is the journal sound, what does it hold), ``journal migrate`` (bring
its schema up to this sms-flow's), ``journal copy`` (into a new journal, SQLite or
PostgreSQL) and ``recover`` (settle the intents
any driver left open)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from sms_flow.cli import EXIT_API, EXIT_OK, EXIT_OWNED
from sms_flow.cli._output import err, out, print_json
from sms_flow.errors import InputError, JournalError
from sms_flow.journal import Entry, Run, parse_moment, parse_outcomes
from sms_flow.journals import Location, describe, open_journal, resolve

__all__ = ["check", "copy", "existing_journal", "history", "migrate", "recover"]


def existing_journal(args: argparse.Namespace) -> Location:
    """The journal ``--journal`` (else ``$SMS_FLOW_JOURNAL``, else the default) names; an
    SQLite file must exist (a database is not checked here: opening it says what is wrong)."""
    from sms_flow.cli._paths import check_readable_file

    location = resolve(args.journal)
    if isinstance(location, Path):
        check_readable_file(
            location, "journal", hint="give --journal PATH (or set SMS_FLOW_JOURNAL)"
        )
    return location


def history(args: argparse.Namespace) -> int:
    """The journal's entries for one source, a wave's sources, or any filter, oldest first."""
    return asyncio.run(_history(args))


_TABLE_COLUMNS: Final = (
    ("#", 7),
    ("time (UTC)", 23),
    ("source", 36),
    ("trigger", 14),
    ("from → to", 44),
    ("outcome", 10),
    ("actor", 16),
    ("by (host:pid)", 20),
    ("request_id", 32),
    ("note", 0),
)
_NOTE_MAX: Final = 90
_CSV_FIELDS: Final = (
    "id", "created_at", "settled_at", "source_id", "trigger", "from_state", "to_state",
    "outcome", "actor", "reason", "forced", "wave", "request_id", "attempts", "error",
    "endpoint", "project", "run_id", "fence",
)  # fmt: skip


def _iso_times() -> Callable[[float | None], str]:
    """:func:`~sms_flow.journal.iso_utc` (``""`` for None), faster: each second is formatted
    once (a journal holds many entries a second)."""
    last: list[Any] = [None, ""]

    def iso(t: float | None) -> str:
        if t is None:
            return ""
        second = int(t)
        if second != last[0]:
            last[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
        return f"{last[1]}.{int((t - second) * 1000):03d}Z"

    return iso


def _table_line(cells: Sequence[str]) -> str:
    return "  ".join(
        c.ljust(w) if w else c for c, (_, w) in zip(cells, _TABLE_COLUMNS, strict=True)
    ).rstrip()


def _table_row(
    e: Entry, short_source: bool, iso: Callable[[float | None], str], runs: dict[str, Run]
) -> str:
    """One entry as a line of the table (the widths of :data:`_TABLE_COLUMNS`); ``runs``
    names the process each entry's run was (the workers of a wave, on any machine)."""
    note = e.error or e.reason or ""
    if e.forced:
        note = f"FORCED: {note}"
    if note:
        note = " ".join(note.split())
        if len(note) > _NOTE_MAX:
            note = note[: _NOTE_MAX - 1] + "… (--format json shows all)"
    moved = f"{e.from_state} → {e.to_state}"
    run = runs.get(e.run_id) if e.run_id is not None else None
    by = f"{run.host[:13]}:{run.pid}" if run is not None else "-"
    line = (
        f"{e.id:<7}  {iso(e.created_at)[:-1].replace('T', ' '):<23}  "
        f"{e.source_id[:8] if short_source else e.source_id:<36}  {e.trigger or '-':<14}  "
        f"{moved:<44}  {e.outcome.value:<10}  {e.actor:<16}  {by:<20}  "
        f"{e.request_id or '-':<32}  {note}"
    )
    return line.rstrip() if not note else line


async def _history(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise InputError(f"--limit {args.limit} is below 0; give the number of entries to show")
    iso = _iso_times()
    since = parse_moment(args.since, "--since") if args.since is not None else None
    until = parse_moment(args.until, "--until") if args.until is not None else None
    wanted = parse_outcomes(args.outcome) if args.outcome else None
    if since is not None and until is not None and since >= until:
        raise InputError(
            f"--since {args.since} ({iso(since)}) is not before --until {args.until} "
            f"({iso(until)}); give a --since earlier than --until"
        )
    form = "json" if args.json else args.format
    location = existing_journal(args)
    path = describe(location)
    what = " ".join(
        part
        for part in (
            f"source {args.source_id}" if args.source_id else "",
            f"wave {args.wave}" if args.wave else "",
            f"since {iso(since)}" if since is not None else "",
            f"until {iso(until)}" if until is not None else "",
            f"outcome {','.join(o.value for o in wanted)}" if wanted else "",
            f"actor {args.actor}" if args.actor else "",
        )
        if part
    )
    stream = sys.stdout
    shown = 0
    async with open_journal(location) as journal:
        entries = journal.iter_history(
            source_id=args.source_id,
            wave=args.wave,
            since=since,
            until=until,
            outcomes=wanted,
            actor=args.actor,
            last=args.limit,
        )
        if form == "json":
            stream.write("[")
            async for e in entries:
                stream.write(("\n  " if not shown else ",\n  ") + json.dumps(e.to_dict()))
                shown += 1
                if shown % _FLUSH_EVERY == 0:
                    stream.flush()
            stream.write("\n]\n" if shown else "]\n")
        elif form == "csv":
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(_CSV_FIELDS)
            async for e in entries:
                writer.writerow(
                    (
                        e.id, iso(e.created_at), iso(e.settled_at), e.source_id, e.trigger,
                        e.from_state, e.to_state, e.outcome.value, e.actor, e.reason,
                        e.forced, e.wave, e.request_id, e.attempts, e.error, e.endpoint,
                        e.project, e.run_id, e.fence,
                    )
                )  # fmt: skip
                shown += 1
                if shown % _FLUSH_EVERY == 0:
                    stream.flush()
        else:
            short = args.source_id is not None
            runs = {r.run_id: r for r in await journal.runs(live=False)}
            lines: list[str] = []
            async for e in entries:
                if not shown:
                    lines.append(f"history of {what or 'every source'} ({path})")
                    lines.append(_table_line([name for name, _ in _TABLE_COLUMNS]))
                    lines.append(_table_line(["-" * max(w, len(n)) for n, w in _TABLE_COLUMNS]))
                lines.append(_table_row(e, short, iso, runs))
                shown += 1
                if len(lines) >= _FLUSH_EVERY:
                    stream.write("\n".join(lines) + "\n")
                    stream.flush()
                    lines.clear()
            if lines:
                stream.write("\n".join(lines) + "\n")
            if shown:
                stream.write(f"{shown:,} entr{'y' if shown == 1 else 'ies'}\n")
            else:
                stream.write(f"no journal entries for {what or 'any source'} in {path}\n")
        stream.flush()
    return EXIT_OK


_FLUSH_EVERY: Final = 1000
"""Lines written between flushes: output comes as the journal is read."""


def check(args: argparse.Namespace) -> int:
    """``sms-flow journal check``: the full integrity check, and what the journal holds."""
    return asyncio.run(_check(args))


async def _check(args: argparse.Namespace) -> int:
    location = existing_journal(args)
    path = describe(location)
    sqlite = isinstance(location, Path)
    try:
        # An SQLite file is opened without the quick check that refuses a damaged file:
        # this reports on it.
        async with open_journal(location, **({"quick_check": False} if sqlite else {})) as journal:
            found = await journal.check()
    except JournalError as exc:  # so damaged that SQLite gave up reading it
        if args.json:
            print_json({"journal": path, "ok": False, "problems": [str(exc)]})
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
            out(f"journal {found.location}: sound" + (" (integrity_check: ok)" if sqlite else ""))
        else:
            checked = "integrity_check reports" if sqlite else "its schema is not as expected"
            out(f"journal {found.location}: DAMAGED, {checked}:")
            for problem in found.problems[:50]:
                out(f"  - {problem}")
        out(f"  schema version {found.schema_version}")
        out(f"  entries: {found.entries:,}, open intents: {found.open_intents:,}")
        out(f"  live runs: {len(found.live_runs)}")
        for run in found.live_runs:
            out(f"    - {run.describe()}")
        out(f"  sources held by live runs: {found.claims:,}")
    if not found.ok:
        if sqlite:
            err(
                f"sms-flow: journal {found.location} is damaged; keep a copy, then restore it "
                "from a backup or recover what SQLite can read "
                f"(sqlite3 {found.location} .recover)"
            )
        else:
            err(
                f"sms-flow: journal {found.location} is damaged: its schema sms_flow is not "
                "what sms-flow wrote; restore the database from a backup"
            )
        return EXIT_API
    return EXIT_OK


def migrate(args: argparse.Namespace) -> int:
    """``sms-flow journal migrate``: apply pending migrations, say from which version to which."""
    return asyncio.run(_migrate(args))


async def _migrate(args: argparse.Namespace) -> int:
    from sms_flow.journals import migrate as apply

    done = await apply(existing_journal(args))
    if args.json:
        print_json(
            {
                "journal": done.journal,
                "from_version": done.before,
                "to_version": done.after,
                "migrated": done.before != done.after,
            }
        )
    elif done.before == done.after:
        out(f"journal {done.journal}: schema version {done.after}, the latest; nothing to do")
    else:
        was = f"version {done.before}" if done.before else "no schema (new)"
        out(f"journal {done.journal}: migrated from {was} to version {done.after}")
    return EXIT_OK


def copy(args: argparse.Namespace) -> int:
    """``sms-flow journal copy SRC DST``: the whole journal into a new one; the counts."""
    return asyncio.run(_copy(args))


async def _copy(args: argparse.Namespace) -> int:
    from sms_flow.cli._paths import check_readable_file
    from sms_flow.journals import COPIED
    from sms_flow.journals import copy as copy_journal

    source = resolve(args.source)
    if isinstance(source, Path):
        check_readable_file(
            source, "journal", hint="give an existing journal file or a postgresql:// DSN as SRC"
        )
    shown = _CopyProgress() if not args.json and sys.stderr.isatty() else None
    try:
        done = await copy_journal(source, args.destination, progress=shown)
    finally:
        if shown is not None:
            shown.close()
    if args.json:
        print_json(done.to_dict())
    else:
        out(f"copied journal {done.source} to {done.destination} in {done.seconds:.1f} s")
        out(f"  {'table':<22}  {'source':>12}  {'destination':>12}")
        counters = {t.name for t in COPIED if t.counter}
        for name, (read, held) in done.tables.items():
            label = f"{name} (last token)" if name in counters else name
            differs = "" if read == held else "  DIFFERS"
            out(f"  {label:<22}  {read:>12,}  {held:>12,}{differs}")
    if not done.ok:
        differ = [name for name, (read, held) in done.tables.items() if read != held]
        err(
            f"sms-flow: journal {done.destination} does not hold what was read from "
            f"{done.source} ({', '.join(differ)} differ); something else wrote to it during "
            "the copy: keep using the source, empty the destination and copy again"
        )
        return EXIT_API
    return EXIT_OK


class _CopyProgress:
    """Rows copied so far, on one line of standard error rewritten in place (a terminal)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._shown = False

    def __call__(self, table: str, rows: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        sys.stderr.write(f"\rcopying {table}: {rows:,} rows\x1b[K")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def recover(args: argparse.Namespace) -> int:
    """``sms-flow recover``: settle the intents any driver left open, on one endpoint."""
    return asyncio.run(_recover(args))


async def _recover(args: argparse.Namespace) -> int:
    from sms_flow.auth import auth_from_env
    from sms_flow.cli.service import client_from
    from sms_flow.engine import Engine
    from sms_flow.journal import Lease
    from sms_flow.wave.recovery import recover as settle_open

    location = existing_journal(args)
    path = describe(location)
    async with client_from(args) as client, open_journal(location) as journal:
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
        print_json({"journal": path, "endpoint": client.endpoint, **report.to_dict()})
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
