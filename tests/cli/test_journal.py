"""``sms-flow history``, ``journal check`` and ``journal migrate`` (``sms_flow/cli/journal.py``):
bad input is exit 2 with one line; check says whether the journal file is sound and what it
holds; migrate says from which schema version to which, and refuses a newer journal."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from sms_flow.cli import main
from sms_flow.journal import Intent, Outcome
from sms_flow.journal_sqlite import SqliteJournal
from tests.cli.conftest import assert_refused
from tests.conftest import SMS_FLOW_COMMAND, Child, Spawner
from tests.test_journal_sqlite import _interior_pages


def test_a_negative_limit_is_bad_input(spawn: Spawner, tmp_path: Path) -> None:
    done = spawn.run(*SMS_FLOW_COMMAND, "history", "s1", "--limit", "-1", cwd=tmp_path)
    assert_refused(done, "--limit -1 is below 0")


def test_a_journal_that_is_a_directory_is_bad_input(spawn: Spawner, tmp_path: Path) -> None:
    done = spawn.run(*SMS_FLOW_COMMAND, "history", "s1", "--journal", str(tmp_path), cwd=tmp_path)
    assert_refused(done, f"journal {tmp_path} is a directory", "--journal PATH")


def test_an_unknown_log_level_in_the_environment(spawn: Spawner, tmp_path: Path) -> None:
    done = spawn.run(
        *SMS_FLOW_COMMAND, "history", "s1", cwd=tmp_path, env={"SMS_FLOW_LOG_LEVEL": "bogus"}
    )
    assert_refused(done, "unknown SMS_FLOW_LOG_LEVEL='bogus'; use one of: debug, info")
    done = spawn.run(
        *SMS_FLOW_COMMAND, "history", "s1", cwd=tmp_path, env={"SMS_FLOW_LOG_LEVEL": "INFO"}
    )
    assert_refused(done, "no journal at")  # a level it names is taken, in any case


async def _fill(path: Path, entries: int) -> None:
    async with SqliteJournal(path) as journal:
        for i in range(entries):
            await journal.record(
                Intent(f"source-{i:05d}", "configure", "WAITING/checking", "WAITING/setting",
                       "cli", "x" * 40),
                Outcome.APPLIED,
            )  # fmt: skip
        await journal.begin(
            Intent("open-1", "start", "WAITING/setting", "INIT/replicating", "cli", None)
        )
        run = await journal.start_run("wave", name="w1", endpoint="https://e", actor="wave:w1")
        await journal.claim(run.run.run_id, "https://e", ["a", "b"])


def test_check_reports_a_sound_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journal.sqlite"
    asyncio.run(_fill(path, 3))

    assert main(["journal", "check", "--journal", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"journal {path}: sound" in shown
    assert "schema version 5" in shown and "entries: 4, open intents: 1" in shown
    assert "wave w1 (run" in shown and "sources held by live runs: 2" in shown

    assert main(["journal", "check", "--journal", str(path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["ok"], found["entries"], found["open_intents"], found["claims"]) == (
        True,
        4,
        1,
        2,
    )


def test_check_reports_damaged_pages_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.sqlite"
    asyncio.run(_fill(path, 3000))
    size = int.from_bytes(path.read_bytes()[16:18], "big")
    page = next(n for n in _interior_pages(path) if n > 1)
    with path.open("r+b") as f:
        f.seek((page - 1) * size + 8)
        f.write(b"\xff\x7f" * 40)

    assert main(["journal", "check", "--journal", str(path)]) == 3
    captured = capsys.readouterr()
    assert f"journal {path}: DAMAGED" in captured.out and "malformed" in captured.out
    assert f"journal {path} is damaged" in captured.err


def test_check_without_a_journal_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journal", "check", "--journal", str(tmp_path / "none.sqlite")]) == 2
    assert "no journal at" in capsys.readouterr().err


# Peak RSS as VmHWM (this process's own high-water mark since its exec), not ru_maxrss, which
# Linux carries over from the parent across fork and exec: a child of a large pytest process
# would report the parent's size.
_PEAK_RSS = """
import contextlib, os, sys
from sms_flow.cli import main
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
    code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(code, kb // 1024)
"""


@pytest.mark.slow
@pytest.mark.parametrize("form", ["table", "json"])
def test_history_of_a_long_journal_streams_in_flat_memory(
    spawn: Spawner, tmp_path: Path, form: str
) -> None:
    """Defect 8: 60,000 entries of one wave, as a table or JSON, in a process whose peak
    memory stays well under what loading them all took (before: about 500 MB as a table
    and 290 MB as JSON at this size; now about 40 MB whatever the size)."""
    from benchmarks.b10_history import fill_journal

    journal = tmp_path / "journal.sqlite"
    fill_journal(journal, 60_000, wave="long")
    done = spawn.run(
        sys.executable, "-c", _PEAK_RSS, "history", "--wave", "long", "--journal", str(journal),
        "--format", form, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    code, peak_mb = (int(x) for x in done.stdout.split())
    assert code == 0
    assert peak_mb < 120, f"peak RSS {peak_mb} MB"


async def _mixed(path: Path) -> list[int]:
    """A journal of two waves and a set, with several outcomes and actors; the entry ids."""
    ids: list[int] = []
    async with SqliteJournal(path) as journal:
        for source, actor, wave, outcome in (
            ("s1", "wave:w1", "w1", Outcome.APPLIED),
            ("s2", "wave:w1", "w1", Outcome.FAILED),
            ("s1", "cli", None, Outcome.APPLIED),
            ("s3", "wave:w2", "w2", Outcome.CONFLICT),
            ("s2", "wave:w1", "w1", Outcome.APPLIED),
        ):
            ids.append(
                await journal.record(
                    Intent(source, "configure", "WAITING/checking", "WAITING/setting", actor,
                           "a reason, with a comma", wave=wave),
                    outcome,
                    request_id=f"req-{len(ids)}",
                )
            )  # fmt: skip
    return ids


def _history_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[int]:
    assert main(["history", *argv]) == 0
    return [e["id"] for e in json.loads(capsys.readouterr().out)]


def test_history_filters_by_outcome_actor_time_and_keeps_the_last_n(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.sqlite"
    ids = asyncio.run(_mixed(path))
    j = ("--journal", str(path), "--json")
    assert _history_json(capsys, *j) == ids, "no filter: the whole journal"
    assert _history_json(capsys, "--wave", "w1", *j) == [ids[0], ids[1], ids[4]]
    assert _history_json(capsys, "--outcome", "failed,conflict", *j) == [ids[1], ids[3]]
    assert _history_json(capsys, "--outcome", "failed", "--outcome", "conflict", *j) == [
        ids[1],
        ids[3],
    ]
    assert _history_json(capsys, "--actor", "cli", *j) == [ids[2]]
    assert _history_json(capsys, "s2", "--outcome", "applied", *j) == [ids[4]]
    assert _history_json(capsys, "--wave", "w1", "--limit", "2", *j) == [ids[1], ids[4]]
    assert _history_json(capsys, "--since", "1h", *j) == ids
    assert _history_json(capsys, "--until", "1h", *j) == []
    assert _history_json(capsys, "--since", "2000-01-01", "--until", "2999-01-01T00:00Z", *j) == ids
    assert _history_json(capsys, "--wave", "nobody", *j) == []


def test_history_as_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    path = tmp_path / "journal.sqlite"
    ids = asyncio.run(_mixed(path))
    assert main(["history", "--wave", "w1", "--journal", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [int(r["id"]) for r in rows] == [ids[0], ids[1], ids[4]]
    assert rows[1]["outcome"] == "failed" and rows[1]["request_id"] == "req-1"
    assert rows[0]["reason"] == "a reason, with a comma"
    assert rows[0]["created_at"].endswith("Z") and rows[0]["created_at"][10] == "T"


def test_history_table_names_what_it_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.sqlite"
    asyncio.run(_mixed(path))
    assert main(["history", "--wave", "w1", "--outcome", "failed", "--journal", str(path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"history of wave w1 outcome failed ({path})"
    assert shown[1].split()[:3] == ["#", "time", "(UTC)"]
    assert "s2" in shown[3] and "failed" in shown[3] and "req-1" in shown[3]
    assert shown[-1] == "1 entry"
    assert main(["history", "--actor", "nobody", "--journal", str(path)]) == 0
    assert capsys.readouterr().out == f"no journal entries for actor nobody in {path}\n"


def test_history_refuses_a_mistyped_outcome_with_a_suggestion(
    spawn: Spawner, tmp_path: Path
) -> None:
    done = spawn.run(*SMS_FLOW_COMMAND, "history", "--outcome", "aplied", cwd=tmp_path)
    assert_refused(done, "unknown outcome 'aplied' (did you mean 'applied'?)")
    done = spawn.run(*SMS_FLOW_COMMAND, "history", "--since", "yesterday", cwd=tmp_path)
    assert_refused(done, "'yesterday' is neither an ISO-8601 time")
    done = spawn.run(*SMS_FLOW_COMMAND, "history", "--since", "1h", "--until", "2h", cwd=tmp_path)
    assert_refused(done, "is not before --until")


# --- journal migrate ---------------------------------------------------------------------------


def migrate(spawn: Spawner, location: str, cwd: Path) -> tuple[int, str, str]:
    done = spawn.run(*SMS_FLOW_COMMAND, "journal", "migrate", "--journal", location, cwd=cwd)
    assert done.returncode is not None, "spawn.run waits for the end"
    return done.returncode, done.stdout, done.stderr


def test_migrate_brings_an_sqlite_journal_up_and_refuses_a_newer_one(
    spawn: Spawner, tmp_path: Path
) -> None:
    import contextlib
    import sqlite3

    from sms_flow.journal_sqlite import _MIGRATIONS, SCHEMA_VERSION
    from tests.test_journal_sqlite import _SCHEMA_1

    path = tmp_path / "j.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA_1)
        for statement in _MIGRATIONS[1].split(";"):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO wave_members (wave, source_id) VALUES ('w1', 'a')")
        conn.commit()

    def version() -> int:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    code, stdout, stderr = migrate(spawn, str(path), tmp_path)
    assert (code, stderr) == (0, "")
    assert stdout == f"journal {path}: migrated from version 2 to version {SCHEMA_VERSION}\n"
    assert version() == SCHEMA_VERSION
    code, stdout, _ = migrate(spawn, str(path), tmp_path)
    assert (code, stdout) == (0, f"journal {path}: schema version 5, the latest; nothing to do\n")

    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 7")
    code, stdout, stderr = migrate(spawn, str(path), tmp_path)
    assert (code, stdout) == (2, "")
    assert "has schema version 7, newer than this sms-flow knows (up to 5)" in stderr
    assert "upgrade sms-flow" in stderr and "Traceback" not in stderr
    assert version() == 7, "a newer journal is left untouched"


async def test_migrate_brings_a_postgresql_journal_up_and_refuses_a_newer_one(
    spawn: Spawner, tmp_path: Path, pg_dsn: str
) -> None:
    from urllib.parse import urlsplit

    import asyncpg  # type: ignore[import-untyped]

    from sms_flow.journal_postgres import _MIGRATIONS, SCHEMA_VERSION
    from sms_flow.journals import describe

    password = urlsplit(pg_dsn).password
    assert password
    shown = describe(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(_MIGRATIONS[0])
        await conn.execute("INSERT INTO sms_flow.meta VALUES ('schema_version', '1')")
        outputs: list[str] = []
        code, stdout, stderr = migrate(spawn, pg_dsn, tmp_path)
        outputs += [stdout, stderr]
        assert (code, stderr) == (0, "")
        assert stdout == f"journal {shown}: migrated from version 1 to version {SCHEMA_VERSION}\n"
        assert await conn.fetchval("SELECT value FROM sms_flow.meta") == str(SCHEMA_VERSION)
        code, stdout, stderr = migrate(spawn, pg_dsn, tmp_path)
        outputs += [stdout, stderr]
        assert (code, stdout) == (
            0,
            f"journal {shown}: schema version 4, the latest; nothing to do\n",
        )

        await conn.execute("UPDATE sms_flow.meta SET value = '9'")
        code, stdout, stderr = migrate(spawn, pg_dsn, tmp_path)
        outputs += [stdout, stderr]
        assert (code, stdout) == (2, "")
        assert f"journal {shown} has schema version 9, newer than this sms-flow knows" in stderr
        assert "upgrade sms-flow" in stderr
        assert await conn.fetchval("SELECT value FROM sms_flow.meta") == "9"
    finally:
        await conn.close()
    assert all(password not in text for text in outputs), outputs


# --- journal copy ------------------------------------------------------------------------------


def copy_journal(spawn: Spawner, cwd: Path, *argv: str) -> Child:
    return spawn.run(*SMS_FLOW_COMMAND, "journal", "copy", *argv, cwd=cwd, timeout=120)


def test_copy_goes_to_postgresql_and_back_printing_the_counts(
    spawn: Spawner, tmp_path: Path, pg_dsn: str
) -> None:
    from urllib.parse import urlsplit

    from sms_flow.journals import COPIED, describe

    password = urlsplit(pg_dsn).password
    assert password
    source = tmp_path / "journal.sqlite"
    asyncio.run(_fill(source, 30))  # 31 entries, a live run: ended first
    asyncio.run(_end_runs(source))

    there = copy_journal(spawn, tmp_path, str(source), pg_dsn)
    assert (there.returncode, there.stderr) == (0, ""), there.stdout + there.stderr
    lines = there.stdout.splitlines()
    assert lines[0].startswith(f"copied journal {source} to {describe(pg_dsn)} in ")
    assert lines[1].split() == ["table", "source", "destination"]
    counts = {line.split()[0]: line.split()[-2:] for line in lines[2:]}
    assert list(counts) == [t.name for t in COPIED], "every table, in the order copied"
    assert (counts["entries"], counts["runs"], counts["claims"]) == (
        ["31"] * 2,
        ["1"] * 2,
        ["2"] * 2,
    )
    assert counts["waves"] == ["0", "0"] and "fencing (last token)" in there.stdout
    assert counts["fencing"] == ["2", "2"]

    back = tmp_path / "back.sqlite"
    again = copy_journal(spawn, tmp_path, pg_dsn, str(back), "--json")
    assert again.returncode == 0, again.stderr
    found = json.loads(again.stdout)
    assert (found["source"], found["destination"], found["ok"]) == (
        describe(pg_dsn),
        str(back),
        True,
    )
    assert found["tables"]["entries"] == {"source": 31, "destination": 31}
    assert all(password not in text for text in (there.stdout, again.stdout, again.stderr))


async def _end_runs(path: Path) -> None:
    async with SqliteJournal(path) as journal:
        for run in await journal.runs():
            await journal.end_run(run.run_id)


def test_copy_refuses_a_destination_that_holds_anything(spawn: Spawner, tmp_path: Path) -> None:
    source, target = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    asyncio.run(_fill(source, 3))
    asyncio.run(_end_runs(source))
    asyncio.run(_fill(target, 2))
    before = target.read_bytes()
    done = copy_journal(spawn, tmp_path, str(source), str(target))
    assert_refused(
        done,
        f"journal {target} is not empty: it holds entries: 3, runs: 1, claims: 2",
        "copy into a new journal",
    )
    assert target.read_bytes() == before, "nothing written"


def test_copy_refuses_a_source_with_a_live_run_naming_it(spawn: Spawner, tmp_path: Path) -> None:
    source, target = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    asyncio.run(_fill(source, 3))  # its wave run is live: this process holds it
    done = copy_journal(spawn, tmp_path, str(source), str(target))
    assert done.returncode == 5, done.stdout + done.stderr
    assert f"journal {source} has 1 live run: wave w1 (run " in done.stderr
    assert "wait for them to end, or stop them" in done.stderr and "Traceback" not in done.stderr
    assert not target.exists(), "nothing written"


def test_copy_refuses_an_unreachable_database_without_its_password(
    spawn: Spawner, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://ann:s3cret-pw@127.0.0.1:{port}/journal"
    source, target = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    asyncio.run(_fill(source, 3))
    asyncio.run(_end_runs(source))

    done = copy_journal(spawn, tmp_path, dsn, str(target))
    assert_refused(done, f"cannot connect to journal postgresql://ann@127.0.0.1:{port}/journal")
    assert not target.exists(), "nothing written"
    done = copy_journal(spawn, tmp_path, str(source), dsn, "--json")
    assert done.returncode == 2
    assert "cannot connect to journal" in json.loads(done.stdout)["message"]
    assert "s3cret-pw" not in done.stdout + done.stderr

    done = copy_journal(spawn, tmp_path, str(tmp_path / "none.sqlite"), str(target))
    assert_refused(done, f"no journal at {tmp_path / 'none.sqlite'}")


def test_copy_help_says_what_it_copies_and_what_it_refuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["journal", "copy", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for said in (
        "SQLite and PostgreSQL in either direction",
        "every entry with its id",
        "the claims and the fencing counter",
        "the waves and their members in order",
        "a DST that holds anything (exit 2",
        "a SRC with a live run, a wave in progress (exit 5",
        "a copy that fails leaves DST as it was",
    ):
        assert said in text, said


@pytest.mark.parametrize("command", [("history",), ("history", "--wave", "big", "--json")])
async def test_a_reader_that_stops_early_ends_the_command_quietly(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """``sms-flow ... | head``: the pipe closes under the command; exit 0, no traceback."""
    import subprocess

    journal = tmp_path / "journal.sqlite"
    async with SqliteJournal(journal) as j:
        await j.add_members("big", [f"s{i:05d}" for i in range(3000)], endpoint="e")
        for i in range(3000):  # well over a pipe's buffer of output, either way
            await j.record(
                Intent(f"s{i:05d}", "start", "WAITING/setting", "INIT/replicating", "cli",
                       "x" * 100, False, wave="big", endpoint="e"),
                Outcome.APPLIED,
            )  # fmt: skip
    child = subprocess.Popen(
        [*SMS_FLOW_COMMAND, *command, "--journal", str(journal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.read(10)  # the reader takes a little, then goes away
    child.stdout.close()
    code = await asyncio.to_thread(child.wait, 60)
    stderr = child.stderr.read().decode()
    child.stderr.close()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
