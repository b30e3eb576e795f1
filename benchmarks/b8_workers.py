"""B8: a wave of 10,000 sources driven by three worker processes on one PostgreSQL journal, one killed.

What is measured, against a simulator process (AK/SK signing on) and a PostgreSQL journal (a
throwaway cluster, or ``SMS_FLOW_BENCH_PG_DSN``; a new database each run):

* **one worker**: ``sms-flow run WAVE.yaml --join --journal DSN`` alone on a wave of ``solo``
  sources (2,000): transitions/s, from its start to its exit (the baseline);
* **three workers**: three such processes started together on a wave of ``sources``
  (10,000). The third is recorded under another host name (``SMS_FLOW_HOST``), so that its
  process cannot be seen from the others, as on a machine that was lost, and is SIGKILLed once
  a third of the wave's steps are journalled: its sources come free only when its lease
  (``lease``, 10 s) ends, on the database's clock. Figures: transitions/s of the whole wave
  (every applied step / wall time from the start of the workers to the last exit) and its
  ratio to one worker; the **takeover time** (the last claim taken from the killed worker
  minus the moment of the kill, both on the database's clock) against the lease; the **peak
  RSS** of each worker (``VmHWM``, read from ``/proc`` while it runs); and the verdict:
  **duplicated steps** (changestate calls beyond the 5 of each source's path, from the
  simulator's counters) and **sources not at the target** (the journal's applied
  ``FINISHED/cutovered`` entries, and the simulator's states), all to be 0. What the killed
  worker held and had not done is counted with it frozen (SIGSTOP), just before the kill.

Each worker drives ``concurrency`` sources at once (32). The simulator, PostgreSQL and the
workers share the machine's cores: on 2 cores three workers cannot be three times one.

Target: every source at the target, 0 duplicated steps (issue 11); the figures go in the
results table.

    python -m benchmarks.b8_workers [--sources N] [--solo N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import (
    SHARED_CORES_NOTE,
    Baseline,
    Figure,
    SimulatorProcess,
    child_env,
    ratio,
    simulator,
)
from benchmarks.b7_pg_journal import Server, server

STEPS = 5  # configure, start, replicate, cutover, finish
TARGET = "FINISHED/cutovered"
LOST_HOST = "b8-machine-lost"
CONTROL = "b8-control-token-not-a-secret"
"""The simulator's control token: its counters and histories are read with it."""


