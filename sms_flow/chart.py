"""Loading and checking a statechart: the states of a source server and the permitted moves.

A statechart is data (``statecharts/sms-source.yaml`` is the default); this module reads it,
checks it, and derives the tables the rest of sms-flow uses, once, at load:

* every permitted pair ``(copystate, migrationcycle)``, as one shared :class:`StatePair`
  instance per pair;
* every edge, expanded from the file's transitions to one :class:`Edge` per source pair;
* the edges out of each pair, and the edge of each ``(pair, trigger)``.

Loading reports every mistake it finds with the file name and the offending entry: YAML
that does not parse, a duplicated key, a field of the wrong type, an unknown state, a cycle
not permitted for a state, an edge pushed out of a frozen state, a trigger that is ambiguous
from one state, an unreachable state, and a non-final state with no way out or no way to a
final state.
"""

from __future__ import annotations

import hashlib
import keyword
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sms_flow.errors import ChartError
from sms_flow.states import (
    CopyState,
    MigrationCycle,
    StatePair,
    parse_copystate,
    parse_cycle,
)

__all__ = [
    "Basis",
    "By",
    "Chart",
    "Edge",
    "StateInfo",
    "default_chart",
    "default_chart_path",
    "load_chart",
]

DEFAULT_CHART_NAME = "sms-source.yaml"


class By(StrEnum):
    """Who makes a move."""

    CLIENT = "client"
    """sms-flow pushes it through ``PUT /v3/sources/{id}/changestate``."""
    SERVICE = "service"
    """The service makes it by itself, in time (stopping → stopped)."""
    ACTION = "action"
    """The service makes it when another API is called (a task action, a delete)."""


class Basis(StrEnum):
    """Whether Huawei documents an edge or sms-flow infers it."""

    DOCUMENTED = "documented"
    INFERRED = "inferred"


@dataclass(frozen=True, slots=True)
class StateInfo:
    """One copystate as the chart describes it."""

    copystate: CopyState
    cycles: tuple[MigrationCycle, ...]
    frozen: bool
    final: bool
    group: str
    note: str


@dataclass(frozen=True, slots=True)
class Edge:
    """One permitted move from one pair to another."""

    trigger: str
    source: StatePair
    dest: StatePair
    by: By
    basis: Basis
    note: str
    entry: int
    """Index of the transition in the chart file that this edge comes from."""

    @property
    def pushable(self) -> bool:
        """True when sms-flow pushes this move itself (``by: client``)."""
        return self.by is By.CLIENT

    def __str__(self) -> str:
        return f"{self.trigger}: {self.source} → {self.dest}"


# -- the file's schema ----------------------------------------------------------------


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


class _ChartSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    version: int = 1
    initial: str
    states: dict[str, _StateSpec] = Field(min_length=1)
    transitions: list[_TransitionSpec] = Field(min_length=1)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


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


# -- the chart ------------------------------------------------------------------------


