"""Authentication for SMS requests: IAM token, or AK/SK ``SDK-HMAC-SHA256`` signing.

The client calls :meth:`Auth.sign` afresh on every attempt, so each retry of an AK/SK request
carries a fresh ``X-Sdk-Date`` (the gateway refuses a date more than 15 minutes off its clock).

AK/SK signing is the scheme the official Huawei Cloud SDK uses: a canonical request built from
the method, path, query, the signed headers and the body hash, hashed into a string to sign,
and an HMAC-SHA256 keyed with the SK itself (no derived key, no scope). The pieces are public,
pure functions so that the signer (:class:`AkSkAuth`), the simulator's verifier
(:func:`verify_request`) and the tests share one implementation of every rule.

Secrets stay out of sight: no ``repr``, ``str`` or exception message here holds a token, an SK
or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn, Protocol, final
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from yarl import URL

from sms_flow.errors import ConfigError, InvalidRequestError

__all__ = [
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

ALGORITHM: Final = "SDK-HMAC-SHA256"
"""The algorithm name that opens the string to sign and the ``Authorization`` value."""

_TOKEN_MAX_LENGTH: Final = 16_384

_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_DATE_RE: Final = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
_CONTENT_SHA256: Final = "x-sdk-content-sha256"
# Headers sign() sets itself; a caller's copy (in any case) is replaced, not sent twice.
_OWN_HEADERS: Final = frozenset({"x-sdk-date", "x-project-id", "authorization"})
_HEADER_NAME_RE: Final = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
# A path of unreserved characters and slashes is its own canonical form (less the final '/').
_PLAIN_PATH_RE: Final = re.compile(r"[A-Za-z0-9._~/-]*")


# --- the pure pieces -----------------------------------------------------------------------


def _encode(text: str) -> str:
    """Percent-encode all but RFC 3986 unreserved characters, upper-case hex, UTF-8."""
    return quote(text, safe="", errors="surrogateescape")


def canonical_uri(path: str) -> str:
    """The signed form of a request path.

    ``path`` is the path as sent on the wire (still percent-encoded, no query). It is
    percent-decoded to bytes, split on ``/``, each segment re-encoded keeping only unreserved
    characters, and a ``/`` appended unless it already ends in one (only the signed form
    carries that slash). Decoding works on bytes, so ``%FF`` stays ``%FF``.
    """
    if _PLAIN_PATH_RE.fullmatch(path):
        uri = path
    else:
        raw = unquote_to_bytes(path)
        uri = "/".join([quote_from_bytes(segment, safe=b"") for segment in raw.split(b"/")])
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The signed form of the (already decoded) query pairs.

    Sorted by key then value as given (code point order, as the official SDK sorts), each
    written ``k=v`` (``k=`` when the value is empty) with both encoded like a path segment,
    joined by ``&``; empty when there is no query.
    """
    return "&".join([f"{_encode(key)}={_encode(value)}" for key, value in sorted(pairs)])


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header values keyed by lower-case name; for a multi-dict, the first value wins."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), value)
    return out


def _signed_names(signed_header_names: Iterable[str]) -> list[str]:
    return sorted({name.lower() for name in signed_header_names})


def _canonical_headers(lowered: Mapping[str, str], names: list[str]) -> str:
    parts = []
    for name in names:
        value = lowered.get(name)
        if value is None:
            raise InvalidRequestError(
                f"signed header {name!r} has no value in the request; "
                "sign only headers that are sent"
            )
        parts.append(f"{name}:{value.strip()}\n")
    return "".join(parts)


def canonical_headers(headers: Mapping[str, str], signed_header_names: Iterable[str]) -> str:
    """``name:trimmed value\\n`` for each signed header, lower-case names in sorted order.

    Header lookups ignore case. Raises :class:`InvalidRequestError` when a signed header has
    no value in ``headers``.
    """
    return _canonical_headers(_lowered(headers), _signed_names(signed_header_names))


def payload_hash(body: bytes, content_sha256: str | None = None) -> str:
    """Part 6 of the canonical request.

    The hex SHA-256 of ``body``, or ``content_sha256`` (the value of an
    ``X-Sdk-Content-Sha256`` header, such as ``UNSIGNED-PAYLOAD``) when given and the body is
    not empty. An empty body always hashes to the SHA-256 of nothing.
    """
    if not body:
        return _EMPTY_SHA256
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def _join_canonical(
    method: str, uri: str, query: str, headers_part: str, names: list[str], body_hash: str
) -> str:
    return f"{method.upper()}\n{uri}\n{query}\n{headers_part}\n{';'.join(names)}\n{body_hash}"


