"""Tests for sms_flow.retry: the policy's checks, its backoff, and when it says to try again."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sms_flow.errors import ConfigError
from sms_flow.retry import RetryPolicy


class MaxJitter(random.Random):
    """Backoff at the top of its range, so a test knows how long a retry waits."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_retry_policy_is_checked() -> None:
    with pytest.raises(ConfigError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError, match="timeout"):
        RetryPolicy(timeout=0)
    with pytest.raises(ConfigError, match="only 429 and 5xx"):
        RetryPolicy(retry_statuses=frozenset({400, 503}))
    policy = RetryPolicy(base_delay=0.2, max_delay=1.0)
    assert [policy.backoff(n, MaxJitter()) for n in (1, 2, 3, 4, 5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert all(0 <= policy.backoff(3) <= 0.8 for _ in range(100))


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("base_delay", -0.1, "base_delay is -0.1; give 0 or more"),
        ("max_delay", float("nan"), "max_delay is nan"),
        ("total_time", 0.0, "total_time is 0.0; give more than 0"),
        ("timeout", float("inf"), "timeout is inf"),
    ],
)
def test_retry_policy_names_the_bad_field_and_value(name: str, value: float, match: str) -> None:
    options: dict[str, Any] = {name: value}
    with pytest.raises(ConfigError, match=match):
        RetryPolicy(**options)


def test_decide_retries_after_the_backoff_while_attempts_and_time_remain() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.2, max_delay=1.0, total_time=60.0)
    assert policy.decide(1, time_left=59.0, rng=MaxJitter()) == (0.2, "")
    assert policy.decide(2, time_left=50.0, rng=MaxJitter()) == (0.4, "")


def test_decide_gives_up_when_every_attempt_is_made() -> None:
    policy = RetryPolicy(attempts=3)
    _, why = policy.decide(3, time_left=59.0, retry_after=0.0, rng=MaxJitter())
    assert why == "all 3 attempts made"


def test_decide_waits_at_least_retry_after() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)
    assert policy.decide(1, time_left=10.0, retry_after=0.4, rng=MaxJitter()) == (0.4, "")
    assert policy.decide(1, time_left=10.0, retry_after=0.0, rng=MaxJitter()) == (0.001, "")


def test_decide_gives_up_when_the_next_attempt_would_start_after_total_time() -> None:
    policy = RetryPolicy(attempts=1000, base_delay=0.05, max_delay=0.05, total_time=0.4)
    delay, why = policy.decide(7, time_left=0.03, rng=MaxJitter())
    assert delay == 0.05
    assert why == "the next attempt would start after total_time (0.4 s)"


def test_decide_gives_up_when_retry_after_does_not_fit() -> None:
    policy = RetryPolicy(attempts=5, total_time=2.0)
    delay, why = policy.decide(1, time_left=1.9, retry_after=30.0)
    assert delay == 30.0
    assert why == "Retry-After 30 s does not fit in the 1.9 s left of total_time"
    _, why = policy.decide(1, time_left=-0.5, retry_after=30.0)
    assert why.endswith("in the 0 s left of total_time")


def test_decide_draws_the_jitter_on_every_call() -> None:
    """A seeded rng gives the same delays whether or not the call gave up in between."""
    policy = RetryPolicy(attempts=2, base_delay=1.0, max_delay=1.0)
    rng = random.Random(7)
    first, _ = policy.decide(1, time_left=60.0, rng=rng)
    policy.decide(2, time_left=60.0, rng=rng)  # gives up, but draws
    third, _ = policy.decide(1, time_left=60.0, rng=rng)
    expected = random.Random(7)
    draws = [expected.uniform(0.0, 1.0) for _ in range(3)]
    assert (first, third) == (draws[0], draws[2])


def test_by_default_only_total_time_bounds_the_attempts() -> None:
    """An outage must cost time, not the call: no count of attempts ends it by default."""
    policy = RetryPolicy()
    assert policy.attempts is None and policy.total_time == 60.0
    assert policy.decide(50, time_left=30.0, rng=MaxJitter()) == (10.0, "")
    assert RetryPolicy(attempts=None, total_time=5.0).attempts is None
    with pytest.raises(ConfigError, match="or None to retry until total_time"):
        RetryPolicy(attempts=True)


def test_the_backoff_is_capped_so_retries_go_on_across_total_time() -> None:
    policy = RetryPolicy()
    delays = [policy.backoff(n, MaxJitter()) for n in range(1, 12)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0, 10.0, 10.0]
    # Even at the top of the jitter (the longest sleeps), a call that keeps failing goes on
    # trying across the whole minute, not for 3 s, and makes its last attempt 1 s before the end.
    elapsed, attempt = 0.0, 1
    while True:
        delay, why = policy.decide(attempt, time_left=60.0 - elapsed, rng=MaxJitter())
        if why:
            break
        elapsed += delay
        attempt += 1
    assert why == "the next attempt would start after total_time (60 s)"
    assert attempt == 12 and elapsed == pytest.approx(59.0)


def test_a_backoff_past_total_time_becomes_one_last_attempt_before_the_end() -> None:
    policy = RetryPolicy(base_delay=10.0, max_delay=10.0, timeout=0.5)
    # 10 s of backoff would end past the 4 s left: the last attempt starts at once
    # min(timeout, 1 s) before the end instead.
    assert policy.decide(3, time_left=4.0, rng=MaxJitter()) == (3.5, "")
    # Within that last stretch, a backoff that would not fit gives up.
    _, why = policy.decide(4, time_left=0.4, rng=MaxJitter())
    assert why == "the next attempt would start after total_time (60 s)"
    # A Retry-After is never shortened: one that does not fit ends the call.
    _, why = policy.decide(3, time_left=4.0, retry_after=5.0, rng=MaxJitter())
    assert why == "Retry-After 5 s does not fit in the 4 s left of total_time"


def test_no_attempt_after_a_backoff_starts_with_too_little_time_to_be_answered() -> None:
    """With a short total_time, the last attempt keeps a quarter of it (not a few ms)."""
    policy = RetryPolicy(base_delay=0.05, max_delay=0.05, total_time=0.4)
    assert policy.last_attempt_time == 0.1
    delay, why = policy.decide(3, time_left=0.12, rng=MaxJitter())
    assert delay == pytest.approx(0.02) and why == ""  # shortened from 0.05
    _, why = policy.decide(4, time_left=0.09, rng=MaxJitter())
    assert why == "the next attempt would start after total_time (0.4 s)"
    assert RetryPolicy().last_attempt_time == 1.0
    assert RetryPolicy(timeout=0.3).last_attempt_time == 0.3
