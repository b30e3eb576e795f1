"""``sms-flow serve``: one aiohttp service, the gateway and ``/metrics``, and how it starts.

:class:`Service` owns what the routes share: one HTTP session to SMS (counted by the
metrics), one :class:`~sms_flow.client.SmsClient` over it, the journal, the chart, the
caller keys and the API tokens. ``async with Service(config) as service`` opens them and
serves on ``config.host``/``config.port`` (port 0: any free port; :attr:`Service.url` says
which); leaving the block stops serving and closes them.

Routes:

* ``/v3/...``: the gateway (:mod:`sms_flow.serve.gateway`), with SMS's credentials.
* ``/metrics``: Prometheus' text format (:mod:`sms_flow.metrics`).
* ``/api/v1/...``: sms-flow's JSON API and its OpenAPI document (:mod:`sms_flow.serve.api`).
* ``/``, ``/sources/{id}``: the live dashboard (:mod:`sms_flow.serve.dashboard`).

``/metrics``, ``/api/v1`` and the dashboard need a ``viewer`` token when API tokens are
configured (a change through ``/api/v1`` an ``operator`` token); they are open on loopback
when none are.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web
from yarl import URL

from sms_flow.auth import AkSkAuth, Auth
from sms_flow.chart import Chart, default_chart
from sms_flow.client import SmsClient
from sms_flow.errors import ConfigError
from sms_flow.journal import DEFAULT_LEASE, Journal
from sms_flow.journals import open_journal
from sms_flow.log import get_logger
from sms_flow.metrics import CONTENT_TYPE, Metrics
from sms_flow.planner import Planner
from sms_flow.retry import RetryPolicy
from sms_flow.serve.access import ApiTokens, CallerKeys, Role, check_binding, is_loopback
from sms_flow.serve.api import Api
from sms_flow.serve.dashboard import Dashboard
from sms_flow.serve.gateway import Gateway, GatewayCode, PassOnAuth, error_response
from sms_flow.serve.owner import ServiceRun
from sms_flow.wire import BODY_MAX_BYTES

__all__ = ["ServeConfig", "Service"]

_log = get_logger("sms_flow.serve")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """What ``sms-flow serve`` runs with.

    ``endpoint`` (or ``region``): where SMS is. ``auth``: the gateway's own credentials
    (``CLOUD_SDK_*`` or ``SMS_FLOW_TOKEN``, as the CLI), used for AK/SK callers; ``None``
    only for a simulator on this machine, or when every caller sends a token. ``journal``:
    a journal location (a path or a PostgreSQL DSN), or an open-able
    :class:`~sms_flow.journal.Journal` (default: ``$SMS_FLOW_JOURNAL``, else
    :func:`~sms_flow.journal.default_journal_path`). ``keys``: the AK/SK
    keys callers sign with; ``tokens``: the API tokens of sms-flow's routes. ``watch_only``:
    no endpoint (see the field).
    """

    endpoint: str | None = None
    region: str | None = None
    auth: Auth | None = None
    journal: Path | str | Journal | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    keys: CallerKeys = field(default_factory=CallerKeys)
    tokens: ApiTokens = field(default_factory=ApiTokens)
    chart: Chart | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    verify_tls: bool = True
    lease_seconds: float = DEFAULT_LEASE
    watch_only: bool = False
    """No SMS endpoint: the dashboard, ``/metrics`` and the API's reads of the journal; the
    gateway's routes and the API's changes answer 502 (``SMSFLOW.0010``)."""


class Service:
    """The running service (see the module docstring)."""

    def __init__(self, config: ServeConfig) -> None:
        check_binding(config.host, config.tokens)
        self.config = config
        self.metrics = Metrics()
        given = config.journal
        self.journal: Journal = (
            open_journal(given) if given is None or isinstance(given, str | Path) else given
        )
        self._runner: web.AppRunner | None = None
        self._owner: ServiceRun | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: SmsClient | None = None
        self._journal_open = False
        self.url = ""
        self.dashboard: Dashboard | None = None
        """The dashboard's handlers, once started."""

    @property
    def endpoint(self) -> str:
        """The SMS endpoint the gateway forwards to (once started)."""
        return self._client.endpoint if self._client is not None else ""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        config = self.config
        if config.watch_only and (config.endpoint or config.region):
            raise ConfigError(
                "a watch-only service has no SMS endpoint; give neither endpoint nor region"
            )
        await self.journal.open()
        self._journal_open = True
        client: SmsClient | None = None
        try:
            app = web.Application(client_max_size=BODY_MAX_BYTES + 1)
            chart = config.chart or default_chart()
            project: str | None = None
            if config.watch_only:
                app.router.add_route("*", "/v3/{tail:.*}", _no_endpoint)
            else:
                auth = PassOnAuth(config.auth)
                client, session = await self._open_client(auth)
                project = config.auth.project_id if isinstance(config.auth, AkSkAuth) else None
                self._owner = ServiceRun(
                    self.journal,
                    endpoint=client.endpoint,
                    project=project,
                    seconds=config.lease_seconds,
                )
                gateway = Gateway(
                    client,
                    auth,
                    session,
                    self.journal,
                    config.keys,
                    self.metrics,
                    chart=chart,
                    project=project,
                    owner=self._owner,
                    lease_seconds=config.lease_seconds,
                    timeout=config.retry.timeout,
                )
                app.router.add_routes(gateway.routes())
            self.metrics.watch_journal(self.journal)
            app.router.add_get("/metrics", self._guard(Role.VIEWER, self._metrics))
            journal_path = getattr(self.journal, "path", None)
            api = Api(
                Planner(chart),
                self.journal,
                client,
                project=project,
                reports=journal_path.parent / "reports" if isinstance(journal_path, Path) else None,
                tokens=config.tokens.enabled,
                owner=self._owner,
                lease_seconds=config.lease_seconds,
            )
            self._add_api(app, api)
            self.dashboard = Dashboard(self.journal, chart, config.tokens)
            self.dashboard.add_to(app)
            await self._listen(app)
        except BaseException:
            await self.aclose()
            raise
        _log.info("serve.started", url=self.url, endpoint=client.endpoint if client else None)

    async def _open_client(self, auth: PassOnAuth) -> tuple[SmsClient, aiohttp.ClientSession]:
        """The gateway's client of SMS signing with ``auth``, and its session (of its own,
        traced for the metrics)."""
        config = self.config
        connector = aiohttp.TCPConnector(limit=100, ssl=config.verify_tls)
        session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            trace_configs=[self.metrics.trace_config()],
        )
        # As the client's own session: no silent resend of a PUT by aiohttp.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        client = SmsClient(
            config.endpoint,
            region=config.region,
            auth=auth,
            retry=config.retry,
            session=session,
        )
        await client.open()
        self._client = client
        if (
            config.auth is None
            and len(config.keys)
            and not is_loopback(URL(client.endpoint).host or "")
        ):
            raise ConfigError(
                "AK/SK callers are configured but the gateway has no credentials of its own "
                f"for {client.endpoint}: set CLOUD_SDK_AK, CLOUD_SDK_SK and "
                "CLOUD_SDK_PROJECT_ID (or SMS_FLOW_TOKEN)"
            )
        self.metrics.watch_client(client.stats)
        return client, session

    def _add_api(self, app: web.Application, api: Api) -> None:
        for method, path, role, handler in api.routes():
            # Any segment reaches the handler, which says what is wrong with an id ("{"
            # included): aiohttp's default pattern leaves out braces.
            pattern = re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", path)
            app.router.add_route(method, pattern, self._guard(role, handler))
        app.router.add_route(
            "*", "/api/v1/{tail:[\\s\\S]*}", self._guard(Role.VIEWER, api.unmatched)
        )

    async def _listen(self, app: web.Application) -> None:
        config = self.config
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1]
        host = config.host if ":" not in config.host else f"[{config.host}]"
        self.url = f"http://{host}:{port}"

    async def aclose(self) -> None:
        """Stop serving; close the session and the journal. Harmless twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        owner, self._owner = self._owner, None
        if owner is not None:
            await owner.close()  # the service's run ends: whatever it held is free
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._client = None
        if self._journal_open:
            self._journal_open = False
            await self.journal.close()

    def _guard(
        self, role: Role, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        tokens = self.config.tokens

        async def guarded(request: web.Request) -> web.Response:
            refusal = tokens.check(request.headers, role)
            if refusal is not None:
                code = "SMSFLOW.0007" if refusal.status == 401 else "SMSFLOW.0008"
                resp = error_response(refusal.status, code, refusal.reason)
                if refusal.status == 401:
                    resp.headers["WWW-Authenticate"] = 'Bearer realm="sms-flow"'
                return resp
            return await handler(request)

        return guarded

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.metrics.read_journal(self.journal)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def _no_endpoint(request: web.Request) -> web.Response:
    """Every ``/v3`` route of a watch-only service: 502 ``SMSFLOW.0010`` in SMS's shape."""
    return error_response(
        502,
        GatewayCode.UNREACHABLE.value,
        "this sms-flow serve watches a journal and has no SMS endpoint (--watch-only): "
        "start it with --endpoint URL or --region R to pass changes on",
        [],
    )
