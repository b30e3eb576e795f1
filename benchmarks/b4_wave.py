"""B4: a 2,000-source wave to ``FINISHED/cutovered``, journal on, read-back on, looking before pushing.

What is measured: a :class:`~sms_flow.wave.WaveSession` running a
:class:`~sms_flow.wave.WaveSpec` with ``sources: {ids: [...]}`` (the ``sources``
sources a simulator process registered, all at ``WAITING/checking``), ``endpoint`` the
simulator's URL, AK/SK signing (from ``CLOUD_SDK_AK``/``CLOUD_SDK_SK``/``CLOUD_SDK_PROJECT_ID``
as a user would set them), a fresh SQLite journal, ``verify: true`` (every push read back)
and ``concurrency`` sources in flight. Each source takes 5 pushes (configure, start,
replicate, cutover, finish), so 2,000 sources make 10,000 transitions and 20,000 requests.

* **transitions/s**: transitions applied / wall time of the run proper, from the wave's
  ``wave_started`` event (members resolved; reading their states is included) to the end of
  ``runner.run()``; the time to open the session and recover is reported beside it;
* **peak RSS**: the high-water mark of the resident set of the process that runs the wave.
  The wave runs in a child process of its own (``python -m benchmarks.b4_wave --child``),
  which reports ``VmHWM`` from ``/proc/self/status`` at the end, so neither the benchmark
  runner nor the simulator is counted. (Not ``ru_maxrss``: Linux carries the parent's
  high-water mark across fork and exec into the child's ``ru_maxrss``, so a child of a big
  benchmark runner would report the runner's size; it is recorded beside, for reference.)
  The child's RSS after its imports, before the wave, is reported too.

The wave runs as ``sms-flow run`` does: its run claims the 2,000 sources in the journal, every
intent is fenced by its claim, and the engine looks before each push (it reads a source
first when its last read is older than ``max_age`` and is not the previous step's read-back).
The same wave with looking off (``WaveSession(look=False)``) is measured in the same run,
interleaved, as the figure's baseline: the ratio is the cost of looking.

No baseline: the figures are absolute. The simulator runs in its own process and shares the
machine's cores with the wave.

Target: at least 1,500 transitions/s and under 250 MB peak RSS on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import (
    SHARED_CORES_NOTE,
    Baseline,
    Figure,
    child_env,
    ratio,
    simulator,
)

TARGET_RATE = 1_500.0
TARGET_RSS_MB = 250.0


def _status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _wave(
    url: str, ids: list[str], journal: Path, concurrency: int, look: bool = True
) -> dict[str, Any]:
    from sms_flow.wave import Event, EventKind, SourceOutcome, WaveSession, WaveSpec

    spec = WaveSpec.model_validate(
        {
            "name": "bench-b4",
            "endpoint": url,
            "sources": {"ids": ids},
            "target": "FINISHED/cutovered",
            "concurrency": concurrency,
            "verify": True,
        }
    )
    rss_before = _status_mb("VmRSS")
    marks: dict[str, float] = {}

    def on_event(event: Event) -> None:
        if event.kind is EventKind.WAVE_STARTED:
            marks["started"] = time.perf_counter()

    opened = time.perf_counter()
    cpu0 = time.process_time()
    async with WaveSession(spec, journal_path=journal, on_event=on_event, look=look) as session:
        began = time.perf_counter()
        report = await session.runner.run()
        ended = time.perf_counter()
    cpu = time.process_time() - cpu0
    finished = report.count(SourceOutcome.FINISHED)
    if not report.ok or finished != len(ids):
        failures = [(r.source_id, r.error) for r in report.failed[:5]]
        raise AssertionError(f"B4: {finished} of {len(ids)} finished; failures: {failures}")
    run_proper = ended - marks["started"]
    return {
        "look": look,
        "sources": len(ids),
        "transitions": report.applied + report.observed,
        "run_seconds": run_proper,
        "transitions_per_second": (report.applied + report.observed) / run_proper,
        "setup_seconds": began - opened,
        "recover_and_members_seconds": marks["started"] - began,
        "total_seconds": ended - opened,
        "wave_cpu_seconds": cpu,
        "wave_cpu_us_per_transition": cpu / max(1, report.applied + report.observed) * 1e6,
        "rss_before_wave_mb": rss_before,
        "peak_rss_mb": _status_mb("VmHWM"),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.b4_wave``: one run (for profiling), or the child's side.

    ``python -m benchmarks.b4_wave --sources 2000 --wrap "py-spy record -o b4.svg --"``
    starts a simulator and runs the wave process under the given command, so that a
    profiler sees the wave's process alone.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b4_wave")
    parser.add_argument("--child", action="store_true", help="run the wave (internal)")
    parser.add_argument("--url")
    parser.add_argument("--ids-file", type=Path)
    parser.add_argument("--journal", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sources", type=int, default=2_000)
    parser.add_argument("--wrap", default="", help="a command to run the wave process under")
    parser.add_argument("--no-look", action="store_true", help="do not look before pushing")
    args = parser.parse_args(argv)
    if not args.child:
        result = run_once(
            args.sources, args.concurrency, wrap=shlex.split(args.wrap), look=not args.no_look
        )
        print(json.dumps(result, indent=2))
        return 0
    if args.url is None or args.ids_file is None or args.journal is None:
        parser.error("--child needs --url, --ids-file and --journal")
    ids = args.ids_file.read_text().split()
    result = asyncio.run(
        _wave(args.url, ids, args.journal, args.concurrency, look=not args.no_look)
    )
    print(json.dumps(result), flush=True)
    return 0


def run_once(
    sources: int, concurrency: int, *, wrap: Sequence[str] = (), look: bool = True
) -> dict[str, Any]:
    """Start a simulator, run the wave in a child process, return the child's figures."""
    env = child_env()
    with (
        simulator(sources) as sim,
        tempfile.TemporaryDirectory(prefix="sms-flow-bench-b4-") as tmp,
    ):
        ids_file = Path(tmp) / "ids.txt"
        ids_file.write_text("\n".join(sim.ids) + "\n")
        cmd = [
            *wrap,
            sys.executable,
            "-m",
            "benchmarks.b4_wave",
            "--child",
            "--url",
            sim.url,
            "--ids-file",
            str(ids_file),
            "--journal",
            str(Path(tmp) / "journal.sqlite"),
            "--concurrency",
            str(concurrency),
            *(() if look else ("--no-look",)),
        ]
        sim_cpu0 = sim.cpu_seconds()
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - started
        sim_cpu1 = sim.cpu_seconds()
    if done.returncode != 0:
        raise RuntimeError(f"B4: the wave process failed:\n{done.stderr[-3000:]}")
    # The last JSON line: a profiler wrapped around the child may print its own lines.
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    result["child_wall_seconds"] = wall
    if sim_cpu0 is not None and sim_cpu1 is not None:
        result["simulator_cpu_per_child_wall"] = round((sim_cpu1 - sim_cpu0) / wall, 3)
    result["concurrency"] = concurrency
    return result


