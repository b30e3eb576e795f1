"""Tests for sms_flow._signing: the fixed vector, every piece, the verifier and its properties.

The signer (:class:`~sms_flow.auth.AkSkAuth`) and its interop with the official SDK are tested
in ``test_auth.py``, which takes the vector and the request strategies from here.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sms_flow import _signing
from sms_flow._signing import (
    ParsedAuthorization,
    SigningKey,
    VerifiedIdentity,
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
from sms_flow.auth import AkSkAuth
from sms_flow.errors import InvalidRequestError, SignatureError, SmsFlowError

# --- the fixed vector ------------------------------------------------------------------------
# Where it comes from: a PUT of the changestate page's example body (55 bytes), signed with
# AK AKEXAMPLE / SK SKEXAMPLE at a fixed X-Sdk-Date. It was checked against the official Huawei
# Cloud SDK's signer, huaweicloudsdkcore 3.1.219 (SDK-HMAC-SHA256), which gives this exact
# Authorization value. test_the_sdk_signer_reproduces_the_vector (test_auth.py) recomputes it
# with the huaweicloudsdkcore installed for the tests (BasicCredentials.sign_request), so a
# change on either side shows.

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


def fixed_clock(moment: datetime = MOMENT) -> Callable[[], datetime]:
    return lambda: moment


def vector_auth() -> AkSkAuth:
    return AkSkAuth(AK, SK, PROJECT, clock=fixed_clock())


def secrets_in(text: str, *extra: str) -> list[str]:
    """The secrets (SK, signatures, any ``extra``) that ``text`` contains."""
    found = [s for s in (SK, SIGNATURE, *extra) if s and s in text]
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


# --- SigningKey ----------------------------------------------------------------------------


@given(st.binary(max_size=200), st.text(max_size=300))
def test_property_signing_key_equals_hmac_digest(key: bytes, message: str) -> None:
    """RFC 2104 HMAC-SHA256, keys longer than a block (64 bytes) included."""
    expected = hmac.digest(key, message.encode(), "sha256").hex()
    signing_key = SigningKey(key)
    assert signing_key.sign(message) == expected
    assert signing_key.sign(message) == expected  # a second use: its keyed state is intact
    assert (
        signing_key.sign(message + "x")
        == hmac.digest(key, (message + "x").encode(), "sha256").hex()
    )


def test_signing_key_signs_the_vector_and_hides_the_key() -> None:
    key = SigningKey(SK)
    assert key.sign(STRING_TO_SIGN) == SIGNATURE
    assert key.sign(STRING_TO_SIGN) == SIGNATURE  # a second use gives the same signature
    assert secrets_in(repr(key)) == [] and SK not in str(key)


# --- secrecy, across every error the verifier raises -----------------------------------------


def every_verifier_error() -> Iterator[SignatureError]:
    """One instance of every SignatureError path, raised with the test secrets."""
    headers = signed_vector()
    calls: list[Callable[[], object]] = [
        lambda change=change: verify(change)  # type: ignore[misc]
        for change in (
            without(headers, "authorization"),
            {**headers, "Authorization": headers["Authorization"][:-2]},
            {**headers, "Authorization": headers["Authorization"] + ", Signature=" + SIGNATURE},
            without(headers, "host"),
            {**headers, "Authorization": AUTHORIZATION.replace(";x-sdk-date", "")},
            {**headers, "X-Sdk-Date": "20261128T0644"},
            {**headers, "X-Sdk-Date": "20261128T080000Z"},
            {**headers, "Host": "example.com"},
        )
    ]
    calls.append(lambda: verify(headers, secrets={}))
    calls.append(lambda: verify(headers, secrets={AK: SK + "x"}))
    for call in calls:
        with pytest.raises(SignatureError) as info:
            call()
        yield info.value


def test_no_verifier_error_message_repr_or_arg_holds_a_secret() -> None:
    errors = list(every_verifier_error())
    assert len(errors) == 10
    for error in errors:
        assert isinstance(error, SmsFlowError)  # in the tree of sms_flow.errors
        for text in (str(error), repr(error), *map(str, error.args)):
            assert secrets_in(text, SK + "x") == [], (type(error).__name__, text)


def test_all_is_pinned() -> None:
    assert sorted(_signing.__all__) == [
        "ALGORITHM",
        "CONTENT_SHA256",
        "ParsedAuthorization",
        "SigningKey",
        "VerifiedIdentity",
        "authorization_header",
        "canonical_headers",
        "canonical_query",
        "canonical_request",
        "canonical_uri",
        "format_sdk_date",
        "join_canonical_request",
        "parse_authorization",
        "parse_sdk_date",
        "payload_hash",
        "signature",
        "signed_authorization",
        "string_to_sign",
        "verify_request",
    ]
    assert all(hasattr(_signing, name) for name in _signing.__all__)
