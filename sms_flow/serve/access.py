"""Who may call ``sms-flow serve``: SMS callers on the gateway, API tokens on sms-flow's routes.

Two kinds of credentials, for two kinds of routes:

* **The gateway** (``/v3/...``) takes SMS's own credentials, as SMS does. A caller's IAM
  token (``X-Auth-Token``) is passed on to SMS, which judges it; the caller is named
  ``token:<first 8 hex digits of its sha256>``. An AK/SK-signed caller
  (``SDK-HMAC-SHA256``) is verified here against the keys the gateway is configured with
  (:class:`CallerKeys`: AK → SK and project), since a signature covers the host and cannot be
  forwarded; the gateway then signs its own request to SMS with its own credentials. The
  caller is named ``ak:<AK>``. :meth:`CallerKeys.identify` does both.
* **sms-flow's routes** (``/metrics``, ``/api/v1``) take API tokens (:class:`ApiTokens`),
  sent as ``Authorization: Bearer <token>``, each with a role: ``viewer`` (read) or
  ``operator`` (read, and request changes). With no token configured they are open, which
  :func:`check_binding` allows on loopback only.

No refusal here holds a token, an SK or a signature; :class:`Caller` keeps the token it
passes on out of its ``repr``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

from sms_flow._signing import verify_request
from sms_flow.errors import ConfigError, SignatureError

__all__ = [
    "KEYS_ENV",
    "TOKENS_ENV",
    "ApiTokens",
    "Caller",
    "CallerKeys",
    "Refusal",
    "Role",
    "check_binding",
    "is_loopback",
]

KEYS_ENV: Final = "SMS_FLOW_SERVE_KEYS"
"""AK/SK keys of the gateway's callers: ``AK:SK:PROJECT`` entries, comma-separated."""
TOKENS_ENV: Final = "SMS_FLOW_SERVE_TOKENS"
"""API tokens of sms-flow's routes: ``ROLE:TOKEN`` entries, comma-separated."""
MAX_SKEW: Final = timedelta(minutes=15)
"""How far a caller's ``X-Sdk-Date`` may be from this machine's clock (as the API gateway)."""
_TOKEN_MIN: Final = 16


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    """What an API token may do: ``viewer`` reads, ``operator`` also requests changes."""

    VIEWER = "viewer"
    OPERATOR = "operator"

    def allows(self, needed: Role) -> bool:
        return self is Role.OPERATOR or needed is Role.VIEWER


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not pass: the HTTP status (401: no credentials; 403: refused)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called the gateway: ``actor`` for the journal, and the token to pass on (if any)."""

    actor: str
    token: str | None = field(default=None, repr=False)
    """The caller's IAM token, passed on to SMS; ``None`` for an AK/SK caller."""
    project: str | None = None
    """The project of the caller's access key (AK/SK callers)."""


def token_actor(token: str) -> str:
    """``token:<first 8 hex digits of the token's sha256>``: names a token caller, not the token."""
    return "token:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _read_file(path: str | Path, what: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {str(path)!r}: {exc.strerror}") from None
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


