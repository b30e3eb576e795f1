"""The journal: every transition written down before it is pushed, then its outcome.

Write-ahead intent, then outcome
    The engine calls :meth:`Journal.begin` *before* it sends ``PUT .../changestate``, and only
    sends once ``begin`` has returned, because by then the intent is committed. When the push
    is over it calls :meth:`Journal.settle` with the :class:`Outcome`. A process killed at any
    moment therefore leaves, for every change it may have sent, an entry whose outcome is
    :attr:`Outcome.PENDING`: :meth:`Journal.open_intents` lists them, and a restarted process
    settles each one by reading the source back from the service. A change refused by the
    local chart, or a move the service made by itself, is never pushed and is written already
    settled with :meth:`Journal.record`.

Back ends
    This module holds the :class:`Journal` protocol and the types every back end shares.
    The back end today is :class:`~sms_flow.journal_sqlite.SqliteJournal`: one SQLite file
    (WAL mode), written by one dedicated thread with group commit. The protocol is small so
    that a PostgreSQL journal shared by several workers can follow. Importing the types
    loads neither :mod:`sqlite3` nor a thread.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

from sms_flow.errors import JournalError

__all__ = [
    "Entry",
    "Intent",
    "Journal",
    "JournalError",
    "JournalStats",
    "Outcome",
    "default_journal_path",
    "final_outcome",
    "source_id_list",
]

_ENV_PATH: Final = "SMS_FLOW_JOURNAL"


class Outcome(StrEnum):
    """What became of a transition."""

    PENDING = "pending"
    """Intent written, no outcome yet: it may or may not have been pushed."""
    APPLIED = "applied"
    """Pushed, and reading the source back shows the new state."""
    REJECTED = "rejected"
    """Refused by the local statechart; never sent."""
    FAILED = "failed"
    """The API answered with an error, or no usable answer came back."""
    IGNORED = "ignored"
    """The service answered, but the change did not take (frozen state, old state read back)."""
    CONFLICT = "conflict"
    """Reading back shows a third state: someone else changed the source; not overwritten."""
    OBSERVED = "observed"
    """A move the service made by itself, seen by polling; recorded for the history."""


@dataclass(frozen=True, slots=True)
class Intent:
    """A transition about to be pushed (or recorded): who asked for what, and why."""

    source_id: str
    trigger: str | None
    from_state: str
    """The state before, as ``"COPYSTATE/cycle"``, e.g. ``"WAITING/checking"``."""
    to_state: str
    actor: str
    """Who asked, e.g. ``"cli:alice"`` or ``"wave:w1"``."""
    reason: str | None
    forced: bool = False
    wave: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry: an intent, its outcome, and when both happened.

    ``id`` grows monotonically across the whole journal, so it gives the global order.
    Times are unix seconds from :func:`time.time`.
    """

    id: int
    source_id: str
    trigger: str | None
    from_state: str
    to_state: str
    actor: str
    reason: str | None
    forced: bool
    wave: str | None
    outcome: Outcome
    request_id: str | None
    attempts: int
    error: str | None
    created_at: float
    settled_at: float | None

    @property
    def intent(self) -> Intent:
        """The intent this entry records."""
        return Intent(
            source_id=self.source_id,
            trigger=self.trigger,
            from_state=self.from_state,
            to_state=self.to_state,
            actor=self.actor,
            reason=self.reason,
            forced=self.forced,
            wave=self.wave,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON output (``outcome`` as its string value)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["outcome"] = self.outcome.value
        return data


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters of a journal that group-commits: how well it is batching.

    ``batches`` is the number of transactions committed (or attempted); ``operations /
    batches`` is the mean batch size. ``in_flight`` is the size of the batch the thread is
    running right now (0 when idle).
    """

    operations: int
    batches: int
    largest_batch: int
    in_flight: int


class Journal(Protocol):
    """Where transitions are written down. Every method is a coroutine.

    Use it as ``async with journal: ...`` or call :meth:`open` and :meth:`close`.
    """

    async def open(self) -> None:
        """Make the journal ready (create the storage on first use)."""
        ...

    async def close(self) -> None:
        """Finish queued work and release the storage; later calls raise JournalError."""
        ...

    async def begin(self, intent: Intent) -> int:
        """Write ``intent`` as pending; durable when this returns. Returns the entry id."""
        ...

    async def settle(
        self,
        entry_id: int,
        outcome: Outcome,
        *,
        request_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
        wait: bool = True,
    ) -> None:
        """Write the outcome of a pending entry; durable when this returns.

        Settling an unknown entry, an already settled one, or with ``Outcome.PENDING``
        raises :class:`JournalError`. With ``wait=False`` it returns once the write is
        queued: it is made in order with everything queued before and after it (so before
        the next ``begin``), and a failure is logged instead of raised. An outcome lost to
        a crash is found again by recovery, which reads the source back.
        """
        ...

    async def record(
        self,
        intent: Intent,
        outcome: Outcome,
        *,
        request_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> int:
        """Write an entry born settled (a rejection, an observed move). Returns its id."""
        ...

    async def open_intents(self, *, wave: str | None = None) -> list[Entry]:
        """Pending entries (intent without outcome), oldest first."""
        ...

    async def history(
        self,
        *,
        source_id: str | None = None,
        wave: str | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Entries, oldest first; with ``limit``, the last ``limit`` of them (oldest first)."""
        ...

    async def last_applied(self, source_ids: Sequence[str]) -> dict[str, Entry]:
        """For each source, its latest APPLIED or OBSERVED entry (sources without one are absent)."""
        ...

    async def add_members(self, wave: str, source_ids: Sequence[str]) -> None:
        """Add sources to a wave; idempotent, and the first insertion fixes the order."""
        ...

    async def members(self, wave: str) -> list[str]:
        """The sources of a wave in insertion order (empty for an unknown wave)."""
        ...

    async def remove_members(self, wave: str) -> int:
        """Forget a wave's membership (its history entries stay); returns how many went."""
        ...

    async def waves(self) -> list[str]:
        """Every wave named by members or entries, in order of first appearance."""
        ...

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def default_journal_path() -> Path:
    """``$SMS_FLOW_JOURNAL`` if set, else ``.sms-flow/journal.sqlite`` under the current directory.

    The result is absolute, so that messages name the full path.
    """
    configured = os.environ.get(_ENV_PATH)
    if configured:
        return Path(configured).expanduser().absolute()
    return Path.cwd() / ".sms-flow" / "journal.sqlite"


# --- argument checks every back end makes --------------------------------------------------


def final_outcome(outcome: Outcome, doing: str) -> Outcome:
    """``outcome`` as an :class:`Outcome` that settles an entry; JournalError if it cannot.

    ``doing`` names the call for the message, e.g. ``"settle entry 7"``.
    """
    try:
        outcome = Outcome(outcome)
    except ValueError:
        raise JournalError(
            f"cannot {doing}: unknown outcome {outcome!r}; "
            f"valid: {', '.join(o.value for o in Outcome if o is not Outcome.PENDING)}"
        ) from None
    if outcome is Outcome.PENDING:
        raise JournalError(
            f"cannot {doing} as 'pending': that is not an outcome; use begin() to write an intent"
        )
    return outcome


def source_id_list(source_ids: Sequence[str], doing: str) -> list[str]:
    """``source_ids`` as a list; JournalError for a lone string (a common slip)."""
    if isinstance(source_ids, str):
        raise JournalError(
            f"{doing} takes a sequence of source ids, not the string {source_ids!r}; "
            f"wrap it in a list: [{source_ids!r}]"
        )
    return list(source_ids)