class Chart:
    """A loaded, checked statechart and the tables derived from it.

    Build one with :func:`load_chart`, :meth:`Chart.from_text` or :func:`default_chart`.
    A chart is immutable; share one among any number of tracked source servers.
    """

    __slots__ = (
        "_edge_of",
        "_out",
        "_pairs_by_key",
        "digest",
        "edges",
        "initial",
        "name",
        "pairs",
        "source",
        "states",
        "triggers",
        "version",
    )

    name: str
    version: int
    source: str
    digest: str
    initial: StatePair
    states: Mapping[CopyState, StateInfo]
    pairs: tuple[StatePair, ...]
    edges: tuple[Edge, ...]
    triggers: tuple[str, ...]

    def __init__(self, spec: _ChartSpec, *, source: str, digest: str) -> None:
        problems: list[tuple[str, str]] = []
        self.source = source
        self.digest = digest
        self.name = spec.name
        self.version = spec.version

        states: dict[CopyState, StateInfo] = {}
        for key, st in spec.states.items():
            entry = f"states.{key}"
            try:
                cs = parse_copystate(key)
            except ValueError as exc:
                problems.append((entry, str(exc)))
                continue
            if cs in states:
                problems.append((entry, f"copystate {cs.value} is described twice"))
                continue
            cycles: list[MigrationCycle] = []
            for raw_cycle in st.cycles:
                try:
                    cy = parse_cycle(raw_cycle)
                except ValueError as exc:
                    problems.append((f"{entry}.cycles", str(exc)))
                    continue
                if cy in cycles:
                    problems.append((f"{entry}.cycles", f"cycle {cy.value} is listed twice"))
                    continue
                cycles.append(cy)
            states[cs] = StateInfo(cs, tuple(cycles), st.frozen, st.final, st.group, st.note)
        self.states = states

        pairs: dict[tuple[str, str], StatePair] = {}
        for info in states.values():
            for cy in info.cycles:
                pairs[(info.copystate, cy)] = StatePair(info.copystate, cy)
        self._pairs_by_key = pairs
        self.pairs = tuple(pairs.values())

        initial = self._resolve_pair(spec.initial, "initial", problems)
        edges: list[Edge] = []
        for index, tr in enumerate(spec.transitions):
            edges.extend(self._expand(index, tr, problems))
        self.edges = tuple(edges)

        out: dict[StatePair, list[Edge]] = {p: [] for p in self.pairs}
        edge_of: dict[tuple[StatePair, str], Edge] = {}
        for edge in self.edges:
            slot = (edge.source, edge.trigger)
            if slot in edge_of:
                first = edge_of[slot]
                where = _entry_name(edge.entry, edge.trigger)
                if first.dest == edge.dest:
                    problem = (
                        f"trigger {edge.trigger!r} from {edge.source} is already given by "
                        f"{_entry_name(first.entry, first.trigger)}"
                    )
                else:
                    problem = (
                        f"trigger {edge.trigger!r} is ambiguous from {edge.source}: it leads to "
                        f"{first.dest} ({_entry_name(first.entry, first.trigger)}) and to "
                        f"{edge.dest}; give one of them another trigger name or narrow 'from'"
                    )
                problems.append((where, problem))
                continue
            edge_of[slot] = edge
            out[edge.source].append(edge)
        self._edge_of = edge_of
        self._out = {p: tuple(es) for p, es in out.items()}
        self.triggers = tuple(dict.fromkeys(e.trigger for e in self.edges))

        if initial is not None:
            self.initial = initial
            self._check_graph(problems)
        if problems:
            raise ChartError(source, problems)

    # -- construction helpers ---------------------------------------------------------

    def _resolve_pair(
        self, text: str, entry: str, problems: list[tuple[str, str]]
    ) -> StatePair | None:
        copystate, sep, cycle = text.partition("/")
        try:
            cs = parse_copystate(copystate)
            cy = parse_cycle(cycle) if sep else None
        except ValueError as exc:
            problems.append((entry, str(exc)))
            return None
        if cy is None:
            problems.append((entry, f"{text!r} needs a cycle: COPYSTATE/cycle"))
            return None
        return self._permitted(cs, cy, entry, problems)

    def _permitted(
        self,
        cs: CopyState,
        cy: MigrationCycle,
        entry: str,
        problems: list[tuple[str, str]],
        *,
        context: str = "",
    ) -> StatePair | None:
        found = self._pairs_by_key.get((cs, cy))
        if found is not None:
            return found
        info = self.states.get(cs)
        if info is None:
            problems.append((entry, f"state {cs.value} is not described under 'states'"))
        else:
            allowed = ", ".join(c.value for c in info.cycles)
            problems.append(
                (
                    entry,
                    f"cycle {cy.value} is not permitted for {cs.value}{context} "
                    f"(it takes: {allowed})",
                )
            )
        return None

    def _expand(
        self, index: int, tr: _TransitionSpec, problems: list[tuple[str, str]]
    ) -> Iterable[Edge]:
        entry = _entry_name(index, tr.trigger)
        try:
            dest_cs = parse_copystate(tr.to)
        except ValueError as exc:
            problems.append((f"{entry}.to", str(exc)))
            return []
        if dest_cs not in self.states:
            problems.append(
                (f"{entry}.to", f"state {dest_cs.value} is not described under 'states'")
            )
            return []
        set_cycle: MigrationCycle | None = None
        if tr.cycle.strip().casefold() != "keep":
            try:
                set_cycle = parse_cycle(tr.cycle)
            except ValueError as exc:
                problems.append((f"{entry}.cycle", f"{exc} (or keep)"))
                return []

        sources: list[StatePair] = []
        for raw in tr.from_:
            copystate, sep, cycle = raw.partition("/")
            try:
                cs = parse_copystate(copystate)
                cy = parse_cycle(cycle) if sep else None
            except ValueError as exc:
                problems.append((f"{entry}.from", str(exc)))
                continue
            info = self.states.get(cs)
            if info is None:
                problems.append(
                    (f"{entry}.from", f"state {cs.value} is not described under 'states'")
                )
                continue
            if cy is None:
                sources.extend(self._pairs_by_key[(cs, c)] for c in info.cycles)
            else:
                pair = self._permitted(cs, cy, f"{entry}.from", problems)
                if pair is not None:
                    sources.append(pair)

        by, basis = By(tr.by), Basis(tr.basis)
        edges: list[Edge] = []
        for src in dict.fromkeys(sources):
            src_info = self.states[src.copystate]
            if src_info.frozen and by is By.CLIENT:
                problems.append(
                    (
                        entry,
                        f"{src.copystate.value} is frozen (the service ignores changestate in "
                        f"it), so a move out of it cannot be pushed; set by: service or by: action",
                    )
                )
                continue
            dest_cycle = set_cycle if set_cycle is not None else src.migrationcycle
            dest = self._permitted(
                dest_cs,
                dest_cycle,
                f"{entry}.to",
                problems,
                context=f" (kept from {src})" if set_cycle is None else "",
            )
            if dest is None:
                continue
            if dest == src:
                problems.append((entry, f"the move from {src} leads back to itself"))
                continue
            edges.append(Edge(tr.trigger, src, dest, by, basis, tr.note.strip().rstrip("."), index))
        return edges

    def _check_graph(self, problems: list[tuple[str, str]]) -> None:
        finals = [p for p in self.pairs if self.states[p.copystate].final]
        if not finals:
            problems.append(("states", "no state is marked final: true"))
            return
        reachable = self.reachable_from(self.initial)
        for pair in self.pairs:
            if pair not in reachable:
                problems.append(
                    (
                        f"states.{pair.copystate.value}",
                        f"{pair} cannot be reached from the initial state {self.initial}",
                    )
                )
        # Reverse search from the final states finds every pair that can still end.
        incoming: dict[StatePair, list[StatePair]] = {p: [] for p in self.pairs}
        for edge in self.edges:
            incoming[edge.dest].append(edge.source)
        can_end: set[StatePair] = set(finals)
        queue = deque(finals)
        while queue:
            pair = queue.popleft()
            for prev in incoming[pair]:
                if prev not in can_end:
                    can_end.add(prev)
                    queue.append(prev)
        for pair in self.pairs:
            if self.states[pair.copystate].final:
                continue
            if not self._out[pair]:
                problems.append(
                    (f"states.{pair.copystate.value}", f"{pair} is not final and has no way out")
                )
            elif pair not in can_end:
                problems.append(
                    (
                        f"states.{pair.copystate.value}",
                        f"no final state can be reached from {pair}",
                    )
                )

    # -- queries ------------------------------------------------------------------------

    def pair(self, copystate: CopyState, migrationcycle: MigrationCycle) -> StatePair | None:
        """The shared instance of a permitted pair, or ``None`` when the chart forbids it."""
        return self._pairs_by_key.get((copystate, migrationcycle))

    def is_permitted(self, pair: tuple[CopyState, MigrationCycle]) -> bool:
        """True when the chart lets ``copystate`` and ``migrationcycle`` go together."""
        return pair in self._pairs_by_key

    def info(self, copystate: CopyState) -> StateInfo | None:
        """The chart's description of a copystate, or ``None`` when it has none."""
        return self.states.get(copystate)

    def is_frozen(self, pair: StatePair) -> bool:
        """True when the service ignores changestate in this state."""
        info = self.states.get(pair.copystate)
        return info is not None and info.frozen

    def is_final(self, pair: StatePair) -> bool:
        """True when a migration may come to rest in this state."""
        info = self.states.get(pair.copystate)
        return info is not None and info.final

    def edges_from(self, pair: StatePair) -> tuple[Edge, ...]:
        """Every edge out of ``pair``, in file order."""
        return self._out.get(pair, ())

    def edge(self, pair: StatePair, trigger: str) -> Edge | None:
        """The edge ``trigger`` takes from ``pair``, if any."""
        return self._edge_of.get((pair, trigger))

    def reachable_from(self, start: StatePair) -> set[StatePair]:
        """Every pair reachable from ``start`` (``start`` included)."""
        seen = {start}
        queue = deque([start])
        while queue:
            for edge in self._out.get(queue.popleft(), ()):
                if edge.dest not in seen:
                    seen.add(edge.dest)
                    queue.append(edge.dest)
        return seen

    def __repr__(self) -> str:
        return (
            f"Chart(name={self.name!r}, source={self.source!r}, pairs={len(self.pairs)}, "
            f"edges={len(self.edges)})"
        )

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, *, source: str = "<string>") -> Chart:
        """Load a chart from YAML text; ``source`` names it in error messages."""
        try:
            raw = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = exc.problem or str(exc)
            raise ChartError(source, [(where, f"not valid YAML: {problem}")]) from None
        except yaml.YAMLError as exc:
            raise ChartError(source, [("", f"not valid YAML: {exc}")]) from None
        if not isinstance(raw, dict):
            raise ChartError(
                source, [("", "a statechart is a mapping with name, initial, states, transitions")]
            )
        try:
            spec = _ChartSpec.model_validate(raw)
        except ValidationError as exc:
            problems = [
                (_pydantic_entry(tuple(err["loc"]), raw), err["msg"]) for err in exc.errors()
            ]
            raise ChartError(source, problems) from None
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return cls(spec, source=source, digest=digest)


def _entry_name(index: int, trigger: str) -> str:
    return f"transitions[{index}] (trigger {trigger!r})"


def load_chart(path: str | os.PathLike[str]) -> Chart:
    """Load and check a statechart file.

    Raises :class:`~sms_flow.errors.ChartError` naming the file and every offending entry.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChartError(
            str(p), [("", "no such file; give the path of a statechart YAML file")]
        ) from None
    except IsADirectoryError:
        raise ChartError(
            str(p), [("", "is a directory; give the path of a statechart YAML file")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChartError(str(p), [("", f"cannot be read: {exc}")]) from None
    return Chart.from_text(text, source=str(p))


def default_chart_path() -> Path:
    """The default chart: inside the installed package, else ``statecharts/`` of a checkout."""
    packaged = resources.files("sms_flow").joinpath("_statecharts", DEFAULT_CHART_NAME)
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "statecharts" / DEFAULT_CHART_NAME


@cache
def default_chart() -> Chart:
    """The default chart, loaded once per process."""
    return load_chart(default_chart_path())
