"""Locks by key: the changes of one source made one at a time, first come first served."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """One FIFO lock per key (a source) with work in flight; entries go when nobody holds
    or waits for them.

    ``await acquire(id)`` ... ``release(id)`` (in a ``finally``) rather than a context
    manager: this runs for every step, and the generator an ``asynccontextmanager`` needs
    costs more than the lock.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, list[Any]] = {}

    async def acquire(self, source_id: str) -> None:
        entry = self._held.get(source_id)
        if entry is None:
            entry = self._held[source_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:
            self._leave(source_id, entry)
            raise

    def release(self, source_id: str) -> None:
        entry = self._held[source_id]
        entry[0].release()
        self._leave(source_id, entry)

    def _leave(self, source_id: str, entry: list[Any]) -> None:
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[source_id]

    def __len__(self) -> int:
        return len(self._held)
