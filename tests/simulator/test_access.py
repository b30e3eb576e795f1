"""Who may call the simulator (``sms_flow/simulator/access.py``): a token, an AK/SK signature
(made by sms-flow's own signer), either, or a refusal in the documented 403 shape with nothing
secret in it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from sms_flow.auth import AkSkAuth
from sms_flow.simulator import Simulator
from tests.simulator.conftest import (
    AK,
    PROJECT,
    SK,
    TOKEN,
    assert_auth_refused,
    call,
    pair,
    put_url,
    signed,
)


@pytest.mark.simulator(token=TOKEN)
async def test_token_auth(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sid = await sim.register("web-01")
    body = {"migrationcycle": "setting"}
    wrong = await call(http, "PUT", put_url(sim, sid), body=body, headers={"X-Auth-Token": "nope"})
    assert "X-Auth-Token" in assert_auth_refused(wrong, TOKEN)
    missing = await call(http, "PUT", put_url(sim, sid), body=body)
    assert_auth_refused(missing, TOKEN)
    listing = await call(http, "GET", f"{sim.url}/v3/sources")
    assert_auth_refused(listing, TOKEN)
    assert sim.history(sid) == []
    ok = await call(http, "PUT", put_url(sim, sid), body=body, headers={"X-Auth-Token": TOKEN})
    assert ok.status == 200
    shown = await call(http, "GET", f"{sim.url}/v3/sources/{sid}", headers={"X-Auth-Token": TOKEN})
    assert shown.status == 200
    # The test controls need the token too.
    history = f"{sim.url}/_simulator/sources/{sid}/history"
    assert "X-Auth-Token" in assert_auth_refused(await call(http, "GET", history), TOKEN)
    assert (await call(http, "GET", history, headers={"X-Auth-Token": TOKEN})).status == 200
    assert wrong.request_id != missing.request_id


@pytest.mark.simulator(ak=AK, sk=SK, project_id=PROJECT)
async def test_aksk_auth(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sid = await sim.register("web-01")
    body = {"migrationcycle": "setting"}
    good = AkSkAuth(AK, SK, PROJECT)
    assert (await signed(http, good, "PUT", put_url(sim, sid), body)).status == 200
    assert (await signed(http, good, "GET", f"{sim.url}/v3/sources?limit=5&name=web")).status == 200

    wrong_sk = await signed(
        http, AkSkAuth(AK, "not-the-sk", PROJECT), "PUT", put_url(sim, sid), body
    )
    assert "signature mismatch" in assert_auth_refused(wrong_sk, SK, "not-the-sk")
    signature = wrong_sk.raw.decode()
    assert not re.search(r"[0-9a-f]{64}", signature)  # no signature, received or expected

    def skewed(minutes: float) -> AkSkAuth:
        return AkSkAuth(
            AK, SK, PROJECT, clock=lambda: datetime.now(UTC) - timedelta(minutes=minutes)
        )

    late = await signed(http, skewed(20), "PUT", put_url(sim, sid), {"copystate": "ERROR"})
    assert "X-Sdk-Date" in assert_auth_refused(late, SK)
    early = await signed(http, skewed(-20), "PUT", put_url(sim, sid), {"copystate": "ERROR"})
    assert_auth_refused(early, SK)
    within = await signed(http, skewed(14), "GET", f"{sim.url}/v3/sources/{sid}")
    assert within.status == 200

    other_project = await signed(
        http, AkSkAuth(AK, SK, "proj-other"), "PUT", put_url(sim, sid), {"copystate": "ERROR"}
    )
    assert "X-Project-Id" in assert_auth_refused(other_project, SK)
    unsigned = await call(http, "PUT", put_url(sim, sid), body={"copystate": "ERROR"})
    assert_auth_refused(unsigned, SK)
    assert sim.source(sid).pair == pair("WAITING", "setting")


@pytest.mark.simulator(token=TOKEN, ak=AK, sk=SK, project_id=PROJECT)
async def test_token_and_aksk_together_accept_either(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    by_token = await call(
        http, "GET", f"{sim.url}/v3/sources/{sid}", headers={"X-Auth-Token": TOKEN}
    )
    assert by_token.status == 200
    by_signature = await signed(
        http, AkSkAuth(AK, SK, PROJECT), "GET", f"{sim.url}/v3/sources/{sid}"
    )
    assert by_signature.status == 200
    assert_auth_refused(await call(http, "GET", f"{sim.url}/v3/sources/{sid}"), TOKEN, SK)


# -- the test controls ---------------------------------------------------------------------------

REGISTER = {"count": 100_000, "prefix": "flood"}


@pytest.mark.simulator(token=TOKEN)
async def test_with_a_token_no_control_route_is_open(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Three unauthenticated calls registered 300,000 sources; now every control needs the token."""
    sid = await sim.register("web-01")  # the Python API needs nothing
    controls = [
        ("GET", f"/_simulator/sources/{sid}", None),
        ("GET", f"/_simulator/sources/{sid}/history", None),
        ("POST", f"/_simulator/sources/{sid}/move", {"trigger": "configure"}),
        ("POST", "/_simulator/sources", REGISTER),
        ("GET", "/_simulator/stats", None),
        ("GET", "/_simulator/faults", None),
        ("PUT", "/_simulator/faults", {"error_rate": 1.0}),
    ]
    for method, path, body in controls:
        answer = await call(http, method, f"{sim.url}{path}", body=body)
        assert_auth_refused(answer, TOKEN)
        wrong = await call(
            http, method, f"{sim.url}{path}", body=body, headers={"X-Auth-Token": "nope"}
        )
        assert_auth_refused(wrong, TOKEN)
    assert len(sim.sources()) == 1
    assert sim.source(sid).pair == pair("WAITING", "checking")
    assert sim.faults.error_rate == 0
    with_token = await call(
        http,
        "POST",
        f"{sim.url}/_simulator/sources/{sid}/move",
        body={"trigger": "configure"},
        headers={"X-Auth-Token": TOKEN},
    )
    assert with_token.status == 200
    assert sim.source(sid).pair == pair("WAITING", "setting")


