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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sms_flow.errors import JournalError
from sms_flow.journal import DEFAULT_LEASE, Journal, Lease
from sms_flow.log import get_logger

__all__ = ["ServiceRun"]

_log = get_logger("sms_flow.serve.owner")


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
        self._sources: dict[str, tuple[asyncio.Lock, list[int]]] = {}

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
        lock, users = self._sources.setdefault(source_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                lease = await self.lease()
                try:
                    yield lease
                finally:
                    await self._release(lease, source_id)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._sources[source_id]

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
