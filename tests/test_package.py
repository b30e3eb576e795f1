"""The package: its public surface, its types marker, and a wheel that carries the chart."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import sms_flow
from tests.conftest import REPO

EXPECTED_ALL = {
    "ApiError", "AuthError", "Basis", "By", "Chart", "ChartError", "ConfigError", "ConnectError",
    "CopyState", "Edge", "IgnoredByServiceError", "InputError", "InvalidRequestError",
    "LifecycleMachine", "MigrationCycle", "NotAppliedError", "NotFoundError", "Plan", "Planner",
    "ReadBackMismatchError", "Reason", "ReasonCode", "RequestTimeoutError", "SdkCycle",
    "ServerError", "SmsFlowError", "Spelling", "StateInfo", "StatePair", "StateRequest",
    "SupersededError", "ThrottledError", "TransitionRejected", "TransportError",
    "UnknownValueError", "Verdict", "__version__", "check", "default_chart", "load_chart",
    "parse_copystate", "parse_cycle", "parse_pair", "parse_request", "plan",
}  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert set(sms_flow.__all__) == EXPECTED_ALL
    for name in sms_flow.__all__:
        assert hasattr(sms_flow, name), name


def test_py_typed_ships() -> None:
    assert (Path(sms_flow.__file__).parent / "py.typed").is_file()


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
