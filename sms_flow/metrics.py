"""``/metrics``: what ``sms-flow serve`` (or a wave run) did and where the sources stand, in
Prometheus' format.

Both front ends use it (``sms-flow serve``'s ``/metrics``, ``sms-flow run --metrics-port``),
so it lives below them, beside the wave layer. Names follow Prometheus' conventions: an
``smsflow_`` prefix, base units (seconds), counters ending in ``_total``; no metric is
labelled by source id (a label per source would make a series per source). Every metric lives
in its :class:`Metrics`' own registry (never the process-wide default one), so two services in
one process do not mix.

======================================================= ========= ===========================
metric                                                  type      labels
======================================================= ========= ===========================
``smsflow_transitions_total``                           counter   trigger, outcome
``smsflow_transition_duration_seconds``                 histogram trigger, outcome
``smsflow_sms_requests_total``                          counter   operation, status_class
``smsflow_sms_request_duration_seconds``                histogram operation
``smsflow_sms_retries_total``                           counter   cause
``smsflow_gateway_refusals_total``                      counter   code
``smsflow_sms_errors_total``                            counter   operation, error_code
``smsflow_journal_open_intents``                        gauge
``smsflow_journal_operations_total``                    counter
``smsflow_journal_commits_total``                       counter
``smsflow_journal_batch_size_max``                      gauge
``smsflow_journal_batch_in_flight``                     gauge
``smsflow_sources``                                     gauge     state
``smsflow_sources_oldest_age_seconds``                  gauge     state
``smsflow_wave_sources``                                gauge     wave, state
``smsflow_build_info``                                  gauge     version
======================================================= ========= ===========================

``outcome`` is the journal's outcome of the step (``applied``, ``rejected``, ``conflict``,
``ignored``, ``failed``, ``unverified``), or ``owned`` when another live driver held the
source (nothing journalled, nothing sent). ``operation`` is the SMS call (``changestate``,
``show``, ``list``, ``register``, ``other``); ``status_class`` is ``2xx``, ``4xx``, ``5xx``
or ``error`` (no answer: refused, dropped, timed out), counted per attempt, retries included.
``cause`` is the client's retry cause (``connect``, ``dropped``, ``timeout``, ``429``,
``5xx``). ``smsflow_sms_errors_total`` counts SMS's error answers (4xx, 5xx) by the
``error_code`` of their body (``SMS.xxxx``, ``APIGW.xxxx``; ``unknown`` when the body names
none or is not read: over 64 KiB, compressed or chunked). The journal gauges are read from the
journal at each scrape: ``smsflow_sources`` counts sources by the state of their latest
applied or observed entry, ``smsflow_sources_oldest_age_seconds`` is how long the source
longest in each state has been there (since that entry settled), both computed in SQL on a
SQLite journal; ``smsflow_wave_sources`` is each wave's members by state, as ``sms-flow
status`` counts them. The journal's batching comes from its
:class:`~sms_flow.journal.JournalStats` (``operations / commits`` is the mean batch size).

``sms-flow run --metrics-port N`` serves the same registry for a wave run
(:func:`metrics_server`): transitions from the wave's events, SMS requests from the run's
HTTP session, the journal's figures from its journal.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from sms_flow import __version__
from sms_flow.client import ClientStats
from sms_flow.journal import Journal, JournalStats

if TYPE_CHECKING:
    from sms_flow.wave.report import Event

__all__ = ["CONTENT_TYPE", "Metrics", "metrics_server", "operation_of", "traced_session"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
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


_ERROR_CODE: Final = re.compile(r"[A-Z][A-Za-z]{1,15}\.\d{1,6}")
_ERROR_BODY_MAX: Final = 64 * 1024


async def error_code_of(resp: aiohttp.ClientResponse) -> str:
    """The ``error_code`` of an error answer's JSON body, or ``unknown``.

    Only a body with a ``Content-Length`` of at most 64 KiB and no content encoding is read
    (the client reads the same bytes again from aiohttp's cache); a code that does not look
    like one (``SMS.1234``) is ``unknown``, so the label's values stay few.
    """
    length = resp.content_length
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if length is None or length > _ERROR_BODY_MAX or encoding not in ("", "identity"):
        return "unknown"
    try:
        data = json.loads(await resp.read())
    except (aiohttp.ClientError, OSError, ValueError, TimeoutError):
        return "unknown"
    code = data.get("error_code") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "unknown"


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


class _JournalBatching(Collector):
    """The journal's :class:`JournalStats`, read at each scrape."""

    def __init__(self, stats: Callable[[], JournalStats]) -> None:
        self._stats = stats

    def collect(
        self,
    ) -> Iterator[CounterMetricFamily | GaugeMetricFamily | SummaryMetricFamily]:
        s = self._stats()
        yield CounterMetricFamily(
            "smsflow_journal_operations",
            "Journal writes (intents, outcomes, records) since the journal opened",
            value=s.operations,
        )
        yield CounterMetricFamily(
            "smsflow_journal_commits",
            "Journal transactions committed (each a batch of writes) since it opened",
            value=s.batches,
        )
        yield SummaryMetricFamily(
            "smsflow_journal_commit_seconds",
            "Time to write and commit each batch of journal writes (one transaction)",
            count_value=s.batches,
            sum_value=s.batch_seconds,
        )
        yield GaugeMetricFamily(
            "smsflow_journal_batch_size_max",
            "The largest batch of writes committed in one transaction since it opened",
            value=s.largest_batch,
        )
        yield GaugeMetricFamily(
            "smsflow_journal_batch_in_flight",
            "Writes in the transaction being committed now (0 when idle)",
            value=s.in_flight,
        )


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
        self.sms_errors = Counter(
            "smsflow_sms_errors",
            "SMS's error answers (4xx, 5xx), by operation and the error_code of their body",
            ["operation", "error_code"],
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
        self.oldest = Gauge(
            "smsflow_sources_oldest_age_seconds",
            "How long the source longest in each state has been in it (since its latest applied "
            "or observed journal entry)",
            ["state"],
            registry=r,
        )
        self.wave_sources = Gauge(
            "smsflow_wave_sources",
            "A wave's members by state, as sms-flow status counts them",
            ["wave", "state"],
            registry=r,
        )
        build = Gauge("smsflow_build_info", "The sms-flow build", ["version"], registry=r)
        build.labels(version=__version__).set(1)
        self._retries: _Retries | None = None
        self._batching: _JournalBatching | None = None

    def watch_client(self, stats: Callable[[], ClientStats]) -> None:
        """Export the retries of a client (its ``stats`` method), read at each scrape."""
        if self._retries is not None:
            self.registry.unregister(self._retries)
        self._retries = _Retries(stats)
        self.registry.register(self._retries)

    def watch_journal(self, journal: Journal) -> None:
        """Export the batching of a journal that has ``stats()`` (a SQLite journal)."""
        stats = getattr(journal, "stats", None)
        if not callable(stats):
            return
        if self._batching is not None:
            self.registry.unregister(self._batching)
        self._batching = _JournalBatching(stats)
        self.registry.register(self._batching)

    def on_event(self, event: Event) -> None:
        """Count a wave's step as a transition (``sms-flow run --metrics-port``)."""
        step = event.step
        if event.kind == "step" and step is not None:
            self.transition(step.trigger, step.outcome.value, step.elapsed)

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

        errors = self.sms_errors

        async def end(
            session: aiohttp.ClientSession,
            ctx: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            status = params.response.status
            requests.labels(ctx.operation, status_class(status)).inc()
            seconds.labels(ctx.operation).observe(time.monotonic() - ctx.started)
            if status >= 400:
                errors.labels(ctx.operation, await error_code_of(params.response)).inc()

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
        """Set the journal gauges from the journal: open intents, sources by state and the
        age of the oldest in each, each wave's members by state."""
        self.open_intents.set(len(await journal.open_intents()))
        now = time.time()
        self.sources.clear()
        self.oldest.clear()
        for state, n, since in sorted(await journal.state_ages()):
            self.sources.labels(state=state).set(n)
            self.oldest.labels(state=state).set(max(0.0, now - since))
        self.wave_sources.clear()
        for wave in await journal.waves():
            status = await journal.wave_status(wave, shown=0)
            for state, n in sorted(status.states.items()):
                self.wave_sources.labels(wave=wave, state=state).set(n)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def traced_session(metrics: Metrics, *, limit: int = 100) -> aiohttp.ClientSession:
    """An HTTP session for an :class:`~sms_flow.client.SmsClient` whose requests ``metrics``
    count; set up as the client sets up its own (no ``.netrc``, no silent resend)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        trust_env=False,
        trace_configs=[metrics.trace_config()],
    )
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


@contextlib.asynccontextmanager
async def metrics_server(
    metrics: Metrics, journal: Callable[[], Journal | None], port: int, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve ``/metrics`` on ``host:port`` (loopback) for the block; yields its URL.

    ``journal()`` gives the journal to read at each scrape (``None`` while there is none yet).
    """

    async def scrape(request: web.Request) -> web.Response:
        opened = journal()
        if opened is not None:
            await metrics.read_journal(opened)
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield f"http://{host}:{runner.addresses[0][1]}/metrics"
    finally:
        await runner.cleanup()
