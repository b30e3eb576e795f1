"""The simulator's configuration."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sms_flow.chart import Chart
from sms_flow.simulator.faults import Faults
from sms_flow.wire import TOKEN_MAX

__all__ = ["HEADER_TIMEOUT", "MAX_CONNECTIONS", "SimulatorConfig", "is_loopback"]

HEADER_TIMEOUT: Final = 30.0
"""Default seconds a connection may take to send a complete request (see SimulatorConfig)."""
MAX_CONNECTIONS: Final = 512
"""Default cap on open connections (see SimulatorConfig)."""


def is_loopback(host: str) -> bool:
    """True when ``host`` is ``localhost`` or a loopback address (``127.0.0.1``, ``::1``)."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any address


class SimulatorConfig(BaseModel):
    """How a :class:`~sms_flow.simulator.Simulator` behaves.

    With neither ``token`` nor ``ak``/``sk``/``project_id`` every request is accepted. With
    a token, ``X-Auth-Token`` must equal it; with AK/SK, requests must carry a valid
    ``SDK-HMAC-SHA256`` signature and ``X-Project-Id``; with both, either is accepted. The
    test controls (``/_simulator``) then need the same credentials, or ``control_token`` in
    ``X-Auth-Token``; a ``control_token`` alone guards only them. The token, the SK and the
    control token never appear in ``repr``.

    Listening anywhere but on loopback (``host``) needs ``token`` or AK/SK: the simulator
    would otherwise take changes from anyone who reaches it.

    It is safe to leave running: a connection that has not sent a complete request
    ``header_timeout`` seconds after it opened (or after its last answer), or whose body has
    not arrived that long after its headers, is closed; at most ``max_connections`` are open
    at once, and when a new one comes at the cap, the connection idle the longest is closed
    to make room (when none is idle, the new one is answered 503 and closed).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(0, ge=0, le=65_535, description="Port to listen on; 0 picks a free one.")
    token: str | None = Field(
        None, min_length=1, max_length=TOKEN_MAX, repr=False, description="Accepted IAM token."
    )
    ak: str | None = Field(None, min_length=1, description="Accepted access key.")
    sk: str | None = Field(None, min_length=1, repr=False, description="Secret key of ak.")
    project_id: str | None = Field(
        None, min_length=1, description="Project id X-Project-Id must carry with AK/SK."
    )
    seed: int | None = Field(None, description="Seed of the fault dice; runs repeat with it.")
    strict: bool = Field(
        False, description="Refuse (400 SMS.SIM1) a change that is not a client edge of the chart."
    )
    chart: Chart | None = Field(None, description="Statechart; None means the default chart.")
    service_delay: float = Field(
        0.2, ge=0, le=86_400, description="Seconds before the service makes its own moves."
    )
    faults: Faults = Field(default_factory=Faults, description="Faults injected on /v3 routes.")
    state_file: Path | None = Field(
        None, description="SQLite file that keeps sources and histories across restarts."
    )
    control_token: str | None = Field(
        None,
        min_length=1,
        max_length=TOKEN_MAX,
        repr=False,
        description="Token (in X-Auth-Token) the test controls accept besides the credentials.",
    )
    header_timeout: float = Field(
        HEADER_TIMEOUT,
        gt=0,
        le=3_600,
        allow_inf_nan=False,
        description="Seconds a connection may take to send a complete request.",
    )
    max_connections: int = Field(
        MAX_CONNECTIONS, ge=1, le=100_000, description="Most connections open at once."
    )

    @model_validator(mode="after")
    def _aksk_complete(self) -> SimulatorConfig:
        given = [n for n in ("ak", "sk", "project_id") if getattr(self, n) is not None]
        if given and len(given) != 3:
            missing = [n for n in ("ak", "sk", "project_id") if n not in given]
            raise ValueError(
                f"{', '.join(given)} given without {', '.join(missing)}: AK/SK verification "
                "needs ak, sk and project_id together"
            )
        return self

    @model_validator(mode="after")
    def _public_needs_auth(self) -> SimulatorConfig:
        if not is_loopback(self.host) and not self.auth_configured:
            raise ValueError(
                f"host {self.host!r} is not a loopback address: anyone who reaches it could "
                "change the simulated sources; give a token or AK/SK (token, or ak, sk and "
                "project_id), or listen on 127.0.0.1"
            )
        return self

    @property
    def auth_configured(self) -> bool:
        """True when requests must authenticate."""
        return self.token is not None or self.ak is not None