class Worker:
    """One ``sms-flow run --join`` process, its peak RSS polled while it runs."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.peak_mb = 0.0
        self.out = ""
        self.err = ""
        self._poll = threading.Thread(target=self._watch, daemon=True)
        self._poll.start()

    def _watch(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
            time.sleep(0.2)

    def wait(self, timeout: float) -> int:
        self.out, self.err = self.proc.communicate(timeout=timeout)
        self._poll.join(timeout=5)
        return self.proc.returncode


def _env(host: str | None = None) -> dict[str, str]:
    env = child_env()
    if host is not None:
        env["SMS_FLOW_HOST"] = host
    return env


def _wave(folder: Path, name: str, url: str, ids: list[str], concurrency: int) -> Path:
    path = folder / f"{name}.yaml"
    spec = {
        "name": name,
        "endpoint": url,
        "sources": {"ids": ids},
        "target": TARGET,
        "concurrency": concurrency,
    }
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _argv(wave: Path, dsn: str, lease: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sms_flow",
        "run",
        str(wave),
        "--join",
        "--journal",
        dsn,
        "--no-progress",
        "--json",
        "--lease",
        f"{lease:g}",
    ]


async def _value(dsn: str, sql: str, *args: Any) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def _value_now(dsn: str, sql: str, *args: Any) -> Any:
    return asyncio.run(_value(dsn, sql, *args))


def _applied(dsn: str, wave: str) -> int:
    try:
        return int(
            _value_now(
                dsn,
                "SELECT count(*) FROM sms_flow.entries WHERE wave = $1 AND outcome = 'applied'",
                wave,
            )
        )
    except Exception:  # the schema is being created
        return 0


def _get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"X-Auth-Token": CONTROL})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def _verdict(sim: SimulatorProcess, ids: list[str], dsn: str, wave: str) -> dict[str, int]:
    """Duplicated steps and sources not at the target, by the simulator and the journal."""
    puts = _get(f"{sim.url}/_simulator/stats")["puts_per_source"]
    duplicated = sum(max(0, int(puts.get(sid, 0)) - STEPS) for sid in ids)

    def off_target(sid: str) -> bool:
        src = _get(f"{sim.url}/_simulator/sources/{sid}")
        return f"{src['copystate']}/{src['migrationcycle']}" != TARGET

    with ThreadPoolExecutor(8) as pool:
        not_there = sum(pool.map(off_target, ids))
    journalled = int(
        _value_now(
            dsn,
            "SELECT count(DISTINCT source_id) FROM sms_flow.entries WHERE wave = $1 "
            "AND outcome = 'applied' AND to_state = $2",
            wave,
            TARGET,
        )
    )
    return {
        "duplicated_steps": duplicated,
        "not_at_target": not_there,
        "not_journalled_at_target": len(ids) - journalled,
        "pushes": sum(int(puts.get(sid, 0)) for sid in ids),
    }


def _solo(where: Server, ids: list[str], url: str, concurrency: int, lease: float) -> float:
    dsn = asyncio.run(where.database())
    try:
        with tempfile.TemporaryDirectory(prefix="sms-flow-bench-b8-") as tmp:
            wave = _wave(Path(tmp), "b8-solo", url, ids, concurrency)
            started = time.monotonic()
            one = Worker(_argv(wave, dsn, lease), _env(), Path(tmp))
            code = one.wait(timeout=1800)
            wall = time.monotonic() - started
            if code != 0:
                raise RuntimeError(f"the lone worker exited {code}: {one.err[-2000:]}")
        return _applied(dsn, "b8-solo") / wall
    finally:
        asyncio.run(where.drop(dsn))


def _three(
    where: Server, sim: SimulatorProcess, ids: list[str], concurrency: int, lease: float
) -> dict[str, Any]:
    dsn = asyncio.run(where.database())
    try:
        with tempfile.TemporaryDirectory(prefix="sms-flow-bench-b8-") as tmp:
            wave = _wave(Path(tmp), "b8-team", sim.url, ids, concurrency)
            argv = _argv(wave, dsn, lease)
            started = time.monotonic()
            workers = [Worker(argv, _env(), Path(tmp)) for _ in range(2)]
            doomed = Worker(argv, _env(LOST_HOST), Path(tmp))
            total = len(ids) * STEPS
            while _applied(dsn, "b8-team") < total // 3:
                if doomed.proc.poll() is not None:
                    raise RuntimeError(f"the worker to kill ended first: {doomed.err[-2000:]}")
                time.sleep(0.2)
            lost_run = _value_now(
                dsn, "SELECT run_id FROM sms_flow.runs WHERE host = $1", LOST_HOST
            )
            # Frozen first, so that what it holds and has not done (claimed, not done in the
            # session: what the others must take over) is counted exactly as it dies; thawed
            # and frozen again in the rare instant it holds nothing undone.
            held = 0
            for _ in range(50):
                doomed.proc.send_signal(signal.SIGSTOP)
                held = _value_now(
                    dsn,
                    "SELECT count(*) FROM sms_flow.claims AS c JOIN sms_flow.wave_workers AS w "
                    "ON w.run_id = c.run_id WHERE c.run_id = $1 AND NOT EXISTS (SELECT 1 FROM "
                    "sms_flow.wave_done AS d WHERE d.session_id = w.session_id "
                    "AND d.source_id = c.source_id)",
                    lost_run,
                )
                if held:
                    break
                doomed.proc.send_signal(signal.SIGCONT)
                time.sleep(0.02)
            killed_at = _value_now(dsn, "SELECT extract(epoch FROM clock_timestamp())::float8")
            doomed.proc.send_signal(signal.SIGKILL)
            doomed.wait(timeout=60)
            codes = [w.wait(timeout=3600) for w in workers]
            wall = time.monotonic() - started
            if any(codes):
                raise RuntimeError(f"workers exited {codes}: {workers[0].err[-2000:]}")
            reports = [json.loads(w.out) for w in workers]
            last_taken = _value_now(
                dsn,
                "SELECT max(claimed_at) FROM sms_flow.claims WHERE taken_from = $1",
                lost_run,
            )
            verdict = _verdict(sim, ids, dsn, "b8-team")
            return {
                "rate": _applied(dsn, "b8-team") / wall,
                "wall_seconds": round(wall, 2),
                "held_by_the_killed_worker": held,
                "takeover_seconds": (
                    round(last_taken - killed_at, 2) if last_taken is not None else None
                ),
                "taken_over": sum(r["taken_over"] for r in reports),
                "peak_rss_mb": [round(w.peak_mb, 1) for w in (*workers, doomed)],
                "sources_per_worker": [len(r["sources"]) for r in reports],
                **verdict,
            }
    finally:
        asyncio.run(where.drop(dsn))


def run(
    *,
    sources: int = 10_000,
    solo: int = 2_000,
    concurrency: int = 32,
    lease: float = 10.0,
    **_unused: Any,
) -> list[Figure]:
    with server() as where:
        with simulator(solo) as sim:
            one = _solo(where, sim.ids, sim.url, concurrency, lease)
        with simulator(sources, extra=("--control-token", CONTROL)) as sim:
            team = _three(where, sim, sim.ids, concurrency, lease)
    clean = (
        team["duplicated_steps"] == 0
        and team["not_at_target"] == 0
        and team["not_journalled_at_target"] == 0
    )
    note = (
        f"{team['duplicated_steps']} duplicated steps, {team['not_at_target']} sources not at "
        f"the target in the simulator, {team['not_journalled_at_target']} not journalled there; "
        f"the killed worker held {team['held_by_the_killed_worker']} sources, "
        f"taken over {team['takeover_seconds']} s after the kill (lease {lease:g} s); peak RSS "
        f"per worker {', '.join(f'{mb:g}' for mb in team['peak_rss_mb'])} MB (the last one "
        f"killed); {SHARED_CORES_NOTE}, and with PostgreSQL"
    )
    return [
        Figure(
            id="B8",
            what=f"wave of {sources:,} sources, 3 workers on PostgreSQL, one killed",
            value=team["rate"],
            unit="transitions/s",
            better="higher",
            target="every source at the target, 0 duplicated steps",
            met=clean,
            baselines=[Baseline(f"one worker, {solo:,} sources", one, ratio(team["rate"], one))],
            note=note,
            details={"sources": sources, "solo": solo, "concurrency": concurrency, **team},
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b8_workers")
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--solo", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    for figure in run(sources=args.sources, solo=args.solo, concurrency=args.concurrency):
        print(json.dumps(figure.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