@pytest.mark.simulator(ak=AK, sk=SK, project_id=PROJECT)
async def test_with_aksk_a_control_takes_a_signature(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    url = f"{sim.url}/_simulator/sources/{sid}/move"
    assert_auth_refused(await call(http, "POST", url, body={"trigger": "configure"}), SK)
    wrong = await signed(
        http, AkSkAuth(AK, "not-the-sk", PROJECT), "POST", url, {"trigger": "configure"}
    )
    assert "signature mismatch" in assert_auth_refused(wrong, SK, "not-the-sk")
    good = await signed(http, AkSkAuth(AK, SK, PROJECT), "POST", url, {"trigger": "configure"})
    assert good.status == 200
    assert sim.source(sid).pair == pair("WAITING", "setting")


@pytest.mark.simulator(token=TOKEN, control_token="ctl-" + "c" * 20)
async def test_a_control_token_opens_the_controls_and_nothing_else(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    control = {"X-Auth-Token": "ctl-" + "c" * 20}
    sid = await sim.register("web-01")
    assert (await call(http, "GET", f"{sim.url}/_simulator/stats", headers=control)).status == 200
    by_token = await call(
        http, "GET", f"{sim.url}/_simulator/stats", headers={"X-Auth-Token": TOKEN}
    )
    assert by_token.status == 200
    refused = await call(http, "GET", f"{sim.url}/v3/sources/{sid}", headers=control)
    assert_auth_refused(refused, TOKEN, "ctl-" + "c" * 20)


@pytest.mark.simulator(control_token="ctl-" + "c" * 20)
async def test_a_control_token_alone_guards_only_the_controls(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    assert (await call(http, "GET", f"{sim.url}/v3/sources/{sid}")).status == 200
    refused = await call(http, "POST", f"{sim.url}/_simulator/sources", body=REGISTER)
    assert "control token" in assert_auth_refused(refused, "ctl-" + "c" * 20)
    assert len(sim.sources()) == 1


async def test_without_credentials_the_controls_stay_open(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sid = await sim.register("web-01")
    answer = await call(http, "GET", f"{sim.url}/_simulator/sources/{sid}/history")
    assert answer.status == 200
