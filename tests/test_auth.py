"""Tests for sms_flow.auth: the signer against the vector and the official SDK, token auth,
credentials from the environment, secrecy.

The signing rules, the vector (and where it comes from) and the verifier are tested in
``test__signing.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from sms_flow import auth
from sms_flow._signing import (
    canonical_request,
    format_sdk_date,
    parse_authorization,
    parse_sdk_date,
    signature,
    string_to_sign,
    verify_request,
)
from sms_flow.auth import AkSkAuth, TokenAuth, auth_from_env
from sms_flow.errors import ConfigError, InvalidRequestError, SignatureError
from tests.test__signing import (
    _BODIES,
    _EXTRA_HEADERS,
    _METHODS,
    _MOMENTS,
    _PATHS,
    _QUERIES,
    AK,
    AUTHORIZATION,
    BODY,
    DATE,
    HOST,
    JSON,
    MOMENT,
    PATH,
    PROJECT,
    SK,
    URL_,
    VECTOR_HEADERS,
    build_url,
    fixed_clock,
    vector_auth,
    verify,
)
from tests.test__signing import secrets_in as signing_secrets_in

TOKEN = "MIIT0k3n-" + "A" * 300 + "+/=="


def secrets_in(text: str, *extra: str) -> list[str]:
    """The secrets (SK, token, signatures, any ``extra``) that ``text`` contains."""
    return signing_secrets_in(text, TOKEN, *extra)


def test_sign_reproduces_the_vector_byte_for_byte() -> None:
    headers = vector_auth().sign("PUT", URL_, JSON, BODY)
    assert headers == {**VECTOR_HEADERS, "Authorization": AUTHORIZATION}


# --- AkSkAuth.sign ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://example.com/x", "example.com"),
        ("http://example.com:80/x", "example.com"),
        ("https://example.com:443/x", "example.com"),
        ("https://example.com:80/x", "example.com:80"),
        ("http://Example.COM:8080/x", "example.com:8080"),
        ("http://[::1]:18080/x", "[::1]:18080"),
        ("https://[::1]/x", "[::1]"),
    ],
)
def test_sign_computes_host_as_aiohttp_sends_it(url: str, host: str) -> None:
    headers = vector_auth().sign("PUT", URL(url), JSON, BODY)
    assert headers["Host"] == host


def test_sign_keeps_a_host_the_caller_gives() -> None:
    headers = vector_auth().sign("PUT", URL("http://10.0.0.1/x"), {"host": "sms.example"}, b"")
    assert headers["host"] == "sms.example"
    assert "Host" not in headers


def test_sign_uses_a_fresh_date_on_every_call() -> None:
    offsets = [0, 0.999, 1, 1200, -3600, 0.5]
    moments = iter([MOMENT + timedelta(seconds=offset) for offset in offsets])
    signer = AkSkAuth(AK, SK, PROJECT, clock=lambda: next(moments))
    sent = [signer.sign("PUT", URL_, JSON, BODY) for _ in offsets]
    assert [h["X-Sdk-Date"] for h in sent] == [
        DATE,
        DATE,
        "20261128T064445Z",
        "20261128T070444Z",
        "20261128T054444Z",
        DATE,
    ]
    assert len({h["Authorization"] for h in sent}) == 4
    assert sent[0] == sent[1] == sent[5]


def test_sign_converts_an_aware_clock_to_utc_and_refuses_a_naive_one() -> None:
    local = MOMENT.astimezone(timezone(timedelta(hours=-5)))
    assert AkSkAuth(AK, SK, PROJECT, clock=lambda: local).sign("PUT", URL_, JSON, BODY) == (
        vector_auth().sign("PUT", URL_, JSON, BODY)
    )
    naive = AkSkAuth(AK, SK, PROJECT, clock=lambda: datetime(2026, 11, 28))
    with pytest.raises(ConfigError, match="naive"):
        naive.sign("PUT", URL_, JSON, BODY)


def test_sign_default_clock_is_now() -> None:
    headers = AkSkAuth(AK, SK, PROJECT).sign("PUT", URL_, JSON, BODY)
    sent = parse_sdk_date(headers["X-Sdk-Date"])
    assert abs(datetime.now(UTC) - sent) < timedelta(seconds=5)


def test_sign_replaces_its_own_headers_and_signs_the_rest_trimmed() -> None:
    given_headers = {
        "Content-Type": " application/json ",
        "x-sdk-date": "19700101T000000Z",
        "AUTHORIZATION": "stale",
        "X-PROJECT-ID": "other",
        "X-Request-Tag": "\t wave-7 ",
    }
    snapshot = dict(given_headers)
    headers = vector_auth().sign("put", URL_, given_headers, BODY)
    assert given_headers == snapshot
    assert headers == {
        "Content-Type": "application/json",
        "X-Request-Tag": "wave-7",
        "Host": HOST,
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": DATE,
        "Authorization": headers["Authorization"],
    }
    parsed = parse_authorization(headers["Authorization"])
    assert parsed.signed_headers == (
        "content-type",
        "host",
        "x-project-id",
        "x-request-tag",
        "x-sdk-date",
    )
    assert verify(headers).access_key == AK


def test_sign_honours_x_sdk_content_sha256() -> None:
    headers = vector_auth().sign(
        "PUT", URL_, {**JSON, "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}, BODY
    )
    lowered = {k.lower(): v for k, v in headers.items()}
    expected = canonical_request("PUT", PATH, [], lowered, list(lowered)[:-1], "UNSIGNED-PAYLOAD")
    assert parse_authorization(headers["Authorization"]).signature == signature(
        SK, string_to_sign(DATE, expected)
    )


@pytest.mark.parametrize(
    ("url", "headers", "match"),
    [
        (URL_, {"Content-Type": "a", "content-type": "b"}, "given twice"),
        (URL_, {"X_Tag": "a"}, "'_'"),
        (URL("/v3/sources/abc/changestate"), JSON, "relative URL"),
    ],
)
def test_sign_refuses_requests_it_cannot_sign_as_sent(
    url: URL, headers: dict[str, str], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        vector_auth().sign("PUT", url, headers, BODY)


def test_sign_for_one_path_does_not_verify_for_another() -> None:
    signer = vector_auth()
    for path in ("/v3/sources/a/changestate", "/v3/sources/b/changestate") * 2:
        headers = signer.sign("PUT", URL(f"http://{HOST}{path}"), JSON, BODY)
        verify_request(
            method="PUT",
            path=path,
            query_pairs=[],
            headers=headers,
            body=BODY,
            secret_for={AK: SK}.get,
            now=MOMENT,
        )
        other = path.replace("/a/", "/c/").replace("/b/", "/c/")
        with pytest.raises(SignatureError, match="signature mismatch"):
            verify_request(
                method="PUT",
                path=other,
                query_pairs=[],
                headers=headers,
                body=BODY,
                secret_for={AK: SK}.get,
                now=MOMENT,
            )


# --- TokenAuth -------------------------------------------------------------------------------


def test_token_auth_adds_x_auth_token_and_keeps_headers() -> None:
    headers = TokenAuth(TOKEN).sign("PUT", URL_, JSON, BODY)
    assert headers == {**JSON, "X-Auth-Token": TOKEN}
    replaced = TokenAuth(TOKEN).sign("PUT", URL_, {**JSON, "x-auth-token": "stale"}, BODY)
    assert replaced == {**JSON, "X-Auth-Token": TOKEN}


@pytest.mark.parametrize("length", [1, 16_384])
def test_token_auth_accepts_lengths_at_the_limits(length: int) -> None:
    token = "t" * length
    assert TokenAuth(token).sign("GET", URL_, {}, b"") == {"X-Auth-Token": token}


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("", "is 0 characters long"),
        ("s" * 16_385, "is 16385 characters long"),
        (TOKEN + "\n", "white space"),
        (TOKEN[:10] + "\r\n" + TOKEN[10:], "cannot go in an HTTP header"),
        (TOKEN[:10] + "é" + TOKEN[10:], "cannot go in an HTTP header"),
    ],
)
def test_token_auth_refuses_unusable_tokens_without_showing_them(token: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        TokenAuth(token)
    assert TOKEN[:20] not in str(info.value)
    assert "sssss" not in str(info.value)


def test_token_auth_is_immutable_and_hides_the_token() -> None:
    token_auth = TokenAuth(TOKEN)
    assert repr(token_auth) == f"TokenAuth(token=<hidden, {len(TOKEN)} chars>)"
    assert str(token_auth) == repr(token_auth)
    with pytest.raises(AttributeError):
        token_auth._token = "other"
    with pytest.raises(AttributeError):
        token_auth.token = "other"  # type: ignore[attr-defined]
    assert token_auth.sign("GET", URL_, {}, b"")["X-Auth-Token"] == TOKEN


# --- AkSkAuth construction and secrecy -------------------------------------------------------


def test_ak_sk_auth_repr_hides_the_secret() -> None:
    signer = vector_auth()
    assert repr(signer) == "AkSkAuth(ak='AKEX…', project_id='proj123', sk=<hidden>)"
    assert str(signer) == repr(signer)
    assert (signer.ak, signer.project_id) == (AK, PROJECT)
    with pytest.raises(AttributeError):
        signer._ak = "other"


@pytest.mark.parametrize(
    ("ak", "sk", "project_id", "match"),
    [
        ("", SK, PROJECT, "access key"),
        (AK, "", PROJECT, "secret key"),
        (AK, "", "", "secret key"),
        (AK, SK, "", "project id"),
        (AK, SK + "\n", PROJECT, "secret key.*white space"),
        (" AK", SK, PROJECT, "access key.*white space"),
        ("AK,x", SK, PROJECT, "access key"),
        (AK, SK, "proj\n", "project id"),
    ],
)
def test_ak_sk_auth_names_the_missing_or_bad_part(
    ak: str, sk: str, project_id: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        AkSkAuth(ak, sk, project_id)
    assert secrets_in(str(info.value)) == []


# --- interop with the official SDK signer ----------------------------------------------------


def sdk_authorization(
    method: str, url: URL, headers: dict[str, str], body: bytes, sdk_date: str
) -> str:
    """The Authorization value huaweicloudsdkcore's signer computes for the same request."""
    request = SdkRequest(
        method=method,
        schema=url.scheme,
        host=url.host_port_subcomponent,
        resource_path=url.raw_path,
        query_params=list(url.query.items()),
        header_params={**headers, "X-Sdk-Date": sdk_date},  # pins the SDK's date
        body=body,
    )
    signed = BasicCredentials(AK, SK, PROJECT).sign_request(request)
    value: str = signed.header_params["Authorization"]
    return value


