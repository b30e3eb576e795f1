"""The simulated source servers: their state, their history, and the rules that move them.

Knows nothing of HTTP. The app calls it for every request, the :class:`~sms_flow.simulator.
Simulator` for its Python API. All of it runs on the simulator's event loop (no locks): a
change is checked and applied with no ``await`` in between.

Rules, all taken from the statechart:

* A change pushed by a client (``PUT .../changestate``) keeps the field it leaves out. One
  that leads where the source already is changes nothing and is not recorded. In strict
  mode only a ``by: client`` edge of the chart from the current pair is accepted.
* The service's own moves (``by: service`` edges, such as ``stopping → stopped``) happen
  ``service_delay`` seconds after the source entered the state. They are applied lazily,
  whenever the source is read or written, and stamped with the moment they fell due, so
  thousands of sources need no timers and a restart computes the same moves again.
* Control moves (the test-only routes) may take any edge, or set any pair.

Every applied change is a :class:`HistoryEntry`. With a :class:`StoreWriter` (the SQLite
file) each change is handed over as it is made; the caller awaits the returned commit
before answering.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from sms_flow.chart import By, Chart, Edge
from sms_flow.states import CopyState, MigrationCycle, StatePair, read_side_state

__all__ = [
    "ChangeResult",
    "HistoryEntry",
    "MovedBy",
    "Outcome",
    "SourceRow",
    "SourceSnapshot",
    "SourceStore",
    "StoreWriter",
]

# Fields of a registration that the simulator sets itself and a caller may not.
RESERVED_FIELDS = frozenset(
    {
        "id",
        "state",
        "migration_cycle",
        "state_action_time",
        "stage_action_time",
        "add_date",
        "last_visit_time",
        "connected",
    }
)
_MAX_CHAINED_MOVES = 64
"""Cap on service moves applied in one go (a chart may loop through service edges)."""


class MovedBy(StrEnum):
    """Who made a recorded change."""

    CLIENT = "client"
    """A ``PUT .../changestate`` call."""
    SERVICE = "service"
    """The simulated service itself, after ``service_delay`` (a ``by: service`` edge)."""
    CONTROL = "control"
    """A test, through ``POST /_simulator/sources/{id}/move`` or :meth:`Simulator.move`."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One applied change of one source."""

    seq: int
    """1, 2, 3 … per source, in the order the changes were applied."""
    time: float
    """When it was applied (Unix seconds); for a service move, when it fell due."""
    from_pair: StatePair
    to_pair: StatePair
    by: MovedBy
    trigger: str | None = None
    """The chart's trigger for this move, when the chart has one."""
    request_id: str | None = None
    """The ``X-Request-Id`` answered to the PUT that made it (client changes only)."""

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``GET /_simulator/sources/{id}/history`` lists it."""
        return {
            "seq": self.seq,
            "time": int(self.time * 1000),
            "from": str(self.from_pair),
            "to": str(self.to_pair),
            "by": self.by.value,
            "trigger": self.trigger,
            "request_id": self.request_id,
        }


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """A source server as it is now (a copy; it does not change with the source)."""

    id: str
    name: str
    copystate: CopyState
    migrationcycle: MigrationCycle
    state_action_time: int
    """Milliseconds since the epoch when the copystate last changed."""
    stage_action_time: int
    """Milliseconds since the epoch when the migration cycle last changed."""
    registered_at: int
    """Milliseconds since the epoch when the source was registered."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Registration fields beyond ``name``, as given."""

    @property
    def pair(self) -> StatePair:
        return StatePair(self.copystate, self.migrationcycle)

    @property
    def cycle(self) -> MigrationCycle:
        """The same as :attr:`migrationcycle`."""
        return self.migrationcycle

    def to_wire(self) -> dict[str, Any]:
        """The body ``GET /v3/sources/{id}`` answers (the read side's field names)."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "ip": "192.0.2.10",
            "hostname": self.name,
            "enterprise_project_id": "0",
            "add_date": self.registered_at,
            "os_type": "LINUX",
            "os_version": "UBUNTU_22_04_64BIT",
            "oem_system": False,
            "agent_version": "25.3.0",
            "connected": True,
            "firmware": "BIOS",
            "cpu_quantity": 2,
            "memory": 4_294_967_296,
            "has_tc": False,
            "start_type": "",
            "replicatesize": 0,
            "totalsize": 0,
            "last_visit_time": max(self.state_action_time, self.stage_action_time),
        }
        body.update(self.extra)
        body["state"] = read_side_state(self.copystate)
        body["migration_cycle"] = self.migrationcycle.value
        body["state_action_time"] = self.state_action_time
        body["stage_action_time"] = self.stage_action_time
        return body


SourceRow = tuple[str, int, str, str, str, float, int, int, int, str]
"""A source as stored: id, order, name, copystate, cycle, entered_at, state_action_time,
stage_action_time, registered_at, extra (JSON)."""


class StoreWriter(Protocol):
    """Where changes go to survive a restart (the SQLite file)."""

    def write(
        self,
        sources: Sequence[SourceRow],
        entries: Sequence[tuple[str, HistoryEntry]],
        *,
        wait: bool,
    ) -> Awaitable[None] | None:
        """Store the rows and entries; with ``wait``, return an awaitable of the commit."""
        ...


class _Record:
    """A source server as the store keeps it (mutable; never handed out)."""

    __slots__ = (
        "entered_at",
        "extra",
        "extra_json",
        "history",
        "id",
        "name",
        "order",
        "pair",
        "registered_at",
        "stage_action_time",
        "state_action_time",
    )

    def __init__(
        self,
        id: str,
        order: int,
        name: str,
        pair: StatePair,
        entered_at: float,
        state_action_time: int,
        stage_action_time: int,
        registered_at: int,
        extra: dict[str, Any],
        extra_json: str,
    ) -> None:
        self.id = id
        self.order = order
        self.name = name
        self.pair = pair
        self.entered_at = entered_at
        self.state_action_time = state_action_time
        self.stage_action_time = stage_action_time
        self.registered_at = registered_at
        self.extra = extra
        self.extra_json = extra_json
        self.history: list[HistoryEntry] = []

    def row(self) -> SourceRow:
        return (
            self.id,
            self.order,
            self.name,
            self.pair.copystate.value,
            self.pair.migrationcycle.value,
            self.entered_at,
            self.state_action_time,
            self.stage_action_time,
            self.registered_at,
            self.extra_json,
        )


class Outcome(StrEnum):
    """What a requested change did."""

    APPLIED = "applied"
    NOOP = "noop"
    """The source already was in the requested state; nothing recorded."""
    REFUSED = "refused"
    """Strict mode (or a control trigger) found no permitted move; nothing changed."""


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """The answer of :meth:`SourceStore.change` and the control moves."""

    outcome: Outcome
    pair: StatePair
    """The pair the source is in afterwards (the requested pair when refused)."""
    entry: HistoryEntry | None = None
    refusal: str = ""
    commit: Awaitable[None] | None = None
    """Await it before answering: the change is then stored (None without a state file)."""


class SourceStore:
    """Every simulated source server, in registration order."""

    def __init__(
        self,
        chart: Chart,
        *,
        service_delay: float = 0.2,
        strict: bool = False,
        writer: StoreWriter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chart = chart
        self.service_delay = service_delay
        self.strict = strict
        self._writer = writer
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._pending: dict[str, float] = {}
        """Sources with a service move to come, and when it falls due."""
        self._service_edge: dict[StatePair, Edge] = {}
        self._client_edge: dict[tuple[StatePair, StatePair], Edge] = {}
        for edge in chart.edges:
            if edge.by is By.SERVICE:
                self._service_edge.setdefault(edge.source, edge)
            elif edge.by is By.CLIENT:
                self._client_edge.setdefault((edge.source, edge.dest), edge)

    def detach_writer(self) -> None:
        """Keep changes in memory only from now on (the state file is being closed)."""
        self._writer = None

    # -- loading and registration -----------------------------------------------------------

    def load(self, rows: Iterable[SourceRow], entries: Iterable[tuple[str, HistoryEntry]]) -> None:
        """Restore sources and histories read from the state file."""
        for row in sorted(rows, key=lambda r: r[1]):
            sid, order, name, cs, cy, entered, sat, stat, reg, extra_json = row
            extra = json.loads(extra_json)
            pair = StatePair(CopyState(cs), MigrationCycle(cy))
            rec = _Record(sid, order, name, pair, entered, sat, stat, reg, extra, extra_json)
            self._records[sid] = rec
            self._schedule(rec)
        for sid, entry in entries:
            owner = self._records.get(sid)
            if owner is not None:
                owner.history.append(entry)
        for rec in self._records.values():
            rec.history.sort(key=lambda e: e.seq)

    def _new_record(self, name: str, extra: Mapping[str, Any], now: float) -> _Record:
        kept = {k: v for k, v in extra.items() if k not in RESERVED_FIELDS and k != "name"}
        ms = int(now * 1000)
        rec = _Record(
            str(uuid.uuid4()),
            len(self._records),
            name,
            self.chart.initial,
            now,
            ms,
            ms,
            ms,
            kept,
            json.dumps(kept, separators=(",", ":")),
        )
        self._records[rec.id] = rec
        self._schedule(rec)
        return rec

    def register(
        self, name: str, extra: Mapping[str, Any] | None = None
    ) -> tuple[str, Awaitable[None] | None]:
        """Add a source in the chart's initial state; return its id and the commit (or None)."""
        rec = self._new_record(name, extra or {}, self._clock())
        return rec.id, self._write([rec], (), wait=True)

    def register_many(
        self, n: int, prefix: str = "src"
    ) -> tuple[list[str], Awaitable[None] | None]:
        """Add ``n`` sources named ``{prefix}-0001`` …; return the ids and the commit."""
        now = self._clock()
        width = max(4, len(str(n)))
        recs = [self._new_record(f"{prefix}-{i:0{width}d}", {}, now) for i in range(1, n + 1)]
        return [r.id for r in recs], self._write(recs, (), wait=True)

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, source_id: object) -> bool:
        return source_id in self._records

    def lookup(self, source_id: str) -> _Record | None:
        """The source, with every service move that has fallen due applied; None if unknown."""
        rec = self._records.get(source_id)
        if rec is not None and source_id in self._pending:
            self._settle_and_store(rec, self._clock())
        return rec

    def records(self) -> Iterator[_Record]:
        """Every source in registration order, settled."""
        if self._pending:
            now = self._clock()
            due = [sid for sid, at in self._pending.items() if at <= now]
            for sid in due:
                self._settle_and_store(self._records[sid], now)
        return iter(self._records.values())

    def snapshot(self, rec: _Record) -> SourceSnapshot:
        return SourceSnapshot(
            rec.id,
            rec.name,
            rec.pair.copystate,
            rec.pair.migrationcycle,
            rec.state_action_time,
            rec.stage_action_time,
            rec.registered_at,
            dict(rec.extra),
        )

    @staticmethod
    def history(rec: _Record) -> list[HistoryEntry]:
        return list(rec.history)

    def is_frozen(self, rec: _Record) -> bool:
        return self.chart.is_frozen(rec.pair)

    # -- changing -------------------------------------------------------------------------------

    def change(
        self,
        rec: _Record,
        copystate: CopyState | None,
        migrationcycle: MigrationCycle | None,
        request_id: str | None,
    ) -> ChangeResult:
        """Apply a client's change (a field left out keeps its value), as the service would.

        The caller has settled ``rec`` (through :meth:`lookup`) and has checked that it is
        not frozen.
        """
        cur = rec.pair
        new = StatePair(
            copystate if copystate is not None else cur.copystate,
            migrationcycle if migrationcycle is not None else cur.migrationcycle,
        )
        if new == cur:
            return ChangeResult(Outcome.NOOP, cur)
        edge = self._client_edge.get((cur, new))
        if edge is None and self.strict:
            return ChangeResult(Outcome.REFUSED, new, refusal=self._refusal(cur, new))
        entry = self._apply(
            rec,
            new,
            self._clock(),
            MovedBy.CLIENT,
            edge.trigger if edge is not None else None,
            request_id,
        )
        return ChangeResult(
            Outcome.APPLIED, new, entry, commit=self._write([rec], [(rec.id, entry)], wait=True)
        )

    def move_by_trigger(self, rec: _Record, trigger: str) -> ChangeResult:
        """Take the chart's edge ``trigger`` from the current pair, whoever makes it."""
        edge = self.chart.edge(rec.pair, trigger)
        if edge is None:
            moves = ", ".join(f"{e.trigger} → {e.dest}" for e in self.chart.edges_from(rec.pair))
            return ChangeResult(
                Outcome.REFUSED,
                rec.pair,
                refusal=(
                    f"the chart has no move {trigger!r} from {rec.pair}; "
                    f"moves from there: {moves or 'none'}"
                ),
            )
        entry = self._apply(rec, edge.dest, self._clock(), MovedBy.CONTROL, edge.trigger, None)
        return ChangeResult(
            Outcome.APPLIED,
            edge.dest,
            entry,
            commit=self._write([rec], [(rec.id, entry)], wait=True),
        )

    def move_to(self, rec: _Record, pair: StatePair) -> ChangeResult:
        """Set the pair directly, as the real service may do at any time."""
        if pair == rec.pair:
            return ChangeResult(Outcome.NOOP, pair)
        edge = next((e for e in self.chart.edges_from(rec.pair) if e.dest == pair), None)
        trigger = edge.trigger if edge is not None else None
        entry = self._apply(rec, pair, self._clock(), MovedBy.CONTROL, trigger, None)
        return ChangeResult(
            Outcome.APPLIED, pair, entry, commit=self._write([rec], [(rec.id, entry)], wait=True)
        )

    # -- internals ------------------------------------------------------------------------------

    def _refusal(self, cur: StatePair, new: StatePair) -> str:
        moves = [f"{e.trigger} → {e.dest}" for e in self.chart.edges_from(cur) if e.by is By.CLIENT]
        return (
            f"strict mode: no move a client may push leads from {cur} to {new}; "
            f"moves a client may push from {cur}: {', '.join(moves) or 'none'}"
        )

    def _apply(
        self,
        rec: _Record,
        new: StatePair,
        at: float,
        by: MovedBy,
        trigger: str | None,
        request_id: str | None,
    ) -> HistoryEntry:
        old = rec.pair
        ms = int(at * 1000)
        if new.copystate != old.copystate:
            rec.state_action_time = ms
        if new.migrationcycle != old.migrationcycle:
            rec.stage_action_time = ms
        rec.pair = new
        rec.entered_at = at
        entry = HistoryEntry(len(rec.history) + 1, at, old, new, by, trigger, request_id)
        rec.history.append(entry)
        self._schedule(rec)
        return entry

    def _schedule(self, rec: _Record) -> None:
        if rec.pair in self._service_edge:
            self._pending[rec.id] = rec.entered_at + self.service_delay
        else:
            self._pending.pop(rec.id, None)

    def _settle_and_store(self, rec: _Record, now: float) -> None:
        entries = self._settle(rec, now)
        if entries:
            # A read need not wait for the commit: after a crash the same moves, with the
            # same times, are computed again from the stored state.
            self._write([rec], [(rec.id, e) for e in entries], wait=False)

    def _settle(self, rec: _Record, now: float) -> list[HistoryEntry]:
        entries: list[HistoryEntry] = []
        for _ in range(_MAX_CHAINED_MOVES):
            edge = self._service_edge.get(rec.pair)
            if edge is None:
                break
            due = rec.entered_at + self.service_delay
            if now < due:
                break
            entries.append(self._apply(rec, edge.dest, due, MovedBy.SERVICE, edge.trigger, None))
        return entries

    def _write(
        self,
        recs: Sequence[_Record],
        entries: Sequence[tuple[str, HistoryEntry]],
        *,
        wait: bool,
    ) -> Awaitable[None] | None:
        if self._writer is None:
            return None
        return self._writer.write([r.row() for r in recs], entries, wait=wait)
