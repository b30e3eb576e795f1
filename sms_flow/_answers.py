"""What an HTTP answer of the SMS API means: the body of a 2xx, or a typed error.

:func:`api_error` maps a non-2xx answer to the :class:`~sms_flow.errors.ApiError` subclass of
its status (401/403 :class:`~sms_flow.errors.AuthError`, 404
:class:`~sms_flow.errors.NotFoundError`, 429 :class:`~sms_flow.errors.ThrottledError` with its
``Retry-After``, 5xx :class:`~sms_flow.errors.ServerError`), reading the error body tolerantly.

:func:`redact` is the one redaction of whatever an answer brings back: the client passes every
answer's body (2xx or not), its ``X-Request-Id`` and ``Content-Type``, and the text of a
transport error through it before anything quotes, parses, logs or journals them, so a proxy
or a server that echoes the request's headers cannot put a credential on the screen, into
the journal or into a report. Private to the package.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, AnyStr, Final
from urllib.parse import quote

from sms_flow.errors import ApiError, AuthError, NotFoundError, ServerError, ThrottledError
from sms_flow.wire import parse_error_body

__all__ = ["REDACTED", "Answer", "api_error", "parse_retry_after", "redact", "redact_sent"]

REDACTED: Final = "<redacted>"
"""What stands in a quoted answer where a credential was."""

_SECRET_HEADERS: Final = frozenset({"authorization", "x-auth-token"})
_NO_HEADERS: Final[Mapping[str, str]] = {}
# A secret made of these characters is written the same way in JSON and in a URL.
_PLAIN_RE: Final = re.compile(r"[A-Za-z0-9._~-]*")


@dataclass(frozen=True, slots=True)
class Answer:
    """A 2xx answer: its status, exact body, ``X-Request-Id``, and the attempts it took."""

    status: int
    body: bytes
    request_id: str | None
    attempts: int


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After`` (delta seconds or an HTTP-date); ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _secrets(sent: Mapping[str, str], known: Sequence[str]) -> list[str]:
    """The credentials to look for: ``known`` ones, and those ``sent`` (whole and signature)."""
    found = [secret for secret in known if secret]
    for name, value in sent.items():
        if not value or name.lower() not in _SECRET_HEADERS:
            continue
        found.append(value)
        _, sep, signature = value.rpartition("Signature=")
        if sep and signature:
            found.append(signature)
    return found


def _forms(secret: str) -> tuple[str, ...]:
    """``secret`` as it may appear in an answer: as is, JSON-escaped, ``/`` escaped, URL-encoded."""
    if _PLAIN_RE.fullmatch(secret):
        return (secret,)
    forms = dict.fromkeys(
        (
            secret,
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
            secret.replace("/", "\\/"),
            quote(secret, safe=""),
        )
    )
    return tuple(forms)


def redact(
    text: AnyStr, sent: Mapping[str, str] = _NO_HEADERS, known: Sequence[str] = ()
) -> AnyStr:
    """``text`` (str or bytes) with every credential replaced by :data:`REDACTED`.

    The credentials are ``known`` (the client's token and secret key, which it knows from its
    auth) and those ``sent`` with the request: the ``X-Auth-Token`` value, the whole
    ``Authorization`` value and its signature alone. Each is also looked for as JSON, a URL
    or an escaped ``/`` would write it. Redact before truncating, so that no part of a
    secret is left at a cut.
    """
    if not text:
        return text
    secrets = _secrets(sent, known)
    if not secrets or len(text) < min(map(len, secrets)):
        return text  # too short to hold any (a changestate's "{}")
    # Longest first: the whole Authorization value goes before its signature alone.
    forms = sorted({form for secret in secrets for form in _forms(secret)}, key=len, reverse=True)
    if isinstance(text, bytes):
        for form in forms:
            raw = form.encode()
            if raw in text:
                text = text.replace(raw, REDACTED.encode())
        return text
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def redact_sent(text: str, sent: Mapping[str, str]) -> str:
    """Remove from ``text`` any credential sent in ``sent``: :func:`redact` without known ones."""
    return redact(text, sent)


def api_error(
    *,
    method: str,
    path: str,
    status: int,
    headers: Mapping[str, str],
    data: bytes,
    sent: Mapping[str, str],
    attempt: int,
    known: Sequence[str] = (),
) -> ApiError:
    """The :class:`~sms_flow.errors.ApiError` subclass for a non-2xx answer.

    ``headers`` are the answer's (``X-Request-Id``, ``Content-Type``, ``Retry-After``),
    ``data`` its body, ``sent`` the request headers sent and ``known`` the client's own
    secrets (every credential is removed from the body and the headers quoted, see
    :func:`redact`), ``attempt`` the attempt that got it.
    """
    text = redact(data, sent, known).decode("utf-8", "replace")
    parsed = parse_error_body(text) if text else None
    request_id = headers.get("X-Request-Id")
    common: dict[str, Any] = {
        "status": status,
        "request_id": redact(request_id, sent, known) if request_id else request_id,
        "body": text,
        "method": method,
        "url": path,
        "attempts": attempt,
    }
    if parsed is not None:
        common.update(
            error_code=parsed.error_code,
            error_msg=parsed.error_msg,
            error_param=parsed.error_param,
            details=[d.model_dump() for d in parsed.details or ()],
            encoded_authorization_message=parsed.encoded_authorization_message,
        )
    elif text:
        content_type = redact(headers.get("Content-Type", "no Content-Type"), sent, known)
        common["body"] = f"({content_type}) {text}"
    if status == 429:
        return ThrottledError(retry_after=parse_retry_after(headers.get("Retry-After")), **common)
    cls: type[ApiError]
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(**common)
