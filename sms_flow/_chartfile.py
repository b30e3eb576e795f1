"""Reading a statechart file: YAML by sms-flow's rules, checked against the file's schema.

:func:`parse` turns a chart file's text into :class:`ChartData`: plain data, every default
filled in, from which :class:`~sms_flow.chart.Chart` derives its tables and makes its own
checks (states, cycles, edges, the graph). The schema is pydantic and the YAML is read by
:mod:`sms_flow._yaml` (PyYAML; no key given twice, no deep nesting: the rules of wave files
too); together they take about a third of a second to import: :mod:`sms_flow.chart` imports
this module only when it has a chart's text to read, and keeps the default chart's
:class:`ChartData` in a cache (see :func:`sms_flow.chart.default_chart`).
"""

from __future__ import annotations

import keyword
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sms_flow._yaml import YamlProblem
from sms_flow._yaml import load as load_yaml
from sms_flow.errors import ChartError

__all__ = ["ChartData", "StateData", "TransitionData", "ViewData", "parse"]


# -- what a checked file holds ----------------------------------------------------------


class StateData(TypedDict):
    """One entry of ``states``, defaults filled in."""

    cycles: list[str]
    frozen: bool
    final: bool
    group: str
    note: str


class TransitionData(TypedDict):
    """One entry of ``transitions``, defaults filled in; ``from_`` is the file's ``from``, a list."""

    trigger: str
    from_: list[str]
    to: str
    cycle: str
    by: Literal["client", "service", "action"]
    basis: Literal["documented", "inferred"]
    note: str
    irreversible: bool
    call: str | None


class ViewData(TypedDict):
    """One entry of ``views``: a picture of part of the chart, the edges of ``triggers``."""

    title: str
    note: str
    triggers: list[str]


class ChartData(TypedDict):
    """A chart file that passed its schema: what :class:`~sms_flow.chart.Chart` is built from."""

    name: str
    version: int
    initial: str
    states: dict[str, StateData]
    transitions: list[TransitionData]
    views: dict[str, ViewData]


# -- the file's schema ------------------------------------------------------------------


class _StateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cycles: list[str] = Field(min_length=1)
    frozen: bool = False
    final: bool = False
    group: str = "other"
    note: str = ""


class _TransitionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    trigger: str = Field(min_length=1, max_length=64)
    from_: list[str] = Field(alias="from", min_length=1)
    to: str
    cycle: str = "keep"
    by: Literal["client", "service", "action"] = "client"
    basis: Literal["documented", "inferred"]
    note: str = ""
    irreversible: bool = False
    call: str | None = Field(None, min_length=1, max_length=500)

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("trigger")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier() or keyword.iskeyword(value) or value.startswith("_"):
            raise ValueError(
                f"trigger {value!r} must be a Python identifier that does not start with '_'"
            )
        return value


class _ViewSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1)
    note: str = ""
    triggers: list[str] = Field(min_length=1)


class _ChartSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    version: int = 1
    initial: str
    states: dict[str, _StateSpec] = Field(min_length=1)
    transitions: list[_TransitionSpec] = Field(min_length=1)
    views: dict[str, _ViewSpec] = Field(default_factory=dict)


def _pydantic_entry(loc: tuple[int | str, ...], raw: Any) -> str:
    """Name the offending entry of a pydantic error the way a person finds it in the file."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
            if i == 1 and loc[0] == "transitions":
                try:
                    trigger = raw["transitions"][part]["trigger"]
                except (KeyError, IndexError, TypeError):
                    trigger = None
                if trigger:
                    parts[-1] += f" (trigger {trigger!r})"
        else:
            parts.append(str(part))
    return ".".join(parts)


def parse(text: str, *, source: str) -> ChartData:
    """Read a chart file's text and check it against the schema; ``source`` names it in errors.

    Raises :class:`~sms_flow.errors.ChartError` for YAML that does not parse (with the line
    and column), a key given twice, collections nested too deep, a value that cannot be read,
    or a field missing, unknown or of the wrong type (naming the entry, and a transition's
    trigger).
    """
    try:
        raw = load_yaml(text)
    except YamlProblem as exc:
        raise ChartError(source, [(exc.where, f"not valid YAML: {exc.problem}")]) from None
    if not isinstance(raw, dict):
        raise ChartError(
            source, [("", "a statechart is a mapping with name, initial, states, transitions")]
        )
    try:
        spec = _ChartSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [(_pydantic_entry(tuple(err["loc"]), raw), err["msg"]) for err in exc.errors()]
        raise ChartError(source, problems) from None
    data: ChartData = spec.model_dump()  # type: ignore[assignment]
    return data
