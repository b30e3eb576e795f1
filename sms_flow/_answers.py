"""What an HTTP answer of the SMS API means: the body of a 2xx, or a typed error.

:func:`api_error` maps a non-2xx answer to the :class:`~sms_flow.errors.ApiError` subclass of
its status (401/403 :class:`~sms_flow.errors.AuthError`, 404
:class:`~sms_flow.errors.NotFoundError`, 429 :class:`~sms_flow.errors.ThrottledError` with its
``Retry-After``, 5xx :class:`~sms_flow.errors.ServerError`), reading the error body tolerantly
and removing any credential the answer echoes. Private to the package.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sms_flow.errors import ApiError, AuthError, NotFoundError, ServerError, ThrottledError
from sms_flow.wire import parse_error_body

__all__ = ["Answer", "api_error", "parse_retry_after", "redact_sent"]

_SECRET_HEADERS: Final = frozenset({"authorization", "x-auth-token"})


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


def redact_sent(text: str, sent: Mapping[str, str]) -> str:
    """Remove from ``text`` any credential sent in ``sent`` (in case a proxy echoes it)."""
    for name, value in sent.items():
        if name.lower() not in _SECRET_HEADERS or not value:
            continue
        text = text.replace(value, "<redacted>")
        _, sep, signature = value.rpartition("Signature=")
        if sep and signature:
            text = text.replace(signature, "<redacted>")
    return text


def api_error(
    *,
    method: str,
    path: str,
    status: int,
    headers: Mapping[str, str],
    data: bytes,
    sent: Mapping[str, str],
    attempt: int,
) -> ApiError:
    """The :class:`~sms_flow.errors.ApiError` subclass for a non-2xx answer.

    ``headers`` are the answer's (``X-Request-Id``, ``Content-Type``, ``Retry-After``),
    ``data`` its body, ``sent`` the request headers sent (credentials echoed in the body are
    removed), ``attempt`` the attempt that got it.
    """
    text = redact_sent(data.decode("utf-8", "replace"), sent)
    parsed = parse_error_body(text) if text else None
    common: dict[str, Any] = {
        "status": status,
        "request_id": headers.get("X-Request-Id"),
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
        content_type = headers.get("Content-Type", "no Content-Type")
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
