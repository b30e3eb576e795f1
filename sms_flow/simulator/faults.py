"""Faults the simulator injects on demand, and the seeded dice that decide them.

:class:`Faults` says how often each kind happens; :class:`FaultInjector` rolls for each
``/v3`` request (never for the ``/_simulator`` control routes). With a seed, the same
sequence of requests meets the same sequence of faults.

Kinds, in the order a request meets them:

``latency`` (+ ``latency_jitter``)
    The answer waits ``latency + uniform(0, latency_jitter)`` seconds before anything is
    done. A client that gives up during the wait leaves the state unchanged.
``drop_rate``, ``throttle_rate``, ``error_rate``
    Shares of requests that are, respectively, cut off with no answer at all, answered 429
    ``APIG.0308`` with ``Retry-After``, or answered 500/503. One roll picks at most one of
    them, so each rate is exactly its share and together they may not exceed 1.
``apply_then_fail_rate``
    Share of ``PUT .../changestate`` calls that are carried out (the change is applied and
    stored) and then answered 503: the case that tests a client's retry logic hardest.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FaultInjector", "FaultKind", "Faults", "Seconds", "Share", "Unit"]


@dataclass(frozen=True, slots=True)
class Unit:
    """What a number of :class:`Faults` counts; ``metavar`` names its value on the command line."""

    metavar: str


Seconds = Annotated[float, Field(ge=0), Unit("S")]
"""A duration in seconds, 0 or more."""

Share = Annotated[float, Field(ge=0, le=1), Unit("F")]
"""A share of requests, from 0 (none) to 1 (all)."""


class Faults(BaseModel):
    """How often the simulator misbehaves; all zero (the default) means never.

    This model is the one definition of the simulator's faults: ``sms-flow simulator``'s
    options are generated from its fields (name, type, default, description) and a wave
    file's ``simulator:`` options are these fields (:class:`~sms_flow.wave.spec.SimulatorOptions`
    inherits them). Replace the faults of a running simulator with :meth:`Simulator.set_faults
    <sms_flow.simulator.Simulator.set_faults>` or ``PUT /_simulator/faults``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency: Seconds = Field(0.0, le=3600, description="Seconds every /v3 answer waits.")
    latency_jitter: Seconds = Field(
        0.0, le=3600, description="Up to this many more seconds, drawn uniformly."
    )
    error_rate: Share = Field(0.0, description="Share of /v3 requests answered 500 or 503.")
    error_mode: Literal["alternate", "random"] = Field(
        "alternate", description="5xx status: alternate 500 and 503, or pick one at random."
    )
    throttle_rate: Share = Field(0.0, description="Share of /v3 requests answered 429 APIG.0308.")
    retry_after: Seconds = Field(
        1.0, le=86_400, description="Seconds sent in Retry-After with a 429."
    )
    drop_rate: Share = Field(
        0.0, description="Share of /v3 requests whose connection is closed unanswered."
    )
    apply_then_fail_rate: Share = Field(
        0.0, description="Share of changestate PUTs applied, then answered 503."
    )

    @model_validator(mode="after")
    def _shares_fit(self) -> Faults:
        total = self.drop_rate + self.throttle_rate + self.error_rate
        if total > 1 + 1e-9:
            raise ValueError(
                f"drop_rate + throttle_rate + error_rate is {total:g}; each request meets at "
                "most one of these faults, so together they may not exceed 1"
            )
        return self

    @property
    def any(self) -> bool:
        """True when at least one fault is switched on."""
        return bool(
            self.latency
            or self.latency_jitter
            or self.error_rate
            or self.throttle_rate
            or self.drop_rate
            or self.apply_then_fail_rate
        )


class FaultKind(StrEnum):
    """A fault injected into one request; the names are those counted in the stats."""

    LATENCY = "latency"
    DROP = "drop"
    THROTTLE = "throttle"
    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    APPLY_THEN_FAIL = "apply_then_fail"


class FaultInjector:
    """Rolls the dice for each request against the current :class:`Faults`.

    Not thread-safe: it lives on the simulator's event loop. Counts every fault injected.
    """

    __slots__ = ("_alternate", "_faults", "_rng", "counts")

    def __init__(self, faults: Faults, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._faults = faults
        self._alternate = False
        self.counts: Counter[FaultKind] = Counter()

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults

    @property
    def active(self) -> bool:
        """True when any request may meet a fault (a cheap test for the hot path)."""
        return self._faults.any

    def roll(self) -> tuple[float, FaultKind | None]:
        """For one ``/v3`` request: how long to wait first, and which fault it meets, if any."""
        f = self._faults
        delay = f.latency
        if f.latency_jitter:
            delay += self._rng.uniform(0.0, f.latency_jitter)
        if delay:
            self.counts[FaultKind.LATENCY] += 1
        kind: FaultKind | None = None
        if f.drop_rate or f.throttle_rate or f.error_rate:
            r = self._rng.random()
            if r < f.drop_rate:
                kind = FaultKind.DROP
            elif r < f.drop_rate + f.throttle_rate:
                kind = FaultKind.THROTTLE
            elif r < f.drop_rate + f.throttle_rate + f.error_rate:
                kind = self._error_kind()
            if kind is not None:
                self.counts[kind] += 1
        return delay, kind

    def _error_kind(self) -> FaultKind:
        if self._faults.error_mode == "random":
            return FaultKind.ERROR_500 if self._rng.random() < 0.5 else FaultKind.ERROR_503
        self._alternate = not self._alternate
        return FaultKind.ERROR_500 if self._alternate else FaultKind.ERROR_503

    def apply_then_fail(self) -> bool:
        """For one successful changestate PUT: answer 503 although it was carried out?"""
        rate = self._faults.apply_then_fail_rate
        if rate and self._rng.random() < rate:
            self.counts[FaultKind.APPLY_THEN_FAIL] += 1
            return True
        return False