def canonical_request(
    method: str,
    path: str,
    query_pairs: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_header_names: Iterable[str],
    body_or_hash: bytes | str,
) -> str:
    """The canonical request: six parts joined by ``\\n``.

    ``path`` is the raw path as sent (see :func:`canonical_uri`), ``query_pairs`` the decoded
    query, ``headers`` the request headers (looked up ignoring case), ``signed_header_names``
    the headers to sign (lower-cased and sorted here). ``body_or_hash`` is either the exact
    body bytes, hashed by the rule of :func:`payload_hash` (honouring an
    ``X-Sdk-Content-Sha256`` header), or a ``str`` used as the payload hash as is.
    """
    lowered = _lowered(headers)
    names = _signed_names(signed_header_names)
    if isinstance(body_or_hash, str):
        body_hash = body_or_hash
    else:
        body_hash = payload_hash(body_or_hash, lowered.get(_CONTENT_SHA256))
    return _join_canonical(
        method,
        canonical_uri(path),
        canonical_query(query_pairs),
        _canonical_headers(lowered, names),
        names,
        body_hash,
    )


def string_to_sign(sdk_date: str, canonical_request: str) -> str:
    """``SDK-HMAC-SHA256\\n{X-Sdk-Date}\\n{hex SHA-256 of the canonical request}``."""
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(sk: str | bytes, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of ``string_to_sign``, keyed with the SK's bytes."""
    key = sk if isinstance(sk, bytes) else sk.encode()
    return hmac.digest(key, string_to_sign.encode(), "sha256").hex()


def authorization_header(ak: str, signed_header_names: Iterable[str], signature: str) -> str:
    """The ``Authorization`` value; the names are lower-cased and sorted as when signing."""
    names = ";".join(_signed_names(signed_header_names))
    return f"{ALGORITHM} Access={ak}, SignedHeaders={names}, Signature={signature}"


def format_sdk_date(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYYMMDDTHHMMSSZ``; a naive ``moment`` is refused."""
    if moment.tzinfo is None:
        raise ValueError(
            "a naive datetime has no time zone; pass an aware one, e.g. datetime.now(UTC)"
        )
    return moment.astimezone(UTC).strftime(_DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    """Parse ``YYYYMMDDTHHMMSSZ`` into an aware UTC datetime; ``ValueError`` otherwise."""
    match = _DATE_RE.fullmatch(value)
    if match is None:
        raise ValueError("an X-Sdk-Date is 16 characters, YYYYMMDDTHHMMSSZ, in UTC")
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"an X-Sdk-Date, YYYYMMDDTHHMMSSZ, names no real moment: {exc}") from None


# --- the verifier ----------------------------------------------------------------------------


class SignatureError(Exception):
    """A request's AK/SK signature does not verify (a server-side outcome).

    ``reason`` is short, fixed wording that is safe to log and to return to the caller, such
    as ``"signature mismatch"``; ``detail`` may add what exactly was wrong. Neither ever holds
    an SK, the received signature or the expected one.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@final
@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The three fields of an ``SDK-HMAC-SHA256`` ``Authorization`` value."""

    access: str
    signed_headers: tuple[str, ...]
    signature: str = field(repr=False)


@final
@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who signed a request that verified."""

    access_key: str
    signed_headers: tuple[str, ...]
    sdk_date: datetime


_AUTH_SHAPE: Final = f"expected '{ALGORITHM} Access=AK, SignedHeaders=a;b, Signature=<64 hex>'"


def _malformed(detail: str) -> NoReturn:
    raise SignatureError("malformed Authorization", f"{detail}; {_AUTH_SHAPE}")


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split an ``Authorization`` value into access key, signed headers and signature.

    Raises :class:`SignatureError` with reason ``"malformed Authorization"`` (and a detail
    that never echoes the value) when it is not ``SDK-HMAC-SHA256 Access=…,
    SignedHeaders=…, Signature=…`` with lower-case header names and a 64-digit lower-case
    hex signature.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        _malformed(f"the algorithm is not {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, eq, item = part.strip().partition("=")
        if not eq or key not in ("Access", "SignedHeaders", "Signature"):
            _malformed("a field is not Access=, SignedHeaders= or Signature=")
        if key in fields:
            _malformed(f"{key} appears twice")
        fields[key] = item
    for key in ("Access", "SignedHeaders", "Signature"):
        if key not in fields:
            _malformed(f"{key} is missing")
    access = fields["Access"]
    if not access or any(char.isspace() for char in access):
        _malformed("Access is empty or holds white space")
    names = tuple(fields["SignedHeaders"].split(";"))
    if not all(_HEADER_NAME_RE.fullmatch(name) for name in names):
        _malformed("SignedHeaders holds an empty name or one that is not a lower-case token")
    if not _HEX64_RE.fullmatch(fields["Signature"]):
        _malformed("Signature is not 64 lower-case hex digits")
    return ParsedAuthorization(access, names, fields["Signature"])


def _describe(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"


def verify_request(
    *,
    method: str,
    path: str,
    query_pairs: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> VerifiedIdentity:
    """Check an AK/SK signed request the way the API gateway does; return who signed it.

    ``path`` is the raw path as received (aiohttp: ``request.rel_url.raw_path``),
    ``query_pairs`` the decoded query (``request.query.items()``), ``headers`` the received
    headers (any case; a ``CIMultiDictProxy`` works), ``body`` the exact bytes received,
    ``secret_for`` maps an access key to its SK (``None`` if unknown), ``now`` is the server's
    aware clock. Raises :class:`SignatureError` whose ``reason`` says what failed.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime, e.g. datetime.now(UTC)")
    lowered = _lowered(headers)
    value = lowered.get("authorization")
    if value is None:
        raise SignatureError("missing Authorization")
    parsed = parse_authorization(value)
    if "x-sdk-date" not in parsed.signed_headers:
        raise SignatureError("x-sdk-date not signed")
    for name in parsed.signed_headers:
        if name not in lowered:
            raise SignatureError(f"signed header {name} missing")
    try:
        signed_at = parse_sdk_date(lowered["x-sdk-date"].strip())
    except ValueError as exc:
        raise SignatureError("X-Sdk-Date malformed", str(exc)) from None
    if abs(now - signed_at) > max_skew:
        raise SignatureError(f"X-Sdk-Date more than {_describe(max_skew)} from the server clock")
    sk = secret_for(parsed.access)
    if sk is None:
        raise SignatureError("unknown access key")
    names = _signed_names(parsed.signed_headers)
    request = _join_canonical(
        method,
        canonical_uri(path),
        canonical_query(query_pairs),
        _canonical_headers(lowered, names),
        names,
        payload_hash(body, lowered.get(_CONTENT_SHA256)),
    )
    expected = signature(sk, string_to_sign(lowered["x-sdk-date"].strip(), request))
    if not hmac.compare_digest(expected, parsed.signature):
        raise SignatureError("signature mismatch")
    return VerifiedIdentity(parsed.access, parsed.signed_headers, signed_at)


# --- the client side -------------------------------------------------------------------------


class Auth(Protocol):
    """Adds authentication to one HTTP attempt."""

    def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """Return the complete headers to send for one attempt: ``headers`` plus auth.

        ``url`` is the absolute URL as sent (query included); ``body`` the exact bytes sent.
        Call it again for every retry.
        """
        ...


def _blocked(self: object, *_args: object) -> NoReturn:
    raise AttributeError(f"{type(self).__name__} is immutable")


@final
class TokenAuth:
    """IAM token authentication: adds ``X-Auth-Token``."""

    __slots__ = ("_token",)
    _token: str

    def __init__(self, token: str) -> None:
        if not 1 <= len(token) <= _TOKEN_MAX_LENGTH:
            raise ConfigError(
                f"the IAM token is {len(token)} characters long; a token is 1 to "
                f"{_TOKEN_MAX_LENGTH:,} characters (take the X-Subject-Token header of "
                "POST /v3/auth/tokens, whole)"
            )
        if token != token.strip():
            raise ConfigError(
                "the IAM token has leading or trailing white space (often a newline from a "
                "file); strip it"
            )
        if not (token.isascii() and token.isprintable()):
            raise ConfigError(
                "the IAM token holds a character that cannot go in an HTTP header "
                "(non-ASCII or a control character); check that it is the whole, unaltered token"
            )
        object.__setattr__(self, "_token", token)

    __setattr__ = _blocked
    __delattr__ = _blocked

    def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """``headers`` plus ``X-Auth-Token`` (replacing a caller's copy in any case)."""
        out = {name: value for name, value in headers.items() if name.lower() != "x-auth-token"}
        out["X-Auth-Token"] = self._token
        return out

    def __repr__(self) -> str:
        return f"TokenAuth(token=<hidden, {len(self._token)} chars>)"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_header_safe(what: str, value: str, shown: str) -> None:
    if not value:
        raise ConfigError(f"{what} is empty; {shown}")
    if not (value.isascii() and value.isprintable()) or value != value.strip():
        raise ConfigError(
            f"{what} has leading or trailing white space, a control or a non-ASCII "
            f"character; {shown}"
        )


@final
class AkSkAuth:
    """AK/SK authentication: ``SDK-HMAC-SHA256`` signing, as the official SDK sends it.

    Adds ``X-Project-Id``, ``X-Sdk-Date`` (from ``clock``, default the system clock in UTC),
    ``Host`` (unless given, the value aiohttp sends for the URL) and ``Authorization``. Every
    header sent is signed; header values are sent trimmed, as they are signed.
    """

    __slots__ = ("_ak", "_clock", "_date_cache", "_mac", "_prefix", "_project_id")
    _ak: str
    _clock: Callable[[], datetime]
    _date_cache: tuple[float, str]
    _mac: hmac.HMAC
    _prefix: str
    _project_id: str

    def __init__(
        self,
        ak: str,
        sk: str,
        project_id: str,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        set_ = object.__setattr__
        _check_header_safe(
            "the access key (AK)",
            ak,
            "use the AK of an access key pair from the console (My Credentials > Access Keys)",
        )
        if "," in ak or "=" in ak:
            raise ConfigError("the access key (AK) holds ',' or '='; an AK is letters and digits")
        if not sk:
            raise ConfigError(
                "the secret key (SK) is empty; use the SK that belongs to the access key"
            )
        if sk != sk.strip():
            raise ConfigError(
                "the secret key (SK) has leading or trailing white space (often a newline "
                "from a file); strip it"
            )
        _check_header_safe(
            "the project id",
            project_id,
            "use the id of the project for the region (My Credentials > Projects)",
        )
        set_(self, "_ak", ak)
        # The keyed HMAC state is computed once; sign() copies it (cheaper than keying anew).
        set_(self, "_mac", hmac.new(sk.encode(), digestmod=hashlib.sha256))
        set_(self, "_project_id", project_id)
        set_(self, "_clock", clock or _utc_now)
        set_(self, "_prefix", f"{ALGORITHM} Access={ak}, SignedHeaders=")
        set_(self, "_date_cache", (-1.0, ""))

    __setattr__ = _blocked
    __delattr__ = _blocked

    @property
    def ak(self) -> str:
        """The access key id (not a secret; shown truncated in ``repr``)."""
        return self._ak

    @property
    def project_id(self) -> str:
        """The project id sent as ``X-Project-Id``."""
        return self._project_id

    def __repr__(self) -> str:
        return f"AkSkAuth(ak={self._ak[:4] + '…'!r}, project_id={self._project_id!r}, sk=<hidden>)"

    def _sdk_date(self) -> str:
        moment = self._clock()
        if moment.tzinfo is not UTC:
            if moment.tzinfo is None:
                raise ConfigError(
                    "the clock given to AkSkAuth returned a naive datetime; return an aware "
                    "one, e.g. datetime.now(UTC)"
                )
            moment = moment.astimezone(UTC)
        # strftime costs more than the rest of a lean sign(); reuse it within one second.
        second = moment.timestamp() // 1
        cached_second, text = self._date_cache
        if second != cached_second:
            text = moment.strftime(_DATE_FORMAT)
            object.__setattr__(self, "_date_cache", (second, text))
        return text

    def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """Sign one attempt; see the class docstring for the headers added.

        Raises :class:`InvalidRequestError` for a relative URL without a ``Host`` header, a
        header given twice in different case, or a header name with ``_`` (proxies drop
        those, so the official SDK never signs them; sending one unsigned would break the
        rule that every header sent is signed).
        """
        out: dict[str, str] = {}
        lowered: dict[str, str] = {}
        for name, value in headers.items():
            lname = name.lower()
            if lname in _OWN_HEADERS:
                continue
            if lname in lowered:
                raise InvalidRequestError(
                    f"header {name!r} is given twice (in different case); give it once"
                )
            if "_" in lname:
                raise InvalidRequestError(
                    f"header {name!r} has '_' in its name; proxies drop such headers and the "
                    "official SDK does not sign them; use '-'"
                )
            value = value.strip()
            out[name] = value
            lowered[lname] = value
        if "host" not in lowered:
            host = url.host_port_subcomponent
            if host is None:
                raise InvalidRequestError(
                    f"cannot sign a request to the relative URL {str(url)!r}; "
                    "give an absolute URL or a Host header"
                )
            out["Host"] = lowered["host"] = host
        sdk_date = self._sdk_date()
        out["X-Project-Id"] = lowered["x-project-id"] = self._project_id
        out["X-Sdk-Date"] = lowered["x-sdk-date"] = sdk_date

        uri = canonical_uri(url.raw_path)
        query = canonical_query(url.query.items()) if url.raw_query_string else ""
        names = sorted(lowered)
        headers_part = "".join([f"{name}:{lowered[name]}\n" for name in names])
        signed = ";".join(names)
        if not body:
            body_hash = _EMPTY_SHA256
        else:
            body_hash = lowered.get(_CONTENT_SHA256) or hashlib.sha256(body).hexdigest()
        request = f"{method.upper()}\n{uri}\n{query}\n{headers_part}\n{signed}\n{body_hash}"
        digest = hashlib.sha256(request.encode("utf-8", "surrogateescape")).hexdigest()
        mac = self._mac.copy()
        mac.update(f"{ALGORITHM}\n{sdk_date}\n{digest}".encode())
        out["Authorization"] = f"{self._prefix}{signed}, Signature={mac.hexdigest()}"
        return out


# --- configuration from the environment ------------------------------------------------------

_TOKEN_VAR: Final = "SMS_FLOW_TOKEN"
_AKSK_VARS: Final = ("CLOUD_SDK_AK", "CLOUD_SDK_SK", "CLOUD_SDK_PROJECT_ID")


def auth_from_env(environ: Mapping[str, str] = os.environ) -> Auth | None:
    """Credentials from the environment, or ``None`` when none are set.

    ``SMS_FLOW_TOKEN`` gives :class:`TokenAuth`; ``CLOUD_SDK_AK``, ``CLOUD_SDK_SK`` and
    ``CLOUD_SDK_PROJECT_ID`` together give :class:`AkSkAuth`. An empty variable counts as
    unset. A token together with an AK or SK, or an incomplete AK/SK set, is a
    :class:`ConfigError` naming the variables (never their values).
    """
    token = environ.get(_TOKEN_VAR, "")
    ak, sk, project_id = (environ.get(name, "") for name in _AKSK_VARS)
    if token:
        if ak or sk:
            raise ConfigError(
                f"both {_TOKEN_VAR} and CLOUD_SDK_AK/CLOUD_SDK_SK are set; set only one kind of "
                f"credentials: unset {_TOKEN_VAR} to sign with AK/SK, or unset CLOUD_SDK_AK and "
                "CLOUD_SDK_SK to use the token"
            )
        try:
            return TokenAuth(token)
        except ConfigError as exc:
            raise ConfigError(f"{_TOKEN_VAR}: {exc}") from None
    present = [name for name, value in zip(_AKSK_VARS, (ak, sk, project_id), strict=True) if value]
    if not present:
        return None
    missing = [name for name in _AKSK_VARS if name not in present]
    if missing:
        raise ConfigError(
            f"{', '.join(present)} {'is' if len(present) == 1 else 'are'} set but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not; AK/SK signing "
            f"needs all of {', '.join(_AKSK_VARS)} (export the missing one"
            f"{'' if len(missing) == 1 else 's'}, or unset them all and set {_TOKEN_VAR} "
            "to use a token)"
        )
    try:
        return AkSkAuth(ak, sk, project_id)
    except ConfigError as exc:
        raise ConfigError(f"{', '.join(_AKSK_VARS)}: {exc}") from None
