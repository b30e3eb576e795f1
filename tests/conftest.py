"""What the whole test suite shares: one fixture or helper per real part, and the model.

Real parts (no mocks: a real simulator on loopback, real child processes, real files)
------------------------------------------------------------------------------------

``sim`` (fixture)
    A running :class:`~sms_flow.simulator.Simulator`, stopped after the test. Its
    configuration comes from the ``simulator`` marker, the closest one winning (the test's
    own, then its class's, then the module's ``pytestmark``); the marker takes what
    ``sms_simulator_factory`` takes, a :class:`~sms_flow.simulator.SimulatorConfig` and/or
    its fields (a misspelt field fails at once)::

        pytestmark = pytest.mark.simulator(token=TOKEN, service_delay=0.05, seed=1)

        async def test_push(sim: Simulator) -> None: ...

        @pytest.mark.simulator(strict=True)  # this test's own configuration
        async def test_strict(sim: Simulator) -> None: ...

    No marker: the default configuration. For several simulators in one test, or one that
    starts part-way through, ask for ``sms_simulator_factory`` (an async callable
    ``factory(config=None, **fields) -> Simulator``, every simulator stopped at teardown):
    it is the fixture factory of the :mod:`sms_flow.testing` plugin, which ``sim`` is built
    on and which this suite loads itself (``pytest_plugins`` below), as a user's
    ``conftest.py`` would.

``spawn`` (fixture), a :class:`Spawner`
    Child processes, each returned at once as a :class:`Child`: ``spawn.sms_flow(*args)``
    (``python -m sms_flow``), ``spawn.simulator(*args, sources=N)`` (``python -m
    sms_flow.simulator --port 0``, returned once it printed its URL and the N source ids:
    a :class:`SimulatorChild` with ``.url``, ``.ids``, ``.history(id)``, ``.stats()``),
    ``spawn.python("-c", script, ...)``, or any command, ``spawn(*argv)``;
    ``spawn.run(*argv)`` runs one to its end (``SMS_FLOW_COMMAND`` and
    ``SIMULATOR_COMMAND`` are the two argv prefixes). Threads read a child's stdout and
    stderr (it never blocks on a full pipe): ``.readline()`` (``await .areadline()``) gives
    the next line, failing the test with the child's stderr if none comes in time or stdout
    ends; ``.stdout``/``.stderr`` hold all it wrote; ``.wait()`` (``await .await_exit()``)
    reaps it and gives its exit status, ``.kill()`` does so after SIGKILL. Children run the
    checkout under test (``PYTHONPATH``), with ``COLUMNS=200``, in the repository unless
    given ``cwd``. Every child still running at teardown is killed, reaped and its pipes
    closed. In a module-scoped fixture, use ``with Spawner() as spawn:``. A kill test::

        sim = spawn.simulator("--service-delay", "0.02", sources=40)
        run = spawn.sms_flow("run", str(wave), "--journal", str(journal), cwd=tmp_path)
        await eventually(lambda: journalled(run, journal, 20), timeout=60)  # tests/wave/conftest
        assert run.kill() == -signal.SIGKILL
        again = spawn.sms_flow("run", str(wave), "--journal", str(journal), cwd=tmp_path)
        assert await again.await_exit() == 0, again.stderr

``eventually(predicate, timeout=10.0)`` (a coroutine function, imported from here)
    Wait for proof instead of sleeping: polls ``predicate`` (a plain function, or one
    returning an awaitable) until it is true, and fails the test after ``timeout`` seconds.
    The timeout bounds a hang, it measures nothing: keep it generous. An exception from the
    predicate ends the wait at once, so a predicate may assert that the process it waits on
    is still running. Tests that kill or interrupt a process wait this way for the journal
    (or the simulator's history) to show work in flight.

``postgres`` (fixture, session scope), a :class:`PostgresServer`, and ``pg_dsn``
    A real PostgreSQL: a throwaway cluster started from the server binaries on PATH
    (``initdb``, ``pg_ctl``; as root, run as the ``postgres`` user; the benchmarks start
    theirs with the same :class:`sms_flow.testing._postgres.Cluster`), or the server
    ``SMS_FLOW_TEST_PG_DSN`` names; stopped at the end of the session. ``pg_dsn`` is the DSN
    of an empty database for one test (emptied after it, and given to a later test). Without a server the tests that
    use them skip, saying why, unless ``SMS_FLOW_REQUIRE_PG=1`` (``.ci/run``): then they fail.
    ``postgres.restart()`` is ``pg_ctl restart -m fast`` on a cluster of this session.

The model (session scope)
-------------------------

``chart``, ``planner``, ``machine``: the default chart and what is built from it;
``default_chart_text``; ``write_chart(text, name="chart.yaml")`` writes a chart file into
``tmp_path``. ``REPO`` is the checkout's root.

Markers: ``slow`` (tests that take more than a few seconds: waves in a child process, kills,
the benchmark smoke run, the wheel build, pytest run by pytester, the journal's load test;
``pytest -m "not slow"`` leaves them out, ``make test`` runs everything) and
``simulator`` (above). Logging is configured as the CLI does by default for every test
(``_quiet_logs``).

Fixtures for one area live beside its tests: ``tests/wave/conftest.py`` (wave files, journal
checks), ``tests/simulator/conftest.py`` (raw HTTP against the simulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from sms_flow.chart import Chart, default_chart, default_chart_path
from sms_flow.machine import LifecycleMachine
from sms_flow.planner import Planner
from sms_flow.simulator import Simulator
from sms_flow.testing import SimulatorFactory
from sms_flow.testing._postgres import Cluster

# The suite uses the plugin's fixtures as a user would, whether or not its pytest11 entry
# point is loaded (the entry point registers it under the same name: it is loaded once).
pytest_plugins = ["sms_flow.testing"]

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    # The default chart's cache goes to a folder of this run, not the user's ~/.cache (child
    # processes inherit it); a test of the cache sets its own.
    if "SMS_FLOW_CACHE_DIR" not in os.environ:
        os.environ["SMS_FLOW_CACHE_DIR"] = tempfile.mkdtemp(prefix="sms-flow-test-cache-")
    config.addinivalue_line(
        "markers",
        "simulator(config=None, **fields): the configuration of the `sim` fixture's simulator "
        "(a SimulatorConfig and/or its fields)",
    )


# --- the model -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chart() -> Chart:
    return default_chart()


@pytest.fixture(scope="session")
def planner(chart: Chart) -> Planner:
    return Planner(chart)


@pytest.fixture(scope="session")
def machine(chart: Chart) -> LifecycleMachine:
    return LifecycleMachine(chart)


@pytest.fixture(scope="session")
def default_chart_text() -> str:
    return default_chart_path().read_text(encoding="utf-8")


@pytest.fixture
def write_chart(tmp_path: Path) -> Callable[[str], Path]:
    """Write chart YAML text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "chart.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    """Tests log at WARNING and above, to standard error, as the CLI does by default."""
    from sms_flow.log import configure

    configure(level="warning", json=True)


# --- the simulator in this process ------------------------------------------------------


@pytest.fixture
async def sim(request: pytest.FixtureRequest, sms_simulator_factory: SimulatorFactory) -> Simulator:
    """A running simulator configured by the closest ``simulator`` marker (see above)."""
    marker = request.node.get_closest_marker("simulator")
    if marker is None:
        return await sms_simulator_factory()
    return await sms_simulator_factory(*marker.args, **marker.kwargs)


# --- waiting for proof --------------------------------------------------------------------


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    *,
    what: str | None = None,
) -> None:
    """Return once ``predicate()`` is true; fail the test if it is not within ``timeout`` s.

    Polls every millisecond at first, backing off to every 50 ms. ``what`` names the
    condition in the failure (by default, the predicate's source line).
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        held = predicate()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what or _source_of(predicate)} did not hold within {timeout:g} s"
            )
        # The condition is made true by another thread or process, which offers no event.
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


