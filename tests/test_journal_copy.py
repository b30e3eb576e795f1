"""``journals.copy`` (``sms-flow journal copy``): a journal moved between SQLite and PostgreSQL
losing nothing, every table and column of both schemas carried, refusals before anything is
written, and a copy that fails half-way leaving the destination as it was."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sms_flow.cli import main
from sms_flow.client import SmsClient
from sms_flow.engine import Engine
from sms_flow.errors import ConfigError, JournalError, OwnedError
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_postgres import PostgresJournal
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.journals import COPIED, NOT_COPIED, copy
from sms_flow.simulator import Simulator
from sms_flow.wave import recover, run_wave
from tests.conftest import PostgresServer, Spawner, eventually
from tests.wave.conftest import WAVE_SIMULATOR, spec

pytestmark = WAVE_SIMULATOR

# --- every table and column is carried ------------------------------------------------------


def _not_carried(backend: str, live: set[str]) -> set[str]:
    """Of a schema's ``table`` and ``table.column`` names, those the copy neither carries
    (:data:`COPIED`) nor knowingly leaves (:data:`NOT_COPIED`, a table with its columns)."""
    names = {t.name for t in COPIED} | {f"{t.name}.{c}" for t in COPIED for c in t.columns}
    left = set(NOT_COPIED[backend])
    return {n for n in live - names - left if n.partition(".")[0] not in left}


async def test_the_copy_carries_every_table_and_column_of_the_sqlite_schema(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        live = set(tables) | {
            f"{table}.{row[1]}"
            for table in tables
            for row in conn.execute(f"PRAGMA table_info({table})")
        }
    assert _not_carried("sqlite", live) == set(), (
        "add these to sms_flow.journals.COPIED (or, with the reason, to NOT_COPIED['sqlite'])"
    )
    copied = {t.name for t in COPIED} | {f"{t.name}.{c}" for t in COPIED for c in t.columns}
    assert copied - live == set(), "COPIED names what the SQLite schema does not have"


async def test_the_copy_carries_every_table_and_column_of_the_postgresql_schema(
    pg_dsn: str,
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    async with PostgresJournal(pg_dsn):
        pass
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.table_name, c.column_name FROM information_schema.columns AS c "
            "JOIN information_schema.tables AS t USING (table_schema, table_name) "
            "WHERE c.table_schema = 'sms_flow' AND t.table_type = 'BASE TABLE'"
        )
        sequences = {
            r["sequence_name"]
            for r in await conn.fetch(
                "SELECT sequence_name FROM information_schema.sequences "
                "WHERE sequence_schema = 'sms_flow'"
            )
        }
        identities = {
            f"{r['table_name']}_{r['column_name']}_seq"
            for r in await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'sms_flow' AND is_identity = 'YES'"
            )
        }
    finally:
        await conn.close()
    live = {r["table_name"] for r in rows} | {f"{r['table_name']}.{r['column_name']}" for r in rows}
    # A sequence of its own (not an identity column's) is a counter: a table of the copy.
    live |= sequences - identities
    assert _not_carried("postgresql", live) == set(), (
        "add these to sms_flow.journals.COPIED (or, with the reason, to NOT_COPIED['postgresql'])"
    )
    copied = {t.name for t in COPIED} | {
        f"{t.name}.{c}" for t in COPIED if not t.counter for c in t.columns
    }
    assert copied - live == set(), "COPIED names what the PostgreSQL schema does not have"


# --- a journal filled by a real wave --------------------------------------------------------


async def _fill(sim: Simulator, path: Path) -> dict[str, Any]:
    """A journal as a pilot leaves it: a wave run (applied and observed entries, a source
    failed, its run ended, its claims and members), an entry recorded as observed, a push
    settled failed, an intent left open whose push landed, and a run that died without
    ending (holding a claim)."""
    ids = await sim.register_many(5, prefix="cp")
    await sim.move(ids[0], pair="STOPPED/syncing")  # needs an action nobody calls: fails
    report = await run_wave(
        spec(name="cpw", sources={"ids": ids}, service_wait=0.3),
        endpoint=sim.url,
        journal_path=path,
    )
    assert [r.source_id for r in report.failed] == [ids[0]]
    [opened, seen] = await sim.register_many(2, prefix="op")
    async with SqliteJournal(path) as journal:
        await journal.record(
            Intent(seen, None, "WAITING/checking", "WAITING/checking", "cli:get", None,
                   endpoint=sim.url),
            Outcome.OBSERVED,
        )  # fmt: skip
        refused = await journal.begin(  # a push the service refused, as the engine settles it
            Intent(seen, "start", "WAITING/checking", "INIT/replicating", "cli:ann", None,
                   endpoint=sim.url),
        )  # fmt: skip
        await journal.settle(refused, Outcome.FAILED, attempts=1, error="HTTP 400: SMS.6602")
        open_id = await journal.begin(
            Intent(opened, "configure", "WAITING/checking", "WAITING/setting", "cli:ann",
                   "ticket 9", endpoint=sim.url),
        )  # fmt: skip
        dead = await journal.start_run("set", name=None, endpoint=sim.url, actor="cli:bob", lease=1)
        await journal.claim(dead.run.run_id, sim.url, [seen])
        await eventually(lambda: not dead.run.live(), what="the run's lease to lapse")
    await sim.move(opened, trigger="configure")  # the open intent's push had landed
    return {"ids": ids, "open": opened, "open_id": open_id, "seen": seen}


_COUNTS = ("latest_counts", "wave_counts")
"""Tables of counts kept by triggers, where a count of 0 is the same as no row: one rebuilt
by a copy has no rows of 0."""


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of an SQLite journal, every column (``SELECT *``); of the
    tables of counts, the counts above 0."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        found = {}
        for name in names:
            width = len(conn.execute(f"SELECT * FROM {name}").description)
            every = ", ".join(str(i) for i in range(1, width + 1))
            where = " WHERE n <> 0" if name in _COUNTS else ""
            found[name] = conn.execute(f"SELECT * FROM {name}{where} ORDER BY {every}").fetchall()
        return found


async def _printed(capsys: pytest.CaptureFixture[str], location: str, *argv: str) -> str:
    """What ``sms-flow ARGV --journal LOCATION`` prints, the journal's name and the ages
    ("(2 s ago)": the clock moves between the reads) taken out (the command runs its own
    event loop: in a thread)."""
    from sms_flow.journals import describe

    assert await asyncio.to_thread(main, [*argv, "--journal", location]) == 0
    printed = capsys.readouterr().out.replace(describe(location), "JOURNAL")
    return re.sub(r"\b[\d,]+ s ago\b", "N s ago", printed)


async def _settles_and_fences_on(location: str, sim: Simulator, filled: dict[str, Any]) -> None:
    """On a copy: recover settles the open intent (applied: its push had landed), a new
    claim gets a token above every copied one, a new entry an id above every copied one."""
    from sms_flow.journals import open_journal

    async with open_journal(location) as journal:
        copied = max(e.id for e in await journal.history())
        async with (
            SmsClient(sim.url) as client,
            Engine(client, journal=journal, endpoint=sim.url) as engine,
        ):
            report = await recover(engine, journal, client=client)
        assert (report.total, report.applied) == (1, 1)
        assert await journal.open_intents() == []
        [settled] = await journal.history(source_id=filled["open"])
        assert (settled.id, settled.outcome) == (filled["open_id"], Outcome.APPLIED)
        moves = [(h.trigger, h.by.value) for h in sim.history(filled["open"])]
        assert moves == [("configure", "control")], "landed before the copy, not pushed again"

        run = await journal.start_run("set", name=None, endpoint=sim.url, actor="cli:eve")
        claimed = await journal.claim(run.run.run_id, sim.url, [filled["ids"][1]])
        assert claimed.granted[filled["ids"][1]] > filled["top_token"]
        new = await journal.record(
            Intent("brand-new", None, "WAITING/checking", "WAITING/checking", "cli", None),
            Outcome.OBSERVED,
        )
        assert new > copied
        await journal.end_run(run.run.run_id)


async def test_a_journal_goes_to_postgresql_and_back_losing_nothing(
    sim: Simulator, tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first.sqlite"
    filled = await _fill(sim, first)
    before = _tables(first)
    outcomes = {row[9] for row in before["entries"]}  # the outcome column
    assert {"applied", "observed", "failed", "pending"} <= outcomes, outcomes
    assert before["claims"] and before["wave_members"] and len(before["runs"]) == 2
    assert any(run[12] is None for run in before["runs"]), "a run that died without ending"
    filled["top_token"] = max(max(c[3] for c in before["claims"]), before["fencing"][0][0])
    seen: list[tuple[str, int]] = []

    there = await copy(first, pg_dsn, progress=lambda table, rows: seen.append((table, rows)))
    assert there.ok, there.tables
    assert there.tables["entries"] == (len(before["entries"]), len(before["entries"]))
    assert there.tables["fencing"] == (before["fencing"][0][0],) * 2
    assert ("wave_members", len(before["wave_members"])) in seen

    back = tmp_path / "back.sqlite"
    again = await copy(pg_dsn, back, batch=7)  # batches of 7: many a table
    assert again.ok, again.tables
    assert _tables(back) == before, "row for row, every column, ids included"

    for argv in (["history"], ["history", "--wave", "cpw"], ["status", "cpw"]):
        shown = await _printed(capsys, str(first), *argv)
        assert shown.count("\n") > 3, shown
        assert shown == await _printed(capsys, pg_dsn, *argv), argv
        assert shown == await _printed(capsys, str(back), *argv), argv

    await _settles_and_fences_on(pg_dsn, sim, filled)
    await _settles_and_fences_on(str(back), sim, filled)


# --- refusals, and a copy that fails half-way ------------------------------------------------


async def _small(path: Path, entries: int = 40) -> None:
    """A journal of a few entries, a wave's members, a run that ended and its claims."""
    async with SqliteJournal(path) as journal:
        for i in range(entries):
            await journal.record(
                Intent(f"s{i:03d}", None, "WAITING/checking", "WAITING/checking", "cli", None,
                       wave="w1", endpoint="https://e"),
                Outcome.OBSERVED,
            )  # fmt: skip
        await journal.add_members("w1", ["s001", "s002", "bad"], endpoint="https://e")
        run = await journal.start_run("wave", name="w1", endpoint="https://e", actor="wave:w1")
        await journal.claim(run.run.run_id, "https://e", ["s001", "s002"])
        await journal.end_run(run.run.run_id)


