"""Tests for sms_flow.auth: the fixed vector, signer/verifier properties, SDK interop, secrecy."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from hypothesis import assume, given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sms_flow import auth
from sms_flow.auth import (
    AkSkAuth,
    ParsedAuthorization,
    SignatureError,
    TokenAuth,
    VerifiedIdentity,
    auth_from_env,
    authorization_header,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    format_sdk_date,
    parse_authorization,
    parse_sdk_date,
    payload_hash,
    signature,
    string_to_sign,
    verify_request,
)
from sms_flow.errors import ConfigError, InvalidRequestError

# --- the fixed vector (shared/reference/signing-test-vector.md) ----------------------------

AK = "AKEXAMPLE"
SK = "SKEXAMPLE"
PROJECT = "proj123"
HOST = "127.0.0.1:18080"
PATH = "/v3/sources/abc/changestate"
URL_ = URL(f"http://{HOST}{PATH}")
DATE = "20261128T064444Z"
MOMENT = datetime(2026, 11, 28, 6, 44, 44, tzinfo=UTC)
BODY = b'{"copystate": "WAITING", "migrationcycle": "cutovered"}'
BODY_SHA256 = "7bf6ce0b2c5ec64d510a5db47c1e7a2d80f34688d80e7d78ed5cbb31e66958a9"
CANONICAL = (
    "PUT\n"
    "/v3/sources/abc/changestate/\n"
    "\n"
    "content-type:application/json\n"
    "host:127.0.0.1:18080\n"
    "x-project-id:proj123\n"
    "x-sdk-date:20261128T064444Z\n"
    "\n"
    "content-type;host;x-project-id;x-sdk-date\n"
    "7bf6ce0b2c5ec64d510a5db47c1e7a2d80f34688d80e7d78ed5cbb31e66958a9"
)
STRING_TO_SIGN = (
    "SDK-HMAC-SHA256\n"
    "20261128T064444Z\n"
    "fd9d78ed38393000f8ca7de90ae3707970ad958667eeadc574b813f7411d0f9e"
)
SIGNATURE = "8f6ef519d6f2a0cad5b42ddc77b67ca8df94981eb6d697eb221ec0bd1e3e9bb9"
AUTHORIZATION = (
    "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
    f"Signature={SIGNATURE}"
)
JSON = {"Content-Type": "application/json"}
VECTOR_HEADERS = {
    "Content-Type": "application/json",
    "Host": HOST,
    "X-Project-Id": PROJECT,
    "X-Sdk-Date": DATE,
}
SIGNED = ("content-type", "host", "x-project-id", "x-sdk-date")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TOKEN = "MIIT0k3n-" + "A" * 300 + "+/=="


def fixed_clock(moment: datetime = MOMENT) -> Callable[[], datetime]:
    return lambda: moment


def vector_auth() -> AkSkAuth:
    return AkSkAuth(AK, SK, PROJECT, clock=fixed_clock())


def secrets_in(text: str, *extra: str) -> list[str]:
    """The secrets (SK, token, signatures) that ``text`` contains."""
    found = [s for s in (SK, TOKEN, SIGNATURE, *extra) if s and s in text]
    found += re.findall(r"[0-9a-f]{64}", text)
    return found


def test_body_hash_matches_the_vector() -> None:
    assert len(BODY) == 55
    assert payload_hash(BODY) == BODY_SHA256


def test_canonical_request_matches_the_vector() -> None:
    got = canonical_request("put", PATH, [], VECTOR_HEADERS, SIGNED[::-1], BODY)
    assert got == CANONICAL


def test_string_to_sign_signature_and_header_match_the_vector() -> None:
    assert string_to_sign(DATE, CANONICAL) == STRING_TO_SIGN
    assert signature(SK, STRING_TO_SIGN) == SIGNATURE
    assert signature(SK.encode(), STRING_TO_SIGN) == SIGNATURE
    assert authorization_header(
        AK, ["X-Sdk-Date", "Host", "x-project-id", "content-type"], SIGNATURE
    ) == (AUTHORIZATION)


def test_sign_reproduces_the_vector_byte_for_byte() -> None:
    headers = vector_auth().sign("PUT", URL_, JSON, BODY)
    assert headers == {**VECTOR_HEADERS, "Authorization": AUTHORIZATION}


def test_the_vector_verifies() -> None:
    identity = verify_request(
        method="PUT",
        path=PATH,
        query_pairs=[],
        headers={**VECTOR_HEADERS, "Authorization": AUTHORIZATION},
        body=BODY,
        secret_for={AK: SK}.get,
        now=MOMENT,
    )
    assert identity == VerifiedIdentity(AK, SIGNED, MOMENT)


# --- the pure pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v3/sources/abc/changestate", "/v3/sources/abc/changestate/"),
        ("/v3/sources/abc/", "/v3/sources/abc/"),
        ("", "/"),
        ("/", "/"),
        ("//a//", "//a//"),
        ("/v3/sources/0b0e7c9a-6a4e.4c5e_9a8b~1f2e", "/v3/sources/0b0e7c9a-6a4e.4c5e_9a8b~1f2e/"),
        ("/a b/é", "/a%20b/%C3%A9/"),
        ("/a%20b/%c3%a9", "/a%20b/%C3%A9/"),
        ("/%7E%41-_.~", "/~A-_.~/"),
        ("/a+b/c:d@e!$&'()*,;=", "/a%2Bb/c%3Ad%40e%21%24%26%27%28%29%2A%2C%3B%3D/"),
        # An encoded slash is decoded before splitting: it becomes a separator (as in the SDK).
        ("/a%2Fb", "/a/b/"),
        # Decoding is on bytes: a byte that is not UTF-8 keeps its value (the Python SDK
        # would turn it into U+FFFD, %EF%BF%BD; the Go SDK keeps %FF).
        ("/x%FF", "/x%FF/"),
        ("/100%", "/100%25/"),
    ],
)
def test_canonical_uri(path: str, expected: str) -> None:
    assert canonical_uri(path) == expected


def test_canonical_query_sorts_by_key_then_value_and_encodes() -> None:
    pairs = [("b", "2"), ("a", "z"), ("a", ""), ("a", "x y"), ("k~", "é/+")]
    assert canonical_query(pairs) == "a=&a=x%20y&a=z&b=2&k~=%C3%A9%2F%2B"
    assert canonical_query([]) == ""


def test_canonical_headers_ignore_case_and_trim() -> None:
    got = canonical_headers({"X-B": "  two ", "x-a": "\tone"}, ["x-b", "X-A"])
    assert got == "x-a:one\nx-b:two\n"


def test_canonical_headers_refuse_a_signed_header_that_is_absent() -> None:
    with pytest.raises(InvalidRequestError, match="'x-missing' has no value"):
        canonical_headers({"X-A": "1"}, ["x-a", "x-missing"])


def test_payload_hash_rules() -> None:
    assert payload_hash(b"") == EMPTY_SHA256
    assert payload_hash(b"", "UNSIGNED-PAYLOAD") == EMPTY_SHA256
    assert payload_hash(BODY, "UNSIGNED-PAYLOAD") == "UNSIGNED-PAYLOAD"
    assert payload_hash(BODY, None) == BODY_SHA256


def test_canonical_request_honours_x_sdk_content_sha256_or_a_given_hash() -> None:
    headers = {**VECTOR_HEADERS, "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}
    got = canonical_request("PUT", PATH, [], headers, SIGNED, BODY)
    assert got.endswith("\nUNSIGNED-PAYLOAD")
    assert canonical_request("PUT", PATH, [], VECTOR_HEADERS, SIGNED, "abc").endswith("\nabc")


def test_sdk_date_format_and_parse() -> None:
    assert format_sdk_date(MOMENT) == DATE
    assert format_sdk_date(MOMENT.astimezone(timezone(timedelta(hours=8)))) == DATE
    assert parse_sdk_date(DATE) == MOMENT
    with pytest.raises(ValueError, match="naive"):
        format_sdk_date(datetime(2026, 1, 1))
    for bad in ("2026-11-28T06:44:44Z", "20261128T064444", "20261328T064444Z", ""):
        with pytest.raises(ValueError, match="YYYYMMDDTHHMMSSZ"):
            parse_sdk_date(bad)


def test_parse_authorization() -> None:
    parsed = parse_authorization(AUTHORIZATION)
    assert parsed == ParsedAuthorization(AK, SIGNED, SIGNATURE)
    assert SIGNATURE not in repr(parsed)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("", "algorithm"),
        ("Bearer abc", "algorithm"),
        (AUTHORIZATION.replace("SDK-HMAC-SHA256", "SDK-HMAC-SM3"), "algorithm"),
        (AUTHORIZATION.replace(", Signature=", ", Sig="), "field"),
        (AUTHORIZATION.replace(f", Signature={SIGNATURE}", ""), "Signature is missing"),
        (AUTHORIZATION + f", Signature={SIGNATURE}", "twice"),
        (AUTHORIZATION.replace("Access=AKEXAMPLE", "Access="), "Access is empty"),
        (AUTHORIZATION.replace("content-type;", "Content-Type;"), "SignedHeaders"),
        (AUTHORIZATION.replace("content-type;", ";"), "SignedHeaders"),
        (AUTHORIZATION[:-1], "64 lower-case hex"),
        (
            AUTHORIZATION.upper().replace("SDK-HMAC-SHA256 ACCESS", "SDK-HMAC-SHA256 Access"),
            "field",
        ),
    ],
)
def test_parse_authorization_refuses_malformed_values(value: str, detail: str) -> None:
    with pytest.raises(SignatureError) as info:
        parse_authorization(value)
    assert info.value.reason == "malformed Authorization"
    assert detail in info.value.detail
    assert secrets_in(str(info.value)) == []


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


# --- verify_request reasons ------------------------------------------------------------------


def verify(
    headers: dict[str, str],
    *,
    now: datetime = MOMENT,
    body: bytes = BODY,
    secrets: dict[str, str] | None = None,
    max_skew: timedelta = timedelta(minutes=15),
) -> VerifiedIdentity:
    return verify_request(
        method="PUT",
        path=PATH,
        query_pairs=[],
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        body=body,
        secret_for=(secrets if secrets is not None else {AK: SK}).get,
        now=now,
        max_skew=max_skew,
    )


def signed_vector() -> dict[str, str]:
    return vector_auth().sign("PUT", URL_, JSON, BODY)


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name}


@pytest.mark.parametrize(
    ("headers", "secrets", "reason"),
    [
        (without(signed_vector(), "authorization"), None, "missing Authorization"),
        ({**signed_vector(), "Authorization": "Bearer x"}, None, "malformed Authorization"),
        (signed_vector(), {"OTHER": SK}, "unknown access key"),
        (without(signed_vector(), "x-project-id"), None, "signed header x-project-id missing"),
        (
            {
                **signed_vector(),
                "Authorization": AUTHORIZATION.replace(";x-sdk-date", ""),
            },
            None,
            "x-sdk-date not signed",
        ),
        ({**signed_vector(), "X-Sdk-Date": "2026-11-28T06:44:44Z"}, None, "X-Sdk-Date malformed"),
        ({**signed_vector(), "X-Sdk-Date": "20261128T070001Z"}, None, "X-Sdk-Date more than 15"),
        ({**signed_vector(), "X-Project-Id": "proj124"}, None, "signature mismatch"),
        (signed_vector(), {AK: "SKEXAMPLF"}, "signature mismatch"),
    ],
)
def test_verify_request_reasons(
    headers: dict[str, str], secrets: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(SignatureError) as info:
        verify(headers, secrets=secrets)
    assert info.value.reason.startswith(reason)
    assert secrets_in(str(info.value), "SKEXAMPLF") == []
    assert secrets_in(repr(info.value), "SKEXAMPLF") == []


def test_verify_request_skew_boundary_and_wording() -> None:
    headers = signed_vector()
    assert verify(headers, now=MOMENT + timedelta(minutes=15)).access_key == AK
    assert verify(headers, now=MOMENT - timedelta(minutes=15)).access_key == AK
    with pytest.raises(SignatureError) as info:
        verify(headers, now=MOMENT - timedelta(minutes=15, seconds=1))
    assert info.value.reason == "X-Sdk-Date more than 15 minutes from the server clock"
    with pytest.raises(SignatureError) as info:
        verify(headers, now=MOMENT + timedelta(seconds=31), max_skew=timedelta(seconds=30))
    assert info.value.reason == "X-Sdk-Date more than 30 seconds from the server clock"


def test_verify_request_accepts_any_header_case_and_surrounding_space() -> None:
    headers = {k.upper(): f"  {v} " for k, v in signed_vector().items()}
    assert verify(headers).signed_headers == SIGNED
    assert verify({k.lower(): v for k, v in headers.items()}).access_key == AK


def test_verify_request_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        verify(signed_vector(), now=datetime(2026, 11, 28, 6, 44, 44))


def test_unsigned_payload_leaves_the_body_unprotected_only_when_signed_so() -> None:
    signer = vector_auth()
    headers = signer.sign("PUT", URL_, {**JSON, "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}, BODY)
    assert verify(headers, body=b'{"copystate": "FINISHED"}').access_key == AK
    plain = signer.sign("PUT", URL_, JSON, BODY)
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify({**plain, "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}, body=b"{}")


# --- properties: sign() then verify_request() ------------------------------------------------

_SEGMENT_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
# A raw (as sent) segment: fully encoded, encoded with sub-delims left raw, or lower-case hex.
_RAW_SEGMENT = st.one_of(
    _SEGMENT_TEXT.map(lambda s: quote(s, safe="")),
    _SEGMENT_TEXT.map(lambda s: quote(s, safe="!$&'()*+,;=:@")),
    _SEGMENT_TEXT.map(lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(s, safe=""))),
)
_PATHS = st.lists(_RAW_SEGMENT, min_size=1, max_size=5).map(lambda segs: "/" + "/".join(segs))
_QUERY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)
_QUERIES = st.lists(st.tuples(_QUERY_TEXT.filter(bool), _QUERY_TEXT), max_size=5)
_HEADER_VALUE = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20
)
_HEADER_NAMES = st.from_regex(r"x-[a-z0-9][a-z0-9-]{0,14}", fullmatch=True).filter(
    lambda n: n not in ("x-sdk-date", "x-project-id", "x-sdk-content-sha256")
)
_EXTRA_HEADERS = st.dictionaries(
    _HEADER_NAMES,
    st.tuples(
        st.sampled_from(["", " ", "  ", "\t"]), _HEADER_VALUE, st.sampled_from(["", " "])
    ).map("".join),
    max_size=4,
)
_BODIES = st.binary(max_size=300)
_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH"]
_MOMENTS = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
)


def build_url(path: str, query: list[tuple[str, str]]) -> URL:
    return URL.build(
        scheme="http", host="127.0.0.1", port=18080, path=path, encoded=True
    ).with_query(query)


class Received:
    """A request as the server sees it after the client sent ``headers`` for ``url``."""

    def __init__(self, method: str, url: URL, headers: dict[str, str], body: bytes) -> None:
        on_wire = URL(str(url))
        self.method = method
        self.path = on_wire.raw_path
        self.query = list(on_wire.query.items())
        # Proxies and parsers may add optional white space around values.
        self.headers = {name: f" {value} " for name, value in headers.items()}
        self.body = body

    def verify(
        self,
        *,
        now: datetime,
        sk: str = SK,
        method: str | None = None,
        path: str | None = None,
        query_pairs: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> VerifiedIdentity:
        """Verify what was received, or what was received with one part changed."""
        return verify_request(
            method=self.method if method is None else method,
            path=self.path if path is None else path,
            query_pairs=self.query if query_pairs is None else query_pairs,
            headers=CIMultiDictProxy(CIMultiDict(self.headers if headers is None else headers)),
            body=self.body if body is None else body,
            secret_for={AK: sk}.get,
            now=now,
        )


@st.composite
def signed_requests(draw: st.DrawFn) -> tuple[Received, datetime]:
    method = draw(st.sampled_from(_METHODS))
    url = build_url(draw(_PATHS), draw(_QUERIES))
    headers = {"Content-Type": "application/json", **draw(_EXTRA_HEADERS)}
    body = draw(_BODIES)
    moment = draw(_MOMENTS)
    sent = AkSkAuth(AK, SK, PROJECT, clock=fixed_clock(moment)).sign(method, url, headers, body)
    return Received(method, url, sent, body), moment


def mismatch(received: Received, moment: datetime, **changes: Any) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        received.verify(now=moment, **changes)
    assert str(info.value) == "signature mismatch"  # nothing of the SK or signatures
    return info.value


@given(signed_requests())
def test_property_signed_requests_verify(case: tuple[Received, datetime]) -> None:
    received, moment = case
    identity = received.verify(now=moment)
    assert identity.access_key == AK
    assert {"content-type", "host", "x-project-id", "x-sdk-date"} <= set(identity.signed_headers)
    assert set(identity.signed_headers) == {name.lower() for name in received.headers} - {
        "authorization"
    }


@given(signed_requests(), st.sampled_from(_METHODS))
def test_property_another_method_fails(case: tuple[Received, datetime], method: str) -> None:
    received, moment = case
    assume(method != received.method)
    mismatch(received, moment, method=method)


@given(signed_requests(), _RAW_SEGMENT)
def test_property_another_path_fails(case: tuple[Received, datetime], segment: str) -> None:
    received, moment = case
    mismatch(received, moment, path=received.path.rstrip("/") + "/" + segment)
    other = received.path + "x"
    assume(canonical_uri(other) != canonical_uri(received.path))
    mismatch(received, moment, path=other)


@given(signed_requests(), st.data())
def test_property_another_query_value_fails(
    case: tuple[Received, datetime], data: st.DataObject
) -> None:
    received, moment = case
    assume(received.query)
    index = data.draw(st.integers(0, len(received.query) - 1))
    key, value = received.query[index]
    query = list(received.query)
    query[index] = (key, value + data.draw(_QUERY_TEXT.filter(bool)))
    mismatch(received, moment, query_pairs=query)
    mismatch(received, moment, query_pairs=[*received.query, ("extra", "")])


@given(signed_requests(), st.data())
def test_property_another_signed_header_value_fails(
    case: tuple[Received, datetime], data: st.DataObject
) -> None:
    received, moment = case
    signed = [
        name for name in received.headers if name.lower() not in ("authorization", "x-sdk-date")
    ]
    name = data.draw(st.sampled_from(signed))
    changed = dict(received.headers)
    changed[name] = received.headers[name] + data.draw(
        st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1)
    )
    mismatch(received, moment, headers=changed)


@given(signed_requests(), st.data())
def test_property_another_body_byte_fails(
    case: tuple[Received, datetime], data: st.DataObject
) -> None:
    received, moment = case
    body = bytearray(received.body)
    if body:
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] ^= data.draw(st.integers(1, 255))
    else:
        body.append(data.draw(st.integers(0, 255)))
    mismatch(received, moment, body=bytes(body))


@given(signed_requests(), st.text(min_size=1, max_size=40))
def test_property_another_sk_fails(case: tuple[Received, datetime], sk: str) -> None:
    received, moment = case
    assume(sk != SK)
    with pytest.raises(SignatureError) as info:
        received.verify(sk=sk, now=moment)
    assert str(info.value) == "signature mismatch"  # nothing of the SK or signatures


@given(signed_requests(), st.sampled_from([-1, 1]))
def test_property_clock_skew(case: tuple[Received, datetime], sign: int) -> None:
    received, moment = case
    # The date sent is whole seconds; measure from it, not from the clock's microseconds.
    sent = moment.replace(microsecond=0)
    assert received.verify(now=sent + sign * timedelta(minutes=14)).access_key == AK
    with pytest.raises(SignatureError) as info:
        received.verify(now=sent + sign * timedelta(minutes=16))
    assert info.value.reason == "X-Sdk-Date more than 15 minutes from the server clock"


@given(_PATHS)
def test_property_canonical_uri_ignores_hex_case_and_the_trailing_slash(path: str) -> None:
    uri = canonical_uri(path)
    assert re.fullmatch(r"(/|[A-Za-z0-9._~-]|%[0-9A-F]{2})*/", uri)
    upper = re.sub(r"%[0-9a-fA-F]{2}", lambda m: m[0].upper(), path)
    lower = re.sub(r"%[0-9a-fA-F]{2}", lambda m: m[0].lower(), path)
    assert canonical_uri(upper) == canonical_uri(lower) == uri
    if not unquote_to_bytes(path).endswith(b"/"):  # '/%2F' already ends in a slash
        assert canonical_uri(path + "/") == uri
    assert canonical_uri(uri) == uri  # the signed form is a fixed point


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


def every_error() -> Iterator[BaseException]:
    """One instance of every ConfigError / SignatureError path, raised with the test secrets."""
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
    headers = signed_vector()
    for change in (
        without(headers, "authorization"),
        {**headers, "Authorization": headers["Authorization"][:-2]},
        {**headers, "Authorization": headers["Authorization"] + ", Signature=" + SIGNATURE},
        without(headers, "host"),
        {**headers, "Authorization": AUTHORIZATION.replace(";x-sdk-date", "")},
        {**headers, "X-Sdk-Date": "20261128T0644"},
        {**headers, "X-Sdk-Date": "20261128T080000Z"},
        {**headers, "Host": "example.com"},
    ):
        calls.append(lambda change=change: verify(change))  # type: ignore[misc]
    calls.append(lambda: verify(headers, secrets={}))
    calls.append(lambda: verify(headers, secrets={AK: SK + "x"}))
    for call in calls:
        with pytest.raises((ConfigError, SignatureError)) as info:
            call()
        yield info.value


def test_no_error_message_repr_or_arg_holds_a_secret() -> None:
    errors = list(every_error())
    assert len(errors) == 23
    for error in errors:
        for text in (str(error), repr(error), *map(str, error.args)):
            assert secrets_in(text, SK + "x") == [], (type(error).__name__, text)
            assert TOKEN[:32] not in text


def test_all_is_pinned() -> None:
    assert sorted(auth.__all__) == [
        "ALGORITHM",
        "AkSkAuth",
        "Auth",
        "ParsedAuthorization",
        "SignatureError",
        "TokenAuth",
        "VerifiedIdentity",
        "auth_from_env",
        "authorization_header",
        "canonical_headers",
        "canonical_query",
        "canonical_request",
        "canonical_uri",
        "format_sdk_date",
        "parse_authorization",
        "parse_sdk_date",
        "payload_hash",
        "signature",
        "string_to_sign",
        "verify_request",
    ]
    assert all(hasattr(auth, name) for name in auth.__all__)


def test_both_auth_modes_satisfy_the_protocol() -> None:
    modes: list[auth.Auth] = [TokenAuth(TOKEN), vector_auth()]
    for mode in modes:
        sent = mode.sign("PUT", URL_, JSON, BODY)
        assert sent["Content-Type"] == "application/json"
        assert len(sent) > len(JSON)
