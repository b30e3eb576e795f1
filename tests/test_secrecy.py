"""No credential leaves through an answer: end to end, through the ``sms-flow`` command.

A proxy in front of the simulator (an aiohttp app in this module) echoes each request's
headers into its answers, as a misconfigured gateway or a debugging server would: into a
source's JSON, into ``X-Request-Id``, as a 200 body that is no source, as a 4xx, as plain text.
``sms-flow get``, ``sms-flow set`` and a small wave (``sms-flow run --endpoint``) run against
it in child processes, with an IAM token and with AK/SK, logging at debug level; stdout,
stderr (where the log lines go), the journal file's bytes and the report must hold no token,
no SK and no signature (nor the start of one).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from sms_flow.simulator import Simulator
from sms_flow.states import CopyState, MigrationCycle
from tests.conftest import Child, Spawner

TOKEN = "tok-secrecy-" + "T" * 52
AK = "AKSECRECYTEST"
SK = "SKsecrecy-never-shown-0123456789"
PROJECT = "proj-secrecy"

pytestmark = [
    pytest.mark.simulator(token=TOKEN, ak=AK, sk=SK, project_id=PROJECT, service_delay=0.02),
    pytest.mark.slow,
]

CREDENTIALS = {
    "token": {"SMS_FLOW_TOKEN": TOKEN},
    "aksk": {"CLOUD_SDK_AK": AK, "CLOUD_SDK_SK": SK, "CLOUD_SDK_PROJECT_ID": PROJECT},
}
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})

Mode = Callable[[web.Request, dict[str, str]], web.Response | None]
"""How the proxy answers one request: a response of its own, or None to forward it."""


def echo_200(request: web.Request, headers: dict[str, str]) -> web.Response:
    """A 200 whose body is the request's headers: no source server."""
    return web.json_response(headers, headers={"X-Request-Id": "req-echo-200"})


def echo_409(request: web.Request, headers: dict[str, str]) -> web.Response:
    """A 4xx whose body is the request's headers (JSON, but no error body)."""
    return web.json_response(headers, status=409, headers={"X-Request-Id": "req-echo-409"})


def echo_text(request: web.Request, headers: dict[str, str]) -> web.Response:
    """A 200 in plain text, the headers one a line."""
    lines = "".join(f"{name}: {value}\n" for name, value in headers.items())
    return web.Response(text=lines, content_type="text/plain")


def forward(request: web.Request, headers: dict[str, str]) -> None:
    """Forwarded to the simulator; its answer then echoes the headers (see Proxy)."""
    return None


class Proxy:
    """Forwards ``/v3`` requests to the simulator, echoing each request's headers back.

    ``modes`` maps a method (``GET``, ``PUT``) to how it is answered (default: forwarded). A
    forwarded answer that is a JSON object gets the request's headers as ``"echo"`` and the
    request's credential header as its ``X-Request-Id``. ``credentials`` collects every
    ``X-Auth-Token`` and ``Authorization`` value seen, signatures included.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.modes: dict[str, Mode] = {}
        self.credentials: set[str] = set()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        headers = dict(request.headers)
        credential = headers.get("X-Auth-Token") or headers.get("Authorization") or ""
        if credential:
            self.credentials.add(credential)
        own = self.modes.get(request.method, forward)(request, headers)
        if own is not None:
            return own
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            data=await request.read(),
            # Host included: an AK/SK signature covers the Host the client sent.
            headers={k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP},
        ) as answer:
            body = await answer.read()
            status, content_type = answer.status, answer.content_type
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            data["echo"] = headers
            body = json.dumps(data).encode()
        return web.Response(
            status=status,
            body=body,
            content_type=content_type,
            headers={"X-Request-Id": credential or "req-forwarded"},
        )


@pytest.fixture
async def proxy(sim: Simulator) -> AsyncIterator[Proxy]:
    front = Proxy(sim.url)
    await front.start()
    try:
        yield front
    finally:
        await front.stop()


class Outputs:
    """Everything the commands of one test wrote, for the secrets check."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add_child(self, child: Child) -> None:
        self.texts.append((f"stdout of {child.argv[3:]}", child.stdout))
        self.texts.append((f"stderr of {child.argv[3:]}", child.stderr))

    def add_files(self, *paths: Path) -> None:
        for path in paths:
            for suffix in ("", "-wal"):
                file = Path(f"{path}{suffix}")
                if file.exists():
                    self.texts.append((str(file), file.read_bytes().decode("latin-1")))

    def assert_no_secret(self, credentials: set[str]) -> None:
        secrets = {TOKEN, SK, *credentials}
        secrets |= {c.rpartition("Signature=")[2] for c in credentials if "Signature=" in c}
        assert credentials, "the proxy saw the commands' credentials"
        for where, text in self.texts:
            for secret in secrets:
                assert secret not in text, f"{where} holds a credential"
                assert secret[:16] not in text, f"{where} holds the start of a credential"


