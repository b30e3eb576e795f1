"""``sms-flow run --metrics-port``: the run's metrics on loopback while it runs, then gone."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Spawner, eventually
from tests.wave.conftest import SIMULATOR_ARGS, journalled, write_wave


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **kw: str
) -> float:
    wanted = set(kw.items())
    return sum(v for (n, labels), v in samples.items() if n == name and wanted <= labels)


@pytest.mark.slow
async def test_a_wave_run_serves_its_metrics_while_it_runs(spawn: Spawner, tmp_path: Path) -> None:
    sim = spawn.simulator(*SIMULATOR_ARGS, "--latency", "0.03", sources=30)
    wave = write_wave(
        tmp_path / "wave.yaml", name="live", endpoint=sim.url, sources={"ids": sim.ids},
        concurrency=2,
    )  # fmt: skip
    journal = tmp_path / "journal.sqlite"
    run = spawn.sms_flow(
        "run", str(wave), "--journal", str(journal), "--no-progress", "--metrics-port", "0",
        cwd=tmp_path,
    )  # fmt: skip
    await eventually(lambda: "metrics: " in run.stderr, timeout=60)
    found = re.search(r"metrics: (http://127\.0\.0\.1:\d+/metrics)", run.stderr)
    assert found, run.stderr
    url = found.group(1)
    await eventually(lambda: journalled(run, journal, 10), timeout=60)

    during = await scrape(url)
    assert run.running, "the wave was still running when its metrics were scraped"
    assert total(during, "smsflow_transitions_total", outcome="applied") >= 10
    assert total(during, "smsflow_sms_requests_total", operation="changestate") >= 10
    assert total(during, "smsflow_wave_sources", wave="live") == 30
    assert total(during, "smsflow_journal_commits_total") >= 1
    assert total(during, "smsflow_build_info") == 1

    assert await run.await_exit(120) == 0, run.stderr
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url)


def test_a_metrics_port_out_of_range_is_refused(spawn: Spawner, tmp_path: Path) -> None:
    wave = write_wave(tmp_path / "wave.yaml", name="w", sources={"count": 1})
    run = spawn.sms_flow("run", str(wave), "--metrics-port", "70000", cwd=tmp_path)
    assert run.wait() == 2
    assert "--metrics-port 70000: give a TCP port from 1 to 65535" in run.stderr


@pytest.mark.slow
async def test_a_drill_serves_its_metrics_while_it_runs(spawn: Spawner, tmp_path: Path) -> None:
    """``drill --metrics-port``: the same metrics while the drill's check runs."""
    sim = spawn.simulator(*SIMULATOR_ARGS, sources=2)
    wave = write_wave(
        tmp_path / "wave.yaml", name="to-sync", endpoint=sim.url, sources={"ids": sim.ids},
        target="SYNCING/syncing",
    )  # fmt: skip
    journal = tmp_path / "journal.sqlite"
    synced = spawn.sms_flow("run", str(wave), "--journal", str(journal), "--no-progress")
    assert await synced.await_exit() == 0, synced.stderr
    marker = tmp_path / "checking"
    check = f"touch {marker} && sleep 3"  # the drill is under way while its check runs
    drill = spawn.sms_flow(
        "drill", "--ids", ",".join(sim.ids), "--check", check, "--endpoint", sim.url,
        "--journal", str(journal), "--no-progress", "--metrics-port", "0", cwd=tmp_path,
    )  # fmt: skip
    await eventually(lambda: "metrics: " in drill.stderr, timeout=60)
    found = re.search(r"metrics: (http://127\.0\.0\.1:\d+/metrics)", drill.stderr)
    assert found, drill.stderr
    await eventually(marker.exists, timeout=60)

    during = await scrape(found.group(1))
    assert drill.running, "the drill was still running when its metrics were scraped"
    assert total(during, "smsflow_transitions_total", outcome="applied") >= 2
    assert total(during, "smsflow_build_info") == 1
    assert await drill.await_exit() == 0, drill.stderr
