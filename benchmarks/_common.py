"""What every benchmark shares: the figures they report, the simulator process, timing helpers.

A benchmark returns :class:`Figure` rows. A figure carries its baselines, each with the ratio
``figure / baseline``, and the target it is held to. Figures measured on a scaled-down run
are extrapolated to the scale of the target where that is linear (per-source costs), and
say so in ``note``.

:class:`SimulatorProcess` runs ``python -m sms_flow.simulator`` in its own process, as the
issue asks, and reads its CPU time from ``/proc`` so that a benchmark can show who was busy.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from sms_flow.chart import Edge
    from sms_flow.journal import Journal

__all__ = [
    "AK",
    "PROJECT_ID",
    "PUSH_TARGET",
    "SHARED_CORES_NOTE",
    "SK",
    "Baseline",
    "CpuClock",
    "Figure",
    "Run",
    "SimulatorProcess",
    "cpu_seconds_of",
    "engine_pushes",
    "load_average",
    "machine_info",
    "push_path",
    "ratio",
    "simulator",
    "split",
    "workers",
]

AK = "AKBENCHMARK0000000001"
SK = "SK-benchmark-secret-not-for-production"
PROJECT_ID = "0b1e2c3d4e5f60718293a4b5c6d7e8f9"

SHARED_CORES_NOTE = (
    "the simulator runs in its own process on the same machine; it and the client share "
    "the machine's cores"
)


@dataclass(frozen=True, slots=True)
class Baseline:
    """A baseline measured in the same run; ``ratio`` is ``figure / value``."""

    name: str
    value: float
    ratio: float | None


@dataclass(slots=True)
class Figure:
    """One row of the results table."""

    id: str
    what: str
    value: float
    unit: str
    better: Literal["higher", "lower"]
    target: str
    met: bool | None
    baselines: list[Baseline] = field(default_factory=list)
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(value: float, baseline: float) -> float | None:
    return value / baseline if baseline else None


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (other work on the machine skews every figure)."""
    return os.getloadavg()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import aiohttp
    import transitions

    try:
        from importlib.metadata import version

        sdk = version("huaweicloudsdksms")
    except Exception:  # the SDK is optional for B1, B2
        sdk = None
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory": _memory_total(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
        "transitions": transitions.__version__,
        "huaweicloudsdksms": sdk,
        "load_average": load_average(),
    }


# -- CPU accounting -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuClock:
    """Wall time, this process's CPU time and the simulator's CPU time over one window."""

    def __init__(self, simulator_pid: int | None = None) -> None:
        self._pid = simulator_pid
        self.wall = self.cpu = 0.0
        self.simulator_cpu: float | None = None

    def __enter__(self) -> CpuClock:
        self._sim0 = cpu_seconds_of(self._pid) if self._pid else None
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0
        if self._pid and self._sim0 is not None:
            end = cpu_seconds_of(self._pid)
            self.simulator_cpu = None if end is None else end - self._sim0

    def shares(self) -> dict[str, float | None]:
        """CPU used per wall second: 1.0 is one core kept busy the whole time."""
        wall = self.wall or 1e-9
        return {
            "wall_seconds": round(self.wall, 4),
            "client_cpu_seconds": round(self.cpu, 4),
            "client_cpu_per_wall": round(self.cpu / wall, 3),
            "simulator_cpu_per_wall": (
                round(self.simulator_cpu / wall, 3) if self.simulator_cpu is not None else None
            ),
        }


# -- the simulator in its own process ------------------------------------------------------------


class SimulatorProcess:
    """``python -m sms_flow.simulator`` with AK/SK auth and ``sources`` registered."""

    def __init__(self, proc: subprocess.Popen[str], url: str, ids: list[str], log: Path) -> None:
        self.proc = proc
        self.url = url
        self.ids = ids
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        return cpu_seconds_of(self.proc.pid)


def child_env() -> dict[str, str]:
    """The environment of an ``sms-flow`` child: this one's without sms-flow's or the SDK's
    settings (but the log level), and the benchmark simulator's AK/SK."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMS_FLOW_", "CLOUD_SDK_")) or k == "SMS_FLOW_LOG_LEVEL"
    }
    env.update(CLOUD_SDK_AK=AK, CLOUD_SDK_SK=SK, CLOUD_SDK_PROJECT_ID=PROJECT_ID)
    return env


@contextmanager
def simulator(
    sources: int, *, auth: bool = True, extra: Sequence[str] = ()
) -> Iterator[SimulatorProcess]:
    """Start a simulator process with ``sources`` registered; stop it (SIGTERM) afterwards."""
    with tempfile.TemporaryDirectory(prefix="sms-flow-bench-sim-") as tmp:
        log = Path(tmp) / "simulator.log"
        cmd = [
            sys.executable,
            "-m",
            "sms_flow.simulator",
            "--port",
            "0",
            "--sources",
            str(sources),
            "--service-delay",
            "0.05",
        ]
        if auth:
            cmd += ["--ak", AK, "--sk", SK, "--project-id", PROJECT_ID]
        cmd += list(extra)
        with log.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            if not url.startswith("http"):
                proc.wait(timeout=10)
                raise RuntimeError(f"the simulator did not start: {log.read_text()[-2000:]}")
            ids = [proc.stdout.readline().strip() for _ in range(sources)]
            if len(ids) != sources or not all(ids):
                raise RuntimeError(f"the simulator printed too few ids: {log.read_text()[-2000:]}")
            yield SimulatorProcess(proc, url, ids, log)
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


# -- pushing through the engine (B3, B7) ----------------------------------------------------------

PUSH_TARGET = "FINISHED/cutovered"
"""Where B3's and B7's sources are pushed, from the chart's initial state."""


