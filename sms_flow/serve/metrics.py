"""``/metrics``: what ``sms-flow serve`` did and where the sources stand, in Prometheus' format.

Names follow Prometheus' conventions: an ``smsflow_`` prefix, base units (seconds), counters
ending in ``_total``; no metric is labelled by source id (a label per source would make a
series per source). Every metric lives in the service's own registry (never the process-wide
default one), so two services in one process do not mix.

======================================================= ========= ===========================
metric                                                  type      labels
======================================================= ========= ===========================
``smsflow_transitions_total``                           counter   trigger, outcome
``smsflow_transition_duration_seconds``                 histogram trigger, outcome
``smsflow_sms_requests_total``                          counter   operation, status_class
``smsflow_sms_request_duration_seconds``                histogram operation
``smsflow_sms_retries_total``                           counter   cause
``smsflow_gateway_refusals_total``                      counter   code
``smsflow_journal_open_intents``                        gauge
``smsflow_sources``                                     gauge     state
``smsflow_build_info``                                  gauge     version
======================================================= ========= ===========================

``outcome`` is the journal's outcome of the step (``applied``, ``rejected``, ``conflict``,
``ignored``, ``failed``, ``unverified``), or ``owned`` when another live driver held the
source (nothing journalled, nothing sent). ``operation`` is the SMS call (``changestate``,
``show``, ``list``, ``register``, ``other``); ``status_class`` is ``2xx``, ``4xx``, ``5xx``
or ``error`` (no answer: refused, dropped, timed out), counted per attempt, retries included.
``cause`` is the client's retry cause (``connect``, ``dropped``, ``timeout``, ``429``,
``5xx``). The journal gauges are read from the journal at each scrape: ``smsflow_sources``
counts sources by the state of their latest applied or observed entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Final

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sms_flow import __version__
from sms_flow.client import ClientStats
from sms_flow.journal import Journal, Outcome

__all__ = ["CONTENT_TYPE", "Metrics", "operation_of"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_SETTLED_STATES: Final = frozenset({Outcome.APPLIED, Outcome.OBSERVED})
# Pushes and reads of SMS take milliseconds to seconds; a step (read, push, read back) more.
_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def operation_of(method: str, path: str) -> str:
    """The SMS operation a request is: ``changestate``, ``show``, ``list``, ``register``, ``other``."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["v3", "sources"]:
        return "other"
    if method == "PUT" and len(parts) == 4 and parts[3] == "changestate":
        return "changestate"
    if method == "GET" and len(parts) == 3:
        return "show"
    if method == "GET" and len(parts) == 2:
        return "list"
    if method == "POST" and len(parts) == 2:
        return "register"
    return "other"


def status_class(status: int | None) -> str:
    return "error" if status is None else f"{status // 100}xx"


class _Retries(Collector):
    """``smsflow_sms_retries_total{cause}``, read from the client's counters at each scrape."""

    def __init__(self, stats: Callable[[], ClientStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "smsflow_sms_retries", "Retries of SMS requests, by cause", labels=["cause"]
        )
        for cause, n in self._stats().by_cause().items():
            family.add_metric([cause], n)
        yield family


class Metrics:
    """The service's metrics, in a registry of their own (:attr:`registry`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.transitions = Counter(
            "smsflow_transitions",
            "Changes through the gateway, by trigger and outcome",
            ["trigger", "outcome"],
            registry=r,
        )
        self.transition_seconds = Histogram(
            "smsflow_transition_duration_seconds",
            "Time a change through the gateway took (read, push, read back, journal)",
            ["trigger", "outcome"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.sms_requests = Counter(
            "smsflow_sms_requests",
            "HTTP requests sent to SMS (attempts, retries included), by operation and status class",
            ["operation", "status_class"],
            registry=r,
        )
        self.sms_seconds = Histogram(
            "smsflow_sms_request_duration_seconds",
            "Time an HTTP request to SMS took, until its answer's headers (or its failure)",
            ["operation"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.refusals = Counter(
            "smsflow_gateway_refusals",
            "Changes the gateway refused or could not carry out, by the error code it answered",
            ["code"],
            registry=r,
        )
        self.open_intents = Gauge(
            "smsflow_journal_open_intents",
            "Journal entries whose outcome is not known yet (pending or unverified)",
            registry=r,
        )
        self.sources = Gauge(
            "smsflow_sources",
            "Sources by the state of their latest applied or observed journal entry",
            ["state"],
            registry=r,
        )
        build = Gauge("smsflow_build_info", "The sms-flow build", ["version"], registry=r)
        build.labels(version=__version__).set(1)
        self._retries: _Retries | None = None

    def watch_client(self, stats: Callable[[], ClientStats]) -> None:
        """Export the retries of a client (its ``stats`` method), read at each scrape."""
        if self._retries is not None:
            self.registry.unregister(self._retries)
        self._retries = _Retries(stats)
        self.registry.register(self._retries)

    def transition(self, trigger: str | None, outcome: str, seconds: float) -> None:
        """Count one change through the gateway."""
        labels = (trigger or "none", outcome)
        self.transitions.labels(*labels).inc()
        self.transition_seconds.labels(*labels).observe(seconds)

    def trace_config(self) -> aiohttp.TraceConfig:
        """An aiohttp trace that counts every request of the session it is given to."""
        trace = aiohttp.TraceConfig()
        requests, seconds = self.sms_requests, self.sms_seconds

        async def start(
            session: aiohttp.ClientSession,
            ctx: SimpleNamespace,
            params: aiohttp.TraceRequestStartParams,
        ) -> None:
            ctx.started = time.monotonic()
            ctx.operation = operation_of(params.method, params.url.path)

        async def end(
            session: aiohttp.ClientSession,
            ctx: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            requests.labels(ctx.operation, status_class(params.response.status)).inc()
            seconds.labels(ctx.operation).observe(time.monotonic() - ctx.started)

        async def failed(
            session: aiohttp.ClientSession,
            ctx: SimpleNamespace,
            params: aiohttp.TraceRequestExceptionParams,
        ) -> None:
            requests.labels(ctx.operation, "error").inc()
            seconds.labels(ctx.operation).observe(time.monotonic() - ctx.started)

        trace.on_request_start.append(start)
        trace.on_request_end.append(end)
        trace.on_request_exception.append(failed)
        return trace

    async def read_journal(self, journal: Journal) -> None:
        """Set the journal gauges from the journal (open intents, sources by state)."""
        self.open_intents.set(len(await journal.open_intents()))
        latest: dict[str, str] = {}
        for entry in await journal.history():
            if entry.outcome in _SETTLED_STATES:
                latest[entry.source_id] = entry.to_state
        counts: dict[str, int] = {}
        for state in latest.values():
            counts[state] = counts.get(state, 0) + 1
        self.sources.clear()
        for state, n in sorted(counts.items()):
            self.sources.labels(state=state).set(n)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
