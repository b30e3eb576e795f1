"""B9: ``sms-flow serve``: ``POST /api/v1/check`` and a legal changestate through the gateway.

Three processes besides this one, each on loopback: the simulator (AK/SK), ``sms-flow serve``
in front of it (``python -m sms_flow serve``: its own AK/SK towards the simulator, a caller
key for the benchmark, a SQLite journal in a temporary directory), and a bare aiohttp
handler. This process is the client: ``concurrency`` workers (64) over one
``aiohttp.ClientSession``, each request awaited in full.

* **check**: ``POST /api/v1/check`` with a JSON body, half the requests allowed
  (``SYNCING/syncing → CUTOVERING``) and half refused with their shortest path
  (``WAITING/checking → REPLICATE/replicating``). Baseline: **bare aiohttp handler**, a
  handler in a process of its own that reads the JSON body and answers a small JSON
  document, the least an aiohttp service can do per request. Target: at least 0.5x its rate.
* **changestate through the gateway**: ``PUT /v3/sources/{id}/changestate`` signed with the
  caller's AK/SK, each source walked along the chart's shortest path to
  ``FINISHED/cutovered`` (5 pushes a source, one source's pushes in order, ``sources``
  sources). For each change the gateway verifies the signature, claims the source under the
  service's run in the journal, reads it (GET; for a source's second and later changes the
  read-back of the one before stands for it), checks the chart, writes the intent, pushes
  (PUT, signed with its own key), reads it back (GET), settles the entry and frees the claim.
  Baseline: **direct push**, the same signed PUTs sent straight to a fresh simulator process
  (as B3's bare loop). Target: the gateway adds at most 30% to a push, i.e. its rate is at
  least 1/1.3 of the direct one. Second baseline: **bare proxy**, a process of its own that
  forwards each PUT to the simulator and relays the answer, checking, journalling and
  signing nothing: what putting any Python process between the caller and SMS costs on
  these cores, the floor under the gateway's figure.

Each side runs ``repeat`` times (a fresh simulator and gateway for every changestate run),
the best run counts; a warm-up of ``concurrency`` requests (sources) comes first. Every
process shares the machine's cores; each figure comes with the CPU the client and the
simulator used per wall second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from benchmarks._common import (
    AK,
    PROJECT_ID,
    SHARED_CORES_NOTE,
    SK,
    Baseline,
    CpuClock,
    Figure,
    Run,
    SimulatorProcess,
    push_path,
    ratio,
    simulator,
    split,
    workers,
)
from sms_flow.auth import AkSkAuth
from sms_flow.wire import ChangeStateRequest

TARGET_CHECK_VS_BARE = 0.5
TARGET_GATEWAY_OVERHEAD = 0.30
CALLER_AK, CALLER_SK, CALLER_PROJECT = "AKB9CALLER0001", "SK-b9-caller-secret-0001", "b9project"
_CHECKS = (
    b'{"from": "SYNCING/syncing", "to": "CUTOVERING"}',
    b'{"from": "WAITING/checking", "to": "REPLICATE/replicating"}',
)
_JSON = {"Content-Type": "application/json"}

_SERVE = """
async def main():
    app = web.Application()
    await setup(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
"""The end of each baseline server's program: serve ``setup(app)``'s routes, print the URL."""

_BARE_HANDLER = (
    """
import asyncio, json
from aiohttp import web

async def check(request):
    body = json.loads(await request.read())
    return web.json_response({"allowed": True, "from": body.get("from"), "to": body.get("to")})

async def setup(app):
    app.router.add_post("/check", check)
"""
    + _SERVE
)

_BARE_PROXY = (
    """
import asyncio, sys
import aiohttp
from aiohttp import web

TARGET = sys.argv[1]
FORWARDED = ("Host", "Content-Type", "Authorization", "X-Sdk-Date", "X-Project-Id")

async def forward(request):
    body = await request.read()
    headers = {h: request.headers[h] for h in FORWARDED if h in request.headers}
    async with request.app["session"].put(
        TARGET + request.rel_url.raw_path, data=body, headers=headers
    ) as resp:
        answer = await resp.read()
        return web.Response(status=resp.status, body=answer, content_type="application/json")

async def setup(app):
    app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    app.router.add_put("/v3/sources/{source_id}/changestate", forward)
"""
    + _SERVE
)


@contextlib.contextmanager
def _process(argv: Sequence[str], env: dict[str, str] | None = None) -> Iterator[tuple[int, str]]:
    """A child process that prints its URL first; ``(pid, url)``; stopped afterwards."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            if not url.startswith("http"):
                proc.wait(timeout=10)
                err.seek(0)
                raise RuntimeError(f"{argv[2:4]} did not start: {err.read()[-2000:]}")
            yield proc.pid, url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@contextlib.contextmanager
def gateway(sim: SimulatorProcess) -> Iterator[tuple[int, str]]:
    """``sms-flow serve`` in front of ``sim``, with a journal in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="sms-flow-bench-b9-") as tmp:
        env = {
            **os.environ,
            "CLOUD_SDK_AK": AK,
            "CLOUD_SDK_SK": SK,
            "CLOUD_SDK_PROJECT_ID": PROJECT_ID,
            "SMS_FLOW_SERVE_KEYS": f"{CALLER_AK}:{CALLER_SK}:{CALLER_PROJECT}",
        }
        env.pop("SMS_FLOW_TOKEN", None)
        argv = [sys.executable, "-m", "sms_flow", "serve", "--endpoint", sim.url, "--port", "0"]
        argv += ["--journal", str(Path(tmp) / "journal.sqlite")]
        with _process(argv, env) as started:
            yield started