class CallerKeys:
    """The AK/SK keys callers of the gateway sign with: AK → (SK, project).

    Entries are ``AK:SK:PROJECT``, separated by commas or new lines (a file may have ``#``
    comments). Build it with :meth:`parse`, :meth:`from_file` or :meth:`from_env`.
    """

    __slots__ = ("_clock", "_keys")

    def __init__(
        self,
        keys: Mapping[str, tuple[str, str]] | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._keys = dict(keys or {})
        self._clock = clock

    def __repr__(self) -> str:
        return f"CallerKeys({len(self._keys)} keys)"

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def parse(cls, text: str, *, source: str = KEYS_ENV) -> CallerKeys:
        """Read ``AK:SK:PROJECT`` entries; a malformed one raises ConfigError naming it by
        position and AK (never its SK)."""
        keys: dict[str, tuple[str, str]] = {}
        for n, entry in enumerate(_entries(text), 1):
            parts = entry.split(":")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                shown = parts[0].strip() if len(parts) > 1 else "?"
                raise ConfigError(
                    f"{source}: entry {n} (AK {shown!r}) is not AK:SK:PROJECT; give each "
                    "caller's access key, secret key and project id, separated by colons"
                )
            ak, sk, project = (p.strip() for p in parts)
            if ak in keys:
                raise ConfigError(f"{source}: AK {ak!r} is given twice; give each key once")
            keys[ak] = (sk, project)
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | Path) -> CallerKeys:
        return cls.parse(_read_file(path, "keys"), source=str(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CallerKeys:
        return cls.parse(environ.get(KEYS_ENV, ""))

    def _secret_for(self, access_key: str) -> str | None:
        found = self._keys.get(access_key)
        return found[0] if found is not None else None

    def identify(
        self,
        *,
        method: str,
        raw_path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Caller | Refusal:
        """The caller of one gateway request, or why it is refused (safe to show)."""
        token = headers.get("X-Auth-Token")
        if token is not None:
            if not token.strip():
                return Refusal(401, "X-Auth-Token is empty: send the IAM token in X-Auth-Token")
            return Caller(token_actor(token), token=token)
        if "Authorization" not in headers:
            return Refusal(
                401,
                "no credentials: send an IAM token in X-Auth-Token or sign the request "
                "(SDK-HMAC-SHA256 Authorization)",
            )
        if not self._keys:
            return Refusal(
                403,
                "AK/SK signature refused: this gateway has no caller keys configured "
                f"({KEYS_ENV} or --keys-file); send an IAM token in X-Auth-Token instead",
            )
        try:
            identity = verify_request(
                method=method,
                path=raw_path,
                query_pairs=query.items(),
                headers=headers,
                body=body,
                secret_for=self._secret_for,
                now=self._clock(),
                max_skew=MAX_SKEW,
            )
        except SignatureError as exc:
            return Refusal(403, f"AK/SK signature refused: {exc}")
        ak = identity.access_key
        project = self._keys[ak][1]
        if headers.get("X-Project-Id") != project:
            return Refusal(403, "X-Project-Id is missing or is not the project of the access key")
        return Caller(f"ak:{ak}", project=project)


class ApiTokens:
    """API tokens for sms-flow's own routes, each with a :class:`Role`.

    Entries are ``ROLE:TOKEN`` (role ``viewer`` or ``operator``), separated by commas or new
    lines (a file may have ``#`` comments). Only the tokens' sha256 digests are kept, and a
    token is looked up by its digest (no comparison of the token itself).
    """

    __slots__ = ("_digests",)

    def __init__(self, tokens: Mapping[str, Role] | None = None) -> None:
        self._digests = {_digest(t): Role(r) for t, r in (tokens or {}).items()}

    def __repr__(self) -> str:
        return f"ApiTokens({len(self._digests)} tokens)"

    def __len__(self) -> int:
        return len(self._digests)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    @classmethod
    def parse(cls, text: str, *, source: str = TOKENS_ENV) -> ApiTokens:
        tokens: dict[str, Role] = {}
        roles = ", ".join(r.value for r in Role)
        for n, entry in enumerate(_entries(text), 1):
            role, sep, token = entry.partition(":")
            role, token = role.strip(), token.strip()
            if not sep or role not in {r.value for r in Role}:
                raise ConfigError(
                    f"{source}: entry {n} does not start with a role ({roles}) and a colon; "
                    "give ROLE:TOKEN, e.g. viewer:<a long random token>"
                )
            if len(token) < _TOKEN_MIN:
                raise ConfigError(
                    f"{source}: entry {n} ({role}) has a token of {len(token)} characters; give "
                    f"at least {_TOKEN_MIN} (e.g. python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')"
                )
            tokens[token] = Role(role)
        return cls(tokens)

    @classmethod
    def from_file(cls, path: str | Path) -> ApiTokens:
        return cls.parse(_read_file(path, "tokens"), source=str(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ApiTokens:
        return cls.parse(environ.get(TOKENS_ENV, ""))

    def check(self, headers: Mapping[str, str], needed: Role) -> Refusal | None:
        """None when the request may pass for ``needed``, else why not (safe to show)."""
        if not self._digests:
            return None
        scheme, _, given = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return Refusal(
                401, "no API token: send Authorization: Bearer <token> (a viewer or operator token)"
            )
        role = self._digests.get(_digest(given.strip()))
        if role is None:
            return Refusal(
                401,
                "the API token (Authorization: Bearer ...) is not valid: check the token you were given",
            )
        if not role.allows(needed):
            return Refusal(
                403, f"a {role.value} token may not do this; it needs an {needed.value} token"
            )
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: ApiTokens) -> None:
    """Refuse (ConfigError) to bind anywhere but loopback without API tokens."""
    if not is_loopback(host) and not tokens.enabled:
        raise ConfigError(
            f"--host {host} would serve other machines, and no API token is configured; set "
            f"{TOKENS_ENV} (ROLE:TOKEN entries, roles viewer and operator) or give "
            "--tokens-file FILE, or bind to 127.0.0.1"
        )
