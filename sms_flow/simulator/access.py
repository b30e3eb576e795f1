"""Who may call the simulator's ``/v3`` routes: an IAM token, an AK/SK signature, or anyone.

The signature is checked with :func:`sms_flow._signing.verify_request`, built on the one
implementation of the ``SDK-HMAC-SHA256`` rules that the client's signer shares. A refusal
gives a short reason that is safe to show: it never holds the token, the SK or any signature.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from sms_flow._signing import verify_request
from sms_flow.errors import SignatureError

__all__ = ["Access"]

MAX_SKEW = timedelta(minutes=15)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Access:
    """Checks the credentials of one request against the configured token and AK/SK."""

    __slots__ = ("_ak", "_clock", "_project_id", "_sk", "_token", "enabled")

    def __init__(
        self,
        *,
        token: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        project_id: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._token = token.encode("utf-8", "surrogateescape") if token is not None else None
        self._ak = ak
        self._sk = sk
        self._project_id = project_id
        self._clock = clock
        self.enabled = token is not None or (ak is not None and sk is not None)

    def __repr__(self) -> str:
        kinds = [k for k, on in (("token", self._token), ("aksk", self._ak)) if on]
        return f"Access({', '.join(kinds) or 'open'})"

    def _secret_for(self, access_key: str) -> str | None:
        return self._sk if access_key == self._ak else None

    def check(self, request: web.BaseRequest, body: bytes) -> str | None:
        """None when the request may pass, else why it may not (safe to show)."""
        if not self.enabled:
            return None
        headers = request.headers
        refused: str | None = None
        if self._token is not None:
            given = headers.get("X-Auth-Token")
            if given is not None:
                if hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token):
                    return None
                refused = "the X-Auth-Token is not valid"
        if self._ak is not None and ("Authorization" in headers or refused is None):
            if "Authorization" not in headers and self._token is not None:
                return (
                    "no credentials: send an IAM token in X-Auth-Token or sign the request "
                    "(SDK-HMAC-SHA256 Authorization)"
                )
            try:
                verify_request(
                    method=request.method,
                    path=request.rel_url.raw_path,
                    query_pairs=request.rel_url.query.items(),
                    headers=headers,
                    body=body,
                    secret_for=self._secret_for,
                    now=self._clock(),
                    max_skew=MAX_SKEW,
                )
            except SignatureError as exc:
                return f"AK/SK signature refused: {exc}"
            if headers.get("X-Project-Id") != self._project_id:
                return "X-Project-Id is missing or is not the project of the access key"
            return None
        if refused is None:
            refused = "no X-Auth-Token header: send the IAM token in X-Auth-Token"
        return refused