def _source_of(predicate: Callable[..., object]) -> str:
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)


# --- child processes ----------------------------------------------------------------------

SMS_FLOW_COMMAND = (sys.executable, "-m", "sms_flow")
SIMULATOR_COMMAND = (sys.executable, "-m", "sms_flow.simulator")


class Child:
    """A child process started by a :class:`Spawner`; threads read its stdout and stderr."""

    def __init__(self, argv: tuple[str, ...], popen: subprocess.Popen[str]) -> None:
        self.argv = argv
        self.popen = popen
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._out: list[str] = []
        self._err: list[str] = []
        assert popen.stdout is not None and popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(popen.stdout, self._out, True), daemon=True),
            threading.Thread(target=self._read, args=(popen.stderr, self._err, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: Any, into: list[str], lines: bool) -> None:
        for line in pipe:
            into.append(line)
            if lines:
                self._lines.put(line)
        if lines:
            self._lines.put(None)  # end of stdout

    def __repr__(self) -> str:
        return f"<child {self.popen.pid}: {' '.join(self.argv[1:])[:120]}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def stdout(self) -> str:
        """All it has written to stdout so far (all of it, once :meth:`wait` returned)."""
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        """All it has written to stderr so far (all of it, once :meth:`wait` returned)."""
        return "".join(self._err)

    def readline(self, timeout: float = 60.0) -> str:
        """The next line of stdout not read yet, without its line end.

        Fails the test (with the child's stderr) when no line comes within ``timeout``
        seconds, or when stdout ends first.
        """
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self}: no line on stdout within {timeout:g} s; stderr: {self.stderr!r}"
            ) from None
        if line is None:
            self._lines.put(None)  # stays at the end
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
            raise AssertionError(
                f"{self}: stdout ended (exit status {self.popen.returncode}); "
                f"stderr: {self.stderr!r}"
            )
        return line.rstrip("\r\n")

    async def areadline(self, timeout: float = 60.0) -> str:
        """:meth:`readline` from a coroutine, without blocking the event loop."""
        return await asyncio.to_thread(self.readline, timeout)

    def send_signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 120.0) -> int:
        """Wait for the child to end (and its output to be read); its exit status."""
        code = self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    async def await_exit(self, timeout: float = 120.0) -> int:
        """:meth:`wait` from a coroutine, without blocking the event loop."""
        return await asyncio.to_thread(self.wait, timeout)

    def kill(self) -> int:
        """SIGKILL, then reap; its exit status (``-SIGKILL`` unless it had ended already)."""
        if self.running:
            self.popen.kill()
        return self.wait(timeout=30)

    def close(self) -> None:
        """Kill it if it still runs, reap it and close its pipes."""
        self.kill()
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


