"""Access to ``sms-flow serve``: the caller keys and API tokens as configured, the binding rule,
and ``/metrics`` with no token, a wrong one, a viewer's and an operator's."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from sms_flow.errors import ConfigError
from sms_flow.serve import ApiTokens, CallerKeys, Role, Service
from sms_flow.serve.access import Caller, check_binding, is_loopback, token_actor
from tests.serve.conftest import SERVE_SIMULATOR, ServeFactory

pytestmark = SERVE_SIMULATOR

VIEWER = "viewer-token-" + "v" * 24
OPERATOR = "operator-token-" + "o" * 24
TOKENS = f"viewer:{VIEWER}, operator:{OPERATOR}"


def test_caller_keys_name_a_malformed_entry_by_its_ak_never_its_sk() -> None:
    with pytest.raises(ConfigError) as caught:
        CallerKeys.parse("AK1:SK-one:proj1,AK2:SK-two-secret")
    message = str(caught.value)
    assert "entry 2 (AK 'AK2') is not AK:SK:PROJECT" in message
    assert "SK-two-secret" not in message
    with pytest.raises(ConfigError, match="AK 'AK1' is given twice"):
        CallerKeys.parse("AK1:SK-one:proj1\nAK1:SK-other:proj2")


def test_caller_keys_come_from_a_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# callers\nAK1:SK-one:proj1\n\nAK2:SK-two:proj2\n", encoding="utf-8")
    keys = CallerKeys.from_file(path)
    assert len(keys) == 2
    assert "SK-one" not in repr(keys)
    with pytest.raises(ConfigError, match="cannot read the keys file"):
        CallerKeys.from_file(tmp_path / "missing")


def test_api_tokens_need_a_role_and_a_long_token() -> None:
    with pytest.raises(ConfigError, match="entry 1 does not start with a role"):
        ApiTokens.parse("admin:" + "x" * 30)
    with pytest.raises(ConfigError) as short:
        ApiTokens.parse("viewer:short")
    assert "5 characters; give at least 16" in str(short.value)
    tokens = ApiTokens.parse(TOKENS)
    assert len(tokens) == 2
    assert VIEWER not in repr(tokens)


def test_a_viewer_token_may_read_but_not_operate() -> None:
    tokens = ApiTokens.parse(TOKENS)
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    assert tokens.check(viewer, Role.VIEWER) is None
    refused = tokens.check(viewer, Role.OPERATOR)
    assert refused is not None
    assert (refused.status, refused.reason) == (
        403,
        "a viewer token may not do this; it needs an operator token",
    )
    assert tokens.check(operator, Role.OPERATOR) is None
    assert tokens.check(operator, Role.VIEWER) is None


def test_only_loopback_may_go_without_api_tokens() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "sms.example.com"))
    check_binding("127.0.0.1", ApiTokens())
    check_binding("0.0.0.0", ApiTokens.parse(TOKENS))
    with pytest.raises(ConfigError) as caught:
        check_binding("0.0.0.0", ApiTokens())
    assert "set SMS_FLOW_SERVE_TOKENS" in str(caught.value)
    assert "--tokens-file" in str(caught.value)


def test_a_token_caller_is_named_by_a_hash_and_its_token_is_not_shown() -> None:
    token = "a-caller-iam-token-" + "z" * 30
    caller = Caller(token_actor(token), token=token)
    assert caller.actor.startswith("token:") and len(caller.actor) == len("token:") + 8
    assert token not in repr(caller)


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "SMSFLOW.0007"),
        ({"Authorization": "Bearer not-a-token-we-know-at-all"}, 401, "SMSFLOW.0007"),
        ({"Authorization": f"Basic {VIEWER}"}, 401, "SMSFLOW.0007"),
        ({"Authorization": f"Bearer {VIEWER}"}, 200, None),
        ({"Authorization": f"Bearer {OPERATOR}"}, 200, None),
    ],
    ids=["no-token", "wrong-token", "not-bearer", "viewer", "operator"],
)
async def test_metrics_need_a_token_once_tokens_are_configured(
    serve_factory: ServeFactory, headers: dict[str, str], status: int, code: str | None
) -> None:
    service = await serve_factory(tokens=ApiTokens.parse(TOKENS))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.url}/metrics", headers=headers) as resp:
            text = await resp.text()
            answer = (resp.status, resp.headers.get("WWW-Authenticate"))
    assert answer[0] == status
    if code is None:
        assert "smsflow_build_info" in text
    else:
        assert code in text
        assert "Bearer" in text
        assert answer[1] == 'Bearer realm="sms-flow"'
        for token in (VIEWER, OPERATOR):
            assert token not in text


async def test_metrics_are_open_on_loopback_without_tokens(gateway: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/metrics") as resp:
            assert resp.status == 200
            assert "smsflow_build_info" in await resp.text()
