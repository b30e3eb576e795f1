"""Loading and checking a statechart: the states of a source server and the permitted moves.

A statechart is data (``statecharts/sms-source.yaml`` is the default); this module reads it,
checks it, and derives the tables the rest of sms-flow uses, once, at load:

* every permitted pair ``(copystate, migrationcycle)``, as one shared :class:`StatePair`
  instance per pair;
* every edge, expanded from the file's transitions to one :class:`Edge` per source pair;
* the edges out of each pair, and the edge of each ``(pair, trigger)``.

Loading reports every mistake it finds with the file name and the offending entry: a file
that cannot be read (not a regular file, over 1 MiB: :mod:`sms_flow._textfile`), YAML that
does not parse, a duplicated key, collections nested too deep, a field of the wrong type, an
unknown state, a cycle not permitted for a state, an edge pushed out of a frozen state, a
``call`` on a move that is not ``by: action``, a trigger that is ambiguous from one state, an unreachable state, and a non-final state with
no way out or no way to a final state. The YAML and the fields are the file's schema, in
:mod:`sms_flow._chartfile` (with :mod:`sms_flow._yaml` and pydantic, imported only when a
chart's text is read); the rest are made here.

The default chart's checked form is cached on disk (:func:`default_chart`), so that a process
that only checks and plans imports neither PyYAML nor pydantic.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sms_flow._textfile import UnreadableFile, read_text
from sms_flow.errors import ChartError
from sms_flow.states import (
    CopyState,
    MigrationCycle,
    StatePair,
    parse_copystate,
    parse_cycle,
)

if TYPE_CHECKING:
    from sms_flow._chartfile import ChartData, TransitionData, ViewData

__all__ = [
    "Basis",
    "By",
    "Chart",
    "Edge",
    "StateInfo",
    "View",
    "cache_dir",
    "default_chart",
    "default_chart_path",
    "load_cached",
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
    irreversible: bool = False
    """True when the move cannot be undone (a launched target, cleared snapshots, a deleted
    record): ``set --path`` takes it only when asked for it (its destination requested, or
    ``--allow TRIGGER``)."""
    call: str | None = None
    """For a ``by: action`` move: what makes it (the API call an operator makes)."""

    @property
    def pushable(self) -> bool:
        """True when sms-flow pushes this move itself (``by: client``)."""
        return self.by is By.CLIENT

    def __str__(self) -> str:
        return f"{self.trigger}: {self.source} → {self.dest}"


@dataclass(frozen=True, slots=True)
class View:
    """A named picture of part of the chart: the edges of ``triggers`` and the states they
    join (``sms-flow diagram --view NAME``). The view named ``overview`` is the one a newcomer
    sees first (the README's)."""

    name: str
    title: str
    note: str
    triggers: tuple[str, ...]


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
        "views",
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
    views: Mapping[str, View]

    def __init__(self, data: ChartData, *, source: str, digest: str) -> None:
        problems: list[tuple[str, str]] = []
        self.source = source
        self.digest = digest
        self.name = data["name"]
        self.version = data["version"]

        states: dict[CopyState, StateInfo] = {}
        for key, st in data["states"].items():
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
            for raw_cycle in st["cycles"]:
                try:
                    cy = parse_cycle(raw_cycle)
                except ValueError as exc:
                    problems.append((f"{entry}.cycles", str(exc)))
                    continue
                if cy in cycles:
                    problems.append((f"{entry}.cycles", f"cycle {cy.value} is listed twice"))
                    continue
                cycles.append(cy)
            states[cs] = StateInfo(
                cs, tuple(cycles), st["frozen"], st["final"], st["group"], st["note"]
            )
        self.states = states

        pairs: dict[tuple[str, str], StatePair] = {}
        for info in states.values():
            for cy in info.cycles:
                pairs[(info.copystate, cy)] = StatePair(info.copystate, cy)
        self._pairs_by_key = pairs
        self.pairs = tuple(pairs.values())

        initial = self._resolve_pair(data["initial"], "initial", problems)
        edges: list[Edge] = []
        for index, tr in enumerate(data["transitions"]):
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
        self.views = self._views(data.get("views", {}), problems)

        if initial is not None:
            self.initial = initial
            self._check_graph(problems)
        if problems:
            raise ChartError(source, problems)

    # -- construction helpers ---------------------------------------------------------

    def _views(
        self, raw: Mapping[str, ViewData], problems: list[tuple[str, str]]
    ) -> dict[str, View]:
        """The file's ``views``, each trigger checked against the chart's."""
        views: dict[str, View] = {}
        known = set(self.triggers)
        for name, view in raw.items():
            entry = f"views.{name}"
            if not name.isidentifier() or name == "all":
                problems.append(
                    (entry, f"a view's name is a word (letters, digits, _), not {name!r} or 'all'")
                )
                continue
            unknown = [t for t in view["triggers"] if t not in known]
            if unknown:
                problems.append(
                    (
                        f"{entry}.triggers",
                        f"no transition has the trigger(s) {', '.join(map(repr, unknown))}; "
                        f"the chart's triggers: {', '.join(self.triggers)}",
                    )
                )
                continue
            views[name] = View(
                name, view["title"], view["note"].strip(), tuple(dict.fromkeys(view["triggers"]))
            )
        return views

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
        self, index: int, tr: TransitionData, problems: list[tuple[str, str]]
    ) -> Iterable[Edge]:
        trigger = tr["trigger"]
        entry = _entry_name(index, trigger)
        try:
            dest_cs = parse_copystate(tr["to"])
        except ValueError as exc:
            problems.append((f"{entry}.to", str(exc)))
            return []
        if dest_cs not in self.states:
            problems.append(
                (f"{entry}.to", f"state {dest_cs.value} is not described under 'states'")
            )
            return []
        set_cycle: MigrationCycle | None = None
        if tr["cycle"].strip().casefold() != "keep":
            try:
                set_cycle = parse_cycle(tr["cycle"])
            except ValueError as exc:
                problems.append((f"{entry}.cycle", f"{exc} (or keep)"))
                return []

        sources: list[StatePair] = []
        for raw in tr["from_"]:
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

        by, basis, note = By(tr["by"]), Basis(tr["basis"]), tr["note"].strip().rstrip(".")
        irreversible = bool(tr.get("irreversible", False))
        call = (tr.get("call") or "").strip() or None
        if call is not None and by is not By.ACTION:
            problems.append(
                (
                    f"{entry}.call",
                    f"call {call!r} is for moves another API makes; this one is by: {by.value}: "
                    "remove call, or set by: action",
                )
            )
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
            edges.append(Edge(trigger, src, dest, by, basis, note, index, irreversible, call))
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
        from sms_flow._chartfile import parse

        return cls(parse(text, source=source), source=source, digest=_digest(text))


