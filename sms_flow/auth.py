"""Authentication for SMS requests: IAM token, or AK/SK ``SDK-HMAC-SHA256`` signing.

The client calls :meth:`Auth.sign` afresh on every attempt, so each retry of an AK/SK request
carries a fresh ``X-Sdk-Date`` (the gateway refuses a date more than 15 minutes off its clock).

AK/SK signing is the scheme the official Huawei Cloud SDK uses. :class:`AkSkAuth` decides which
headers are sent (and so signed); the canonical request, the string to sign, the HMAC and the
``Authorization`` value come from the private module :mod:`sms_flow._signing`, the one
implementation of those rules, which the verifier uses too.

Secrets stay out of sight: no ``repr``, ``str`` or exception message here holds a token, an SK
or a signature.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final, NoReturn, Protocol, final

from yarl import URL

from sms_flow._signing import (
    CONTENT_SHA256,
    SigningKey,
    canonical_query,
    canonical_uri,
    format_sdk_date,
    join_canonical_request,
    payload_hash,
    signed_authorization,
    string_to_sign,
)
from sms_flow.errors import ConfigError, InvalidRequestError

__all__ = ["AkSkAuth", "Auth", "TokenAuth", "auth_from_env"]

_TOKEN_MAX_LENGTH: Final = 16_384

# Headers sign() sets itself; a caller's copy (in any case) is replaced, not sent twice.
_OWN_HEADERS: Final = frozenset({"x-sdk-date", "x-project-id", "authorization"})


# --- the protocol and its two modes ----------------------------------------------------------


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

    __slots__ = ("_ak", "_clock", "_date_cache", "_key", "_project_id", "_sk")
    _ak: str
    _clock: Callable[[], datetime]
    _date_cache: tuple[float, str]
    _key: SigningKey
    _project_id: str
    _sk: str

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
        set_(self, "_key", SigningKey(sk))
        set_(self, "_sk", sk)  # only for _secrets_of: the client redacts it wherever seen
        set_(self, "_project_id", project_id)
        set_(self, "_clock", clock or _utc_now)
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
            text = format_sdk_date(moment)
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

        # Every header sent is signed: the names are all of them, lower-case and sorted.
        names = sorted(lowered)
        request = join_canonical_request(
            method,
            canonical_uri(url.raw_path),
            canonical_query(url.query.items()) if url.raw_query_string else "",
            lowered,
            names,
            payload_hash(body, lowered.get(CONTENT_SHA256)),
        )
        signature = self._key.sign(string_to_sign(sdk_date, request))
        out["Authorization"] = signed_authorization(self._ak, names, signature)
        return out


def _secrets_of(auth: object) -> tuple[str, ...]:
    """The secrets of ``auth`` that nothing may ever show: a token, or an SK; else none.

    For the client's redaction of answers (:func:`sms_flow._answers.redact`): an SK is never
    sent, but it is removed all the same should an answer ever hold it.
    """
    if isinstance(auth, TokenAuth):
        return (auth._token,)
    if isinstance(auth, AkSkAuth):
        return (auth._sk,)
    return ()


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
