"""Which journal a location names (``sms_flow/journals.py``), and a PostgreSQL location taken
by every command that takes a journal: ``run``, ``history``, ``status``, ``journal check``,
with the DSN's password in none of their output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sms_flow.journal_postgres import PostgresJournal
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.journals import describe, open_journal, resolve, state_folder
from tests.conftest import SMS_FLOW_COMMAND, Child, Spawner
from tests.wave.conftest import write_wave

DSN = "postgresql://alice:s3cret-Pw@db.example:5432/sms"


def test_a_dsn_is_kept_as_written_and_a_path_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMS_FLOW_JOURNAL", raising=False)
    monkeypatch.delenv("SMS_FLOW_HOME", raising=False)
    assert resolve(DSN) == DSN
    assert resolve("postgres://db/sms") == "postgres://db/sms"
    assert resolve("j.sqlite") == tmp_path / "j.sqlite"
    assert resolve(None) == tmp_path / ".sms-flow" / "journal.sqlite"
    monkeypatch.setenv("SMS_FLOW_JOURNAL", DSN)
    assert resolve(None) == DSN
    assert resolve("") == DSN


def test_a_dsn_opens_a_postgresql_journal_and_a_path_an_sqlite_one(tmp_path: Path) -> None:
    assert isinstance(open_journal(DSN, pool_size=2), PostgresJournal)
    assert isinstance(open_journal(tmp_path / "j.sqlite"), SqliteJournal)
    assert isinstance(open_journal(str(tmp_path / "j.sqlite")), SqliteJournal)


def test_a_dsn_is_described_without_its_password(tmp_path: Path) -> None:
    assert describe(DSN) == "postgresql://alice@db.example:5432/sms"
    assert describe("postgresql://db/sms?password=s3cret-Pw") == "postgresql://db/sms"
    assert describe(tmp_path / "j.sqlite") == str(tmp_path / "j.sqlite")


def test_reports_go_beside_a_file_and_to_sms_flow_home_for_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMS_FLOW_HOME", raising=False)
    assert state_folder(tmp_path / "x" / "j.sqlite") == tmp_path / "x"
    assert state_folder(DSN) == tmp_path / ".sms-flow"
    monkeypatch.setenv("SMS_FLOW_HOME", str(tmp_path / "home"))
    assert state_folder(DSN) == tmp_path / "home"


def run(spawn: Spawner, *args: str, cwd: Path, env: dict[str, str]) -> Child:
    return spawn.run(*SMS_FLOW_COMMAND, *args, cwd=cwd, env=env, timeout=120)


@pytest.mark.slow
def test_a_wave_runs_on_a_postgresql_journal_and_every_command_reads_it(
    spawn: Spawner, tmp_path: Path, pg_dsn: str
) -> None:
    """``run --journal postgresql://…`` against the embedded simulator: its report and the
    simulator's state go to $SMS_FLOW_HOME; ``history`` (by SMS_FLOW_JOURNAL), ``status`` and
    ``journal check`` read the same journal; the password shows nowhere."""
    from urllib.parse import urlsplit

    password = urlsplit(pg_dsn).password
    assert password
    shown = describe(pg_dsn)
    home = tmp_path / "home"
    env = {"SMS_FLOW_HOME": str(home), "SMS_FLOW_JOURNAL": ""}
    wave = write_wave(
        tmp_path / "wave.yaml",
        name="pgw",
        target="CUTOVERING/cutovering",
        sources={"count": 3},
        simulator={"service_delay": 0.02},
    )
    outputs: list[str] = []

    done = run(spawn, "run", str(wave), "--journal", pg_dsn, cwd=tmp_path, env=env)
    outputs.append(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert f"journal {shown}" in " ".join(done.stdout.split())  # the banner may wrap
    report = json.loads((home / "reports" / "pgw.json").read_text())
    assert report["totals"]["finished"] == 3, report["totals"]
    assert (home / "simulator" / "pgw.sqlite").exists()
    assert not list(tmp_path.glob("postgres*")), "no file is made of the DSN"

    by_env = {**env, "SMS_FLOW_JOURNAL": pg_dsn}
    history = run(spawn, "history", "--wave", "pgw", "--json", cwd=tmp_path, env=by_env)
    outputs.append(history.stdout + history.stderr)
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    assert len({e["source_id"] for e in entries}) == 3
    applied = [e for e in entries if e["outcome"] == "applied"]
    assert len(applied) == report["totals"]["transitions_applied"] > 0

    status = run(spawn, "status", "pgw", "--journal", pg_dsn, cwd=tmp_path, env=env)
    outputs.append(status.stdout + status.stderr)
    assert status.returncode == 0, status.stderr
    assert f"wave pgw ({shown}): 3 sources" in status.stdout
    assert "CUTOVERING/cutovering" in status.stdout

    check = run(spawn, "journal", "check", "--journal", pg_dsn, cwd=tmp_path, env=env)
    outputs.append(check.stdout + check.stderr)
    assert check.returncode == 0, check.stderr
    assert f"journal {shown}: sound" in check.stdout
    assert f"entries: {len(entries)}" in check.stdout

    assert all(password not in text for text in outputs), outputs