@pytest.mark.parametrize(
    ("url", "headers", "body"),
    [
        (URL_, JSON, BODY),
        (URL(f"http://{HOST}/v3/sources/abc/changestate?limit=10&offset=0&state=a b"), JSON, BODY),
        (URL(f"http://{HOST}/v3/sources/a%20b%2B%C3%A9/changestate"), JSON, BODY),
        (URL(f"http://{HOST}/v3/sources?b=2&a=z&a=&a=y"), JSON, b""),
        (URL("https://sms.cn-north-4.myhuaweicloud.com/v3/sources/abc/changestate"), JSON, BODY),
        (URL_, {**JSON, "X-Request-Tag": "  wave 7 "}, BODY),
        (URL_, {"Content-Type": "text/plain"}, BODY),  # the SDK adds UNSIGNED-PAYLOAD itself
    ],
)
def test_authorization_equals_the_sdk_signers(
    url: URL, headers: dict[str, str], body: bytes
) -> None:
    ours = vector_auth()
    if headers.get("Content-Type") == "text/plain":
        headers = {**headers, "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}
    sent = ours.sign("PUT", url, headers, body)
    assert sent["Authorization"] == sdk_authorization("PUT", url, headers, body, DATE)


def test_the_sdk_signer_reproduces_the_vector() -> None:
    assert sdk_authorization("PUT", URL_, JSON, BODY, DATE) == AUTHORIZATION


@given(
    st.sampled_from(_METHODS),
    _PATHS,
    _QUERIES,
    _EXTRA_HEADERS,
    _BODIES,
    _MOMENTS,
)
def test_property_authorization_equals_the_sdk_signers(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    extra: dict[str, str],
    body: bytes,
    moment: datetime,
) -> None:
    url = build_url(path, query)
    headers = {**JSON, **extra}
    sent = AkSkAuth(AK, SK, PROJECT, clock=fixed_clock(moment)).sign(method, url, headers, body)
    sdk = sdk_authorization(method, url, headers, body, format_sdk_date(moment))
    assert sent["Authorization"] == sdk


# --- auth_from_env ---------------------------------------------------------------------------

ENV_AKSK = {"CLOUD_SDK_AK": AK, "CLOUD_SDK_SK": SK, "CLOUD_SDK_PROJECT_ID": PROJECT}


def test_auth_from_env_nothing_set() -> None:
    assert auth_from_env({}) is None
    assert auth_from_env({"SMS_FLOW_TOKEN": "", "CLOUD_SDK_AK": "", "HOME": "/root"}) is None


def test_auth_from_env_token() -> None:
    found = auth_from_env({"SMS_FLOW_TOKEN": TOKEN, "CLOUD_SDK_PROJECT_ID": PROJECT})
    assert isinstance(found, TokenAuth)
    assert found.sign("GET", URL_, {}, b"") == {"X-Auth-Token": TOKEN}


def test_auth_from_env_ak_sk() -> None:
    found = auth_from_env(ENV_AKSK)
    assert isinstance(found, AkSkAuth)
    assert (found.ak, found.project_id) == (AK, PROJECT)
    sent = found.sign("PUT", URL_, JSON, BODY)
    assert verify(sent, now=parse_sdk_date(sent["X-Sdk-Date"])).access_key == AK


def test_auth_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMS_FLOW_TOKEN", *ENV_AKSK):
        monkeypatch.delenv(name, raising=False)
    assert auth_from_env() is None
    monkeypatch.setenv("SMS_FLOW_TOKEN", TOKEN)
    assert isinstance(auth_from_env(), TokenAuth)


@pytest.mark.parametrize(
    ("environ", "names", "absent"),
    [
        ({"CLOUD_SDK_AK": AK}, ["CLOUD_SDK_SK and CLOUD_SDK_PROJECT_ID are not"], []),
        ({"CLOUD_SDK_AK": AK, "CLOUD_SDK_SK": SK}, ["CLOUD_SDK_PROJECT_ID is not"], [AK]),
        ({"CLOUD_SDK_SK": SK, "CLOUD_SDK_PROJECT_ID": PROJECT}, ["CLOUD_SDK_AK is not"], [PROJECT]),
        ({"CLOUD_SDK_PROJECT_ID": PROJECT}, ["CLOUD_SDK_AK and CLOUD_SDK_SK are not"], []),
        (
            {"SMS_FLOW_TOKEN": TOKEN, **ENV_AKSK},
            ["set only one", "unset SMS_FLOW_TOKEN", "unset CLOUD_SDK_AK"],
            [AK],
        ),
        ({"SMS_FLOW_TOKEN": TOKEN, "CLOUD_SDK_SK": SK}, ["set only one"], []),
        ({"SMS_FLOW_TOKEN": TOKEN + " "}, ["SMS_FLOW_TOKEN: ", "white space"], []),
        ({**ENV_AKSK, "CLOUD_SDK_SK": SK + "\n"}, ["CLOUD_SDK_SK", "secret key"], []),
    ],
)
def test_auth_from_env_refuses_partial_or_conflicting_credentials(
    environ: dict[str, str], names: list[str], absent: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        auth_from_env(environ)
    message = str(info.value)
    for name in names:
        assert name in message
    assert secrets_in(message, *absent) == []


# --- secrecy, across every error this module raises -----------------------------------------


def every_error() -> Iterator[ConfigError]:
    """One instance of every ConfigError path, raised with the test secrets."""
    calls: list[Callable[[], object]] = [
        lambda: TokenAuth(""),
        lambda: TokenAuth(TOKEN + "\n"),
        lambda: TokenAuth(TOKEN + "\x00"),
        lambda: TokenAuth(TOKEN * 100),
        lambda: AkSkAuth(AK, "", PROJECT),
        lambda: AkSkAuth(AK, f" {SK}", PROJECT),
        lambda: AkSkAuth("", SK, PROJECT),
        lambda: AkSkAuth(AK, SK, ""),
        lambda: AkSkAuth(AK, SK, PROJECT, clock=lambda: datetime(2026, 1, 1)).sign(
            "PUT", URL_, JSON, BODY
        ),
        lambda: auth_from_env({"SMS_FLOW_TOKEN": TOKEN, **ENV_AKSK}),
        lambda: auth_from_env({"CLOUD_SDK_SK": SK}),
        lambda: auth_from_env({**ENV_AKSK, "CLOUD_SDK_SK": SK + " "}),
        lambda: auth_from_env({"SMS_FLOW_TOKEN": "\n" + TOKEN}),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        yield info.value


def test_no_error_message_repr_or_arg_holds_a_secret() -> None:
    errors = list(every_error())
    assert len(errors) == 13
    for error in errors:
        for text in (str(error), repr(error), *map(str, error.args)):
            assert secrets_in(text) == [], (type(error).__name__, text)
            assert TOKEN[:32] not in text


def test_all_is_pinned() -> None:
    assert sorted(auth.__all__) == ["AkSkAuth", "Auth", "TokenAuth", "auth_from_env"]
    assert all(hasattr(auth, name) for name in auth.__all__)


def test_both_auth_modes_satisfy_the_protocol() -> None:
    modes: list[auth.Auth] = [TokenAuth(TOKEN), vector_auth()]
    for mode in modes:
        sent = mode.sign("PUT", URL_, JSON, BODY)
        assert sent["Content-Type"] == "application/json"
        assert len(sent) > len(JSON)