async def _checks(url: str, n: int, concurrency: int, pid: int | None, side: str) -> Run:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def one(i: int) -> None:
            async with session.post(url, data=_CHECKS[i % 2], headers=_JSON) as resp:
                await resp.read()
                if resp.status != 200:
                    raise AssertionError(f"B9 {side}: HTTP {resp.status}")

        await workers(range(concurrency), concurrency, one)
        with CpuClock(pid) as clock:
            await workers(range(n), concurrency, one)
    return Run(side, n, clock.wall, clock.shares(), {})


async def _pushes(
    base: str,
    ids: Sequence[str],
    warm: int,
    concurrency: int,
    auth: AkSkAuth,
    sim_pid: int,
    side: str,
) -> Run:
    steps = push_path()
    bodies = [
        ChangeStateRequest.of(e.dest.copystate, e.dest.migrationcycle).to_wire() for e in steps
    ]
    sent = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def walk(source_id: str) -> None:
            nonlocal sent
            url = URL(f"{base}/v3/sources/{source_id}/changestate", encoded=True)
            for body in bodies:
                signed = auth.sign("PUT", url, _JSON, body)
                async with session.put(url, data=body, headers=signed) as resp:
                    answer = await resp.read()
                    if resp.status != 200:
                        raise AssertionError(f"B9 {side}: HTTP {resp.status}: {answer[:300]!r}")
                sent += 1

        warm_ids, run_ids = split(ids, warm)
        await workers(warm_ids, concurrency, walk)
        sent = 0
        with CpuClock(sim_pid) as clock:
            await workers(run_ids, concurrency, walk)
    return Run(side, sent, clock.wall, clock.shares(), {})