_EMPTY = {t.name: 0 for t in COPIED}


async def test_a_copy_that_breaks_a_constraint_half_way_leaves_postgresql_as_it_was(
    tmp_path: Path, pg_dsn: str
) -> None:
    import asyncpg

    source = tmp_path / "j.sqlite"
    await _small(source)
    async with PostgresJournal(pg_dsn):
        pass
    conn = await asyncpg.connect(pg_dsn)
    try:  # members come after the entries: the entries are written, then the copy fails
        await conn.execute(
            "ALTER TABLE sms_flow.wave_members ADD CONSTRAINT no_bad CHECK (source_id <> 'bad')"
        )
        with pytest.raises(JournalError, match=r"sms_flow\.wave_members.*no_bad") as failed:
            await copy(source, pg_dsn, batch=10)
        assert "nothing of the copy is written" in str(failed.value)
        password = urlsplit(pg_dsn).password
        assert password and password not in str(failed.value)
    finally:
        await conn.close()
    async with PostgresJournal(pg_dsn) as journal:
        assert await journal.sizes([t.name for t in COPIED]) == _EMPTY
        entry_id = await journal.record(
            Intent("n", None, "WAITING/checking", "WAITING/checking", "cli", None),
            Outcome.OBSERVED,
        )
    assert entry_id == 1, "the id sequence is where it was"


