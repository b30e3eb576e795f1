"""Which journal a location names, and where the files that go with it live.

A journal location (``--journal``, ``$SMS_FLOW_JOURNAL``, a wave or drill file's
``journal:``) is either a PostgreSQL DSN (``postgresql://…`` or ``postgres://…``), for
:class:`~sms_flow.journal_postgres.PostgresJournal`, or the path of an SQLite file, for
:class:`~sms_flow.journal_sqlite.SqliteJournal`. :func:`resolve` makes a location of what was
given (a DSN kept as written, a path made absolute, nothing: the default);
:func:`open_journal` makes the journal it names (importing only that back end, so a path
needs no database driver); :func:`describe` shows it to a person, the DSN's password left
out; :func:`migrate` brings its schema up to this sms-flow's; :func:`copy` moves a whole
journal into a new one, across back ends (:data:`COPIED` names what it carries);
:func:`state_folder` is where reports and the embedded simulator's states go: beside
an SQLite file, and in ``$SMS_FLOW_HOME`` (default ``./.sms-flow``) for a database.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sms_flow.errors import ConfigError, OwnedError
from sms_flow.journal import (
    _ENV_HOME,
    _ENV_PATH,
    Journal,
    default_journal_path,
    is_dsn,
    redact_dsn,
)

if TYPE_CHECKING:
    from sms_flow.journal_postgres import PostgresJournal
    from sms_flow.journal_sqlite import SqliteJournal

__all__ = [
    "COPIED",
    "NOT_COPIED",
    "Copied",
    "CopiedTable",
    "Location",
    "Migrated",
    "copy",
    "describe",
    "migrate",
    "open_journal",
    "resolve",
    "state_folder",
]

Location = str | Path
"""A resolved journal location: a DSN (``str``) or an absolute path."""


def resolve(given: str | os.PathLike[str] | None = None) -> Location:
    """The location ``given`` names: a DSN as written, a path absolute (``~`` expanded);
    ``None`` or ``""``: ``$SMS_FLOW_JOURNAL`` (a DSN or a path), else
    :func:`~sms_flow.journal.default_journal_path`."""
    if given is None or given == "":
        configured = os.environ.get(_ENV_PATH)
        if configured and is_dsn(configured):
            return configured
        return default_journal_path()
    if isinstance(given, str) and is_dsn(given):
        return given
    return Path(given).expanduser().absolute()


def open_journal(location: str | os.PathLike[str] | None, **options: Any) -> Journal:
    """The journal ``location`` names (resolved by :func:`resolve`), not opened yet.

    ``options`` go to the back end's constructor (for instance ``pool_size`` for
    PostgreSQL, ``quick_check`` for SQLite). A DSN without the ``asyncpg`` package
    installed raises :class:`~sms_flow.errors.ConfigError` saying what to install.
    """
    return _opened(resolve(location), **options)


def _opened(where: Location, **options: Any) -> SqliteJournal | PostgresJournal:
    """The journal at a resolved location, as its back end's class."""
    if isinstance(where, str):
        from sms_flow.journal_postgres import PostgresJournal

        return PostgresJournal(where, **options)
    from sms_flow.journal_sqlite import SqliteJournal

    return SqliteJournal(where, **options)


def describe(location: str | os.PathLike[str] | None) -> str:
    """The location for a person: the path, or the DSN without its password."""
    where = resolve(location)
    return redact_dsn(where) if isinstance(where, str) else str(where)


def state_folder(location: str | os.PathLike[str] | None) -> Path:
    """Where reports and the embedded simulator's states go for a journal at ``location``:
    the folder of an SQLite file; for a database, ``$SMS_FLOW_HOME``, else ``.sms-flow``
    under the current directory (absolute)."""
    where = resolve(location)
    if isinstance(where, Path):
        return where.parent
    home = os.environ.get(_ENV_HOME)
    return Path(home).expanduser().absolute() if home else Path.cwd() / ".sms-flow"


@dataclass(frozen=True, slots=True)
class Migrated:
    """What :func:`migrate` did: the journal (as :func:`describe` shows it), and its schema
    version before and after (equal when there was nothing to do; 0: no schema yet)."""

    journal: str
    before: int
    after: int


