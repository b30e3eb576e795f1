"""A throwaway PostgreSQL cluster: ``initdb`` in a temporary directory, ``pg_ctl`` to run it.

For the test suite's ``postgres`` fixture (``tests/conftest.py``) and the benchmarks (B7),
which both need a server of their own and must not each learn how to start one. The cluster
uses the server binaries on ``PATH``; as root it runs as the ``postgres`` user (``initdb``
refuses root). It listens on 127.0.0.1 on a free port with password authentication (a random
password) and keeps its socket in its own directory; :meth:`Cluster.stop` stops it
(``-m immediate``) and removes the directory.

::

    with Cluster({"fsync": "off"}) as cluster:
        dsn = cluster.admin_dsn   # postgresql://postgres:...@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from sms_flow.errors import ConfigError

__all__ = ["Cluster"]


class Cluster:
    """A PostgreSQL cluster of this process's own, started by :meth:`start`.

    ``settings`` are server options (``-c name=value``) on top of the listening ones, e.g.
    ``{"fsync": "off"}`` for tests that need no durability. :meth:`unavailable` says why no
    cluster can be started here (``None``: one can); :meth:`start` raises
    :class:`~sms_flow.errors.ConfigError` when ``initdb`` or ``pg_ctl`` fails, with the
    server's log.
    """

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self.settings = dict(settings or {})
        self.top: Path | None = None
        self.admin_dsn = ""
        self._run_as: list[str] = []
        self._options = ""

    @staticmethod
    def unavailable() -> str | None:
        """Why a cluster cannot be started on this machine, or ``None``."""
        missing = [name for name in ("initdb", "pg_ctl") if shutil.which(name) is None]
        if missing:
            return f"{' and '.join(missing)} not on PATH"
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no 'postgres' user to run PostgreSQL"
        return None

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        if self.top is None:
            raise ConfigError("the PostgreSQL cluster is not started; call start() first")
        return self.top / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.data.parent / "server.log"

    def dsn(self, database: str) -> str:
        """The admin DSN with another database."""
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{database}"))

    def start(self) -> str:
        """``initdb`` and ``pg_ctl start``; the admin DSN (user ``postgres``, database
        ``postgres``)."""
        why = self.unavailable()
        if why is not None:
            raise ConfigError(f"cannot start a PostgreSQL cluster: {why}")
        owner = None
        if os.geteuid() == 0:
            import pwd

            owner = pwd.getpwnam("postgres")
            self._run_as = ["runuser", "-u", "postgres", "--"]
        top = self.top = Path(tempfile.mkdtemp(prefix="sms-flow-pg-"))
        password = secrets.token_urlsafe(12)
        pwfile = top / "pwfile"
        pwfile.write_text(password + "\n")
        if owner is not None:
            os.chown(top, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.admin_dsn = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
        done = self._command(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        if done.returncode != 0:
            raise ConfigError(f"initdb failed ({done.returncode}): {done.stderr.strip()}")
        self._options = " ".join(
            [f"-p {port} -k {top} -c listen_addresses=127.0.0.1"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        done = self.pg_ctl("-l", str(self.log), "-w", "-t", "60", "-o", self._options, "start")
        if done.returncode != 0:
            raise ConfigError(
                f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()}\n"
                + (self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "")
            )
        return self.admin_dsn

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut; back once it accepts them."""
        # -l: not our pipe, or pg_ctl would never end
        done = self.pg_ctl(
            "-l", str(self.log), "-w", "-t", "60", "-m", "fast", "-o", self._options, "restart"
        )
        if done.returncode != 0:
            raise ConfigError(f"pg_ctl restart failed ({done.returncode}): {done.stderr}")

    def stop(self) -> None:
        """Stop the server at once and remove its directory (nothing is kept)."""
        if self.top is None:
            return
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(self.top, ignore_errors=True)
        self.top = None

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``pg_ctl -D DATA ARGS`` (as the cluster's user)."""
        return self._command("pg_ctl", "-D", str(self.data), *args)

    def _command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._run_as, *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.top,
            check=False,
        )

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