def sms_flow(spawn: Spawner, env: dict[str, str], *args: str, cwd: Path) -> Child:
    return spawn.sms_flow(*args, cwd=cwd, env={**env, "SMS_FLOW_LOG_LEVEL": "debug"})


@pytest.mark.parametrize("mode", ["token", "aksk"])
async def test_get_and_set_show_no_credential_whatever_the_answer_echoes(
    sim: Simulator, proxy: Proxy, spawn: Spawner, tmp_path: Path, mode: str
) -> None:
    env = CREDENTIALS[mode]
    sid = await sim.register("web-01")
    journal = tmp_path / "journal.sqlite"
    outputs = Outputs()

    async def run(*args: str) -> Child:
        where = ("--endpoint", proxy.url) if args[0] in ("get", "set") else ()
        child = sms_flow(spawn, env, *args, *where, cwd=tmp_path)
        await child.await_exit()
        outputs.add_child(child)
        return child

    # A source with the headers echoed into it, and the credential as its X-Request-Id.
    got = await run("get", sid, "--json")
    assert got.returncode == 0, got.stderr
    echoed = json.loads(got.stdout)["echo"]
    assert "<redacted>" in (echoed.get("X-Auth-Token"), echoed.get("Authorization"))
    # A 200 that is no source, a 4xx and plain text: each an error that quotes the answer.
    for answer in (echo_200, echo_409, echo_text):
        proxy.modes = {"GET": answer}
        failed = await run("get", sid)
        assert failed.returncode == 3, failed.stdout + failed.stderr
        assert "<redacted>" in failed.stderr
    # A change pushed and read back through the echoing proxy, journalled.
    proxy.modes = {}
    done = await run(
        "set",
        sid,
        "--copystate",
        "WAITING",
        "--migrationcycle",
        "setting",
        "--journal",
        str(journal),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "request_id <redacted>" in done.stdout
    assert sim.source(sid).pair == (CopyState.WAITING, MigrationCycle.SETTING)
    # A push refused with the headers echoed: journalled as failed, with the answer quoted.
    proxy.modes = {"PUT": echo_409}
    refused = await run(
        "set", sid, "--copystate", "INIT", "--migrationcycle", "replicating",
        "--journal", str(journal),
    )  # fmt: skip
    assert refused.returncode == 3, refused.stdout + refused.stderr
    history = await run("history", sid, "--journal", str(journal), "--json")
    entries = json.loads(history.stdout)
    assert [e["outcome"] for e in entries] == ["applied", "failed"]
    assert "<redacted>" in entries[1]["error"]
    outputs.add_files(journal)
    outputs.assert_no_secret(proxy.credentials)


@pytest.mark.parametrize("mode", ["token", "aksk"])
async def test_a_wave_shows_no_credential_in_its_output_journal_or_report(
    sim: Simulator, proxy: Proxy, spawn: Spawner, tmp_path: Path, mode: str
) -> None:
    env = CREDENTIALS[mode]
    ids = await sim.register_many(6, prefix="echo")
    journal, report = tmp_path / "journal.sqlite", tmp_path / "report.json"
    wave = tmp_path / "wave.yaml"
    wave.write_text(
        yaml.safe_dump({"name": "echo", "sources": {"ids": ids}, "concurrency": 3}),
        encoding="utf-8",
    )
    outputs = Outputs()
    # Every answer echoes the headers; the PUTs of one source are refused with them.
    refused = ids[0]

    def refuse_one(request: web.Request, headers: dict[str, str]) -> web.Response | None:
        return echo_409(request, headers) if refused in request.path else None

    proxy.modes = {"PUT": refuse_one}
    run = sms_flow(
        spawn, env, "run", str(wave), "--endpoint", proxy.url, "--journal", str(journal),
        "--report", str(report), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    await run.await_exit()
    outputs.add_child(run)
    assert run.returncode == 1, run.stdout + run.stderr  # one source failed
    data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    assert data["totals"]["sources"] == 6 and data["totals"]["failed"] == 1
    [failure] = data["failures"]
    assert failure["source_id"] == refused and "<redacted>" in failure["error"]
    for sid in ids[1:]:
        assert sim.source(sid).pair == (CopyState.FINISHED, MigrationCycle.CUTOVERED)
    outputs.add_files(journal, report)
    outputs.assert_no_secret(proxy.credentials)
