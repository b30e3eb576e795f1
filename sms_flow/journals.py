"""Which journal a location names, and where the files that go with it live.

A journal location (``--journal``, ``$SMS_FLOW_JOURNAL``, a wave or drill file's
``journal:``) is either a PostgreSQL DSN (``postgresql://…`` or ``postgres://…``), for
:class:`~sms_flow.journal_postgres.PostgresJournal`, or the path of an SQLite file, for
:class:`~sms_flow.journal_sqlite.SqliteJournal`. :func:`resolve` makes a location of what was
given (a DSN kept as written, a path made absolute, nothing: the default);
:func:`open_journal` makes the journal it names (importing only that back end, so a path
needs no database driver); :func:`describe` shows it to a person, the DSN's password left
out; :func:`migrate` brings its schema up to this sms-flow's; :func:`state_folder` is where reports and the embedded simulator's states go: beside
an SQLite file, and in ``$SMS_FLOW_HOME`` (default ``./.sms-flow``) for a database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sms_flow.errors import ConfigError
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

__all__ = ["Location", "Migrated", "describe", "migrate", "open_journal", "resolve", "state_folder"]

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
    where = resolve(location)
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