def _entry_name(index: int, trigger: str) -> str:
    return f"transitions[{index}] (trigger {trigger!r})"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_text(path: Path) -> str:
    try:
        return read_text(path)
    except UnreadableFile as exc:
        raise ChartError(
            str(path), [("", f"{exc}; give the path of a statechart YAML file")]
        ) from None


def load_chart(path: str | os.PathLike[str]) -> Chart:
    """Load and check a statechart file.

    Only a regular file of at most 1 MiB is read (:mod:`sms_flow._textfile`). Raises
    :class:`~sms_flow.errors.ChartError` naming the file and every offending entry.
    """
    p = Path(path)
    return Chart.from_text(_read_text(p), source=str(p))


def default_chart_path() -> Path:
    """The default chart: inside the installed package, else ``statecharts/`` of a checkout."""
    packaged = Path(__file__).parent / "_statecharts" / DEFAULT_CHART_NAME
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "statecharts" / DEFAULT_CHART_NAME


@cache
def default_chart() -> Chart:
    """The default chart, loaded once per process, its checked form kept in a cache.

    Reading a chart's YAML and checking it against the file's schema costs about a third of
    a second (mostly importing PyYAML and pydantic), more than the rest of ``sms-flow check``.
    So the default chart's checked form is kept in a cache file (see :func:`cache_dir`) and
    used while the chart's text and the schema are those it was made from; :class:`Chart`
    still derives its tables and makes its own checks from it.
    """
    return load_cached(default_chart_path(), cache_dir())


# -- the cache of checked charts ------------------------------------------------------------

_CACHE_FORMAT = b"sms-flow checked chart 1"
_CHECKED_BY = ("_chartfile.py", "_yaml.py")  # the schema and the YAML rules a cached form passed


def cache_dir() -> Path | None:
    """Where checked charts are cached: ``$SMS_FLOW_CACHE_DIR`` (empty: no cache), else
    ``$XDG_CACHE_HOME/sms-flow``, else ``~/.cache/sms-flow``. Deleting it loses nothing."""
    configured = os.environ.get("SMS_FLOW_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sms-flow"


def load_cached(path: Path, folder: Path | None) -> Chart:
    """:func:`load_chart`, through the cache in ``folder`` (``None``: no cache).

    An entry is named by the digest of the chart's text and of the schema and YAML rules that
    checked it (``_chartfile.py``, ``_yaml.py``), so an edited chart, schema or rule is read
    and checked again, and reported as :func:`load_chart` reports it. Only a chart that loads
    is cached. An entry is JSON, is
    written to a new file that then replaces the old one (a reader never sees half of it), and
    is used only when it belongs to the current user and nobody else may write it; anything
    else about the cache (a folder that cannot be written, an entry that does not read) leaves
    it out, never fails the load.
    """
    text = _read_text(path)
    source = str(path)
    entry = _cache_entry(text, folder)
    if entry is not None:
        data = _read_entry(entry)
        if data is not None:
            try:
                return Chart(data, source=source, digest=_digest(text))
            except (ChartError, LookupError, TypeError, ValueError, AttributeError):
                pass  # not a form this code builds from: read the text below
    from sms_flow._chartfile import parse

    data = parse(text, source=source)
    chart = Chart(data, source=source, digest=_digest(text))
    if entry is not None:
        _write_entry(entry, data)
    return chart


def _cache_entry(text: str, folder: Path | None) -> Path | None:
    if folder is None:
        return None
    try:
        rules = [Path(__file__).with_name(name).read_bytes() for name in _CHECKED_BY]
    except OSError:
        return None
    key = hashlib.sha256(b"\0".join((_CACHE_FORMAT, *rules, text.encode()))).hexdigest()
    return folder / f"chart-{key}.json"


def _read_entry(entry: Path) -> ChartData | None:
    import json

    try:
        fd = os.open(entry, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(file.fileno())
        getuid = getattr(os, "getuid", None)
        if (getuid is not None and st.st_uid != getuid()) or st.st_mode & 0o022:
            return None  # someone else wrote it, or may have
        try:
            stored = json.loads(file.read())
        except (OSError, ValueError):
            return None
    if not isinstance(stored, dict) or stored.get("entry") != entry.name:
        return None
    data: ChartData | None = stored.get("chart")
    return data


def _write_entry(entry: Path, data: ChartData) -> None:
    import json
    import tempfile

    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".chart-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"entry": entry.name, "chart": data}, file, separators=(",", ":"))
        os.replace(temporary, entry)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
