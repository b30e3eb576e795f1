"""How a call to the SMS API is retried: :class:`RetryPolicy`.

Exponential backoff with full jitter, a 429's ``Retry-After`` honoured, a bound on the attempts
and on the whole call. The policy decides *when* to try again (:meth:`RetryPolicy.decide`);
*whether* a failure may be retried at all (a 4xx never is, a ``POST`` only when surely not
processed) is the client's judgement of the attempt.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from sms_flow.errors import ConfigError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried.

    ``attempts`` counts every attempt, the first included. Before attempt *n + 1* the
    client sleeps ``uniform(0, min(max_delay, base_delay * 2**(n - 1)))`` (full jitter), or
    at least a 429's ``Retry-After``. ``total_time`` bounds the whole call, sleeps included;
    ``timeout`` bounds one attempt. Only ``retry_statuses`` are retried (429 and 5xx only),
    besides connection errors and timeouts.
    """

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0
    total_time: float = 60.0
    timeout: float = 10.0
    retry_statuses: frozenset[int] = field(default=frozenset({429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(
                f"RetryPolicy.attempts is {self.attempts!r}; give 1 or more (1 = never retry)"
            )
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"RetryPolicy.{name} is {value!r}; give 0 or more seconds")
        for name in ("total_time", "timeout"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"RetryPolicy.{name} is {value!r}; give more than 0 seconds")
        bad = sorted(s for s in self.retry_statuses if not (s == 429 or 500 <= s <= 599))
        if bad:
            raise ConfigError(
                f"RetryPolicy.retry_statuses holds {bad}; only 429 and 5xx may be retried "
                "(another 4xx means the request itself is wrong and would fail again)"
            )

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The sleep after failed attempt ``attempt`` (1-based), before the next one."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 64))
        return (rng or random).uniform(0.0, cap)

    def decide(
        self,
        attempt: int,
        *,
        time_left: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> tuple[float, str]:
        """After failed attempt ``attempt`` (1-based) of a call that may be retried: what next.

        ``time_left`` is what remains of ``total_time``; ``retry_after`` the seconds a 429
        asked for. Returns ``(delay, "")`` to sleep ``delay`` seconds and try again, or
        ``(delay, why)`` to give up, ``why`` saying which bound was reached. The jitter is
        drawn from ``rng`` (default: the ``random`` module) on every call, given up or not.
        """
        delay = self.backoff(attempt, rng)
        if attempt >= self.attempts:
            return delay, f"all {self.attempts} attempts made"
        if retry_after is not None:
            delay = max(delay, retry_after)
        if delay >= time_left:
            if retry_after is not None:
                return delay, (
                    f"Retry-After {retry_after:g} s does not fit in the "
                    f"{max(time_left, 0.0):.3g} s left of total_time"
                )
            return delay, f"the next attempt would start after total_time ({self.total_time:g} s)"
        return delay, ""