async def test_a_copy_that_fails_half_way_leaves_sqlite_as_it_was(tmp_path: Path) -> None:
    source, target = tmp_path / "j.sqlite", tmp_path / "copy.sqlite"
    await _small(source)
    async with SqliteJournal(target):
        pass
    with contextlib.closing(sqlite3.connect(target)) as conn:
        conn.execute(
            "CREATE TRIGGER no_claims BEFORE INSERT ON claims "
            "BEGIN SELECT RAISE(ABORT, 'claims refused here'); END"
        )
        conn.commit()
    with pytest.raises(JournalError, match="could not copy rows into claims: claims refused"):
        await copy(source, target, batch=10)
    async with SqliteJournal(target) as journal:
        assert await journal.sizes([t.name for t in COPIED]) == _EMPTY


async def test_a_lost_source_connection_leaves_no_destination_file(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The source's connection is killed mid-copy (pg_terminate_backend): the copy fails
    saying so, and the SQLite file it was making is gone."""
    import asyncpg

    await _small(tmp_path / "first.sqlite", entries=200)
    await copy(tmp_path / "first.sqlite", pg_dsn)
    target = tmp_path / "copy.sqlite"
    killed: list[str] = []

    async def kill() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()

    def progress(table: str, rows: int) -> None:
        if not killed:  # at the first batch, on the event loop: nothing else runs meanwhile
            killed.append(table)
            worker = threading.Thread(target=asyncio.run, args=(kill(),))
            worker.start()
            worker.join()

    with pytest.raises(JournalError, match="could not read the journal to copy it"):
        await copy(pg_dsn, target, batch=10, progress=progress)
    assert killed == ["entries"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("copy.sqlite")]


async def test_a_source_with_a_live_run_is_refused_naming_it(tmp_path: Path) -> None:
    source, target = tmp_path / "j.sqlite", tmp_path / "copy.sqlite"
    await _small(source)
    async with SqliteJournal(source) as journal:
        live = await journal.start_run("wave", name="w2", endpoint="https://e", actor="wave:w2")
        dead = await journal.start_run("set", name=None, endpoint="https://e", actor="c", lease=1)
        await eventually(lambda: not dead.run.live(), what="the set's lease to lapse")
    with pytest.raises(OwnedError, match="has 1 live run: wave w2 \\(run ") as refused:
        await copy(source, target)
    assert refused.value.owner is not None and refused.value.owner.run_id == live.run.run_id
    assert "wait for them to end, or stop them" in str(refused.value)
    assert not target.exists(), "nothing written"
    async with SqliteJournal(source) as journal:
        await journal.end_run(live.run.run_id)
    done = await copy(source, target)  # the dead run, not ended, is copied as it is
    assert done.ok and done.tables["runs"] == (3, 3)


async def test_a_destination_that_holds_anything_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    source = tmp_path / "j.sqlite"
    await _small(source)
    async with PostgresJournal(pg_dsn) as journal:
        await journal.add_members("other", ["x"], endpoint="https://e")
    with pytest.raises(ConfigError, match="is not empty: it holds waves: 1, wave_members: 1"):
        await copy(source, pg_dsn)
    async with PostgresJournal(pg_dsn) as journal:
        assert await journal.sizes(["entries", "wave_members"]) == {"entries": 0, "wave_members": 1}
    with pytest.raises(ConfigError, match="the same journal"):
        await copy(source, source)


async def test_a_source_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    source, target = tmp_path / "j.sqlite", tmp_path / "copy.sqlite"
    await _small(source)
    with contextlib.closing(sqlite3.connect(source)) as conn:
        conn.execute("PRAGMA user_version = 9")
    with pytest.raises(ConfigError, match="schema version 9, newer than this sms-flow"):
        await copy(source, target)
    assert not target.exists()


async def test_postgresql_to_postgresql_on_another_database(
    tmp_path: Path, pg_dsn: str, postgres: PostgresServer
) -> None:
    source = tmp_path / "j.sqlite"
    await _small(source)
    await copy(source, pg_dsn)
    other = postgres.create_database()
    try:
        done = await copy(pg_dsn, other, batch=16)
        assert done.ok and done.tables["entries"] == (40, 40) and done.tables["claims"] == (2, 2)
        back = tmp_path / "back.sqlite"
        await copy(other, back)
        assert _tables(back) == _tables(source)
    finally:
        postgres.give_back(other)


@pytest.mark.slow
def test_a_long_journal_is_copied_in_flat_memory(
    spawn: Spawner, tmp_path: Path, pg_dsn: str
) -> None:
    """120,000 entries to PostgreSQL and back (each exits 0: the counts agree), each copy in
    a process whose peak memory stays well under what holding them would take (about 50 MB
    whatever the size)."""
    from benchmarks.b10_history import fill_journal
    from tests.cli.test_journal import _PEAK_RSS

    first, back = tmp_path / "first.sqlite", tmp_path / "back.sqlite"
    fill_journal(first, 120_000, wave="long")
    for source, target in ((str(first), pg_dsn), (pg_dsn, str(back))):
        done = spawn.run(
            sys.executable, "-c", _PEAK_RSS, "journal", "copy", source, target, timeout=300
        )
        assert done.returncode == 0, done.stderr
        code, peak_mb = (int(x) for x in done.stdout.split())
        assert code == 0
        assert peak_mb < 120, f"peak RSS {peak_mb} MB"


async def test_a_database_without_a_journal_is_no_source(tmp_path: Path, pg_dsn: str) -> None:
    with pytest.raises(ConfigError, match=r"no journal in .* to copy"):
        await copy(pg_dsn, tmp_path / "copy.sqlite")
    assert not (tmp_path / "copy.sqlite").exists()
    assert await PostgresJournal(pg_dsn).stored_version() == 0, "no schema made in the source"
