"""Every Python snippet of the README runs as written, against a simulator.

Each ```python block is a complete program (or a pytest file), run in a child process in a
folder of its own (with a copy of ``examples/``), with ``SMS_FLOW_ENDPOINT`` and
``SMS_FLOW_TOKEN`` naming a simulator (and ``SMS_FLOW_GATEWAY``, ``sms-flow serve`` in front
of it, for a program that names that variable). A program that reads ``sys.argv`` gets the ids of
sources registered for it; one that cuts over gets them in ``SYNCING/syncing``, as a cutover
needs. A block that is a pytest file (it defines ``test_`` functions) is run by pytest, with
the README's ``pyproject.toml`` setup for the plugin beside it, and must pass with no warning.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, SimulatorChild, Spawner

TOKEN = "readme-snippets-token"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
_TOML = re.compile(r"^```toml\n(.*?)^```$", re.S | re.M)


def _blocks() -> list[tuple[int, str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


BLOCKS = _blocks()


def _pytest_setup() -> str:
    """The README's pyproject.toml for testing with the plugin (asyncio_mode and loop scope)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    [setup] = [m.group(1) for m in _TOML.finditer(text) if "asyncio_mode" in m.group(1)]
    return setup


def _move(sim: SimulatorChild, source_id: str, pair: str) -> None:
    copystate, cycle = pair.split("/")
    body = json.dumps({"copystate": copystate, "migrationcycle": cycle}).encode()
    request = urllib.request.Request(
        f"{sim.url}/_simulator/sources/{source_id}/move",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Auth-Token": TOKEN},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_the_readme_has_snippets() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.slow
@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_a_readme_snippet_runs_as_written(
    spawn: Spawner, tmp_path: Path, line: int, code: str
) -> None:
    assert not re.search(r"^(await|async with|async for) ", code, re.M), (
        f"README.md:{line}: top-level await does not run in a script; wrap it in asyncio.run"
    )
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    sim = spawn.simulator("--token", TOKEN, "--service-delay", "0.05", sources=3)
    env = {"SMS_FLOW_ENDPOINT": sim.url, "SMS_FLOW_TOKEN": TOKEN}
    if "SMS_FLOW_GATEWAY" in code:  # a program for `sms-flow serve` in front of the simulator
        keys = "READMECALLER1:readme-caller-secret-0001:readmeproject1"
        gateway = spawn.sms_flow(
            *("serve", "--endpoint", sim.url, "--port", "0"),
            *("--journal", str(tmp_path / "gateway.sqlite")),
            env={**env, "SMS_FLOW_SERVE_KEYS": keys},
        )
        env.update(SMS_FLOW_GATEWAY=gateway.readline().strip(), SMS_FLOW_SERVE_KEYS=keys)
    if re.search(r"^(async )?def test_", code, re.M):
        (tmp_path / "test_snippet.py").write_text(code, encoding="utf-8")
        (tmp_path / "pyproject.toml").write_text(_pytest_setup(), encoding="utf-8")
        argv: tuple[str, ...] = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
        done = spawn.run(*argv, "test_snippet.py", cwd=tmp_path, env=env, timeout=180)
    else:
        args: list[str] = []
        if "sys.argv" in code:
            args = sim.ids if "sys.argv[1:]" in code else sim.ids[:1]
            if '"cutover"' in code:
                for source_id in args:
                    _move(sim, source_id, "SYNCING/syncing")
        (tmp_path / "snippet.py").write_text(code, encoding="utf-8")
        done = spawn.run(sys.executable, "snippet.py", *args, cwd=tmp_path, env=env, timeout=180)
    assert done.returncode == 0, f"README.md:{line}\n{done.stdout}\n{done.stderr}"
    if "SMS_FLOW_GATEWAY" in code:  # refused by the chart, as the README says, not otherwise
        assert done.stdout.startswith("400 SMSFLOW.0001"), done.stdout
    if "def test_" in code:
        assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout
    assert "Traceback" not in done.stderr, f"README.md:{line}\n{done.stderr}"