@dataclass(frozen=True, slots=True)
class Run:
    """One side's run: requests sent, and the clock over them."""

    side: str
    requests: int
    wall: float
    shares: dict[str, float | None]
    extra: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    def to_dict(self) -> dict[str, Any]:
        cpu = self.shares.get("client_cpu_seconds") or 0.0
        return {
            "side": self.side,
            "requests": self.requests,
            "rate": round(self.rate, 1),
            "client_cpu_us_per_request": round(cpu / self.requests * 1e6, 1),
            **self.shares,
            **self.extra,
        }


def push_path() -> tuple[Edge, ...]:
    """The pushes that take a new source to :data:`PUSH_TARGET`."""
    from sms_flow.chart import default_chart
    from sms_flow.planner import Planner

    chart = default_chart()
    plan = Planner(chart).plan(chart.initial, PUSH_TARGET)
    assert plan.found and all(e.pushable for e in plan.steps), plan.explain()
    return plan.steps


def split(ids: Sequence[str], warm: int) -> tuple[list[str], list[str]]:
    """The first ``warm`` ids (pushed before the clock starts), and the rest."""
    return list(ids[:warm]), list(ids[warm:])


T = TypeVar("T")


async def workers(ids: Sequence[T], concurrency: int, one: Callable[[T], Awaitable[None]]) -> None:
    """``one(id)`` for every id, ``concurrency`` at a time (one id's calls in order)."""
    pending: Iterator[T] = iter(ids)

    async def worker() -> None:
        for source_id in pending:
            await one(source_id)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(ids)))))


async def engine_pushes(
    sim: SimulatorProcess,
    warm: int,
    concurrency: int,
    journal: Journal,
    *,
    side: str = "sms-flow",
    clock: Callable[[], CpuClock] | None = None,
    before_window: Callable[[], Awaitable[None]] | None = None,
) -> Run:
    """Push every source of ``sim`` along :func:`push_path` with ``Engine.fire`` (no read
    before or after the push), journalled in the open ``journal``, AK/SK signed, ``concurrency``
    sources in flight; the first ``warm`` sources before the clock starts. The engine's own
    run claims each source on its first push. ``clock`` makes the window's clock (default:
    a :class:`CpuClock` over the simulator); ``before_window`` is awaited after the warm-up,
    before the clock starts. The run's ``extra`` has the journal's batching."""
    from sms_flow.auth import AkSkAuth
    from sms_flow.chart import default_chart
    from sms_flow.client import SmsClient
    from sms_flow.engine import Engine
    from sms_flow.journal import Outcome

    steps = push_path()
    chart = default_chart()
    warm_ids, ids = split(sim.ids, warm)
    auth = AkSkAuth(AK, SK, PROJECT_ID)
    async with SmsClient(sim.url, auth=auth) as client:
        engine = Engine(client, chart=chart, journal=journal, verify=False, look=False)
        engine.track_many((sid, chart.initial) for sid in sim.ids)
        applied = 0

        async def one(source_id: str) -> None:
            nonlocal applied
            for edge in steps:
                result = await engine.fire(source_id, edge.trigger)
                if result.outcome is Outcome.APPLIED:
                    applied += 1

        await workers(warm_ids, concurrency, one)
        if before_window is not None:
            await before_window()
        applied = 0
        stats0 = journal.stats()
        timer = clock() if clock is not None else CpuClock(sim.pid)
        with timer:
            await workers(ids, concurrency, one)
        stats1 = journal.stats()
        final = steps[-1].dest
        done = sum(1 for sid in ids if engine.states[sid] == final)
        await engine.aclose()
    expected = len(ids) * len(steps)
    if applied != expected or done != len(ids):
        raise AssertionError(f"{side}: {applied} applied of {expected}, {done} at the target")
    batches = stats1.batches - stats0.batches
    ops = stats1.operations - stats0.operations
    return Run(
        side,
        applied,
        timer.wall,
        timer.shares(),
        {
            "journal_ops": ops,
            "journal_batches": batches,
            "mean_batch": round(ops / max(batches, 1), 1),
        },
    )
