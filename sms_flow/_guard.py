"""A check made just before a request that changes something leaves the client.

The engine pushes under a lease; a process paused between its lease check and the send (a
SIGSTOP, a long pause) must not send on waking what it had not sent yet, since another run may
have taken its sources over meanwhile. :func:`guarded` sets, for the current task, a callable
that the client calls just before each attempt of a request other than ``GET`` (retries
included); what it raises stops the request unsent. A context variable, so that the client
needs nothing of the journal and the engine nothing of aiohttp.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

__all__ = ["guarded", "send_guard"]

_GUARD: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "sms_flow_send_guard", default=None
)


@contextlib.contextmanager
def guarded(check: Callable[[], None]) -> Iterator[None]:
    """Within the block, every request of this task that changes something calls ``check()``
    just before it is sent, each attempt included; an exception from it stops the request."""
    token = _GUARD.set(check)
    try:
        yield
    finally:
        _GUARD.reset(token)


def send_guard() -> Callable[[], None] | None:
    """The check :func:`guarded` set for this task, if any."""
    return _GUARD.get()