async def migrate(location: str | os.PathLike[str] | None) -> Migrated:
    """Apply the journal's pending schema migrations (those a newer sms-flow brings).

    Opening a journal migrates it too; this says from which version to which. A journal of
    a newer schema than this sms-flow knows is refused with
    :class:`~sms_flow.errors.ConfigError`, untouched.
    """
    where = resolve(location)
    shown = describe(where)
    journal: SqliteJournal | PostgresJournal
    if isinstance(where, Path):
        from sms_flow.journal_sqlite import SCHEMA_VERSION as latest
        from sms_flow.journal_sqlite import SqliteJournal

        journal = SqliteJournal(where)
    else:
        from sms_flow.journal_postgres import SCHEMA_VERSION as latest
        from sms_flow.journal_postgres import PostgresJournal

        journal = PostgresJournal(where)
    before = await journal.stored_version()
    if before > latest:
        raise ConfigError(
            f"journal {shown} has schema version {before}, newer than this sms-flow knows (up "
            f"to {latest}): a newer sms-flow wrote it, and an older one never migrates a "
            "journal back; upgrade sms-flow (pip install -U sms-flow) on this machine to use it"
        )
    async with journal:  # opening applies the migrations, in one transaction
        pass
    return Migrated(shown, before, latest)


# --- copying a journal ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopiedTable:
    """A table :func:`copy` carries: its name, its columns, and the columns its rows are
    read in order of. ``counter``: the table holds one value, not rows (the fencing
    counter: an SQLite table of one row, a PostgreSQL sequence), copied by setting it."""

    name: str
    columns: tuple[str, ...]
    order: tuple[str, ...] = ()
    counter: bool = False


def _table(name: str, columns: str, order: str = "", *, counter: bool = False) -> CopiedTable:
    return CopiedTable(name, tuple(columns.split()), tuple(order.split()), counter)


COPIED: Final[tuple[CopiedTable, ...]] = (
    _table(
        "entries",
        "id source_id trigger from_state to_state actor reason forced wave outcome request_id "
        "attempts error created_at settled_at endpoint project run_id fence",
        order="id",
    ),
    _table("waves", "seq name", order="seq"),
    _table("wave_members", "seq wave endpoint source_id", order="seq"),
    _table(
        "runs",
        "run_id kind name endpoint project host pid actor exclusive started_at heartbeat_at "
        "expires_at ended_at end_reason",
        order="run_id",
    ),
    _table(
        "claims",
        "endpoint source_id run_id token claimed_at reason taken_from",
        order="endpoint source_id",
    ),
    _table("fencing", "last", counter=True),
    _table("wave_sessions", "session_id kind name endpoint started_at rate_at", order="session_id"),
    _table("wave_workers", "run_id session_id", order="run_id"),
    _table(
        "wave_done", "session_id source_id outcome run_id done_at", order="session_id source_id"
    ),
)
"""Every table and column :func:`copy` carries, the same in both back ends: a table or
column added to a schema is added here (``tests/test_journal_copy.py`` compares this with
each back end's live schema, and fails on one that is in neither this nor
:data:`NOT_COPIED`)."""

_LATEST: Final = (
    "derived from the entries and members (each source's latest entry, counts of them): "
    "the destination's triggers rebuild it as the entries and members are written"
)
NOT_COPIED: Final[dict[str, dict[str, str]]] = {
    "sqlite": {
        "sqlite_sequence": "SQLite's own counter of AUTOINCREMENT ids, set by the ids copied",
        "latest": _LATEST,
        "latest_counts": _LATEST,
        "wave_counts": _LATEST,
        "wave_tally": _LATEST,
    },
    "postgresql": {
        "meta": "the schema version: each end has its own, migrated when it is opened",
        "entries.write_key": "a key for the retries of the process that wrote the entry; "
        "made anew by the copy",
        "entries.settle_key": "a key for the retries of the process that settled the entry",
        "latest": _LATEST,
    },
}
"""What each back end holds that :func:`copy` does not carry, and why: ``table`` or
``table.column``."""

_DEFAULT_BATCH: Final = 5000


@dataclass(frozen=True, slots=True)
class Copied:
    """What :func:`copy` did: the two journals (as :func:`describe` shows them), and per
    table the rows read from the source and the rows the destination holds after the
    commit (of ``fencing``: its last token). ``ok``: they agree."""

    source: str
    destination: str
    tables: dict[str, tuple[int, int]]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(read == held for read, held in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "ok": self.ok,
            "tables": {
                name: {"source": read, "destination": held}
                for name, (read, held) in self.tables.items()
            },
            "seconds": round(self.seconds, 3),
        }


