"""The rate limiter."""

from __future__ import annotations

import time

import pytest

from sms_flow.errors import ConfigError


async def test_rate_limiter_spaces_calls() -> None:
    from sms_flow.wave.ratelimit import RateLimiter

    limiter = RateLimiter(200.0)  # one call every 5 ms, no burst
    started = time.monotonic()
    stamps = []
    for _ in range(21):
        await limiter.acquire()
        stamps.append(time.monotonic())
    # 20 intervals of at least 5 ms each (the lower bound is the behaviour; no upper bound)
    assert stamps[-1] - started >= 20 * 0.005 * 0.95
    with pytest.raises(ConfigError, match="rate limit 0 must be above 0"):
        RateLimiter(0)
