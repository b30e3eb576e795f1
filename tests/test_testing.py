"""The pytest plugin (``sms_flow/testing.py``): its fixtures, as a user's tests use them, in
pytest-asyncio's strict and auto modes."""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

import aiohttp
import pytest

from sms_flow.simulator import Simulator, SimulatorConfig
from tests.conftest import REPO, Child, Spawner

pytest_plugins = ["pytester"]


async def test_the_fixture_gives_a_running_default_simulator(sms_simulator: Simulator) -> None:
    assert sms_simulator.running
    assert sms_simulator.config == SimulatorConfig()
    sid = await sms_simulator.register("web-01")
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{sms_simulator.url}/v3/sources/{sid}/changestate", json={"migrationcycle": "setting"}
        ) as answer,
    ):
        assert answer.status == 200
    assert sms_simulator.source(sid).migrationcycle.value == "setting"


PLUGIN_USER_TESTS = """
import aiohttp
import pytest

from sms_flow.simulator import SimulatorConfig

STARTED = []


@pytest.mark.asyncio
async def test_default(sms_simulator):
    sid = await sms_simulator.register("web-01")
    async with aiohttp.ClientSession() as http:
        url = f"{sms_simulator.url}/v3/sources/{sid}/changestate"
        async with http.put(url, json={"migrationcycle": "setting"}) as resp:
            assert resp.status == 200
    assert sms_simulator.source(sid).migrationcycle.value == "setting"


@pytest.mark.asyncio
async def test_factory(sms_simulator_factory):
    a = await sms_simulator_factory(token="t0ken")
    b = await sms_simulator_factory(SimulatorConfig(strict=True))
    STARTED.extend([a, b])
    assert a.url != b.url and a.running and b.config.strict


def test_factory_stopped_them():
    assert len(STARTED) == 2 and not any(s.running for s in STARTED)
"""


def _plugin_autoloaded() -> bool:
    return any(ep.value == "sms_flow.testing" for ep in metadata.entry_points(group="pytest11"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_pytest_plugin_works_in_strict_and_auto_mode(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(test_user=PLUGIN_USER_TESTS)
    args = [] if _plugin_autoloaded() else ["-p", "sms_flow.testing"]
    result = pytester.runpytest_subprocess(*args, "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


UNRELATED_TEST = """
def test_arithmetic():
    assert 1 + 1 == 2
"""


@pytest.mark.slow
def test_installing_sms_flow_leaves_other_test_runs_alone_and_the_documented_setup_works(
    spawn: Spawner, tmp_path: Path
) -> None:
    """A fresh venv with the wheel and pytest but no pytest-asyncio: an unrelated project's
    tests pass (the entry point loads, and breaks nothing). Then with the ``pytest`` extra, the
    example project (examples/pytest_project, the README's setup) passes without a warning."""
    no_checkout = {"PYTHONPATH": ""}  # the installed wheel, not the checkout
    built = spawn.run(
        sys.executable,
        *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
        *("-w", str(tmp_path / "dist"), str(REPO)),
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("sms_flow-*.whl"))
    venv = tmp_path / "venv"
    made = spawn.run(sys.executable, "-m", "venv", str(venv), timeout=300)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")

    def pip_install(*requirements: str) -> None:
        constraints = str(REPO / "constraints.txt")
        done = spawn.run(
            python, "-m", "pip", "install", "-q", "-c", constraints, *requirements, timeout=600
        )
        assert done.returncode == 0, done.stderr

    def pytest_in(project: Path) -> Child:
        return spawn.run(
            python, "-m", "pytest", "-p", "no:cacheprovider", cwd=project, env=no_checkout
        )

    pip_install(str(wheel), "pytest")
    shown = spawn.run(python, "-m", "pip", "list", env=no_checkout)
    assert "pytest-asyncio" not in shown.stdout.lower()  # the setup of defect 3
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "test_unrelated.py").write_text(UNRELATED_TEST, encoding="utf-8")
    plain = pytest_in(unrelated)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "1 passed" in plain.stdout
    assert "plugins: sms-flow" in plain.stdout  # the entry point was loaded

    pip_install(f"{wheel}[pytest]")
    project = tmp_path / "project"
    shutil.copytree(REPO / "examples" / "pytest_project", project)
    documented = pytest_in(project)
    assert documented.returncode == 0, documented.stdout + documented.stderr
    assert "1 passed" in documented.stdout
    assert "warning" not in (documented.stdout + documented.stderr).lower(), documented.stdout