async def copy(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    progress: Callable[[str, int], None] | None = None,
    batch: int = _DEFAULT_BATCH,
) -> Copied:
    """Copy the journal at ``source`` into a new or empty one at ``destination``, either
    back end into either: every table and column of :data:`COPIED`, ids and order kept.

    Both ends are opened first (so migrated to this sms-flow's schema; one of a newer schema
    is refused with :class:`~sms_flow.errors.ConfigError`). Refused before anything is
    written: a source that holds no journal or is the destination, or that has a live run
    (:class:`~sms_flow.errors.OwnedError`: a wave in progress; dead runs not ended are
    copied as they are), and a destination that holds anything
    (:class:`~sms_flow.errors.ConfigError`). Rows are read from one snapshot of the source
    and written in one transaction on the destination, ``batch`` rows at a time (never the
    whole journal in memory); ``progress(table, rows)`` is called after each batch. A copy
    that fails leaves the destination as it was (an SQLite file it created is removed).
    The result's ``ok`` says whether the destination, counted after the commit, holds what
    was read.
    """
    src, dst = resolve(source), resolve(destination)
    shown_src, shown_dst = describe(src), describe(dst)
    if src == dst:
        raise ConfigError(
            f"source and destination are the same journal ({shown_src}); give another "
            "destination: a new file or an empty database"
        )
    if isinstance(src, Path) and not src.is_file():
        raise ConfigError(
            f"no journal at {src} to copy; give the path of an existing journal file "
            "(or a postgresql:// DSN) as the source"
        )
    created = isinstance(dst, Path) and not dst.exists()
    started = time.monotonic()
    try:
        read = await _copy(src, dst, shown_src, shown_dst, progress, batch)
    except BaseException:
        if created and isinstance(dst, Path):
            _remove(dst)
        raise
    return Copied(shown_src, shown_dst, read, time.monotonic() - started)


def _remove(path: Path) -> None:
    """Remove an SQLite journal file (a copy created it, and failed), with its companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


async def _copy(
    src: Location,
    dst: Location,
    shown_src: str,
    shown_dst: str,
    progress: Callable[[str, int], None] | None,
    batch: int,
) -> dict[str, tuple[int, int]]:
    source = _opened(src)
    if await source.stored_version() == 0:  # read without opening: opening would create it
        raise ConfigError(
            f"no journal in {shown_src} to copy (it holds no sms-flow schema); give the "
            "journal to copy as SRC"
        )
    async with source:
        now = time.time()
        live = [run for run in await source.runs(live=True) if run.live(now)]
        if live:
            raise OwnedError(
                f"journal {shown_src} has {len(live)} live run{'s' if len(live) > 1 else ''}: "
                + "; ".join(run.describe(now) for run in live)
                + "; a copy would miss what they write: wait for them to end, or stop them "
                "(Ctrl-C in their terminal), then copy again",
                owner=live[0],
            )
        read = {t.name: 0 for t in COPIED}
        columns = {t.name: t.columns for t in COPIED}
        counters = {t.name for t in COPIED if t.counter}
        async with _opened(dst) as destination:
            async with destination.loading() as loader:
                held = await loader.sizes([t.name for t in COPIED if not t.counter])
                if any(held.values()):
                    what = ", ".join(f"{name}: {n:,}" for name, n in held.items() if n)
                    raise ConfigError(
                        f"journal {shown_dst} is not empty: it holds {what}; copy into a new "
                        "journal (a file that does not exist yet, or an empty database), or "
                        "choose another destination"
                    )
                dump = source.dump([(t.name, t.columns, t.order) for t in COPIED], batch=batch)
                async with contextlib.aclosing(dump) as tables:
                    async for table, rows in tables:
                        await loader.load(table, columns[table], rows)
                        if table in counters:
                            read[table] = int(rows[0][0])
                        else:
                            read[table] += len(rows)
                        if progress is not None:
                            progress(table, read[table])
            found = await destination.sizes(list(read))
    return {name: (read[name], found[name]) for name in read}
