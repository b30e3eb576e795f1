"""Recovery: settle the intents a crash left open, by reading their sources back.

The journal holds every intent before its push, so nothing is lost when the process dies.
:func:`recover` finds the open intents (pending, or unverified) pushed to the engine's
endpoint, claims their sources for the engine's run (one another live driver holds is left
to it, and reported), and has the engine settle each one
(:meth:`~sms_flow.engine.Engine.resettle`: applied → settled; not applied → pushed again, or
for an unverified push, settled as ignored; changed by someone else → a conflict, not
overwritten), a bounded number of sources at a time, the intents of one source in order,
and reports what became of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sms_flow.engine import Engine, Resettled
from sms_flow.errors import ConfigError
from sms_flow.journal import Entry, Journal
from sms_flow.log import get_logger
from sms_flow.wire import SourceServer

__all__ = ["RecoveryReport", "SourceReader", "read_states", "recover"]

_log = get_logger("sms_flow.wave.recovery")


class SourceReader(Protocol):
    """What reading sources needs of a client (``SmsClient`` is one).

    A reader that also has ``iter_sources`` (the listing) is paged through when many
    sources are wanted.
    """

    async def get_source(self, source_id: str) -> SourceServer: ...


@dataclass
class RecoveryReport:
    """What recovery found for the open intents."""

    applied: int = 0
    pushed_again: int = 0
    ignored: int = 0
    conflicts: int = 0
    failed: int = 0
    unread: int = 0
    """Entries left open: their source could not be read (or pushed again with no known
    outcome); the next recovery settles them."""
    held: int = 0
    """Entries left to another live driver, which holds their source."""
    unknown_endpoint: int = 0
    """Entries of the wave written before sms-flow recorded endpoints, left open (``sms-flow
    recover --unknown-endpoint`` settles them against a named endpoint)."""
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Entries settled."""
        return self.applied + self.pushed_again + self.ignored + self.conflicts + self.failed

    @property
    def left_open(self) -> int:
        return self.unread + self.held + self.unknown_endpoint

    def add(self, done: Resettled) -> None:
        """Count one entry the engine re-settled, and keep its detail."""
        result = done.result
        detail: dict[str, Any] = {
            "source_id": done.source_id,
            "entry": done.entry_id,
            "result": f"unread: {done.error}" if result == "unread" else result,
        }
        if result == "applied":
            self.applied += 1
        elif result == "pushed again":
            self.pushed_again += 1
        elif result == "ignored":
            self.ignored += 1
        elif result == "conflict":
            self.conflicts += 1
            detail["observed"] = done.observed
        elif result == "failed":
            self.failed += 1
            detail["error"] = done.error
        elif result == "gone":
            self.failed += 1
        elif result == "held":
            self.held += 1
            detail["result"] = "held"
            detail["error"] = done.error
        else:  # unread: the entry stays open for the next start
            self.unread += 1
        self.details.append(detail)

    def merge(self, other: RecoveryReport) -> None:
        """Add what another recovery found (a joined worker recovers batch by batch)."""
        for name in (
            "applied",
            "pushed_again",
            "ignored",
            "conflicts",
            "failed",
            "unread",
            "held",
            "unknown_endpoint",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.details.extend(other.details)

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "pushed_again": self.pushed_again,
            "ignored": self.ignored,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "unread": self.unread,
            "held": self.held,
            "unknown_endpoint": self.unknown_endpoint,
            "details": self.details,
        }


async def read_states(
    api: SourceReader, source_ids: Sequence[str], concurrency: int
) -> dict[str, SourceServer | None]:
    """The sources ``source_ids`` as the service reports them, in a dict (None for a source
    the service does not know); see :func:`sms_flow.client.read_sources`, which this gathers.
    """
    from sms_flow.client import read_sources  # imported when a wave runs: aiohttp is heavy

    return {i: s async for i, s in read_sources(api, source_ids, concurrency=concurrency)}


async def recover(
    engine: Engine,
    journal: Journal,
    *,
    client: SourceReader,
    wave: str | None = None,
    concurrency: int = 32,
    source_ids: Sequence[str] | None = None,
    unknown_endpoint: bool = False,
) -> RecoveryReport:
    """Settle the open intents (of ``wave``, or all) pushed to the engine's endpoint.

    ``journal`` is the engine's journal, where the open intents are found and settled;
    ``client`` reads the sources (the engine's client, or the same behind a rate limit).
    ``source_ids`` keeps to those sources. ``unknown_endpoint`` takes in the intents written
    before sms-flow recorded endpoints too, as if pushed to this one (else they are counted
    and left open). The sources are claimed for the engine's run first: one another live
    driver holds is left to it (``held``), since its intents are its own. Each other intent
    is settled by :meth:`Engine.resettle <sms_flow.engine.Engine.resettle>`: the source shows
    the intent's destination: the push was applied; settle it. It shows the origin: a
    pending push did not land; push it again (it sets an absolute state, so that is safe)
    and settle it by what happens; an unverified one did not take: settle it as ignored.
    Anything else: someone else changed it; settle as a conflict and leave the source alone.
    Intents of one source are settled in order.
    """
    if engine.journal is not journal:
        raise ConfigError(
            "recover settles the open intents of the engine's own journal; give the journal "
            "the engine was made with"
        )
    report = RecoveryReport()
    wanted = set(source_ids) if source_ids is not None else None
    intents = []
    for entry in await journal.open_intents(wave=wave):
        if wanted is not None and entry.source_id not in wanted:
            continue
        if entry.endpoint is None and not unknown_endpoint:
            report.unknown_endpoint += 1
            continue
        if entry.endpoint is not None and entry.endpoint != engine.endpoint:
            continue  # another service's: never read back from this one
        intents.append(entry)
    if not intents:
        return report
    by_source: dict[str, list[Entry]] = {}
    for entry in intents:
        by_source.setdefault(entry.source_id, []).append(entry)
    claimed = await engine.claim(list(by_source))
    for source_id, owner in claimed.refused.items():
        for entry in by_source.pop(source_id):
            report.add(
                Resettled(
                    entry.id,
                    source_id,
                    "held",
                    error=f"held by another live driver: {owner.describe()}",
                )
            )
    states = await read_states(client, list(by_source), concurrency)
    gate = asyncio.Semaphore(concurrency)

    async def settle_source(source_id: str, entries: list[Entry]) -> None:
        async with gate:
            src = states.get(source_id)
            for entry in entries:
                report.add(await engine.resettle(entry, src))
                src = None  # after the first, the engine reads it again

    await asyncio.gather(*(settle_source(s, es) for s, es in by_source.items()))
    _log.info(
        "recovered", wave=wave, **{k: v for k, v in report.to_dict().items() if k != "details"}
    )
    return report
