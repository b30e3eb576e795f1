"""What an HTTP answer of the SMS API means: the body of a 2xx, or a typed error.

:func:`api_error` maps a non-2xx answer to the :class:`~sms_flow.errors.ApiError` subclass of
its status (401/403 :class:`~sms_flow.errors.AuthError`, 404
:class:`~sms_flow.errors.NotFoundError`, 429 :class:`~sms_flow.errors.ThrottledError` with its
``Retry-After``, 5xx :class:`~sms_flow.errors.ServerError`), reading the error body tolerantly.

:class:`Redactor` is the one redaction of whatever an answer brings back (:func:`redact` is
the same, at once): the client passes every answer's body (2xx or not), its ``X-Request-Id``
and ``Content-Type``, and the text of a transport error through its redactor before anything
quotes, parses, logs or journals them, so a proxy or a server that echoes the request's
headers cannot put a credential on the screen, into the journal or into a report. Private to
the package.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, AnyStr, Final
from urllib.parse import quote

from sms_flow.errors import ApiError, AuthError, NotFoundError, ServerError, ThrottledError
from sms_flow.wire import parse_error_body

__all__ = [
    "REDACTED",
    "Answer",
    "Redactor",
    "api_error",
    "parse_retry_after",
    "redact",
    "redact_sent",
]

REDACTED: Final = "<redacted>"
"""What stands in a quoted answer where a credential was."""

_SECRET_HEADERS: Final = frozenset({"authorization", "x-auth-token"})
_NO_HEADERS: Final[Mapping[str, str]] = {}
# A secret made of these characters is written the same way in JSON and in a URL.
_PLAIN_RE: Final = re.compile(r"[A-Za-z0-9._~-]*")
_PLAIN_RUN_RE: Final = re.compile(r"[A-Za-z0-9._~-]+")


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


_Secret = tuple[str, str, bytes]
"""A secret, and a marker that every form of it holds (as str and as bytes); "" for none."""


def _secret(value: str, marker: str | None = None) -> _Secret:
    if marker is None:
        # Escaping leaves these characters as they are: the longest run of them is in
        # every form, so where it is absent, no form is (and none is computed).
        plain = _PLAIN_RE.fullmatch(value)
        marker = value if plain else max(_PLAIN_RUN_RE.findall(value), key=len, default="")
    return value, marker, marker.encode()


class Redactor:
    """The one redaction of sms-flow: every credential in a quoted answer becomes ``<redacted>``.

    ``known`` are the client's own secrets, from its auth (the token, the SK: an SK is never
    sent, but it goes too should an answer ever hold it); each call adds the credentials
    ``sent`` with the request: the ``X-Auth-Token`` value, the whole ``Authorization`` value
    and its signature alone. Each is looked for as it is and as JSON, a URL or an escaped
    ``/`` would write it. Redact before truncating, so that no part of a secret is left at
    a cut. Cheap when nothing is there: a secret's forms are built only when a part common
    to all of them is found.
    """

    __slots__ = ("_known", "_values")

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known = tuple(_secret(value) for value in dict.fromkeys(known) if value)
        self._values = frozenset(value for value, _, _ in self._known)

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._known)} known secrets>)"

    def _secrets(self, sent: Mapping[str, str]) -> list[_Secret]:
        found = list(self._known)
        for name, value in sent.items():
            if not value or name.lower() not in _SECRET_HEADERS or value in self._values:
                continue
            _, sep, signature = value.rpartition("Signature=")
            if sep and signature:
                marker = signature, signature.encode()
                found.append((value, *marker))  # the signature is in every form of the value
                found.append((signature, *marker))
            else:
                found.append(_secret(value))
        return found

    def __call__(self, text: AnyStr, sent: Mapping[str, str] = _NO_HEADERS) -> AnyStr:
        """``text`` (str or bytes) with every credential replaced by :data:`REDACTED`."""
        return self.bind(sent)(text)

    def bind(self, sent: Mapping[str, str]) -> _Bound:
        """This redaction for the answers to one request: ``redact.bind(sent)(text)``.

        For several texts of one answer (its body, its ``X-Request-Id``): the credentials
        sent are picked out once.
        """
        return _Bound(self._secrets(sent))


class _Bound:
    """A :class:`Redactor` with the credentials of one request: call it on any text."""

    __slots__ = ("_secrets", "_shortest")

    def __init__(self, secrets: list[_Secret]) -> None:
        self._secrets = secrets
        # Every form of a secret holds its marker: a text shorter than all markers holds none
        # (with no secret at all, none is short enough; with an empty marker, any is).
        shortest = 1 << 62
        for _, marker, _ in secrets:
            shortest = min(shortest, len(marker))
        self._shortest = shortest

    def __call__(self, text: AnyStr) -> AnyStr:
        if not text or len(text) < self._shortest:
            return text  # a changestate's "{}", a request id
        if isinstance(text, bytes):
            hits = [v for v, _, marker in self._secrets if not marker or marker in text]
        else:
            hits = [v for v, marker, _ in self._secrets if not marker or marker in text]
        if not hits:
            return text
        # Longest first: the whole Authorization value goes before its signature alone.
        forms = sorted({form for value in hits for form in _forms(value)}, key=len, reverse=True)
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


_NO_SECRETS: Final = Redactor()


def redact(
    text: AnyStr, sent: Mapping[str, str] = _NO_HEADERS, known: Iterable[str] = ()
) -> AnyStr:
    """``text`` with every credential ``known`` or ``sent`` removed: :class:`Redactor` at once."""
    return Redactor(known)(text, sent)


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
    redactor: Redactor = _NO_SECRETS,
) -> ApiError:
    """The :class:`~sms_flow.errors.ApiError` subclass for a non-2xx answer.

    ``headers`` are the answer's (``X-Request-Id``, ``Content-Type``, ``Retry-After``),
    ``data`` its body, ``sent`` the request headers sent, ``redactor`` the client's (every
    credential, sent or known, is removed from the body and the headers quoted: see
    :class:`Redactor`), ``attempt`` the attempt that got it.
    """
    text = redactor(data, sent).decode("utf-8", "replace")
    parsed = parse_error_body(text) if text else None
    request_id = headers.get("X-Request-Id")
    common: dict[str, Any] = {
        "status": status,
        "request_id": redactor(request_id, sent) if request_id else request_id,
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
        content_type = redactor(headers.get("Content-Type", "no Content-Type"), sent)
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
