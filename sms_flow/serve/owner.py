"""The one run of ``sms-flow serve`` in the journal, under which every change it makes goes out.

The gateway (``PUT /v3/.../changestate``) and the API (``POST /api/v1/sources/{id}/changes``)
change sources for their callers. Each change must own its source in the journal while it is
made, as any driver does (a wave holding the source refuses it; its intent is fenced by the
claim), but a run of its own for each change would write a run's start and end to the journal
every time and leave a run behind per change. :class:`ServiceRun` is one run for the whole
service (kind ``serve``), started with the first change and renewed by its heartbeat:
:meth:`ServiceRun.holding` serializes the changes of one source (the gateway's and the API's
alike, first come first served), claims the source for the service's run, and frees the claim
as soon as the change is done, so a wave or an operator may take the source the next moment.
A run that lost its lease (the journal away longer than the lease) is replaced by a new one
at the next change.

Where a source is before a change: read from SMS (the engine's look), except when the
service's own last change of it was read back at most the engine's ``max_age`` ago (5 s),
the journal's latest entry of the source is still that change (no other driver of sms-flow
wrote one since), and the service does not move a source out of that state by itself (no
``by: service`` move leaves it). Then the read-back is that look, as it is for a wave's next
step: a caller walking a source step by step costs SMS two requests a change (push, read
back) instead of three. Someone changing the source outside sms-flow in those seconds (a
task action, a call straight to SMS) is not seen, as with any read the engine trusts for
``max_age``; the read-back of the change shows what landed either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Final, NamedTuple

from sms_flow._locks import KeyedLocks
from sms_flow.chart import By
from sms_flow.engine import Engine, StepResult
from sms_flow.errors import JournalError
from sms_flow.journal import DEFAULT_LEASE, Journal, Lease, Outcome
from sms_flow.log import get_logger
from sms_flow.states import StatePair

__all__ = ["ServiceRun"]

_log = get_logger("sms_flow.serve.owner")

_SEEN_KEPT: Final = 4096  # read-backs remembered before the stale ones are dropped


class _ReadBack(NamedTuple):
    state: StatePair
    at: float  # time.monotonic() of the read-back
    entry: int  # the journal entry of the change it verified


class ServiceRun:
    """The service's run on ``journal`` for changes pushed to ``endpoint`` (see the module
    docstring); :meth:`close` ends it."""

    def __init__(
        self,
        journal: Journal,
        *,
        endpoint: str,
        project: str | None = None,
        seconds: float = DEFAULT_LEASE,
    ) -> None:
        self.journal = journal
        self.endpoint = endpoint
        self.project = project
        self.seconds = seconds
        self._lease: Lease | None = None
        self._starting = asyncio.Lock()
        self._sources = KeyedLocks()
        self._read_backs: dict[str, _ReadBack] = {}

    async def lease(self) -> Lease:
        """The service's live run: the one it has, or a new one (the first change, or the
        last one's lease was lost). Raises :class:`~sms_flow.errors.JournalError` when the
        journal cannot start one."""
        async with self._starting:
            lease = self._lease
            if lease is not None and lease.lost is None:
                return lease
            if lease is not None:
                _log.warning("serve.run_replaced", run=repr(lease), why=str(lease.lost))
                with contextlib.suppress(JournalError):
                    await lease.end("lease lost")
            lease = Lease(
                self.journal,
                "serve",
                actor="serve",
                endpoint=self.endpoint,
                project=self.project,
                seconds=self.seconds,
            )
            await lease.start()
            self._lease = lease
            return lease

    @contextlib.asynccontextmanager
    async def holding(self, source_id: str) -> AsyncIterator[Lease]:
        """``async with run.holding(source_id) as lease``: the change of one source, after
        the changes of it that came before (one at a time), under the service's run; the
        source's claim (which the change makes through its engine) is freed at the end."""
        await self._sources.acquire(source_id)
        try:
            lease = await self.lease()
            try:
                yield lease
            finally:
                await self._release(lease, source_id)
        finally:
            self._sources.release(source_id)

    async def current(self, engine: Engine, source_id: str) -> StatePair:
        """Where ``source_id`` is before a change made with ``engine`` (held with
        :meth:`holding`): the read-back of the service's last change of it when it may stand
        for a look (see the module docstring), else a read from SMS (``engine.refresh``)."""
        known = self._read_backs.pop(source_id, None)
        if (
            known is not None
            and time.monotonic() - known.at <= engine.max_age
            and all(e.by is not By.SERVICE for e in engine.chart.edges_from(known.state))
        ):
            last = await self.journal.history(source_id=source_id, limit=1)
            if last and last[-1].id == known.entry:
                engine.track(source_id, known.state, read_at=known.at)
                return known.state
        return await engine.refresh(source_id)

    def changed(self, engine: Engine, source_id: str, results: Sequence[StepResult]) -> None:
        """Remember the read-back of a change just made (its last step applied and read back
        by ``engine``), for the next change's :meth:`current`."""
        last = results[-1] if results else None
        read = engine.read_at(source_id)
        if last is None or last.outcome is not Outcome.APPLIED or last.journal_id is None:
            return
        if read is None or not read[1]:
            return
        kept = self._read_backs
        if len(kept) >= _SEEN_KEPT:
            oldest = time.monotonic() - engine.max_age
            for stale in [k for k, v in kept.items() if v.at < oldest]:
                del kept[stale]
            if len(kept) >= _SEEN_KEPT:
                kept.clear()
        kept[source_id] = _ReadBack(last.to_state, read[0], last.journal_id)

    async def _release(self, lease: Lease, source_id: str) -> None:
        """Free the claim; a journal failure here only delays it (the lease frees it when it
        runs out, or the next change of the source takes it again), so it is logged."""
        try:
            await lease.release(self.endpoint, [source_id])
        except JournalError as exc:
            _log.warning("serve.claim_not_released", source_id=source_id, error=str(exc))

    async def close(self) -> None:
        """End the service's run (freeing anything it still holds); harmless twice."""
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(JournalError):
                await lease.end()
