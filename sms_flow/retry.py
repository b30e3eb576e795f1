"""How a call to the SMS API is retried: :class:`RetryPolicy`.

Exponential backoff with full jitter, capped; a 429's ``Retry-After`` honoured; a bound on the
whole call's time (and, if given, on its attempts). The policy decides *when* to try again
(:meth:`RetryPolicy.decide`); *whether* a failure may be retried at all (a 4xx never is, a
``POST`` only when surely not processed) is the client's judgement of the attempt.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from sms_flow.errors import ConfigError

__all__ = ["RetryPolicy"]

_LAST_ATTEMPT = 1.0
"""Seconds left for the last attempt at the end of ``total_time`` (see ``last_attempt_time``)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried: for as long as ``total_time`` allows, unless ``attempts`` is given.

    A failure that may be retried (a connection refused or dropped, a timeout, a 429, a
    retryable 5xx) is retried until the call succeeds or the next attempt would start after
    ``total_time`` (60 s), which bounds the whole call, sleeps and attempts included: an
    outage shorter than ``total_time`` costs time, not the call. Before attempt *n + 1* the
    client sleeps ``uniform(0, min(max_delay, base_delay * 2**(n - 1)))`` (full jitter, up
    to 0.2 s, 0.4 s, ... and at most 10 s), or at least a 429's ``Retry-After``. No attempt
    after a backoff starts with less than :attr:`last_attempt_time` (``min(timeout, 1 s,
    total_time / 4)``) left: a sleep that would carry the next attempt past that point is
    shortened to make the last attempt then, and once that point has passed the call ends;
    a ``Retry-After`` that does not fit ends the call at once. With the defaults, a call that
    meets an outage succeeds if the outage ends before its last attempt, 59 s after the call
    began.

    ``attempts`` counts every attempt, the first included; ``None`` (the default) sets no bound
    but ``total_time``; a number stops the call after that many attempts, whichever bound
    comes first. ``timeout`` bounds one attempt (and is cut to what is left of
    ``total_time``). Only ``retry_statuses`` are retried (429 and 5xx only), besides
    connection errors and timeouts.
    """

    attempts: int | None = None
    base_delay: float = 0.2
    max_delay: float = 10.0
    total_time: float = 60.0
    timeout: float = 10.0
    retry_statuses: frozenset[int] = field(default=frozenset({429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if self.attempts is not None and (
            not isinstance(self.attempts, int)
            or isinstance(self.attempts, bool)
            or self.attempts < 1
        ):
            raise ConfigError(
                f"RetryPolicy.attempts is {self.attempts!r}; give 1 or more (1 = never retry), "
                "or None to retry until total_time"
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
        ``(delay, why)`` to give up, ``why`` saying which bound was reached. Without a
        ``Retry-After``, a backoff that would leave the next attempt less than
        :attr:`last_attempt_time` of ``total_time`` is shortened so that it starts then (the
        last attempt), or, when that moment has passed already, the call gives up. A
        ``Retry-After`` is waited in full if the next attempt still starts within
        ``total_time``, else the call gives up. The jitter is drawn from ``rng`` (default: the
        ``random`` module) on every call, given up or not.
        """
        delay = self.backoff(attempt, rng)
        if self.attempts is not None and attempt >= self.attempts:
            return delay, f"all {self.attempts} attempts made"
        if retry_after is not None:
            delay = max(delay, retry_after)
            if delay >= time_left:
                return delay, (
                    f"Retry-After {retry_after:g} s does not fit in the "
                    f"{max(time_left, 0.0):.3g} s left of total_time"
                )
            return delay, ""
        last_start = time_left - self.last_attempt_time
        if delay <= last_start:
            return delay, ""
        if last_start > 0.0:
            return last_start, ""  # the last attempt, with time to be answered
        return delay, f"the next attempt would start after total_time ({self.total_time:g} s)"

    @property
    def last_attempt_time(self) -> float:
        """The least time an attempt after a backoff is started with: ``min(timeout, 1 s,
        total_time / 4)``; a backoff that would leave less is shortened, or the call ends."""
        return min(self.timeout, _LAST_ATTEMPT, self.total_time / 4)
