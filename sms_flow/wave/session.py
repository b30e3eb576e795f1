"""Wiring a wave run: the simulator (when embedded), the client, the journal, the run, the engine.

:class:`WaveSession` opens them together and closes them together; :func:`run_wave` runs a
wave from Python in one call, and :func:`run_session` runs any session (the drill's too) to
the end and writes its JSON report.

A session is one run of its wave in the journal (:class:`~sms_flow.journal.Lease`):
exclusive, so a second run of the same wave on the same endpoint is refused while the first
is live (:class:`~sms_flow.errors.OwnedError`, naming it), and takes over from one found
dead; or, with ``join``, one of the wave's workers, sharing it with the others. Closing the
session ends the run, which frees the sources it held at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sms_flow.engine import Engine
from sms_flow.errors import ConfigError
from sms_flow.journal import DEFAULT_LEASE, Lease, is_dsn
from sms_flow.journals import Location, describe, open_journal, resolve, state_folder
from sms_flow.wave.ratelimit import limited
from sms_flow.wave.report import Event, WaveReport
from sms_flow.wave.runner import WaveRunner
from sms_flow.wave.spec import SIMULATOR, WaveSpec, chart_of, folder_of, journal_of, load_wave

__all__ = ["WaveSession", "run_session", "run_wave"]


class WaveSession:
    """Everything a wave run needs, opened together and closed together.

    ``async with WaveSession(spec) as session: report = await session.runner.run()``.
    With ``endpoint: simulator`` an embedded simulator runs in this process, its sources
    kept in a state file of the wave's own (:attr:`simulator_state_file`) so that a second
    run finds them (the journal names that endpoint ``simulator:`` and the state file's
    path); ``fresh`` starts that file, and the wave's membership, over. The journal keeps a
    wave's members by endpoint; a run on another endpoint than the one it has them on is
    refused (:class:`~sms_flow.errors.ConfigError`) unless ``reset_members`` starts the
    membership over; ``sources.count`` is refused at once with a real endpoint. ``lease`` is
    the run's lease in seconds (its heartbeat renews it every third); ``look=False`` turns
    off the engine's read before a push whose last read is not fresh. A subclass makes another kind
    of runner by overriding :meth:`make_runner` (the drill session does) and names its kind
    of run in :attr:`kind`.

    ``join`` makes the run a worker of its wave (``run --join``): it starts the wave when no
    worker runs it, or joins the live ones (on this machine or others sharing the journal),
    and drives the members its session has not done, batch by batch. A run without it is
    refused while workers are live, and a joining one while a run without it is.
    """

    kind = "wave"
    """The kind of run in the journal (a second live run of the same kind, name and
    endpoint is refused)."""

    def __init__(
        self,
        spec: WaveSpec,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        journal_path: str | Path | None = None,
        base_dir: Path | None = None,
        fresh: bool = False,
        on_event: Callable[[Event], None] | None = None,
        client_options: dict[str, Any] | None = None,
        lease: float = DEFAULT_LEASE,
        look: bool = True,
        reset_members: bool = False,
        join: bool = False,
    ) -> None:
        self.spec = spec
        self.join = join
        self._endpoint = endpoint
        self._region = region
        self.journal_location: Location = _location(spec, journal_path, base_dir)
        """Where the journal is (an SQLite file's path or a PostgreSQL DSN): ``journal_path``,
        else the file's ``journal:`` (a path relative to ``base_dir``), else the default
        (``$SMS_FLOW_JOURNAL``, ``$SMS_FLOW_HOME``, ``./.sms-flow``)."""
        self._base_dir = base_dir
        self._fresh = fresh
        self.on_event = on_event
        self._client_options = dict(client_options or {})
        self.lease_seconds = lease
        self.look = look
        self.reset_members = reset_members
        self.simulator: Any = None
        self.client: Any = None
        self.journal: Any = None
        self.lease: Lease | None = None
        self.shown_endpoint = ""
        """Where the session pushes, as shown to a person (set when it opens)."""
        self.endpoint = ""
        """Where the session pushes, as the journal names it (set when it opens)."""
        self.runner: WaveRunner = None  # type: ignore[assignment]  # set in __aenter__

    @property
    def journal_path(self) -> Path | None:
        """The journal's file; ``None`` when the journal is a PostgreSQL database (see
        :attr:`journal_location`)."""
        where = self.journal_location
        return where if isinstance(where, Path) else None

    @property
    def embedded(self) -> bool:
        return self._endpoint is None and self._region is None and self.spec.uses_simulator

    @property
    def actor(self) -> str:
        """Who the run's steps are journalled as: ``KIND:NAME``."""
        return f"{self.kind}:{self.spec.name}"

    @property
    def simulator_state_file(self) -> Path:
        """Where the embedded simulator keeps this wave's sources: ``simulator.state_file``,
        else ``simulator/NAME.sqlite`` in the journal's state folder (beside an SQLite file;
        ``$SMS_FLOW_HOME`` for a database): one file per wave or drill, so that ``--fresh``
        starts this one over and no other."""
        configured = self.spec.simulator.state_file
        if configured:
            return Path(configured)
        return state_folder(self.journal_location) / "simulator" / f"{self.spec.name}.sqlite"

    @property
    def report_path(self) -> Path:
        """``report:``, else ``reports/NAME.json`` in the journal's state folder; a joined
        worker's is ``NAME.worker-RUN.json`` beside it (``RUN``: its run id's first 8)."""
        name = self.spec.name
        if self.join and self.lease is not None and self.lease.run is not None:
            name = f"{name}.worker-{self.lease.run.run_id[:8]}"  # workers share the folder
        if self.spec.report:
            given = Path(self.spec.report)
            return given if name == self.spec.name else given.with_name(f"{name}.json")
        return state_folder(self.journal_location) / "reports" / f"{name}.json"

    async def __aenter__(self) -> WaveSession:
        from sms_flow.auth import auth_from_env
        from sms_flow.client import SmsClient

        spec = self.spec
        if self._fresh and not self.embedded:
            raise ConfigError(
                "--fresh starts the embedded simulator over; it cannot be used with a real endpoint"
            )
        if self.join:
            self._check_join()
        if spec.sources.count is not None and not self.embedded:
            where = self._endpoint or self._region
            raise ConfigError(
                f"{self.kind} {spec.name}: sources.count registers new sources, which only the "
                f"embedded simulator allows, not {where}; against a real endpoint name the "
                "sources with ids or a query"
            )
        try:
            if self.embedded:
                from sms_flow.simulator import Faults, Simulator, SimulatorConfig

                state_file = self.simulator_state_file
                state_file.parent.mkdir(parents=True, exist_ok=True)
                if self._fresh:
                    _wipe_sqlite(state_file)
                opts = spec.simulator
                self.simulator = Simulator(
                    SimulatorConfig(
                        state_file=state_file,
                        service_delay=opts.service_delay,
                        seed=opts.seed,
                        faults=Faults(**opts.fault_settings()),
                    )
                )
                await self.simulator.start()
                self.client = SmsClient(self.simulator.url, **self._client_options)
                self.shown_endpoint = f"embedded simulator ({state_file})"
                self.endpoint = f"simulator:{state_file.absolute()}"
                project = None
            else:
                endpoint = self._endpoint or (None if spec.endpoint == SIMULATOR else spec.endpoint)
                region = self._region or spec.region
                overrides: dict[str, Any] = dict(self._client_options)
                if endpoint:
                    overrides["endpoint"] = endpoint
                elif region:
                    overrides["region"] = region
                self.client = SmsClient.from_env(**overrides)
                self.shown_endpoint = self.endpoint = self.client.endpoint
                # The project AK/SK signing names (a token's project is not known here).
                project = getattr(auth_from_env(), "project_id", None)
            await self.client.open()
            self.journal = open_journal(self.journal_location)
            await self.journal.open()
            await self._check_membership()
            actor = self.actor
            self.lease = Lease(
                self.journal,
                self.kind,
                actor=actor,
                name=spec.name,
                endpoint=self.endpoint,
                project=project,
                seconds=self.lease_seconds,
                exclusive=not self.join,
                join=self.join,
            )
            await self.lease.start()
            api = limited(
                self.client, spec.rate_limit, journal=self.journal, session=self.lease.session
            )
            engine = Engine(
                api,
                chart=chart_of(spec, self._base_dir),
                journal=self.journal,
                verify=spec.verify,
                actor=actor,
                endpoint=self.endpoint,
                project=project,
                lease=self.lease,
                look=self.look,
            )
            self.runner = self.make_runner(engine, api)
        except BaseException:
            await self.aclose()
            raise
        return self

    def _check_join(self) -> None:
        """Refuse what a worker joining others cannot do."""
        name = self.spec.name
        if self.embedded:
            raise ConfigError(
                f"--join: workers of {self.kind} {name} must push to one service, and the "
                "embedded simulator lives inside one process; start one with `sms-flow "
                "simulator --port 8000` and give every worker --endpoint "
                "http://127.0.0.1:8000 (or run without --join)"
            )
        if self.reset_members:
            raise ConfigError(
                f"--join with --reset-members would start the membership of {self.kind} "
                f"{name} over under the workers running it; reset it in a run without --join"
            )

    async def _check_membership(self) -> None:
        """Refuse a run on another endpoint than the one the journal has the wave's members on.

        Membership is keyed by wave and endpoint, so a member of one endpoint is never taken
        for another's; a run on a new endpoint of a wave the journal knows elsewhere is most
        likely a mistake (a rehearsal's name given to the real run), and is refused with the
        ways out. ``fresh`` and ``reset_members`` start the membership over; members of
        unknown endpoint (from an older journal) are taken as this endpoint's.
        """
        journal, name = self.journal, self.spec.name
        if self._fresh or self.reset_members:
            await journal.remove_members(name)
            return
        known = await journal.member_endpoints(name)
        if "" in known:
            await journal.adopt_members(name, endpoint=self.endpoint)
        elsewhere = [e for e in known if e not in ("", self.endpoint)]
        if elsewhere:
            raise ConfigError(
                f"{self.kind} {name} has members on {elsewhere[0]} in journal "
                f"{describe(self.journal_location)}, and this run goes to {self.endpoint}: its sources there "
                f"are not these. Give the {self.kind} another name, use another journal "
                "(--journal FILE), or start its membership over on this endpoint with "
                "--reset-members (its history stays)"
            )

    def make_runner(self, engine: Engine, client: Any) -> WaveRunner:
        """The runner of this session, over its open ``engine`` and (rate-limited) ``client``."""
        return WaveRunner(
            self.spec,
            engine,
            self.journal,
            client=client,
            endpoint=self.shown_endpoint,
            on_event=self.on_event,
            simulator=self.simulator,
        )

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.lease is not None:
            await self.lease.end()
            self.lease = None
        if self.journal is not None:
            await self.journal.close()
            self.journal = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self.simulator is not None:
            await self.simulator.stop()
            self.simulator = None

    def write_report(self, report: WaveReport) -> Path:
        import json

        path = self.report_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _location(spec: WaveSpec, given: str | Path | None, base_dir: Path | None) -> Location:
    """The journal a session writes to: ``given``, else the file's ``journal:``, else the
    default; a DSN is kept as written."""
    if given:
        return resolve(given)
    if spec.journal is not None and is_dsn(spec.journal):
        return spec.journal
    if spec.journal is None:
        return resolve(None)
    return journal_of(spec, base_dir)


def _wipe_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def run_wave(
    spec: WaveSpec | str | Path,
    *,
    endpoint: str | None = None,
    journal_path: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
    fresh: bool = False,
    lease: float = DEFAULT_LEASE,
    join: bool = False,
) -> WaveReport:
    """Run a wave from Python: recover, drive every source, write the JSON report.

    ``spec`` is a :class:`WaveSpec` or the path of a wave file. ``on_event`` sees every
    :class:`Event`. ``join``: run as one worker of the wave (see :class:`WaveSession`). For an async iterator of events, or to stop a run, use
    :class:`WaveSession` and its ``runner``.
    """
    base_dir = None
    if not isinstance(spec, WaveSpec):
        base_dir = folder_of(spec)
        spec = load_wave(spec)
    return await run_session(
        WaveSession(
            spec,
            endpoint=endpoint,
            journal_path=journal_path,
            base_dir=base_dir,
            fresh=fresh,
            on_event=on_event,
            lease=lease,
            join=join,
        )
    )


async def run_session(session: WaveSession) -> WaveReport:
    """Open ``session``, run its runner to the end, write the JSON report, close."""
    async with session:
        report = await session.runner.run()
        session.write_report(report)
        return report
