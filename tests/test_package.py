"""The package: its public surface, its types marker, and a wheel that carries the chart."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sms_flow
from tests.conftest import REPO

EXPECTED_ALL = {
    "ActionNeededError", "AkSkAuth", "ApiError", "AuthError", "Basis", "By", "Chart", "ChartError", "ClaimLostError",
    "ConfigError", "ConflictError", "ConnectError", "CopyState", "DrillSession", "DrillSpec", "Edge",
    "Engine", "Entry", "Event", "EventKind", "IgnoredByServiceError", "InputError", "Intent",
    "InvalidRequestError", "Journal", "JournalError", "Lease", "LeaseLostError",
    "LifecycleMachine", "MigrationCycle", "NotAppliedError", "NotFoundError", "Outcome",
    "OwnedError", "Plan", "Planner", "PushResult", "ReadBackMismatchError", "Reason", "ReasonCode",
    "RequestTimeoutError", "RetryPolicy", "Run", "SdkCycle", "ServerError", "SignatureError",
    "SmsClient", "SmsFlowError", "SourceOutcome", "Spelling", "SqliteJournal", "StateInfo",
    "StatePair", "StateRequest", "StepResult", "SupersededError", "ThrottledError", "TokenAuth",
    "TransitionRejected", "TransportError", "UnknownValueError", "UnverifiedError", "UsageError",
    "Verdict", "WaitPolicy", "WaitTimeoutError", "WaveReport", "WaveRunner", "WaveSession",
    "WaveSpec", "__version__", "auth_from_env", "check", "default_chart", "load_chart",
    "load_drill", "load_wave", "parse_copystate", "parse_cycle", "parse_pair", "parse_request",
    "plan", "recover", "run_drill", "run_wave",
}  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert set(sms_flow.__all__) == EXPECTED_ALL
    for name in sms_flow.__all__:
        assert hasattr(sms_flow, name), name


def test_import_stays_light() -> None:
    """`import sms_flow` and the planner do not load the HTTP, SQLite and simulator layers."""
    code = (
        "import sys, sms_flow; sms_flow.check('SYNCING/syncing', 'CUTOVERING'); "
        "print(sorted(m for m in ('aiohttp', 'sqlite3', 'sms_flow.client', 'sms_flow.simulator') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_wave_package_starts_no_simulator_on_import() -> None:
    """The simulator's server is imported only when a session starts an embedded one; the wave
    file's options import the simulator's fault definitions alone."""
    code = (
        "import sys, sms_flow.wave; "
        "print(sorted(m for m in sys.modules if m.startswith(('sms_flow.simulator', 'aiohttp'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['sms_flow.simulator', 'sms_flow.simulator.faults']"


def test_the_old_wave_modules_are_gone() -> None:
    """Waves and drills live in sms_flow.wave; there is no shim under the old names."""
    for old in ("sms_flow.orchestrator", "sms_flow.drill"):
        assert importlib.util.find_spec(old) is None, old


def test_py_typed_ships() -> None:
    assert (Path(sms_flow.__file__).parent / "py.typed").is_file()


@pytest.mark.slow
def test_wheel_carries_the_default_chart_and_loads_it(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("sms_flow-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "sms_flow/_statecharts/sms-source.yaml" in names
        assert "sms_flow/py.typed" in names
        packaged = zf.read("sms_flow/_statecharts/sms-source.yaml")
        zf.extractall(tmp_path / "site")
    assert packaged == (REPO / "statecharts" / "sms-source.yaml").read_bytes()
    # Imported from the unpacked wheel, the package finds its own copy of the chart.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sms_flow.chart import default_chart_path, default_chart; "
            "print(default_chart_path()); print(len(default_chart().pairs))",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    path_line, pairs_line = probe.stdout.splitlines()
    assert path_line.startswith(str(tmp_path / "site"))
    assert int(pairs_line) > 20
