"""The rate limiter: spacing, its minimum rate, and waits a stop request interrupts."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from sms_flow.errors import ConfigError, WaitInterrupted
from sms_flow.wave.ratelimit import RATE_LIMIT_MIN, RateLimiter, interrupt_waits, limited


async def test_rate_limiter_spaces_calls() -> None:
    limiter = RateLimiter(200.0)  # one call every 5 ms, no burst
    started = time.monotonic()
    stamps = []
    for _ in range(21):
        await limiter.acquire()
        stamps.append(time.monotonic())
    # 20 intervals of at least 5 ms each (the lower bound is the behaviour; no upper bound)
    assert stamps[-1] - started >= 20 * 0.005 * 0.95


@pytest.mark.parametrize("rate", [0, -1, 1e-300, 0.0099, math.inf, math.nan])
def test_a_rate_below_the_minimum_or_not_finite_is_refused(rate: float) -> None:
    with pytest.raises(ConfigError, match=r"at least 0.01 \(one request every 100 s\)"):
        RateLimiter(rate)
    assert RateLimiter(RATE_LIMIT_MIN) is not None


async def test_interrupt_ends_a_wait_for_a_slot_and_every_later_one() -> None:
    limiter = RateLimiter(RATE_LIMIT_MIN)  # the first call at once, the next 100 s later
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)  # it reaches its wait
    assert not waiting.done()
    limiter.interrupt()
    with pytest.raises(WaitInterrupted, match="was not sent"):
        await asyncio.wait_for(waiting, 10)  # the bound only catches a hang: it ends at once
    with pytest.raises(WaitInterrupted):
        await limiter.acquire()


class Counting:
    """A stand-in for the client behind the limiter: it only counts the calls it gets."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_source(self, source_id: str) -> Any:
        self.calls += 1
        return source_id


async def test_interrupt_waits_reaches_a_limited_clients_limiter_and_nothing_is_sent() -> None:
    client = Counting()
    api = limited(client, RATE_LIMIT_MIN)
    assert await api.get_source("a") == "a"
    waiting = asyncio.create_task(api.get_source("b"))
    await asyncio.sleep(0)
    interrupt_waits(api)
    with pytest.raises(WaitInterrupted):
        await asyncio.wait_for(waiting, 10)
    assert client.calls == 1
    interrupt_waits(client)  # not rate limited: nothing to interrupt, no error
    assert limited(client, None) is client