class SimulatorChild(Child):
    """``python -m sms_flow.simulator`` in a child process; read through its test controls."""

    url: str
    """Its base URL, the first line it printed."""
    ids: list[str]
    """The ids of the sources it registered (``--sources N``), printed after the URL."""

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as answer:
            return json.load(answer)

    def history(self, source_id: str) -> list[dict[str, Any]]:
        """The source's applied changes (``GET /_simulator/sources/{id}/history``)."""
        return list(self._get(f"/_simulator/sources/{source_id}/history")["history"])

    def stats(self) -> dict[str, Any]:
        """Its counters (``GET /_simulator/stats``)."""
        return dict(self._get("/_simulator/stats"))


class Spawner:
    """Starts child processes and, on :meth:`close`, kills and reaps every one still running."""

    def __init__(self, cwd: Path | None = None) -> None:
        self.cwd = cwd or REPO
        self.children: list[Child] = []

    def __enter__(self) -> Spawner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for child in reversed(self.children):
            child.close()
        self.children.clear()

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", **(env or {})}

    def __call__(
        self,
        *argv: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        kind: type[Child] = Child,
    ) -> Child:
        """Start ``argv`` (stdin closed, stdout and stderr read by threads)."""
        popen = subprocess.Popen(
            argv,
            cwd=cwd or self.cwd,
            env=self._env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        child = kind(argv, popen)
        self.children.append(child)
        return child

    def sms_flow(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> Child:
        """``sms-flow ARGS`` (as ``python -m sms_flow``)."""
        return self(*SMS_FLOW_COMMAND, *args, cwd=cwd, env=env)

    def python(self, *args: str, env: Mapping[str, str] | None = None) -> Child:
        """``python ARGS`` with this interpreter, e.g. ``spawn.python("-c", script, path)``."""
        return self(sys.executable, *args, env=env)

    def simulator(
        self, *args: str, sources: int = 0, env: Mapping[str, str] | None = None
    ) -> SimulatorChild:
        """``python -m sms_flow.simulator --port 0 ARGS``, once it printed its URL and ids."""
        extra = ("--sources", str(sources)) if sources else ()
        child = self(*SIMULATOR_COMMAND, "--port", "0", *extra, *args, env=env, kind=SimulatorChild)
        assert isinstance(child, SimulatorChild)
        child.url = child.readline()
        child.ids = [child.readline() for _ in range(sources)]
        return child

    def run(
        self,
        *argv: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> Child:
        """Start ``argv`` and wait for it to end; read ``.returncode``, ``.stdout``, ``.stderr``."""
        child = self(*argv, cwd=cwd, env=env)
        child.wait(timeout)
        return child


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """A :class:`Spawner` whose children are killed and reaped when the test ends."""
    with Spawner() as spawner:
        yield spawner


# --- PostgreSQL ----------------------------------------------------------------------------

PG_DSN_ENV = "SMS_FLOW_TEST_PG_DSN"
"""A server for the PostgreSQL tests instead of a throwaway cluster (its user needs CREATEDB)."""
PG_REQUIRE_ENV = "SMS_FLOW_REQUIRE_PG"
"""``1``: no PostgreSQL for the tests is a failure, not a skip (``.ci/run`` sets it)."""


def _pg_admin(dsn: str, *statements: str) -> None:
    """Run statements on a new connection, from a thread of its own (fixtures are sync)."""

    async def run() -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    failed: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(failed, lambda: asyncio.run(run())))
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def _catch(into: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except BaseException as exc:
        into.append(exc)


class PostgresServer:
    """The PostgreSQL server of the tests (fixture ``postgres``, one a session).

    Either a throwaway :class:`~sms_flow.testing._postgres.Cluster` this session started
    (``initdb``, ``pg_ctl``; as root, run as the ``postgres`` user), with ``fsync=off``,
    password authentication over TCP on 127.0.0.1 and its socket in its temp dir; or the
    server ``SMS_FLOW_TEST_PG_DSN`` names. :meth:`create_database` makes a fresh database
    (what the ``pg_dsn`` fixture gives each test); :meth:`restart` (``pg_ctl restart -m
    fast``) only on a cluster of this session.
    """

    def __init__(self, admin_dsn: str, *, cluster: Cluster | None = None) -> None:
        self.admin_dsn = admin_dsn
        self.cluster = cluster
        self._made: list[str] = []
        self._spare: list[str] = []

    def dsn(self, database: str) -> str:
        """The admin DSN with another database."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))

    def create_database(self) -> str:
        """An empty database; its DSN. One given back (:meth:`give_back`) is used again:
        emptied, it costs less than a new one (``CREATE DATABASE`` takes a good part of a
        second)."""
        if self._spare:
            return self._spare.pop()
        name = f"sms_flow_test_{os.getpid()}_{next(_databases)}"
        _pg_admin(self.admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        self._made.append(name)
        return self.dsn(name)

    def give_back(self, dsn: str) -> None:
        """Empty the database (its connections cut, every schema but the system's dropped,
        ``public`` made anew) and keep it for the next test."""
        from urllib.parse import urlsplit

        name = urlsplit(dsn).path.lstrip("/")
        _pg_admin(
            self.admin_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )
        _pg_admin(
            dsn,
            "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace "
            "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP "
            "EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$",
            "CREATE SCHEMA public",
        )
        self._spare.append(dsn)

    def drop_databases(self) -> None:
        """Drop every database this session made (on a server of its own, or not)."""
        for name in self._made:
            _pg_admin(self.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._made.clear()
        self._spare.clear()

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut; back once it accepts them."""
        if self.cluster is None:
            _pg_unavailable(
                f"restarting PostgreSQL needs a cluster this session started: {PG_DSN_ENV} "
                "names an outside server, which the tests do not restart"
            )
        assert self.cluster is not None
        self.cluster.restart()


_databases = iter(range(1, 1_000_000))


def _pg_unavailable(reason: str) -> None:
    if os.environ.get(PG_REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {PG_REQUIRE_ENV}=1 requires PostgreSQL", pytrace=False)
    pytest.skip(reason=f"PostgreSQL unavailable (a missing platform feature): {reason}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The tests' PostgreSQL server (see :class:`PostgresServer`); skips without one, unless
    ``SMS_FLOW_REQUIRE_PG=1``."""
    import importlib.util

    from sms_flow.errors import ConfigError

    if importlib.util.find_spec("asyncpg") is None:
        _pg_unavailable("asyncpg is not installed (pip install 'sms-flow[postgres]')")
    external = os.environ.get(PG_DSN_ENV)
    if external:
        server = PostgresServer(external)
        try:
            yield server
        finally:
            server.drop_databases()
        return
    why = Cluster.unavailable()
    if why is not None:
        _pg_unavailable(f"no PostgreSQL for the tests: {why} and {PG_DSN_ENV} not set")
    cluster = Cluster(_TEST_CLUSTER)
    try:
        try:
            cluster.start()
        except ConfigError as exc:
            pytest.fail(str(exc))
        yield PostgresServer(cluster.admin_dsn, cluster=cluster)
    finally:
        cluster.stop()


_TEST_CLUSTER = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}
"""The tests' cluster: no durability (a test's data is thrown away), room for many workers."""


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> Iterator[str]:
    """The DSN of a fresh, empty database on the tests' PostgreSQL, dropped after the test."""
    dsn = postgres.create_database()
    yield dsn
    postgres.give_back(dsn)
