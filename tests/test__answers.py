"""Tests for sms_flow._answers: an HTTP answer mapped to its typed error, credentials removed.

The same mapping is exercised end to end, over loopback, in ``test_client.py``.
"""

from __future__ import annotations

import email.utils
import time

import pytest
from multidict import CIMultiDict

from sms_flow._answers import Redactor, api_error, parse_retry_after, redact, redact_sent
from sms_flow.errors import ApiError, AuthError, NotFoundError, ServerError, ThrottledError

TOKEN = "tok-" + "Z" * 60
SIGNATURE = "ab" * 32
SENT = {
    "X-Auth-Token": TOKEN,
    "Authorization": f"SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature={SIGNATURE}",
    "Content-Type": "application/json",
}


def answer(status: int, body: str = "", **headers: str) -> ApiError:
    return api_error(
        method="PUT",
        path="/v3/sources/s1/changestate",
        status=status,
        headers=CIMultiDict({"X-Request-Id": f"req-{status}", **headers}),
        data=body.encode(),
        sent=SENT,
        attempt=2,
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ApiError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, ApiError),
        (429, ThrottledError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_each_status_gets_its_class(status: int, kind: type[ApiError]) -> None:
    error = answer(status, '{"error_code": "SMS.1", "error_msg": "no"}')
    assert type(error) is kind
    assert (error.status, error.error_code, error.error_msg) == (status, "SMS.1", "no")
    assert (error.request_id, error.attempts, error.method) == (f"req-{status}", 2, "PUT")
    assert error.url == "/v3/sources/s1/changestate"


def test_a_body_that_is_not_json_shows_with_its_content_type() -> None:
    error = answer(502, "<html>Bad Gateway</html>", **{"Content-Type": "text/html"})
    assert error.error_code is None and error.body == "(text/html) <html>Bad Gateway</html>"


def test_echoed_credentials_are_removed() -> None:
    echoed = f'{{"error_code": "PROXY", "error_msg": "{TOKEN} {SIGNATURE}"}}'
    error = answer(400, echoed)
    assert TOKEN not in str(error) and SIGNATURE not in str(error)
    assert TOKEN not in error.body and SIGNATURE not in error.body
    assert redact_sent(f"a {TOKEN} b {SENT['Authorization']}", SENT) == "a <redacted> b <redacted>"
    assert redact_sent("nothing secret", {"Content-Type": "x"}) == "nothing secret"


def test_a_429_carries_retry_after() -> None:
    throttled, bare = answer(429, "", **{"Retry-After": "7"}), answer(429, "")
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 7.0
    assert isinstance(bare, ThrottledError) and bare.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 0.5 ", 0.5), ("-4", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_as_an_http_date() -> None:
    later = parse_retry_after(email.utils.formatdate(time.time() + 60, usegmt=True))
    assert later is not None and 55 < later <= 61
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert parse_retry_after("inf") is None


SK = "SK-answers-secret-0123456789"


def test_redact_removes_every_form_of_every_credential() -> None:
    # Each as an echoing server may write it: as is, in JSON, with "/" escaped, URL-encoded.
    token = "MIIT0k+/" + "a" * 40 + "=="
    sent = {"X-Auth-Token": token, "Authorization": SENT["Authorization"]}
    forms = [
        token,
        token.replace("/", "\\/"),
        "MIIT0k%2B%2F" + "a" * 40 + "%3D%3D",
        SENT["Authorization"],
        SIGNATURE,
        SK,
    ]
    for form in forms:
        text = f'{{"echo": "{form}", "ok": 1}}'
        assert redact(text, sent, known=(SK,)) == '{"echo": "<redacted>", "ok": 1}', form
        assert redact(text.encode(), sent, known=(SK,)) == b'{"echo": "<redacted>", "ok": 1}'


def test_redact_leaves_other_text_alone() -> None:
    assert redact("{}", SENT, known=(SK,)) == "{}"
    assert redact(b"", SENT) == b""
    body = b'{"id": "s1", "state": "waiting"}'
    assert redact(body, SENT, known=(SK,)) is body
    assert redact("nothing secret here at all, but long enough to be looked at", {}) == (
        "nothing secret here at all, but long enough to be looked at"
    )


def test_the_known_secret_key_is_removed_though_never_sent() -> None:
    error = api_error(
        method="GET",
        path="/v3/sources/s1",
        status=400,
        headers=CIMultiDict({"X-Request-Id": f"echo {SK}", "Content-Type": f"text/{SK}"}),
        data=f"the key is {SK}".encode(),
        sent={"Content-Type": "application/json"},
        attempt=1,
        redactor=Redactor([SK]),
    )
    assert SK not in str(error) and SK not in error.body and SK not in repr(error)
    assert error.request_id == "echo <redacted>"
    assert error.body == "(text/<redacted>) the key is <redacted>"


def test_echoed_headers_of_the_answer_are_redacted() -> None:
    error = answer(400, "{}", **{"X-Request-Id": SENT["Authorization"]})
    assert error.request_id == "<redacted>" and SIGNATURE not in str(error)
    error = answer(502, "echo", **{"Content-Type": TOKEN})
    assert TOKEN not in str(error) and error.body == "(<redacted>) echo"


@pytest.mark.parametrize(
    ("status", "maybe_applied"),
    [
        (400, False),
        (401, False),
        (404, False),
        (409, False),
        (429, False),
        (500, True),
        (503, True),
    ],
)
def test_maybe_applied_follows_the_status(status: int, maybe_applied: bool) -> None:
    assert answer(status, "{}").maybe_applied is maybe_applied