def run(
    *,
    checks: int = 20_000,
    sources: int = 400,
    concurrency: int = 64,
    repeat: int = 3,
    **_unused: Any,
) -> list[Figure]:
    warm = concurrency
    check_runs: list[Run] = []
    bare_runs: list[Run] = []
    through: list[Run] = []
    direct: list[Run] = []
    proxied: list[Run] = []
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(simulator(1))
        gw_pid, gw_url = stack.enter_context(gateway(sim))
        bare_pid, bare_url = stack.enter_context(_process([sys.executable, "-c", _BARE_HANDLER]))
        for _ in range(repeat):
            check_runs.append(
                asyncio.run(_checks(f"{gw_url}/api/v1/check", checks, concurrency, gw_pid, "check"))
            )
            bare_runs.append(
                asyncio.run(_checks(f"{bare_url}/check", checks, concurrency, bare_pid, "bare"))
            )
    caller = AkSkAuth(CALLER_AK, CALLER_SK, CALLER_PROJECT)
    own = AkSkAuth(AK, SK, PROJECT_ID)
    for _ in range(repeat):
        with simulator(warm + sources) as sim, gateway(sim) as (_pid, gw_url):
            through.append(
                asyncio.run(_pushes(gw_url, sim.ids, warm, concurrency, caller, sim.pid, "gateway"))
            )
        with simulator(warm + sources) as sim:
            direct.append(
                asyncio.run(_pushes(sim.url, sim.ids, warm, concurrency, own, sim.pid, "direct"))
            )
        with (
            simulator(warm + sources) as sim,
            _process([sys.executable, "-c", _BARE_PROXY, sim.url]) as (_pid, proxy_url),
        ):
            proxied.append(
                asyncio.run(_pushes(proxy_url, sim.ids, warm, concurrency, own, sim.pid, "proxy"))
            )

    best_check = max(check_runs, key=lambda r: r.rate)
    best_bare = max(bare_runs, key=lambda r: r.rate)
    best_through = max(through, key=lambda r: r.rate)
    best_direct = max(direct, key=lambda r: r.rate)
    best_proxy = max(proxied, key=lambda r: r.rate)
    proxy_added = (best_direct.rate / best_proxy.rate - 1) if best_proxy.rate else None
    check_vs_bare = ratio(best_check.rate, best_bare.rate)
    push_vs_direct = ratio(best_through.rate, best_direct.rate)
    added = (best_direct.rate / best_through.rate - 1) if best_through.rate else None
    note = f"best of {repeat}; the gateway, simulator and bare handler are processes of their own; "
    return [
        Figure(
            id="B9",
            what=f"POST /api/v1/check, concurrency {concurrency}",
            value=best_check.rate,
            unit="requests/s",
            better="higher",
            target=f">= {TARGET_CHECK_VS_BARE:g}x a bare aiohttp handler",
            met=(check_vs_bare or 0) >= TARGET_CHECK_VS_BARE,
            baselines=[
                Baseline("bare aiohttp handler (JSON in, JSON out)", best_bare.rate, check_vs_bare)
            ],
            note=note
            + "CPU per wall second of the server side under simulator_cpu_per_wall; "
            + SHARED_CORES_NOTE,
            details={"checks": checks, "runs": [r.to_dict() for r in (*check_runs, *bare_runs)]},
        ),
        Figure(
            id="B9",
            what=f"changestate through the gateway, {best_through.requests:,} pushes, "
            f"concurrency {concurrency}",
            value=best_through.rate,
            unit="requests/s",
            better="higher",
            target=f"the gateway adds <= {TARGET_GATEWAY_OVERHEAD:.0%} to a push "
            f"(>= {1 / (1 + TARGET_GATEWAY_OVERHEAD):.2f}x direct)",
            met=added is not None and added <= TARGET_GATEWAY_OVERHEAD,
            baselines=[
                Baseline(
                    "direct push to the simulator, same signing", best_direct.rate, push_vs_direct
                ),
                Baseline(
                    "bare aiohttp proxy in front of the simulator (forwards, checks nothing)",
                    best_proxy.rate,
                    ratio(best_through.rate, best_proxy.rate),
                ),
            ],
            note=note
            + (f"the gateway adds {added:.0%} to a push; " if added is not None else "")
            + (
                f"a bare proxy alone adds {proxy_added:.0%} (the floor of any gateway in a "
                "process of its own on these cores); "
                if proxy_added is not None
                else ""
            )
            + "per change the gateway makes 2 SMS requests (push, read back; a third, the "
            "read, for a source's first change) and its journal writes (claim, intent, "
            "outcome, release); " + SHARED_CORES_NOTE,
            details={
                "sources": sources,
                "steps_per_source": len(push_path()),
                "added_per_push": None if added is None else round(added, 3),
                "proxy_added_per_push": None if proxy_added is None else round(proxy_added, 3),
                "runs": [r.to_dict() for r in (*through, *direct, *proxied)],
            },
        ),
    ]
