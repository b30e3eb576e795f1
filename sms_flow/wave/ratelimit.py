"""A request-rate limit towards the service: :class:`RateLimiter` and :func:`limited`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from sms_flow.errors import ConfigError
from sms_flow.wire import SourceServer

__all__ = ["RateLimiter", "limited"]


class RateLimiter:
    """Spaces calls to at most ``rate`` a second, first come first served, with a small burst."""

    __slots__ = ("_interval", "_next", "_slack")

    def __init__(self, rate: float, *, burst: int = 1) -> None:
        if rate <= 0:
            raise ConfigError(f"rate limit {rate!r} must be above 0 requests per second")
        self._interval = 1.0 / rate
        self._slack = max(0, burst - 1) * self._interval
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(self._next, now - self._slack)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _LimitedApi:
    """An SMS client whose calls wait for the rate limiter first."""

    def __init__(self, client: Any, limiter: RateLimiter) -> None:
        self._client = client
        self._limiter = limiter

    @property
    def endpoint(self) -> str | None:
        """The wrapped client's endpoint (the engine names the service by it)."""
        endpoint: str | None = getattr(self._client, "endpoint", None)
        return endpoint

    async def change_state(
        self, source_id: str, copystate: Any = None, migrationcycle: Any = None
    ) -> Any:
        await self._limiter.acquire()
        return await self._client.change_state(source_id, copystate, migrationcycle)

    async def get_source(self, source_id: str) -> SourceServer:
        await self._limiter.acquire()
        result: SourceServer = await self._client.get_source(source_id)
        return result

    async def iter_sources(self, **filters: Any) -> AsyncIterator[SourceServer]:
        async for src in self._client.iter_sources(**filters):
            yield src

    async def register_source(self, name: str, **fields: Any) -> str:
        await self._limiter.acquire()
        result: str = await self._client.register_source(name, **fields)
        return result


def limited(client: Any, rate_limit: float | None) -> Any:
    """``client`` itself, or a wrapper that spaces its calls to ``rate_limit`` a second."""
    if rate_limit is None:
        return client
    return _LimitedApi(client, RateLimiter(rate_limit, burst=max(1, int(rate_limit // 10))))
