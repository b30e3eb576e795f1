"""The simulator's configuration."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sms_flow.chart import Chart
from sms_flow.simulator.faults import Faults
from sms_flow.wire import TOKEN_MAX

__all__ = ["SimulatorConfig"]


class SimulatorConfig(BaseModel):
    """How a :class:`~sms_flow.simulator.Simulator` behaves.

    With neither ``token`` nor ``ak``/``sk``/``project_id`` every request is accepted. With
    a token, ``X-Auth-Token`` must equal it; with AK/SK, requests must carry a valid
    ``SDK-HMAC-SHA256`` signature and ``X-Project-Id``; with both, either is accepted. The
    token and the SK never appear in ``repr``.
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

    @property
    def auth_configured(self) -> bool:
        """True when requests must authenticate."""
        return self.token is not None or self.ak is not None
