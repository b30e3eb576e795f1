"""The :class:`Simulator`: a running SMS-compatible server on loopback, and its Python API.

Connections come through a gate (:class:`_Gate`, the listening socket's protocol factory in
front of aiohttp's server): a connection that has not sent a complete request
``header_timeout`` seconds after it opened is closed (so is one idle that long after an
answer: aiohttp's ``keepalive_timeout``), and at most ``max_connections`` are open. When a
connection comes at the cap, the one idle the longest (none of its requests in progress) is
closed to make room; when none is idle, the newcomer is answered ``503 SMS.SIM6`` and closed.
So idle or half-sent connections, however many, never keep a client from being answered.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from sms_flow.chart import default_chart
from sms_flow.errors import InvalidRequestError, UsageError
from sms_flow.simulator.access import Access
from sms_flow.simulator.app import ErrorCode, SimulatorApp, SimulatorStats
from sms_flow.simulator.config import SimulatorConfig
from sms_flow.simulator.faults import FaultInjector, Faults
from sms_flow.simulator.persistence import SqliteWriter
from sms_flow.simulator.store import HistoryEntry, Outcome, SourceSnapshot, SourceStore
from sms_flow.states import StatePair, parse_pair

__all__ = ["Simulator"]

_SHUTDOWN_TIMEOUT = 1.0
_BACKLOG: Final = 128  # as aiohttp's TCPSite
_LINGERING: Final = 10.0  # aiohttp's own lingering_time


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
        self._listener: asyncio.Server | None = None
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
            token=config.token,
            ak=config.ak,
            sk=config.sk,
            project_id=config.project_id,
            control_token=config.control_token,
        )
        app = SimulatorApp(store, self._injector, access, body_timeout=config.header_timeout)
        gate = _Gate(config.max_connections, config.header_timeout)
        runner = web.AppRunner(
            app.build(middlewares=[gate.middleware]),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            keepalive_timeout=config.header_timeout,
            # After an answer sent before the whole body came (a 408, a body over the limit),
            # the rest is read and dropped for at most this long, then the connection closes.
            lingering_time=min(_LINGERING, config.header_timeout),
        )
        try:
            await runner.setup()
            assert runner.server is not None  # set up
            gate.server = runner.server
            listener = await asyncio.get_running_loop().create_server(
                gate, config.host, config.port, backlog=_BACKLOG
            )
        except BaseException:
            await runner.cleanup()
            if writer is not None:
                await writer.close()
            raise
        address = listener.sockets[0].getsockname()
        self._host, self._port = str(address[0]), int(address[1])
        self._listener = listener
        self._store, self._app, self._runner, self._writer = store, app, runner, writer
        return self

    async def stop(self) -> None:
        """Stop listening and close the state file. Safe to call twice."""
        runner, writer, listener = self._runner, self._writer, self._listener
        self._runner = self._writer = self._listener = None
        self._port = None
        if listener is not None:
            listener.close()  # no new connection; the open ones are closed by the runner
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


# -- the connection gate ----------------------------------------------------------------------


class _Connection:
    """What the gate knows of one open connection: since when it is idle, its requests."""

    __slots__ = ("closing", "handler", "in_progress", "requests", "since")

    def __init__(self, handler: RequestHandler, now: float) -> None:
        self.handler = handler
        self.since = now
        """When it opened, or when its last request ended."""
        self.in_progress = 0
        self.requests = 0
        self.closing = False
        """Closed to make room before its transport reached it: closed as it arrives."""

    def close(self) -> None:
        if self.handler.transport is not None:
            self.handler.force_close()
        else:
            self.closing = True


class _Gate:
    """The protocol factory of the listening socket: aiohttp's server behind a cap and a timer.

    See the module docstring. ``server`` (aiohttp's, set once the runner is set up) makes a
    connection's protocol, which the gate wraps (:class:`_Tracked`) to see it open and close;
    it keeps one :class:`_Connection` per open connection, updated by :meth:`middleware` as
    requests begin and end.
    """

    def __init__(self, cap: int, timeout: float) -> None:
        self.server: web.Server | None = None
        self._cap = cap
        self._timeout = timeout
        self._open: dict[RequestHandler, _Connection] = {}

    def __call__(self) -> asyncio.BaseProtocol:
        assert self.server is not None, "the gate opens once the runner is set up"
        if len(self._open) >= self._cap and not self._make_room():
            return _Refusal(self._cap)
        handler = self.server()
        loop = asyncio.get_running_loop()
        connection = self._open[handler] = _Connection(handler, loop.time())
        loop.call_later(self._timeout, self._expire, handler)
        return _Tracked(connection, self._open)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        connection = self._open.get(request.protocol)
        if connection is None:
            response: web.StreamResponse = await handler(request)
            return response
        connection.in_progress += 1
        connection.requests += 1
        try:
            response = await handler(request)
            return response
        finally:
            connection.in_progress -= 1
            connection.since = asyncio.get_running_loop().time()

    def _expire(self, handler: RequestHandler) -> None:
        """``header_timeout`` after a connection opened: close it if no request came whole."""
        connection = self._open.get(handler)
        if connection is not None and connection.requests == 0:
            connection.close()

    def _make_room(self) -> bool:
        """Close the connection idle the longest; False when every one is busy."""
        idle = [c for c in self._open.values() if c.in_progress == 0]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.since)
        del self._open[oldest.handler]
        oldest.close()
        return True


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol for one connection, passed every call; the connection leaves the
    gate's open ones when it is lost. One closed to make room before it arrived never reaches
    aiohttp: it is closed at once."""

    __slots__ = ("_connection", "_handed", "_open")

    def __init__(
        self, connection: _Connection, open_connections: dict[RequestHandler, _Connection]
    ) -> None:
        self._connection = connection
        self._open = open_connections
        self._handed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._connection.closing:
            transport.close()
            return
        self._handed = True
        self._connection.handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        handler = self._connection.handler
        if self._open.get(handler) is self._connection:
            del self._open[handler]
        if self._handed:
            handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._handed:
            self._connection.handler.data_received(data)

    def eof_received(self) -> None:
        if self._handed:
            self._connection.handler.eof_received()  # aiohttp's: the transport closes

    def pause_writing(self) -> None:
        if self._handed:
            self._connection.handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handed:
            self._connection.handler.resume_writing()


class _Refusal(asyncio.Protocol):
    """A connection over the cap, none idle: answered ``503 SMS.SIM6`` at once, and closed."""

    def __init__(self, cap: int) -> None:
        self._cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = json.dumps(
            {
                "error_code": ErrorCode.TOO_MANY_CONNECTIONS.value,
                "error_msg": f"Too many open connections (at most {self._cap:,}, none idle); "
                "try again later",
            }
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Request-Id: {uuid.uuid4().hex}\r\n"
            "Connection: close\r\n\r\n"
        )
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(head.encode() + body)
        transport.close()
