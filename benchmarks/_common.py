"""What every benchmark shares: the figures they report, the simulator process, timing helpers.

A benchmark returns :class:`Figure` rows. A figure carries its baselines, each with the ratio
``figure / baseline``, and the target it is held to. Figures measured on a scaled-down run
are extrapolated to the scale of the target where that is linear (per-source costs), and
say so in ``note``.

:class:`SimulatorProcess` runs ``python -m sms_flow.simulator`` in its own process, as the
issue asks, and reads its CPU time from ``/proc`` so that a benchmark can show who was busy.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "AK",
    "PROJECT_ID",
    "SHARED_CORES_NOTE",
    "SK",
    "Baseline",
    "CpuClock",
    "Figure",
    "SimulatorProcess",
    "cpu_seconds_of",
    "load_average",
    "machine_info",
    "ratio",
    "simulator",
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
