"""A request-rate limit towards the service: :class:`RateLimiter`, :class:`SharedRateLimiter`
(one limit for every worker of a joined wave, kept in the journal) and :func:`limited`.

A rate is at least :data:`RATE_LIMIT_MIN` (0.01 requests a second, one every 100 s) and
finite: a slower one (``1e-300``) would leave a request waiting for ages. A wait for a slot
ends early when the run stops: after :meth:`RateLimiter.interrupt` (:func:`interrupt_waits`
for a limited client), every call waiting for its slot, and every later one that would wait,
raises :class:`~sms_flow.errors.WaitInterrupted` and sends nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from sms_flow.errors import ConfigError, WaitInterrupted
from sms_flow.wire import SourceServer

__all__ = ["RATE_LIMIT_MIN", "RateLimiter", "SharedRateLimiter", "interrupt_waits", "limited"]

RATE_LIMIT_MIN: Final = 0.01
"""The slowest rate limit accepted: 0.01 requests a second (one every 100 seconds)."""

_STOPPING: Final = "the run is stopping: a request that waited for the rate limit was not sent"


def _check_rate(rate: float) -> None:
    if (
        not isinstance(rate, int | float)
        or isinstance(rate, bool)
        or not math.isfinite(rate)
        or rate < RATE_LIMIT_MIN
    ):
        raise ConfigError(
            f"rate limit {rate!r} is not a rate sms-flow takes: give a number of requests "
            f"per second of at least {RATE_LIMIT_MIN:g} (one request every "
            f"{1 / RATE_LIMIT_MIN:g} s), or no rate limit"
        )


class RateLimiter:
    """Spaces calls to at most ``rate`` a second, first come first served, with a small burst."""

    __slots__ = ("_interrupted", "_interval", "_next", "_slack")

    def __init__(self, rate: float, *, burst: int = 1) -> None:
        _check_rate(rate)
        self._interval = 1.0 / rate
        self._slack = max(0, burst - 1) * self._interval
        self._next = 0.0
        self._interrupted: asyncio.Event | None = None

    async def acquire(self) -> None:
        """Wait for the next slot. Once :meth:`interrupt` was called, a call that would wait
        raises :class:`~sms_flow.errors.WaitInterrupted` instead (nothing is to be sent)."""
        now = time.monotonic()
        slot = max(self._next, now - self._slack)
        if slot <= now:
            self._next = slot + self._interval
            return
        if self._interrupted is None:
            self._interrupted = asyncio.Event()
        elif self._interrupted.is_set():
            raise WaitInterrupted(_STOPPING)
        self._next = slot + self._interval
        try:
            async with asyncio.timeout(slot - now):
                await self._interrupted.wait()
        except TimeoutError:
            return  # the slot has come
        raise WaitInterrupted(_STOPPING)

    def interrupt(self) -> None:
        """End every wait for a slot, now and from now on: each raises
        :class:`~sms_flow.errors.WaitInterrupted`. For a run that is stopping."""
        if self._interrupted is None:
            self._interrupted = asyncio.Event()
        self._interrupted.set()


class SharedRateLimiter:
    """Spaces the calls of every worker of a joined wave to at most ``rate`` a second in all.

    The limit is kept in the journal (:meth:`Journal.reserve_requests
    <sms_flow.journal.Journal.reserve_requests>`, on the journal's clock): a worker reserves
    ``batch`` slots at a time, one round trip for several requests, and spends them
    ``1 / rate`` apart from the time the journal gave. Slots a worker reserved and did not
    use are lost, so the wave goes a little slower than ``rate``, never faster.
    """

    __slots__ = (
        "_batch",
        "_interrupted",
        "_interval",
        "_journal",
        "_lock",
        "_rate",
        "_session",
        "_slots",
    )

    def __init__(
        self, journal: Any, session: str, rate: float, *, batch: int | None = None
    ) -> None:
        _check_rate(rate)
        self._journal = journal
        self._session = session
        self._rate = float(rate)
        self._interval = 1.0 / rate
        self._batch = batch or max(1, min(50, int(rate // 4)))
        self._slots: list[float] = []  # monotonic times of the reserved slots, latest first
        self._lock = asyncio.Lock()
        self._interrupted = asyncio.Event()

    async def acquire(self) -> None:
        """Wait for this worker's next slot (reserving more from the journal when it has
        none); :class:`~sms_flow.errors.WaitInterrupted` once :meth:`interrupt` was called."""
        if self._interrupted.is_set():
            raise WaitInterrupted(_STOPPING)
        async with self._lock:
            if not self._slots:
                delay = await self._journal.reserve_requests(self._session, self._batch, self._rate)
                first = time.monotonic() + delay
                self._slots = [first + i * self._interval for i in range(self._batch)][::-1]
            slot = self._slots.pop()
        wait = slot - time.monotonic()
        if wait <= 0:
            return
        try:
            async with asyncio.timeout(wait):
                await self._interrupted.wait()
        except TimeoutError:
            return  # the slot has come
        raise WaitInterrupted(_STOPPING)

    def interrupt(self) -> None:
        """End every wait for a slot, now and from now on (see :meth:`RateLimiter.interrupt`)."""
        self._interrupted.set()


class _LimitedApi:
    """An SMS client whose calls wait for the rate limiter first."""

    def __init__(self, client: Any, limiter: RateLimiter | SharedRateLimiter) -> None:
        self._client = client
        self.limiter = limiter

    @property
    def endpoint(self) -> str | None:
        """The wrapped client's endpoint (the engine names the service by it)."""
        endpoint: str | None = getattr(self._client, "endpoint", None)
        return endpoint

    def stats(self) -> Any:
        """The wrapped client's retry counters (:meth:`SmsClient.stats`)."""
        return self._client.stats()

    async def change_state(
        self, source_id: str, copystate: Any = None, migrationcycle: Any = None
    ) -> Any:
        await self.limiter.acquire()
        return await self._client.change_state(source_id, copystate, migrationcycle)

    async def get_source(self, source_id: str) -> SourceServer:
        await self.limiter.acquire()
        result: SourceServer = await self._client.get_source(source_id)
        return result

    async def iter_sources(self, **filters: Any) -> AsyncIterator[SourceServer]:
        async for src in self._client.iter_sources(**filters):
            yield src

    async def register_source(self, name: str, **fields: Any) -> str:
        await self.limiter.acquire()
        result: str = await self._client.register_source(name, **fields)
        return result


def limited(
    client: Any, rate_limit: float | None, *, journal: Any = None, session: str | None = None
) -> Any:
    """``client`` itself, or a wrapper that spaces its calls to ``rate_limit`` a second;
    with ``journal`` and ``session`` (a joined worker), ``rate_limit`` a second for every
    worker of the session together (:class:`SharedRateLimiter`)."""
    if rate_limit is None:
        return client
    if journal is not None and session is not None:
        return _LimitedApi(client, SharedRateLimiter(journal, session, rate_limit))
    return _LimitedApi(client, RateLimiter(rate_limit, burst=max(1, int(rate_limit // 10))))


def interrupt_waits(client: Any) -> None:
    """When ``client`` is rate limited (made by :func:`limited`), interrupt its waits for a
    slot (:meth:`RateLimiter.interrupt`); else do nothing. For a run that is stopping."""
    if isinstance(client, _LimitedApi):
        client.limiter.interrupt()
