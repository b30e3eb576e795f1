"""Who may call the simulator: an IAM token, an AK/SK signature, or anyone; and its test controls.

The ``/v3`` routes take what is configured (:meth:`Access.check`). The test controls
(``/_simulator``) take the same credentials, or the separate control token in
``X-Auth-Token`` (:meth:`Access.check_control`); with nothing configured, both are open.

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

    __slots__ = (
        "_ak",
        "_clock",
        "_control_token",
        "_project_id",
        "_sk",
        "_token",
        "control_enabled",
        "enabled",
    )

    def __init__(
        self,
        *,
        token: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        project_id: str | None = None,
        control_token: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._token = _encoded(token)
        self._control_token = _encoded(control_token)
        self._ak = ak
        self._sk = sk
        self._project_id = project_id
        self._clock = clock
        self.enabled = token is not None or (ak is not None and sk is not None)
        self.control_enabled = self.enabled or control_token is not None

    def __repr__(self) -> str:
        kinds = [
            k
            for k, on in (
                ("token", self._token),
                ("aksk", self._ak),
                ("control", self._control_token),
            )
            if on
        ]
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

    def check_control(self, request: web.BaseRequest, body: bytes) -> str | None:
        """For a test control: None when the request may pass, else why not (safe to show)."""
        if not self.control_enabled:
            return None
        if self._control_token is not None:
            given = request.headers.get("X-Auth-Token")
            if given is not None and hmac.compare_digest(
                given.encode("utf-8", "surrogateescape"), self._control_token
            ):
                return None
            if not self.enabled:
                return "test controls need the control token in X-Auth-Token"
        refused = self.check(request, body)
        if refused is None:
            return None
        also = " or the control token" if self._control_token is not None else ""
        return f"test controls need the credentials of the API{also}: {refused}"


def _encoded(token: str | None) -> bytes | None:
    return token.encode("utf-8", "surrogateescape") if token is not None else None
