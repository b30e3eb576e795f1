"""``sms-flow serve`` as a command: it prints its URL, serves the SDK, and refuses unsafe options."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdksms.v3 import PutCopyStateReq, UpdateCopyStateRequest

from sms_flow.journal import Outcome
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.simulator import Simulator
from sms_flow.states import CopyState, MigrationCycle, StatePair
from tests.conftest import Spawner
from tests.serve.conftest import (
    CALLER_AK,
    CALLER_PROJECT,
    CALLER_SK,
    GW_AK,
    GW_PROJECT,
    GW_SK,
    SERVE_SIMULATOR,
    in_thread,
    sdk_client,
)

pytestmark = SERVE_SIMULATOR

ENV = {
    "CLOUD_SDK_AK": GW_AK,
    "CLOUD_SDK_SK": GW_SK,
    "CLOUD_SDK_PROJECT_ID": GW_PROJECT,
    "SMS_FLOW_SERVE_KEYS": f"{CALLER_AK}:{CALLER_SK}:{CALLER_PROJECT}",
}


@pytest.mark.slow
async def test_serve_runs_the_gateway_until_sigterm(
    sim: Simulator, spawn: Spawner, tmp_path: Path
) -> None:
    sid = await sim.register("web-01")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    journal = tmp_path / "journal.sqlite"
    child = spawn.sms_flow(
        "serve", "--endpoint", sim.url, "--port", "0", "--journal", str(journal), env=ENV
    )
    url = (await child.areadline()).strip()
    assert url.startswith("http://127.0.0.1:")
    with sdk_client(url) as client:
        legal = UpdateCopyStateRequest(
            source_id=sid, body=PutCopyStateReq(copystate="SYNCING", migrationcycle="syncing")
        )
        await in_thread(client.update_copy_state, legal)
        illegal = UpdateCopyStateRequest(
            source_id=sid, body=PutCopyStateReq(copystate="WAITING", migrationcycle="checking")
        )
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(client.update_copy_state, illegal)
    assert caught.value.error_code == "SMSFLOW.0001"
    assert sim.source(sid).pair == StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
    child.popen.send_signal(signal.SIGTERM)
    assert await child.await_exit() == 0, child.stderr
    assert "listening on" in child.stderr
    async with SqliteJournal(journal) as read:
        entries = await read.history(source_id=sid)
    assert [(e.outcome, e.actor) for e in entries] == [
        (Outcome.APPLIED, f"ak:{CALLER_AK}"),
        (Outcome.REJECTED, f"ak:{CALLER_AK}"),
    ]


async def test_serve_refuses_another_host_without_api_tokens(
    spawn: Spawner, tmp_path: Path
) -> None:
    done = spawn.sms_flow(
        "serve",
        "--endpoint",
        "http://127.0.0.1:9",
        "--host",
        "0.0.0.0",
        "--journal",
        str(tmp_path / "j.sqlite"),
        env={"SMS_FLOW_SERVE_TOKENS": ""},
    )
    assert await done.await_exit() == 2
    assert "--host 0.0.0.0 would serve other machines" in done.stderr
    assert "SMS_FLOW_SERVE_TOKENS" in done.stderr


@pytest.mark.slow
async def test_serve_on_a_postgresql_journal_never_prints_its_password(
    sim: Simulator, spawn: Spawner, pg_dsn: str
) -> None:
    """The banner names the journal without the DSN's password (it printed the DSN whole)."""
    from urllib.parse import urlsplit

    password = urlsplit(pg_dsn).password
    assert password
    child = spawn.sms_flow(
        "serve", "--endpoint", sim.url, "--port", "0", "--journal", pg_dsn, env=ENV
    )
    url = (await child.areadline()).strip()
    assert url.startswith("http://127.0.0.1:")
    child.popen.send_signal(signal.SIGTERM)
    assert await child.await_exit() == 0, child.stderr
    assert "listening on" in child.stderr and "journal postgresql://" in child.stderr
    assert password not in child.stderr + child.stdout


@pytest.mark.slow
async def test_watch_only_serves_a_journal_without_an_endpoint(
    sim: Simulator, spawn: Spawner, tmp_path: Path
) -> None:
    """``serve --watch-only`` next to a wave that pushes elsewhere (``make demo``'s embedded
    simulator): the page, the metrics and the API's reads of the journal; the gateway and the
    API's changes are refused (502 SMSFLOW.0010, nothing sent anywhere)."""
    import json
    import urllib.error
    import urllib.request

    journal = tmp_path / "journal.sqlite"
    async with SqliteJournal(journal) as j:
        await j.add_members("elsewhere", ["s1", "s2"], endpoint="simulator:/x")
    refused = spawn.sms_flow("serve", "--watch-only", "--endpoint", sim.url, env=ENV)
    assert await refused.await_exit() == 2 and "--watch-only" in refused.stderr
    child = spawn.sms_flow(
        "serve", "--watch-only", "--port", "0", "--journal", str(journal), env={}
    )
    url = (await child.areadline()).strip()

    def get(path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
        request = urllib.request.Request(url + path, data=body, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    page = await in_thread(get, "/")
    assert page[0] == 200 and "sms-flow" in page[1]
    status, text = await in_thread(get, "/api/v1/waves")
    assert status == 200 and json.loads(text)["waves"][0]["name"] == "elsewhere"
    assert (await in_thread(get, "/metrics"))[0] == 200
    body = b'{"copystate": "SYNCING", "migrationcycle": "syncing"}'
    status, text = await in_thread(get, "/v3/sources/s1/changestate", "PUT", body)
    assert (status, json.loads(text)["error_code"]) == (502, "SMSFLOW.0010")
    status, text = await in_thread(
        get, "/api/v1/sources/s1/changes", "POST", b'{"to": "SYNCING/syncing"}'
    )
    assert (status, json.loads(text)["error_code"]) == (502, "SMSFLOW.0010"), text
    child.send_signal(signal.SIGTERM)
    assert await child.await_exit() == 0
    assert "watch only" in child.stderr