def run(
    *, sources: int = 2_000, concurrency: int = 64, repeat: int = 3, **_unused: Any
) -> list[Figure]:
    runs: list[dict[str, Any]] = []
    blind: list[dict[str, Any]] = []
    for _ in range(repeat):  # interleaved: looking on, then off, in the same conditions
        runs.append(run_once(sources, concurrency))
        blind.append(run_once(sources, concurrency, look=False))
    best = max(runs, key=lambda r: r["transitions_per_second"])
    best_blind = max(blind, key=lambda r: r["transitions_per_second"])
    peak = max(r["peak_rss_mb"] for r in runs)
    rate = best["transitions_per_second"]
    rate_blind = best_blind["transitions_per_second"]
    scaled = "" if sources == 2_000 else f" (scaled-down run: {sources:,} sources)"
    return [
        Figure(
            id="B4",
            what=f"wave of {sources:,} sources to FINISHED/cutovered, verify on, looking "
            "before pushing",
            value=rate,
            unit="transitions/s",
            better="higher",
            target=f">= {TARGET_RATE:,.0f} transitions/s",
            met=rate >= TARGET_RATE,
            baselines=[
                Baseline(
                    "the same wave, not looking before pushing",
                    rate_blind,
                    ratio(rate, rate_blind),
                )
            ],
            note=f"best of {repeat} each, interleaved, concurrency {concurrency}; "
            f"{SHARED_CORES_NOTE}{scaled}",
            details={"runs": runs, "runs_not_looking": blind},
        ),
        Figure(
            id="B4",
            what=f"peak RSS of the wave process ({sources:,} sources)",
            value=peak,
            unit="MB",
            better="lower",
            target=f"< {TARGET_RSS_MB:g} MB",
            met=peak < TARGET_RSS_MB,
            note=f"VmHWM of the wave's own process; {best['rss_before_wave_mb']:.0f} MB after "
            f"imports, before the wave{scaled}",
            details={"peak_rss_mb_per_run": [r["peak_rss_mb"] for r in runs]},
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
