"""The :class:`Simulator`: a running SMS-compatible server on loopback, and its Python API."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from sms_flow.chart import default_chart
from sms_flow.errors import InvalidRequestError, UsageError
from sms_flow.simulator.access import Access
from sms_flow.simulator.app import SimulatorApp, SimulatorStats
from sms_flow.simulator.config import SimulatorConfig
from sms_flow.simulator.faults import FaultInjector, Faults
from sms_flow.simulator.persistence import SqliteWriter
from sms_flow.simulator.store import HistoryEntry, Outcome, SourceSnapshot, SourceStore
from sms_flow.states import StatePair, parse_pair

__all__ = ["Simulator"]

_SHUTDOWN_TIMEOUT = 1.0


class Simulator:
    """An SMS-compatible HTTP server for tests, running in the current event loop.

    ::

        async with Simulator(SimulatorConfig(token="t0ken")) as sim:
            source_id = await sim.register("web-01")
            ...  # point any client at sim.url
            assert sim.source(source_id).copystate is CopyState.WAITING

    Keyword arguments are a shortcut for a config: ``Simulator(strict=True)``.
    """

    def __init__(self, config: SimulatorConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise UsageError("give a SimulatorConfig or keyword options, not both")
        self.config = config if config is not None else SimulatorConfig(**options)
        self._injector = FaultInjector(self.config.faults, self.config.seed)
        self._store: SourceStore | None = None
        self._app: SimulatorApp | None = None
        self._runner: web.AppRunner | None = None
        self._writer: SqliteWriter | None = None
        self._host = self.config.host
        self._port: int | None = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"Simulator({where}, sources={len(self._store) if self._store else 0})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> Simulator:
        """Open the state file (if any), then listen; ``url`` is known afterwards."""
        if self._runner is not None:
            raise UsageError(
                "the simulator is already running; stop it first, or start another Simulator"
            )
        config = self.config
        chart = config.chart if config.chart is not None else default_chart()
        writer: SqliteWriter | None = None
        loaded: tuple[Any, Any] = ((), ())
        if config.state_file is not None:
            writer, loaded = await SqliteWriter.open(config.state_file)
        store = SourceStore(
            chart, service_delay=config.service_delay, strict=config.strict, writer=writer
        )
        store.load(*loaded)
        access = Access(
            token=config.token, ak=config.ak, sk=config.sk, project_id=config.project_id
        )
        app = SimulatorApp(store, self._injector, access)
        runner = web.AppRunner(
            app.build(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, config.host, config.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            if writer is not None:
                await writer.close()
            raise
        address = runner.addresses[0]
        self._host, self._port = str(address[0]), int(address[1])
        self._store, self._app, self._runner, self._writer = store, app, runner, writer
        return self

    async def stop(self) -> None:
        """Stop listening and close the state file. Safe to call twice."""
        runner, writer = self._runner, self._writer
        self._runner = self._writer = None
        self._port = None
        if runner is not None:
            await runner.cleanup()
        if self._store is not None:
            self._store.detach_writer()  # sources stay readable, in memory, after a stop
        if writer is not None:
            await writer.close()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise UsageError("the simulator is not running; use 'async with Simulator(...)'")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:40123`` (no trailing slash)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    # -- sources -------------------------------------------------------------------------------

    @property
    def _live_store(self) -> SourceStore:
        if self._store is None:
            raise UsageError("the simulator is not running; use 'async with Simulator(...)'")
        return self._store

    async def register(self, name: str, **fields: Any) -> str:
        """Register a source server directly (no HTTP); it starts in the chart's initial state."""
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise InvalidRequestError(
                f"a source name is 1 to 255 characters, not {name!r}", field="name"
            )
        source_id, commit = self._live_store.register(name, fields)
        if commit is not None:
            await commit
        return source_id

    async def register_many(self, n: int, prefix: str = "src") -> list[str]:
        """Register ``n`` source servers named ``{prefix}-0001`` …; return their ids in order."""
        if n < 0:
            raise InvalidRequestError(f"n must be 0 or more, not {n}", field="n")
        if n == 0:
            return []
        ids, commit = self._live_store.register_many(n, prefix)
        if commit is not None:
            await commit
        return ids

    def source(self, source_id: str) -> SourceSnapshot:
        """The source as it is now (service moves that fell due applied). KeyError if unknown."""
        store = self._live_store
        rec = store.lookup(source_id)
        if rec is None:
            raise _unknown(source_id, len(store))
        return store.snapshot(rec)

    def sources(self) -> list[SourceSnapshot]:
        """Every source, in registration order."""
        store = self._live_store
        return [store.snapshot(rec) for rec in store.records()]

    def history(self, source_id: str) -> list[HistoryEntry]:
        """Every applied change of the source, oldest first. KeyError if unknown."""
        store = self._live_store
        rec = store.lookup(source_id)
        if rec is None:
            raise _unknown(source_id, len(store))
        return store.history(rec)

    async def move(
        self,
        source_id: str,
        *,
        trigger: str | None = None,
        pair: StatePair | Sequence[Any] | str | None = None,
    ) -> SourceSnapshot:
        """Move a source as the service would: by a chart ``trigger`` (any ``by``), or to ``pair``.

        ``pair`` is a :class:`StatePair`, ``(copystate, cycle)`` or ``"COPYSTATE/cycle"`` and
        need not be in the chart. Raises ``ValueError`` when the chart has no such trigger
        from the current state, ``KeyError`` for an unknown source.
        """
        if (trigger is None) == (pair is None):
            raise UsageError("give exactly one of trigger= or pair=")
        store = self._live_store
        rec = store.lookup(source_id)
        if rec is None:
            raise _unknown(source_id, len(store))
        if trigger is not None:
            result = store.move_by_trigger(rec, trigger)
            if result.outcome is Outcome.REFUSED:
                raise InvalidRequestError(f"source {source_id}: {result.refusal}", field="trigger")
        else:
            result = store.move_to(rec, _as_pair(pair))
        if result.commit is not None:
            await result.commit
        return store.snapshot(rec)

    # -- faults and stats ------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults now injected; assign (or :meth:`set_faults`) to change them at run time."""
        return self._injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise UsageError(f"expected Faults, not {type(faults).__name__}")
        self._injector.faults = faults

    @property
    def stats(self) -> SimulatorStats:
        """Request counts by route and status, changestate calls per source, faults injected."""
        if self._app is None:
            raise UsageError("the simulator is not running; use 'async with Simulator(...)'")
        return self._app.stats()


def _as_pair(value: object) -> StatePair:
    if isinstance(value, StatePair):
        return value
    if isinstance(value, str):
        return parse_pair(value)
    if isinstance(value, Sequence) and len(value) == 2:
        return parse_pair(f"{value[0]}/{value[1]}")
    raise InvalidRequestError(
        f"pair must be a StatePair, (copystate, cycle) or 'COPYSTATE/cycle', not {value!r}",
        field="pair",
    )


def _unknown(source_id: str, registered: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"the simulator has no source {source_id!r} ({registered} registered); "
        "register it first (Simulator.register)",
        field="source_id",
    )
