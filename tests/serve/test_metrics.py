"""``/metrics`` after a few changes through the gateway, scraped and parsed as Prometheus does."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sms_flow import __version__
from sms_flow.auth import TokenAuth
from sms_flow.client import SmsClient
from sms_flow.errors import ApiError, ServerError
from sms_flow.metrics import operation_of
from sms_flow.retry import RetryPolicy
from sms_flow.serve import Service
from sms_flow.simulator import Faults, Simulator
from tests.serve.conftest import SERVE_SIMULATOR, SIM_TOKEN

pytestmark = SERVE_SIMULATOR

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(service: Service) -> tuple[str, Samples]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_changes_sms_requests_and_sources_by_state(
    sim: Simulator, gateway: Service
) -> None:
    ids = [await sim.register(f"web-{n}") for n in range(3)]
    for sid in ids:
        await sim.move(sid, pair=("REPLICATE", "replicating"))
    retry = RetryPolicy(attempts=1)
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN), retry=retry) as client:
        for sid in ids[:2]:
            await client.change_state(sid, "SYNCING", "syncing")
        with pytest.raises(ApiError) as refused:
            await client.change_state(ids[2], "WAITING", "checking")
        assert refused.value.error_code == "SMSFLOW.0001"
        await client.get_source(ids[0])
    text, samples = await scrape(gateway)

    assert value(samples, "smsflow_transitions_total", trigger="sync", outcome="applied") == 2
    assert value(samples, "smsflow_transitions_total", trigger="none", outcome="rejected") == 1
    assert (
        value(
            samples,
            "smsflow_transition_duration_seconds_count",
            trigger="sync",
            outcome="applied",
        )
        == 2
    )
    assert value(samples, "smsflow_gateway_refusals_total", code="SMSFLOW.0001") == 1
    # Per change: a read, the push and the read back; per refusal: a read; one read passed on.
    assert (
        value(samples, "smsflow_sms_requests_total", operation="changestate", status_class="2xx")
        == 2
    )
    assert value(samples, "smsflow_sms_requests_total", operation="show", status_class="2xx") == 6
    assert value(samples, "smsflow_sms_request_duration_seconds_count", operation="show") == 6
    assert value(samples, "smsflow_sms_retries_total", cause="5xx") == 0
    assert value(samples, "smsflow_journal_open_intents") == 0
    assert value(samples, "smsflow_sources", state="SYNCING/syncing") == 2
    assert value(samples, "smsflow_build_info", version=__version__) == 1
    # Never a series per source.
    for sid in ids:
        assert sid not in text
    assert "source_id" not in text


async def test_retries_and_5xx_answers_are_counted(sim: Simulator, gateway: Service) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    sim.set_faults(Faults(error_rate=1.0))
    retry = RetryPolicy(attempts=1)
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN), retry=retry) as client:
        with pytest.raises(ServerError) as caught:  # SMS's 5xx, after the gateway's retries
            await client.change_state(sid, "SYNCING", "syncing")
    assert caught.value.error_code == "SMS.2007"
    _, samples = await scrape(gateway)
    failed = value(samples, "smsflow_sms_requests_total", operation="show", status_class="5xx")
    assert failed == 3  # the gateway's three attempts at its first read
    retries = value(samples, "smsflow_sms_retries_total", cause="5xx")
    assert retries == 2
    # SMS's error code, read from each 5xx answer's body
    assert value(samples, "smsflow_sms_errors_total", operation="show", error_code="SMS.2007") == 3


async def test_sources_by_wave_and_state_the_oldest_in_each_and_the_journal_batches(
    sim: Simulator, gateway: Service
) -> None:
    a, b, outside = [await sim.register(f"db-{n}") for n in range(3)]
    for sid in (a, b, outside):
        await sim.move(sid, pair=("REPLICATE", "replicating"))
    await gateway.journal.add_members("w1", [a, b], endpoint=sim.url)
    async with SmsClient(gateway.url, auth=TokenAuth(SIM_TOKEN)) as client:
        await client.change_state(a, "SYNCING", "syncing")
        await client.change_state(b, "SYNCING", "syncing")
        await client.change_state(a, "CUTOVERING", "cutovering")
        await client.change_state(outside, "SYNCING", "syncing")
    text, samples = await scrape(gateway)
    assert value(samples, "smsflow_wave_sources", wave="w1", state="SYNCING/syncing") == 1
    assert value(samples, "smsflow_wave_sources", wave="w1", state="CUTOVERING/cutovering") == 1
    assert value(samples, "smsflow_sources", state="SYNCING/syncing") == 2
    # The oldest in SYNCING is b (a moved on): the ages differ by the time between b's entry
    # and a's move to CUTOVERING, both read at one scrape.
    entries = {(e.source_id, e.to_state): e for e in await gateway.journal.history()}
    b_since = entries[b, "SYNCING/syncing"].settled_at
    a_since = entries[a, "CUTOVERING/cutovering"].settled_at
    assert b_since is not None and a_since is not None
    syncing = value(samples, "smsflow_sources_oldest_age_seconds", state="SYNCING/syncing")
    cutovering = value(samples, "smsflow_sources_oldest_age_seconds", state="CUTOVERING/cutovering")
    assert syncing - cutovering == pytest.approx(a_since - b_since, abs=1e-3)
    # Four changes: an intent and an outcome each, committed in batches.
    operations = value(samples, "smsflow_journal_operations_total")
    commits = value(samples, "smsflow_journal_commits_total")
    assert operations >= 8 and 1 <= commits <= operations
    assert value(samples, "smsflow_journal_batch_size_max") >= 1
    # Every commit timed: as many as committed, taking some time but not more than the test.
    assert value(samples, "smsflow_journal_commit_seconds_count") >= commits
    assert 0 < value(samples, "smsflow_journal_commit_seconds_sum") < 60
    for sid in (a, b, outside):
        assert sid not in text


def test_operations_are_named_from_the_route_never_the_source() -> None:
    assert operation_of("PUT", "/v3/sources/abc/changestate") == "changestate"
    assert operation_of("GET", "/v3/sources/abc") == "show"
    assert operation_of("GET", "/v3/sources") == "list"
    assert operation_of("POST", "/v3/sources") == "register"
    assert operation_of("GET", "/v3/tasks") == "other"
