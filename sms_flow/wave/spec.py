"""The wave file: its schema (:class:`WaveSpec`) and the loader shared with drill files.

A wave names its sources (ids, a listing query, or, against the simulator, a number to
register), a target pair, a concurrency, a request-rate limit, a failure policy and, with
``endpoint: simulator``, the embedded simulator's settings. ``examples/wave.yaml`` is the
reference. Every problem with a file is a :class:`~sms_flow.errors.ConfigError` naming the
file and the offending field, on one line.

Limits, each checked before anything is sent:

* the file: a regular file of at most 1 MiB (:mod:`sms_flow._textfile`), YAML read by the
  rules of statecharts (:mod:`sms_flow._yaml`: no key given twice, no deep nesting);
* ``sources.ids`` and ``sources.count``: at most :data:`IDS_MAX` and :data:`COUNT_MAX`
  (10,000 each). An account's quota is 1,000 source servers, so a real wave never comes
  near; the benchmarks drive up to 10,000 simulated sources, and nothing larger is needed
  (a million ids took 39 s and 900 MB before the first request). A larger set is several
  waves;
* ``rate_limit``: at least :data:`~sms_flow.wave.ratelimit.RATE_LIMIT_MIN` (0.01 requests
  a second, one every 100 s): a slower one would leave requests waiting for hours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sms_flow._textfile import NoSuchFile, UnreadableFile, read_text
from sms_flow._yaml import YamlProblem
from sms_flow._yaml import load as load_yaml
from sms_flow.chart import Chart, load_chart
from sms_flow.errors import ConfigError, SmsFlowError, did_you_mean
from sms_flow.simulator.faults import Faults
from sms_flow.states import StateRequest, parse_request
from sms_flow.wave.ratelimit import RATE_LIMIT_MIN
from sms_flow.wire import validate_source_id

__all__ = [
    "COUNT_MAX",
    "IDS_MAX",
    "SIMULATOR",
    "FailurePolicy",
    "SimulatorOptions",
    "SourceQuery",
    "SourceSelector",
    "WaveSpec",
    "chart_of",
    "folder_of",
    "journal_of",
    "load_spec",
    "load_wave",
]

SIMULATOR = "simulator"
"""The ``endpoint`` that runs the embedded simulator."""

IDS_MAX: Final = 10_000
"""The most ``sources.ids`` a wave takes (ten times an account's quota of 1,000 sources)."""
COUNT_MAX: Final = 10_000
"""The most sources ``sources.count`` registers in the simulator (the benchmarks' largest)."""


class SourceQuery(BaseModel):
    """A listing query against the service (``GET /v3/sources``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: str | None = None
    migration_cycle: str | None = None
    name: str | None = None
    limit: int | None = Field(None, ge=1, description="Take at most this many sources.")


class SourceSelector(BaseModel):
    """Which sources a wave drives: exactly one of ``ids``, ``query`` and ``count``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: list[str] | None = Field(None, min_length=1, max_length=IDS_MAX)
    query: SourceQuery | None = None
    count: int | None = Field(
        None, ge=1, le=COUNT_MAX, description="Simulator only: register this many."
    )

    @field_validator("ids", "count", mode="before")
    @classmethod
    def _within_caps(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "ids" and isinstance(value, list) and len(value) > IDS_MAX:
            what, cap = f"{len(value):,} ids", IDS_MAX
        elif info.field_name == "count" and type(value) is int and value > COUNT_MAX:
            what, cap = f"count {value:,}", COUNT_MAX
        else:
            return value
        raise ValueError(
            f"{what}: a wave drives at most {cap:,} sources (an account holds at most 1,000); "
            "split them into several waves"
        )

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSelector:
        given = [n for n in ("ids", "query", "count") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "name the sources with exactly one of ids (a list), query (a listing query) "
                f"or count (simulator only); got {', '.join(given) or 'none'}"
            )
        return self

    @field_validator("ids")
    @classmethod
    def _valid_ids(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None:
            for source_id in ids:
                validate_source_id(source_id)
            ids = list(dict.fromkeys(ids))
        return ids


class FailurePolicy(BaseModel):
    """What a failed source does to the rest: carry on, or halt after ``halt_after`` failed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    halt_after: int | None = Field(
        None,
        ge=1,
        description="Stop starting new work once this many sources failed; None carries on.",
    )


class SimulatorOptions(Faults):
    """Settings of the embedded simulator (used when ``endpoint: simulator``).

    Its faults are the fields of :class:`~sms_flow.simulator.faults.Faults`, inherited: the
    same names, defaults and rules (each share from 0 to 1, and drop, throttle and error
    shares together at most 1), given flat under ``simulator:`` as before.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_file: str | None = Field(
        None,
        description="Where the simulated sources live across runs (default: the wave's own "
        "file, .sms-flow/simulator/NAME.sqlite).",
    )
    service_delay: float = Field(0.2, ge=0)
    seed: int | None = None

    def fault_settings(self) -> dict[str, Any]:
        """The options that are the simulator's faults, by name (``Faults(**settings)``)."""
        return self.model_dump(include=set(Faults.model_fields))


class WaveSpec(BaseModel):
    """A wave file (YAML); ``examples/wave.yaml`` is the reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    endpoint: str = Field(SIMULATOR, description="'simulator' (embedded) or the service's URL.")
    region: str | None = Field(None, description="A region instead of an endpoint URL.")
    sources: SourceSelector
    target: str = "FINISHED/cutovered"
    concurrency: int = Field(32, ge=1, le=4096)
    rate_limit: float | None = Field(
        None,
        ge=RATE_LIMIT_MIN,
        allow_inf_nan=False,
        description=f"Requests per second towards the service (at least {RATE_LIMIT_MIN:g}).",
    )
    failure_policy: FailurePolicy | Literal["continue"] = "continue"
    verify: bool = True
    service_wait: float = Field(
        300.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds to wait for a move the service makes.",
    )
    wait_for_actions: bool = Field(
        False,
        description="Wait (up to service_wait) for moves only another API call makes (by: "
        "action, e.g. clear); by default such a source fails at once for this run, saying what "
        "to call, and a later run carries on once someone made the call.",
    )
    journal: str | None = Field(
        None,
        description="The journal file, relative to the wave file's folder (default: "
        "$SMS_FLOW_JOURNAL, else journal.sqlite in $SMS_FLOW_HOME, else ./.sms-flow); "
        "--journal comes first.",
    )
    report: str | None = Field(None, description="Where the JSON report goes.")
    chart: str | None = Field(None, description="A statechart file instead of the default one.")
    simulator: SimulatorOptions = Field(default_factory=SimulatorOptions)

    @field_validator("target")
    @classmethod
    def _target_parses(cls, value: str) -> str:
        parse_request(value)
        return value

    @model_validator(mode="after")
    def _count_needs_simulator(self) -> WaveSpec:
        if self.sources.count is not None and not self.uses_simulator:
            raise ValueError(
                "sources.count registers new sources, which only the simulator allows; "
                "against a real endpoint name the sources with ids or a query"
            )
        return self

    @property
    def uses_simulator(self) -> bool:
        return self.endpoint == SIMULATOR and self.region is None

    @property
    def halt_after(self) -> int | None:
        return None if isinstance(self.failure_policy, str) else self.failure_policy.halt_after

    @property
    def target_request(self) -> StateRequest:
        return parse_request(self.target)


def load_wave(path: str | Path, **overrides: Any) -> WaveSpec:
    """Read and check a wave file; ``overrides`` replace its top-level fields.

    Raises :class:`~sms_flow.errors.ConfigError` naming the file and the offending field.
    """
    return load_spec(path, WaveSpec, "wave", overrides)


_SpecT = TypeVar("_SpecT", bound=BaseModel)


def load_spec(
    path: str | Path,
    model: type[_SpecT],
    kind: str,
    overrides: Mapping[str, Any],
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> _SpecT:
    """Read a YAML file of ``kind`` (wave, drill) into ``model``; ``adjust`` may rewrite the raw
    mapping first. Every problem is a :class:`~sms_flow.errors.ConfigError` naming the file."""
    p = Path(path)
    try:
        raw = load_yaml(read_text(p))
    except NoSuchFile:
        raise ConfigError(
            f"{kind} file {p} does not exist; give the path of a {kind} YAML file"
        ) from None
    except UnreadableFile as exc:
        raise ConfigError(f"{kind} file {p} {exc}; give the path of a {kind} YAML file") from None
    except YamlProblem as exc:
        where = f" at {exc.where}" if exc.where else ""
        raise ConfigError(f"{kind} file {p} is not valid YAML{where}: {exc.problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind} file {p}: a {kind} is a mapping with name, sources ...")
    if adjust is not None:
        adjust(raw)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '(file)'}: "
            + " ".join(err["msg"].removeprefix("Value error, ").split())
            + (
                did_you_mean(str(err["loc"][-1]), _keys_at(model, err["loc"][:-1]))
                if err["type"] == "extra_forbidden" and err["loc"]
                else ""
            )
            for err in exc.errors()
        )
        raise ConfigError(f"{kind} file {p}: {problems}") from None
    except SmsFlowError as exc:
        raise ConfigError(f"{kind} file {p}: {exc}") from None


def _keys_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys a wave file may give at ``loc`` (a mistyped key's parent), for a suggestion."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        nested = [
            t
            for t in (field.annotation, *get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            return []
        model = nested[0]
    return [f.alias or name for name, f in model.model_fields.items()]


def folder_of(path: str | Path) -> Path:
    """The folder of a wave or drill file: where the paths it names are relative to."""
    return Path(path).resolve().parent


def journal_of(spec: WaveSpec, base: Path | None = None) -> Path:
    """The journal a wave's run writes to when none is given: the file's ``journal`` (relative
    to ``base``, the wave file's folder), else the default
    (:func:`~sms_flow.journal.default_journal_path`)."""
    if spec.journal is None:
        from sms_flow.journal import default_journal_path

        return default_journal_path()
    path = Path(spec.journal).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return path.absolute()


def chart_of(spec: WaveSpec, base: Path | None = None) -> Chart | None:
    """The wave's own chart, if it names one (relative to ``base``, the wave file's folder)."""
    if spec.chart is None:
        return None
    path = Path(spec.chart)
    if base is not None and not path.is_absolute():
        path = base / path
    return load_chart(path)
