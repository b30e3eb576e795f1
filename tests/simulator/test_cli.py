"""``python -m sms_flow.simulator`` (``sms_flow/simulator/cli.py``) in a child process: the URL
first, serving, a clean exit on SIGTERM, state that survives SIGKILL, bad options refused."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import aiohttp

from sms_flow.simulator import Simulator
from tests.conftest import SIMULATOR_COMMAND, Spawner
from tests.simulator.conftest import TOKEN, call, pair, put_url


async def test_cli_prints_the_url_first_serves_and_exits_0_on_sigterm(
    spawn: Spawner, http: aiohttp.ClientSession
) -> None:
    cli = spawn.simulator(sources=2, env={"SMS_FLOW_SIM_TOKEN": TOKEN})
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", cli.url), cli.url
    sid = cli.ids[0]
    refused = await call(http, "GET", f"{cli.url}/v3/sources/{sid}")
    assert refused.status == 403
    shown = await call(http, "GET", f"{cli.url}/v3/sources/{sid}", headers={"X-Auth-Token": TOKEN})
    assert (shown.status, shown.json["name"]) == (200, "src-0001")
    cli.send_signal(signal.SIGTERM)
    assert await cli.await_exit(10) == 0, cli.stderr
    assert TOKEN not in cli.stderr


async def test_cli_state_survives_sigkill(
    spawn: Spawner, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state = tmp_path / "state.db"
    cli = spawn.simulator("--state-file", str(state), sources=1)
    sid = cli.ids[0]
    answer = await call(http, "PUT", put_url(cli.url, sid), body={"copystate": "ERROR"})
    assert answer.status == 200
    assert cli.kill() == -signal.SIGKILL  # no chance to flush anything after the 200
    async with Simulator(state_file=state) as again:
        assert again.source(sid).pair == pair("ERROR", "checking")
        assert again.history(sid)[0].request_id == answer.request_id


def test_cli_refuses_bad_options_with_exit_2(spawn: Spawner) -> None:
    done = spawn.run(*SIMULATOR_COMMAND, "--error-rate", "2", timeout=30)
    assert done.returncode == 2
    assert "error_rate" in done.stderr
    assert done.stdout == ""


def test_a_host_beyond_loopback_without_credentials_exits_2_with_the_reason(
    spawn: Spawner,
) -> None:
    done = spawn.run(*SIMULATOR_COMMAND, "--host", "0.0.0.0", timeout=30)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "host '0.0.0.0' is not a loopback address" in line and "give a token" in line
    assert done.stdout == ""


async def test_a_host_beyond_loopback_with_a_token_and_a_control_token_from_the_environment(
    spawn: Spawner, http: aiohttp.ClientSession
) -> None:
    cli = spawn.simulator(
        "--host",
        "0.0.0.0",
        "--max-connections",
        "64",
        "--header-timeout",
        "5",
        env={"SMS_FLOW_SIM_TOKEN": TOKEN, "SMS_FLOW_SIM_CONTROL_TOKEN": "ctl-from-env"},
    )
    assert re.fullmatch(r"http://0\.0\.0\.0:\d+", cli.url), cli.url
    url = cli.url.replace("0.0.0.0", "127.0.0.1")
    stats = f"{url}/_simulator/stats"
    assert (await call(http, "GET", stats)).status == 403
    assert (await call(http, "GET", stats, headers={"X-Auth-Token": "ctl-from-env"})).status == 200
    cli.send_signal(signal.SIGTERM)
    assert await cli.await_exit(10) == 0, cli.stderr
    assert "ctl-from-env" not in cli.stderr and TOKEN not in cli.stderr
