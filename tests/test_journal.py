"""The journal's types, and the contract every back end keeps (run against each of them).

Back-end specific behaviour (files, durability, group commit, locks) is tested beside the
back end: ``tests/test_journal_sqlite.py``. The runs and claims (ownership of sources,
fencing) are part of the contract: a PostgreSQL back end runs the same tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from sms_flow.errors import (
    ClaimLostError,
    JournalError,
    LeaseLostError,
    OwnedError,
    SmsFlowError,
)
from sms_flow.journal import Entry, Intent, Journal, Outcome, default_journal_path
from sms_flow.journal_sqlite import SqliteJournal
from tests.conftest import Spawner, eventually


class Backend:
    """Makes a new, unopened journal on one back end's storage (the same storage every call).

    ``code`` is a Python expression that makes the same in a child process.
    """

    def __init__(self, make: Callable[[], Journal], code: str) -> None:
        self.make = make
        self.code = code

    def __call__(self) -> Journal:
        return self.make()


ENDPOINT = "https://sms.example.com"


def intent(source_id: str = "s1", *, wave: str | None = None, **overrides: Any) -> Intent:
    fields: dict[str, Any] = {
        "source_id": source_id,
        "trigger": "start",
        "from_state": "WAITING/checking",
        "to_state": "REPLICATE/replicating",
        "actor": "cli:alice",
        "reason": "wave 1 go-live",
        "forced": False,
        "wave": wave,
    }
    fields.update(overrides)
    return Intent(**fields)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "state" / "journal.sqlite"
        return Backend(
            lambda: SqliteJournal(path),
            f"__import__('sms_flow.journal_sqlite').journal_sqlite.SqliteJournal({str(path)!r})",
        )
    if request.param == "postgresql":
        dsn: str = request.getfixturevalue("pg_dsn")
        from sms_flow.journal_postgres import PostgresJournal

        return Backend(
            lambda: PostgresJournal(dsn),
            f"__import__('sms_flow.journal_postgres').journal_postgres.PostgresJournal({dsn!r})",
        )
    raise AssertionError(f"no such back end {request.param!r}")  # pragma: no cover


@pytest.fixture
async def journal(backend: Backend) -> AsyncIterator[Journal]:
    async with backend() as opened:
        yield opened


# --- the types -------------------------------------------------------------------------


def test_entry_to_dict_is_plain_json() -> None:
    entry = Entry(
        id=7,
        source_id="s1",
        trigger="start",
        from_state="WAITING/checking",
        to_state="REPLICATE/replicating",
        actor="wave:w1",
        reason=None,
        forced=False,
        wave="w1",
        outcome=Outcome.CONFLICT,
        request_id="req-9",
        attempts=1,
        error=None,
        created_at=1700000000.5,
        settled_at=1700000001.25,
    )

    data = entry.to_dict()

    assert data["outcome"] == "conflict"
    assert type(data["outcome"]) is str
    assert json.loads(json.dumps(data)) == data
    assert list(data) == [
        "id",
        "source_id",
        "trigger",
        "from_state",
        "to_state",
        "actor",
        "reason",
        "forced",
        "wave",
        "outcome",
        "request_id",
        "attempts",
        "error",
        "created_at",
        "settled_at",
        "endpoint",
        "project",
        "run_id",
        "fence",
    ]


def test_default_journal_path_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SMS_FLOW_JOURNAL", str(tmp_path / "j.sqlite"))
    assert default_journal_path() == tmp_path / "j.sqlite"


def test_default_journal_path_is_under_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SMS_FLOW_JOURNAL", raising=False)
    monkeypatch.delenv("SMS_FLOW_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_journal_path() == tmp_path / ".sms-flow" / "journal.sqlite"


def test_default_journal_path_is_in_sms_flow_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SMS_FLOW_JOURNAL", raising=False)
    monkeypatch.setenv("SMS_FLOW_HOME", str(tmp_path / "state"))
    assert default_journal_path() == tmp_path / "state" / "journal.sqlite"
    monkeypatch.setenv("SMS_FLOW_JOURNAL", str(tmp_path / "j.sqlite"))  # the file comes first
    assert default_journal_path() == tmp_path / "j.sqlite"


def test_the_types_load_without_sqlite() -> None:
    code = (
        "import sys\n"
        "from sms_flow.journal import Entry, Intent, Journal, Outcome\n"
        "print('sqlite3' in sys.modules, 'sms_flow._sqlite' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"]


# --- the contract: writes --------------------------------------------------------------


async def test_begin_and_settle_are_seen_by_another_journal_when_they_return(
    backend: Backend, journal: Journal
) -> None:
    entry_id = await journal.begin(intent("s1", wave="w1"))
    async with backend() as other:
        (seen,) = await other.history()
    assert (seen.id, seen.source_id, seen.outcome, seen.settled_at) == (
        entry_id,
        "s1",
        Outcome.PENDING,
        None,
    )

    await journal.settle(entry_id, Outcome.APPLIED, request_id="req-1", attempts=2)

    async with backend() as other:
        (seen,) = await other.history()
    assert (seen.outcome, seen.request_id, seen.attempts, seen.error) == (
        Outcome.APPLIED,
        "req-1",
        2,
        None,
    )
    assert seen.settled_at is not None


async def test_a_second_journal_on_the_same_storage_sees_committed_entries(
    backend: Backend, journal: Journal
) -> None:
    first = await journal.begin(intent("s1"))
    async with backend() as other:
        assert [e.id for e in await other.open_intents()] == [first]
        second = await other.begin(intent("s2"))
    assert second > first
    assert [e.source_id for e in await journal.open_intents()] == ["s1", "s2"]


async def test_entries_survive_reopening_and_ids_keep_growing(backend: Backend) -> None:
    async with backend() as journal:
        first = await journal.begin(intent("s1"))
        await journal.settle(first, Outcome.FAILED, attempts=3, error="HTTP 500 SMS.0001")
    async with backend() as journal:
        (entry,) = await journal.history()
        second = await journal.begin(intent("s1"))
    assert entry.id == first
    assert entry.outcome is Outcome.FAILED
    assert (entry.attempts, entry.error) == (3, "HTTP 500 SMS.0001")
    assert second > first


async def test_record_writes_an_entry_born_settled(journal: Journal) -> None:
    before = time.time()
    entry_id = await journal.record(
        intent("s1", forced=True, trigger=None), Outcome.REJECTED, error="no such transition"
    )

    (entry,) = await journal.history()
    assert entry.id == entry_id
    assert entry.outcome is Outcome.REJECTED
    assert entry.forced is True
    assert entry.trigger is None
    assert entry.error == "no such transition"
    assert entry.settled_at == entry.created_at
    assert before <= entry.created_at <= time.time()
    assert await journal.open_intents() == []
    with pytest.raises(JournalError, match="already settled as 'rejected'"):
        await journal.settle(entry_id, Outcome.APPLIED)


async def test_an_entry_is_settled_exactly_once(journal: Journal) -> None:
    entry_id = await journal.begin(intent("s1"))
    await journal.settle(entry_id, Outcome.APPLIED, request_id="req-1")

    with pytest.raises(JournalError, match=rf"entry {entry_id} as 'failed'.*already settled"):
        await journal.settle(entry_id, Outcome.FAILED)
    with pytest.raises(JournalError, match="entry 999999: no such entry"):
        await journal.settle(999_999, Outcome.APPLIED)

    (entry,) = await journal.history()
    assert (entry.outcome, entry.request_id) == (Outcome.APPLIED, "req-1")


async def test_settle_and_record_refuse_pending_as_an_outcome(journal: Journal) -> None:
    entry_id = await journal.begin(intent())
    with pytest.raises(JournalError, match="use begin"):
        await journal.settle(entry_id, Outcome.PENDING)
    with pytest.raises(JournalError, match="use begin"):
        await journal.record(intent(), Outcome.PENDING)
    with pytest.raises(JournalError, match="unknown outcome 'done'; valid: applied, rejected"):
        await journal.settle(entry_id, "done")  # type: ignore[arg-type]
    assert [e.id for e in await journal.open_intents()] == [entry_id]


async def test_settle_without_waiting_is_written_before_the_next_begin(
    backend: Backend, journal: Journal
) -> None:
    first = await journal.begin(
        Intent("s1", "configure", "WAITING/checking", "WAITING/setting", "a", None)
    )
    await journal.settle(first, Outcome.APPLIED, request_id="r1", attempts=1, wait=False)
    second = await journal.begin(
        Intent("s1", "start", "WAITING/setting", "INIT/replicating", "a", None)
    )
    # the second begin is committed, so the settle queued before it is too
    async with backend() as other:
        seen = [(e.id, e.outcome, e.request_id) for e in await other.history()]
    assert seen == [(first, Outcome.APPLIED, "r1"), (second, Outcome.PENDING, None)]

    await journal.settle(second, Outcome.APPLIED, wait=False)
    await journal.close()  # close() writes what is still queued
    async with backend() as other:
        assert [e.outcome for e in await other.history()] == [Outcome.APPLIED] * 2


async def test_a_failed_settle_nobody_waits_for_is_logged(journal: Journal) -> None:
    entry = await journal.begin(
        Intent("s1", "configure", "WAITING/checking", "WAITING/setting", "a", None)
    )
    await journal.settle(entry, Outcome.APPLIED)
    with structlog.testing.capture_logs() as logs:
        await journal.settle(entry, Outcome.FAILED, wait=False)  # settled twice: a bug
        await journal.history()  # a round trip: the queued settle has run by now
        await eventually(lambda: any(e["event"] == "journal write failed" for e in logs))
    [event] = [e for e in logs if e["event"] == "journal write failed"]
    assert "already settled" in event["error"]
    assert event["log_level"] == "error"


async def test_concurrent_callers_get_distinct_ids_in_the_order_of_their_calls(
    journal: Journal,
) -> None:
    async def caller(k: int) -> list[int]:
        ids = []
        for i in range(20):
            entry_id = await journal.begin(intent(f"s{k}", wave="load"))
            ids.append(entry_id)
            await journal.settle(entry_id, Outcome.APPLIED, request_id=f"r{k}-{i}")
        return ids

    per_caller = await asyncio.gather(*(caller(k) for k in range(30)))

    every = [entry_id for ids in per_caller for entry_id in ids]
    assert len(set(every)) == len(every) == 600
    assert all(ids == sorted(ids) for ids in per_caller)
    assert await journal.open_intents() == []
    history = await journal.history(wave="load")
    assert sorted(e.id for e in history) == sorted(every)
    assert {e.request_id for e in history} == {f"r{k}-{i}" for k in range(30) for i in range(20)}


# --- the contract: queries -------------------------------------------------------------


async def test_open_intents_are_the_pending_entries_oldest_first(journal: Journal) -> None:
    a = await journal.begin(intent("a", wave="w1"))
    b = await journal.begin(intent("b", wave="w2"))
    c = await journal.begin(intent("c", wave="w1"))
    d = await journal.begin(intent("d"))
    await journal.settle(a, Outcome.APPLIED)

    assert [e.id for e in await journal.open_intents()] == [b, c, d]
    assert [e.id for e in await journal.open_intents(wave="w1")] == [c]
    assert await journal.open_intents(wave="nope") == []
    (entry,) = await journal.open_intents(wave="w2")
    assert entry.outcome is Outcome.PENDING
    assert entry.settled_at is None
    assert entry.intent == intent("b", wave="w2")


async def test_history_filters_by_source_and_wave_and_keeps_the_last_n(
    journal: Journal,
) -> None:
    ids = [
        await journal.begin(intent(source, wave=wave))
        for source, wave in [("a", "w1"), ("b", "w1"), ("a", "w2"), ("a", "w1"), ("b", None)]
    ]

    assert [e.id for e in await journal.history()] == ids
    assert [e.id for e in await journal.history(source_id="a")] == [ids[0], ids[2], ids[3]]
    assert [e.id for e in await journal.history(wave="w1")] == [ids[0], ids[1], ids[3]]
    assert [e.id for e in await journal.history(source_id="a", wave="w1")] == [ids[0], ids[3]]
    assert [e.id for e in await journal.history(limit=2)] == ids[3:]
    assert [e.id for e in await journal.history(source_id="a", limit=2)] == [ids[2], ids[3]]
    assert [e.id for e in await journal.history(limit=100)] == ids
    assert await journal.history(limit=0) == []
    assert await journal.history(source_id="zzz") == []
    with pytest.raises(JournalError, match="limit must be 0 or more, got -1"):
        await journal.history(limit=-1)


async def _ids(entries: AsyncIterator[Entry]) -> list[int]:
    return [e.id async for e in entries]


async def test_iter_history_reads_by_pages_what_history_reads_at_once(journal: Journal) -> None:
    """Pages of 2 (any page size) give the same entries as one read, filters and last N
    included; filters by outcome, actor and time run in the storage."""
    ids = [
        await journal.begin(intent(source, wave=wave))
        for source, wave in [("a", "w1"), ("b", "w1"), ("a", "w2"), ("a", "w1"), ("b", None)]
    ]
    await journal.settle(ids[1], Outcome.FAILED, error="HTTP 503")
    await journal.settle(ids[3], Outcome.APPLIED)
    queries: list[dict[str, Any]] = [
        {},
        {"source_id": "a"},
        {"wave": "w1"},
        {"source_id": "a", "wave": "w1"},
    ]
    for query in queries:
        every = [e.id for e in await journal.history(**query)]
        for page in (1, 2, 3, 1000):
            assert await _ids(journal.iter_history(page=page, **query)) == every
        for last in (0, 1, 2, 5):
            expected = [e.id for e in await journal.history(limit=last, **query)]
            assert await _ids(journal.iter_history(last=last, page=2, **query)) == expected
    failed_or_applied = [Outcome.FAILED, Outcome.APPLIED]
    assert await _ids(journal.iter_history(outcomes=failed_or_applied, page=1)) == [
        ids[1],
        ids[3],
    ]
    assert await _ids(journal.iter_history(outcomes=[Outcome.PENDING], wave="w1")) == [ids[0]]
    assert await _ids(journal.iter_history(actor="cli:alice")) == ids
    assert await _ids(journal.iter_history(actor="cli:bob")) == []
    entries = await journal.history()
    middle = entries[2].created_at
    assert await _ids(journal.iter_history(since=middle)) == [e.id for e in entries[2:]]
    assert await _ids(journal.iter_history(until=middle)) == [e.id for e in entries[:2]]
    with pytest.raises(JournalError, match="last must be 0 or more, got -1"):
        await _ids(journal.iter_history(last=-1))


async def test_a_history_read_stopped_early_reads_no_more(journal: Journal) -> None:
    for i in range(10):
        await journal.begin(intent(f"s{i}"))
    seen: list[int] = []
    async for entry in journal.iter_history(page=3):
        seen.append(entry.id)
        if len(seen) == 4:
            break
    assert len(seen) == 4
    assert len(await journal.history()) == 10, "the journal is still usable"


async def test_last_applied_is_the_latest_applied_or_observed_entry(journal: Journal) -> None:
    async def settled(source: str, outcome: Outcome) -> int:
        entry_id = await journal.begin(intent(source))
        await journal.settle(entry_id, outcome)
        return entry_id

    a_applied = await settled("a", Outcome.APPLIED)
    await settled("a", Outcome.FAILED)  # a later failure does not hide the applied move
    await journal.begin(intent("a"))  # nor does a pending intent
    await settled("b", Outcome.APPLIED)
    b_observed = await journal.record(intent("b"), Outcome.OBSERVED)
    await settled("c", Outcome.IGNORED)
    await journal.record(intent("c"), Outcome.CONFLICT)

    found = await journal.last_applied(["a", "b", "c", "d", "a"])

    assert {source: entry.id for source, entry in found.items()} == {
        "a": a_applied,
        "b": b_observed,
    }
    assert found["b"].outcome is Outcome.OBSERVED
    assert await journal.last_applied([]) == {}


async def test_last_applied_answers_for_thousands_of_sources(journal: Journal) -> None:
    sources = [f"src-{i:05d}" for i in range(1_200)]
    expected = {}
    for source in sources[::2]:
        expected[source] = await journal.record(intent(source), Outcome.APPLIED)

    found = await journal.last_applied(sources)

    assert {source: entry.id for source, entry in found.items()} == expected


async def test_members_are_idempotent_and_keep_first_insertion_order(journal: Journal) -> None:
    await journal.add_members("w1", ["c", "a", "b"])
    await journal.add_members("w1", ["b", "d", "a"])
    await journal.add_members("w2", ["a"])

    assert await journal.members("w1") == ["c", "a", "b", "d"]
    assert await journal.members("w2") == ["a"]
    assert await journal.members("unknown") == []


async def test_removing_members_forgets_the_membership_and_keeps_the_history(
    journal: Journal,
) -> None:
    await journal.add_members("w1", ["a", "b"])
    await journal.add_members("w2", ["a"])
    entry_id = await journal.begin(intent("a", wave="w1"))

    assert await journal.remove_members("w1") == 2
    assert await journal.remove_members("w1") == 0

    assert await journal.members("w1") == []
    assert await journal.members("w2") == ["a"]
    assert [e.id for e in await journal.history(wave="w1")] == [entry_id]
    assert await journal.waves() == ["w1", "w2"]


async def test_members_are_kept_by_wave_and_endpoint(journal: Journal) -> None:
    await journal.add_members("w1", ["a", "b"], endpoint="simulator:/x/w1.sqlite")
    await journal.add_members("w1", ["c", "a"], endpoint="https://sms.example")

    assert await journal.members("w1", endpoint="simulator:/x/w1.sqlite") == ["a", "b"]
    assert await journal.members("w1", endpoint="https://sms.example") == ["c", "a"]
    assert await journal.members("w1", endpoint="https://other.example") == []
    assert await journal.members("w1") == ["a", "b", "c"]  # on any endpoint
    assert await journal.member_endpoints("w1") == [
        "simulator:/x/w1.sqlite",
        "https://sms.example",
    ]
    assert await journal.remove_members("w1", endpoint="simulator:/x/w1.sqlite") == 2
    assert await journal.member_endpoints("w1") == ["https://sms.example"]
    assert await journal.remove_members("w1") == 2
    assert await journal.member_endpoints("w1") == []


async def test_members_of_unknown_endpoint_are_adopted(journal: Journal) -> None:
    await journal.add_members("w1", ["c", "a"])  # endpoint "": from an older journal
    await journal.add_members("w1", ["a", "d"], endpoint="https://e")

    assert await journal.adopt_members("w1", endpoint="https://e") == 2
    assert await journal.members("w1", endpoint="https://e") == ["a", "d", "c"]
    assert await journal.member_endpoints("w1") == ["https://e"]


async def test_waves_lists_every_wave_in_order_of_first_appearance(journal: Journal) -> None:
    assert await journal.waves() == []
    await journal.add_members("w2", ["a"])
    await journal.begin(intent("x", wave="w1"))
    await journal.record(intent("y", wave="w3"), Outcome.REJECTED)
    await journal.add_members("w1", ["b"])
    await journal.begin(intent("z"))

    assert await journal.waves() == ["w2", "w1", "w3"]


async def test_waves_first_named_together_keep_the_order_they_were_named_in(
    journal: Journal,
) -> None:
    await asyncio.gather(*(journal.begin(intent("s", wave=w)) for w in ["wc", "wa", "wb", "wa"]))
    assert await journal.waves() == ["wc", "wa", "wb"]


async def test_a_string_instead_of_a_list_of_sources_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match=r"wrap it in a list: \['abc'\]"):
        await journal.add_members("w1", "abc")
    with pytest.raises(JournalError, match="not the string 'abc'"):
        await journal.last_applied("abc")
    assert await journal.waves() == []


# --- the contract: lifecycle -----------------------------------------------------------


async def test_use_before_open_and_after_close_raises_journal_error(backend: Backend) -> None:
    journal = backend()
    with pytest.raises(JournalError, match="is not open"):
        await journal.begin(intent())
    async with journal:
        with pytest.raises(JournalError, match="already open"):
            await journal.open()
    await journal.close()  # closing twice is harmless
    with pytest.raises(JournalError, match="is closed"):
        await journal.begin(intent())
    with pytest.raises(JournalError, match="is closed"):
        await journal.history()
    with pytest.raises(JournalError, match="is closed"):
        await journal.settle(1, Outcome.APPLIED, wait=False)
    assert issubclass(JournalError, SmsFlowError)


# --- the contract: open outcomes and identity --------------------------------------------


async def test_unverified_stays_open_until_settled_once_by_a_final_outcome(
    journal: Journal,
) -> None:
    entry_id = await journal.begin(intent("s1"))
    await journal.settle(entry_id, Outcome.UNVERIFIED, request_id="r1", error="read-back failed")

    [open_] = await journal.open_intents()
    assert (open_.id, open_.outcome, open_.open) == (entry_id, Outcome.UNVERIFIED, True)
    with pytest.raises(JournalError, match="it already is"):
        await journal.settle(entry_id, Outcome.UNVERIFIED)
    await journal.settle(entry_id, Outcome.APPLIED, request_id="r1", error="settled by a read")
    assert await journal.open_intents() == []
    with pytest.raises(JournalError, match="already settled as 'applied'"):
        await journal.settle(entry_id, Outcome.IGNORED)
    with pytest.raises(JournalError, match="only a pushed intent can be unverified"):
        await journal.record(intent("s2"), Outcome.UNVERIFIED)


async def test_entries_record_their_endpoint_and_queries_keep_to_one(journal: Journal) -> None:
    here = await journal.begin(intent("s1", wave="w", endpoint=ENDPOINT, project="p1"))
    await journal.begin(intent("s1", wave="w", endpoint="https://other.example"))
    await journal.begin(intent("s1", wave="w"))  # unknown endpoint
    applied = await journal.record(intent("s2", endpoint=ENDPOINT), Outcome.APPLIED)
    await journal.record(intent("s2", endpoint="https://other.example"), Outcome.APPLIED)

    [entry] = await journal.open_intents(wave="w", endpoint=ENDPOINT)
    assert (entry.id, entry.endpoint, entry.project) == (here, ENDPOINT, "p1")
    assert len(await journal.open_intents(wave="w")) == 3
    found = await journal.last_applied(["s1", "s2"], endpoint=ENDPOINT)
    assert {s: e.id for s, e in found.items()} == {"s2": applied}


# --- the contract: runs, claims and fencing ----------------------------------------------


async def start(
    journal: Journal, name: str = "w1", *, lease: float = 30.0, exclusive: bool = True
) -> str:
    started = await journal.start_run(
        "wave", name=name, endpoint=ENDPOINT, actor=f"wave:{name}", lease=lease, exclusive=exclusive
    )
    return started.run.run_id


async def test_an_exclusive_run_is_refused_while_another_is_live(journal: Journal) -> None:
    first = await journal.start_run(
        "wave", name="w1", endpoint=ENDPOINT, actor="wave:w1", exclusive=True
    )
    assert first.took_over == []
    run = first.run
    assert (run.kind, run.name, run.endpoint, run.pid, run.ended_at) == (
        "wave",
        "w1",
        ENDPOINT,
        os.getpid(),
        None,
    )
    assert run.live()

    with pytest.raises(OwnedError) as info:
        await start(journal, "w1")
    assert info.value.owner is not None and info.value.owner.run_id == run.run_id
    message = str(info.value)
    assert f"pid {os.getpid()} on host {run.host}" in message
    assert "since" in message and "last heartbeat" in message
    # Another wave, another endpoint, or another kind is not the same driver.
    await start(journal, "w2")
    await journal.start_run("wave", name="w1", endpoint="https://other", actor="a", exclusive=True)
    await journal.start_run("set", name=None, endpoint=ENDPOINT, actor="cli")
    # A worker joining (non-exclusive) is refused too while an exclusive run is live.
    with pytest.raises(OwnedError):
        await start(journal, "w1", exclusive=False)


async def test_a_run_whose_lease_expired_is_taken_over(journal: Journal) -> None:
    old = await journal.start_run(
        "wave", name="w1", endpoint=ENDPOINT, actor="wave:w1", lease=0.2, exclusive=True
    )
    await eventually(lambda: time.time() > old.run.expires_at)

    new = await journal.start_run(
        "wave", name="w1", endpoint=ENDPOINT, actor="wave:w1", exclusive=True
    )
    [dead] = new.took_over
    assert (dead.run_id, dead.end_reason) == (old.run.run_id, "dead: lease expired")
    with pytest.raises(LeaseLostError, match="lost its lease"):
        await journal.heartbeat(old.run.run_id)  # a lease is never revived
    assert [r.run_id for r in await journal.runs()] == [new.run.run_id]


_CHILD_RUN = """
import asyncio, sys
async def main():
    journal = {code}
    await journal.open()
    started = await journal.start_run("wave", name="w1", endpoint={endpoint!r}, actor="wave:w1",
                                      exclusive=True)
    await journal.claim(started.run.run_id, {endpoint!r}, ["s1", "s2"])
    print(started.run.run_id, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def test_a_run_whose_process_is_gone_is_taken_over_with_its_sources(
    backend: Backend, journal: Journal, spawn: Spawner
) -> None:
    child = spawn.python("-c", _CHILD_RUN.format(code=backend.code, endpoint=ENDPOINT))
    dead_id = await child.areadline()
    with pytest.raises(OwnedError):  # live while its process runs
        await start(journal, "w1")
    assert child.kill() == -signal.SIGKILL

    started = await journal.start_run(
        "wave", name="w1", endpoint=ENDPOINT, actor="wave:w1", exclusive=True
    )
    assert [(r.run_id, r.end_reason) for r in started.took_over] == [
        (dead_id, "dead: process gone")
    ]
    claimed = await journal.claim(started.run.run_id, ENDPOINT, ["s1", "s2", "s3"])
    assert sorted(claimed.granted) == ["s1", "s2", "s3"]
    assert {s: r.run_id for s, r in claimed.taken_from.items()} == {"s1": dead_id, "s2": dead_id}


async def test_a_worker_takes_over_the_claims_of_one_whose_lease_expired(
    backend: Backend, journal: Journal
) -> None:
    stalled = (
        await journal.start_run("wave", name="w1", endpoint=ENDPOINT, actor="a", lease=0.3)
    ).run
    await journal.claim(stalled.run_id, ENDPOINT, ["s1", "s2"])
    async with backend() as other:  # another worker, on the same storage
        worker = (await other.start_run("wave", name="w1", endpoint=ENDPOINT, actor="b")).run
        refused = await other.claim(worker.run_id, ENDPOINT, ["s1"])
        assert {s: r.run_id for s, r in refused.refused.items()} == {"s1": stalled.run_id}
        await eventually(lambda: time.time() > stalled.expires_at)

        taken = await other.claim(worker.run_id, ENDPOINT, ["s1", "s2"])
        assert sorted(taken.granted) == ["s1", "s2"] and taken.refused == {}
        assert {s: (r.run_id, r.end_reason) for s, r in taken.taken_from.items()} == {
            s: (stalled.run_id, "dead: lease expired") for s in ("s1", "s2")
        }
        # The stalled worker wakes up: it writes nothing more for what it lost.
        with pytest.raises(ClaimLostError, match="taken by wave w1") as lost:
            await journal.begin(intent("s1", endpoint=ENDPOINT, run_id=stalled.run_id))
        assert lost.value.owner is not None and lost.value.owner.run_id == worker.run_id
        with pytest.raises(LeaseLostError):
            await journal.heartbeat(stalled.run_id)
        mine = await other.begin(intent("s1", endpoint=ENDPOINT, run_id=worker.run_id))
    [entry] = await journal.history()
    assert (entry.id, entry.run_id, entry.fence) == (mine, worker.run_id, taken.granted["s1"])


async def test_claims_are_granted_refused_and_stolen(journal: Journal) -> None:
    wave = await start(journal, "w1")
    operator = (await journal.start_run("set", name=None, endpoint=ENDPOINT, actor="cli")).run

    mine = await journal.claim(wave, ENDPOINT, ["s1", "s2"])
    assert sorted(mine.granted) == ["s1", "s2"] and mine.refused == {} == mine.taken_from
    again = await journal.claim(wave, ENDPOINT, ["s2", "s1"])
    assert again.granted == mine.granted, "claiming what it holds keeps the tokens"

    refused = await journal.claim(operator.run_id, ENDPOINT, ["s1", "s3"])
    assert list(refused.granted) == ["s3"]
    assert {s: r.run_id for s, r in refused.refused.items()} == {"s1": wave}
    elsewhere = await journal.claim(operator.run_id, "https://other", ["s1"])
    assert list(elsewhere.granted) == ["s1"], "the same id on another endpoint is another source"

    stolen = await journal.claim(
        operator.run_id, ENDPOINT, ["s1"], steal=True, reason="agent broke, hold it"
    )
    assert stolen.refused == {}
    assert stolen.taken_from["s1"].run_id == wave
    tokens = [mine.granted["s1"], mine.granted["s2"], refused.granted["s3"], stolen.granted["s1"]]
    assert len(set(tokens)) == 4 and stolen.granted["s1"] == max(tokens), "a new token per grant"


async def test_begin_is_fenced_by_the_runs_claim(journal: Journal) -> None:
    wave = await start(journal, "w1")
    operator = (await journal.start_run("set", name=None, endpoint=ENDPOINT, actor="cli:bob")).run
    await journal.claim(wave, ENDPOINT, ["s1", "s2"])

    held = await journal.begin(intent("s1", endpoint=ENDPOINT, run_id=wave))
    [entry] = await journal.history()
    assert (entry.id, entry.run_id) == (held, wave)
    assert entry.fence is not None

    with pytest.raises(ClaimLostError, match="no run holds it") as unclaimed:
        await journal.begin(intent("s9", endpoint=ENDPOINT, run_id=wave))
    assert unclaimed.value.owner is None
    await journal.claim(operator.run_id, ENDPOINT, ["s2"], steal=True, reason="hold it")
    with pytest.raises(ClaimLostError, match="hold it") as taken:
        await journal.begin(intent("s2", endpoint=ENDPOINT, run_id=wave))
    assert taken.value.owner is not None and taken.value.owner.actor == "cli:bob"
    assert taken.value.reason == "hold it" and taken.value.source_id == "s2"
    await journal.end_run(operator.run_id)  # released: the source is free, not the wave's
    with pytest.raises(ClaimLostError):
        await journal.begin(intent("s2", endpoint=ENDPOINT, run_id=wave))
    assert [e.id for e in await journal.history()] == [held], "nothing written when refused"
    # Entries born settled (a refusal, a move seen) record what happened: never fenced.
    await journal.record(intent("s2", endpoint=ENDPOINT, run_id=wave), Outcome.OBSERVED)


async def test_begin_is_refused_once_the_runs_lease_expired(journal: Journal) -> None:
    run = await journal.start_run(
        "wave", name="w1", endpoint=ENDPOINT, actor="wave:w1", lease=0.2, exclusive=True
    )
    await journal.claim(run.run.run_id, ENDPOINT, ["s1"])
    await eventually(lambda: time.time() > run.run.expires_at)

    with pytest.raises(LeaseLostError, match="no longer live"):
        await journal.begin(intent("s1", endpoint=ENDPOINT, run_id=run.run.run_id))
    with pytest.raises(LeaseLostError):
        await journal.claim(run.run.run_id, ENDPOINT, ["s2"])
    assert await journal.history() == []


async def test_heartbeat_extends_the_lease_and_end_releases_every_claim(journal: Journal) -> None:
    run = (
        await journal.start_run(
            "wave", name="w1", endpoint=ENDPOINT, actor="wave:w1", lease=5.0, exclusive=True
        )
    ).run
    await journal.claim(run.run_id, ENDPOINT, ["s1", "s2"])

    renewed = await journal.heartbeat(run.run_id, 600.0)
    assert renewed.expires_at >= run.expires_at + 590
    assert renewed.heartbeat_at >= run.heartbeat_at

    await journal.end_run(run.run_id)
    await journal.end_run(run.run_id)  # twice is harmless
    [ended] = [r for r in await journal.runs(live=False) if r.run_id == run.run_id]
    assert (ended.end_reason, ended.live()) == ("ended", False)
    with pytest.raises(LeaseLostError, match="it ended"):
        await journal.heartbeat(run.run_id)
    other = await start(journal, "w1")  # the same wave again: not refused
    claimed = await journal.claim(other, ENDPOINT, ["s1", "s2"])
    assert sorted(claimed.granted) == ["s1", "s2"] and claimed.refused == {}


async def test_adopting_an_open_entry_is_fenced_too(journal: Journal) -> None:
    old = await journal.begin(intent("s1", endpoint=ENDPOINT))  # a crashed run's intent
    run = await start(journal, "w1")
    with pytest.raises(ClaimLostError):
        await journal.adopt(old, run)
    await journal.claim(run, ENDPOINT, ["s1"])
    await journal.adopt(old, run)
    [entry] = await journal.open_intents()
    assert (entry.run_id, entry.fence is not None) == (run, True)
    await journal.settle(old, Outcome.APPLIED)
    with pytest.raises(JournalError, match="settled as 'applied'"):
        await journal.adopt(old, run)


async def test_wave_status_counts_members_by_their_last_known_state(journal: Journal) -> None:
    await journal.add_members("w", ["a", "b", "c", "d", "e"])
    moved = intent("a", wave="w", trigger="configure", to_state="WAITING/setting")
    await journal.record(moved, Outcome.APPLIED)  # a: WAITING/setting
    await journal.record(intent("b", wave="w"), Outcome.APPLIED)  # b: REPLICATE/replicating
    failed = await journal.begin(intent("b", wave="w", from_state="REPLICATE/replicating",
                                        to_state="CUTOVERING/cutovering"))  # fmt: skip
    await journal.settle(failed, Outcome.FAILED, error="HTTP 503", request_id="r-1")
    pending = await journal.begin(intent("c", wave="w"))  # c: open, still WAITING/checking
    await journal.record(intent("d", wave="other"), Outcome.APPLIED)  # d: moved by another
    found = await journal.wave_status("w")
    assert found.members == 5 and found.entries == 4
    assert found.states == {
        "WAITING/setting": 1,
        "REPLICATE/replicating": 2,  # b (its last step failed), and d (another wave's move)
        "WAITING/checking": 1,  # c: where its open step starts
        "unknown": 1,  # e: nothing journalled
    }
    assert found.failed == 1
    [failure] = found.failures
    assert (failure.source_id, failure.request_id, failure.error) == ("b", "r-1", "HTTP 503")
    assert found.open_intents == 1 and [e.id for e in found.open] == [pending]
    assert found.last_activity is not None
    empty = await journal.wave_status("nobody")
    assert (empty.members, empty.entries, empty.states, empty.failures) == (0, 0, {}, [])


async def test_wave_status_counts_every_failing_member_and_shows_the_first_ones(
    journal: Journal,
) -> None:
    await journal.add_members("w", [f"s{i}" for i in range(6)])
    failed_ids = []
    for i in (4, 1, 3, 0, 2):
        failed_ids.append(await journal.record(intent(f"s{i}", wave="w"), Outcome.FAILED))
    await journal.record(intent("x", wave="other"), Outcome.FAILED)  # not a member
    found = await journal.wave_status("w", shown=2)
    assert found.failed == 5
    assert [e.id for e in found.failures] == sorted(failed_ids)[:2]
    none_shown = await journal.wave_status("w", shown=0)
    assert (none_shown.failed, none_shown.failures) == (5, [])


async def test_census_counts_every_source_by_state_and_lists_the_stuck_longest_first(
    journal: Journal,
) -> None:
    before = time.time()
    assert (await journal.census(stuck_before=before)).sources == 0
    await journal.record(intent("a", to_state="WAITING/setting"), Outcome.APPLIED)
    await journal.record(intent("b", wave="w"), Outcome.APPLIED)  # b: REPLICATE/replicating
    failed = await journal.begin(intent("b", wave="w", from_state="REPLICATE/replicating",
                                        to_state="CUTOVERING/cutovering"))  # fmt: skip
    await journal.settle(failed, Outcome.FAILED, error="HTTP 503")
    await journal.begin(intent("c"))  # c: open, still WAITING/checking
    done = intent("d", from_state="CUTOVERING/cutovering", to_state="FINISHED/cutovered")
    await journal.record(done, Outcome.APPLIED)
    now = await journal.census(stuck_before=before, settled=["FINISHED/cutovered"])
    assert now.sources == 4 and now.stuck_count == 0 and now.stuck == []
    assert now.states == {
        "WAITING/setting": 1,
        "REPLICATE/replicating": 1,  # b: its step out failed, it stays
        "WAITING/checking": 1,  # c: where its open step starts
        "FINISHED/cutovered": 1,
    }
    assert now.failing == {"REPLICATE/replicating": 1}
    later = await journal.census(
        stuck_before=time.time() + 60, settled=["FINISHED/cutovered"], shown=2
    )
    # Everyone has been in a state since before then, but d is in a final state.
    assert later.stuck_count == 3
    assert [s.source_id for s in later.stuck] == ["a", "b"]  # the longest first, 2 shown
    b = later.stuck[1]
    assert (b.state, b.outcome, b.wave) == ("REPLICATE/replicating", Outcome.FAILED, "w")
    assert before <= later.stuck[0].since <= b.since
    with pytest.raises(JournalError, match="shown must be 0 or more, got -1"):
        await journal.census(stuck_before=0, shown=-1)


# --- joined workers: sessions, work in batches, the shared rate -------------------------


async def join(journal: Journal, name: str = "w1", *, lease: float = 30.0) -> tuple[str, str]:
    started = await journal.start_run(
        "wave", name=name, endpoint=ENDPOINT, actor=f"wave:{name}", lease=lease, join=True
    )
    assert started.session is not None
    return started.run.run_id, started.session


async def test_joined_workers_share_one_session_and_never_the_same_source(
    backend: Backend, journal: Journal
) -> None:
    members = [f"s{i:02d}" for i in range(10)]
    await journal.add_members("w1", members, endpoint=ENDPOINT)
    first, session = await join(journal)
    async with backend() as other:
        second, joined = await join(other)
        assert joined == session and second != first
        a = await journal.claim_work(first, session, wave="w1", endpoint=ENDPOINT, limit=4)
        b = await other.claim_work(second, session, wave="w1", endpoint=ENDPOINT, limit=4)
        assert list(a.claimed.granted) == members[:4]  # in membership order
        assert list(b.claimed.granted) == members[4:8]
        assert (a.undone, b.undone, b.failures) == (10, 10, 0)
        # Done is recorded with the next batch; a failure counts for the whole session.
        done = dict.fromkeys(members[:4], "finished") | {members[0]: "failed"}
        c = await journal.claim_work(
            first, session, wave="w1", endpoint=ENDPOINT, limit=4, done=done
        )
        assert list(c.claimed.granted) == members[8:]
        assert (c.undone, c.failures) == (6, 1)
        # A source this run does not hold is not marked done by it.
        d = await other.claim_work(
            second,
            session,
            wave="w1",
            endpoint=ENDPOINT,
            limit=4,
            done={members[9]: "finished"},
            holding=members[4:8],
        )
        assert d.claimed.granted == {} and (d.undone, d.failures) == (6, 1)
        workers = await journal.workers("w1")
        assert [(w.run.run_id, w.session, w.claims, w.done) for w in workers] == [
            (first, session, 2, 4),
            (second, session, 4, 0),
        ]
    # An exclusive run is refused while workers are live; a run of another wave is not.
    with pytest.raises(OwnedError):
        await start(journal, "w1")
    await start(journal, "w2")


async def test_a_dead_workers_sources_go_to_the_next_batch_and_a_new_session_starts_over(
    backend: Backend, journal: Journal
) -> None:
    await journal.add_members("w1", ["s1", "s2", "s3"], endpoint=ENDPOINT)
    started = await journal.start_run(
        "wave", name="w1", endpoint=ENDPOINT, actor="wave:w1", lease=0.3, join=True
    )
    dying, session = started.run.run_id, started.session
    assert session is not None
    await journal.claim_work(dying, session, wave="w1", endpoint=ENDPOINT, limit=2)
    async with backend() as other:
        taker, same = await join(other)
        assert same == session
        first = await other.claim_work(taker, session, wave="w1", endpoint=ENDPOINT, limit=5)
        assert list(first.claimed.granted) == ["s3"]  # s1, s2 held by a live worker
        await eventually(lambda: time.time() > started.run.expires_at)
        taken = await other.claim_work(
            taker, session, wave="w1", endpoint=ENDPOINT, limit=5, holding=["s3"]
        )
        assert sorted(taken.claimed.granted) == ["s1", "s2"]
        assert {r.run_id for r in taken.claimed.taken_from.values()} == {dying}
        with pytest.raises(LeaseLostError):
            await journal.claim_work(dying, session, wave="w1", endpoint=ENDPOINT, limit=5)
        await other.claim_work(
            taker,
            session,
            wave="w1",
            endpoint=ENDPOINT,
            limit=5,
            done=dict.fromkeys(["s1", "s2", "s3"], "finished"),
        )
        await other.end_run(taker)
    # Every worker of the session ended: the next worker starts a new session, all to do.
    fresh, new_session = await join(journal)
    assert new_session != session
    work = await journal.claim_work(fresh, new_session, wave="w1", endpoint=ENDPOINT, limit=5)
    assert (sorted(work.claimed.granted), work.undone) == (["s1", "s2", "s3"], 3)


async def test_sources_the_run_holds_but_is_not_driving_are_claimable_by_it(
    journal: Journal,
) -> None:
    await journal.add_members("w1", ["s1", "s2"], endpoint=ENDPOINT)
    run, session = await join(journal)
    await journal.claim_work(run, session, wave="w1", endpoint=ENDPOINT, limit=2)
    # The answer was lost (the connection died after the commit): the batch is held, but
    # nothing drives it; asked again without it in holding, the same run gets it back.
    again = await journal.claim_work(run, session, wave="w1", endpoint=ENDPOINT, limit=2)
    assert sorted(again.claimed.granted) == ["s1", "s2"]
    none = await journal.claim_work(
        run, session, wave="w1", endpoint=ENDPOINT, limit=2, holding=["s1", "s2"]
    )
    assert none.claimed.granted == {} and none.undone == 2


async def test_the_shared_rate_is_reserved_in_turn(backend: Backend, journal: Journal) -> None:
    _, session = await join(journal)
    # One request a second: 10 s of requests a reservation, so that the seconds the calls
    # themselves take (a loaded machine) do not blur the turns.
    first = await journal.reserve_requests(session, 10, 1.0)
    async with backend() as other:
        second = await other.reserve_requests(session, 10, 1.0)
    third = await journal.reserve_requests(session, 5, 1.0)
    assert first == pytest.approx(0.0, abs=1.0)
    assert second == pytest.approx(10.0, abs=1.0)  # after the first ten
    assert third == pytest.approx(20.0, abs=1.0)
    with pytest.raises(JournalError, match="rate"):
        await journal.reserve_requests(session, 1, 0)


async def test_join_is_refused_when_it_cannot_be(journal: Journal) -> None:
    with pytest.raises(JournalError, match="not exclusive"):
        await journal.start_run(
            "wave", name="w1", endpoint=ENDPOINT, actor="a", exclusive=True, join=True
        )
    with pytest.raises(JournalError, match="name and endpoint"):
        await journal.start_run("wave", name=None, endpoint=ENDPOINT, actor="a", join=True)
    run, session = await join(journal)
    with pytest.raises(JournalError, match="batch"):
        await journal.claim_work(run, session, wave="w1", endpoint=ENDPOINT, limit=-1)


async def test_release_frees_only_the_runs_own_claims(journal: Journal) -> None:
    server = (await journal.start_run("serve", name=None, endpoint=ENDPOINT, actor="serve")).run
    other = await start(journal, "w1")
    await journal.claim(server.run_id, ENDPOINT, ["s1", "s2"])
    await journal.claim(other, ENDPOINT, ["s3"])

    assert await journal.release(server.run_id, ENDPOINT, ["s1", "s3", "s9"]) == 1
    assert await journal.release(server.run_id, ENDPOINT, []) == 0

    # s1 is free at once (the server run lives on); s2 is still its; s3 still the wave's.
    taker = (await journal.start_run("set", name=None, endpoint=ENDPOINT, actor="cli")).run
    claimed = await journal.claim(taker.run_id, ENDPOINT, ["s1", "s2", "s3"])
    assert list(claimed.granted) == ["s1"]
    assert {s: r.run_id for s, r in claimed.refused.items()} == {
        "s2": server.run_id,
        "s3": other,
    }
    # The taker lets it go: the server run claims it again under a new fencing token.
    first_token = claimed.granted["s1"]
    assert await journal.release(taker.run_id, ENDPOINT, ["s1"]) == 1
    again = await journal.claim(server.run_id, ENDPOINT, ["s1"])
    assert again.granted["s1"] > first_token


# --- each source's latest entry (what census and wave_status count) -------------------------

_FAILS = {Outcome.FAILED, Outcome.IGNORED, Outcome.CONFLICT, Outcome.UNVERIFIED}
_SETTLED = ["FINISHED/cutovered"]


def latest_by_hand(entries: list[Entry]) -> dict[str, tuple[str, float, Entry]]:
    """Each source's state, since when and latest entry, as the Census docstring defines
    them, worked out from the whole history (oldest first)."""
    last: dict[str, Entry] = {}
    seen: dict[str, Entry] = {}
    for e in entries:
        last[e.source_id] = e
        if e.outcome in (Outcome.APPLIED, Outcome.OBSERVED):
            seen[e.source_id] = e
    found: dict[str, tuple[str, float, Entry]] = {}
    for source_id, e in last.items():
        at = seen.get(source_id)
        if at is not None:
            since = at.settled_at if at.settled_at is not None else at.created_at
            found[source_id] = (at.to_state, since, e)
        else:
            found[source_id] = (e.from_state, e.created_at, e)
    return found


async def assert_counts_agree_with_history(journal: Journal, waves: list[str]) -> None:
    """The census and every wave's status equal what the history says, counted by hand."""
    latest = latest_by_hand(await journal.history())
    stuck_before = time.time() + 60
    census = await journal.census(stuck_before=stuck_before, settled=_SETTLED, shown=1000)
    states: dict[str, int] = {}
    failing: dict[str, int] = {}
    for state, _, e in latest.values():
        states[state] = states.get(state, 0) + 1
        if e.outcome in _FAILS:
            failing[state] = failing.get(state, 0) + 1
    stuck = sorted(
        (since, source_id, state, e.outcome, e.wave)
        for source_id, (state, since, e) in latest.items()
        if since < stuck_before and state not in _SETTLED
    )
    assert (census.sources, census.states, census.failing) == (len(latest), states, failing)
    assert census.stuck_count == len(stuck)
    assert [(s.since, s.source_id, s.state, s.outcome, s.wave) for s in census.stuck] == stuck
    for wave in waves:
        members = [
            source_id
            for endpoint in await journal.member_endpoints(wave)
            for source_id in await journal.members(wave, endpoint=endpoint)
        ]
        counted: dict[str, int] = {}
        for source_id in members:
            state = latest[source_id][0] if source_id in latest else "unknown"
            counted[state] = counted.get(state, 0) + 1
        failures = sorted(
            (latest[s][2] for s in set(members) if s in latest and latest[s][2].outcome in _FAILS),
            key=lambda e: e.id,
        )
        status = await journal.wave_status(wave, shown=1000)
        assert (status.members, status.states) == (len(members), counted), wave
        assert (status.failed, status.failures) == (len(failures), failures), wave


async def test_census_and_wave_status_follow_every_kind_of_write(journal: Journal) -> None:
    other = "https://sms.other.example.com"
    waves = ["w1", "w2"]
    await journal.add_members("w1", ["a", "b", "c", "x"], endpoint=ENDPOINT)
    await journal.add_members("w1", ["a"], endpoint=other)  # a: in w1 on two endpoints
    await journal.add_members("w2", ["b", "d"], endpoint=other)  # b: in two waves
    check = assert_counts_agree_with_history
    await check(journal, waves)

    a1 = await journal.begin(intent("a", wave="w1", endpoint=ENDPOINT))
    await check(journal, waves)  # pending: a is where its step starts
    await journal.settle(a1, Outcome.APPLIED)
    await check(journal, waves)
    b1 = await journal.begin(intent("b", wave="w1", endpoint=ENDPOINT))
    await journal.settle(b1, Outcome.FAILED, error="HTTP 503")
    await check(journal, waves)
    seen = intent("c", wave="w1", endpoint=ENDPOINT, to_state="WAITING/setting")
    await journal.record(seen, Outcome.OBSERVED)
    await check(journal, waves)
    d1 = await journal.begin(intent("d", wave="w2", endpoint=other))
    await journal.settle(d1, Outcome.UNVERIFIED, error="read back failed")
    await check(journal, waves)  # unverified: still open, and failing
    await journal.settle(d1, Outcome.APPLIED)
    await check(journal, waves)
    b2 = await journal.begin(intent("b", wave="w2", endpoint=other))  # b's step in w2
    await journal.settle(b2, Outcome.IGNORED)
    await check(journal, waves)
    a2 = await journal.begin(intent("a", wave="w1", endpoint=other,
                                    from_state="REPLICATE/replicating",
                                    to_state="CUTOVERING/cutovering"))  # fmt: skip
    await journal.settle(a2, Outcome.CONFLICT)
    await check(journal, waves)
    # An older intent settled after a newer entry: the newer one stays the latest.
    e1 = await journal.begin(intent("e", endpoint=ENDPOINT))
    done = intent("e", from_state="CUTOVERING/cutovering", to_state="FINISHED/cutovered")
    await journal.record(done, Outcome.OBSERVED)
    await check(journal, waves)
    await journal.settle(e1, Outcome.APPLIED)
    await check(journal, waves)
    census = await journal.census(stuck_before=time.time() + 60, settled=_SETTLED)
    assert census.states["FINISHED/cutovered"] == 1, "e stays where it was seen last"
    await journal.record(intent("c", wave="w1", endpoint=other), Outcome.CONFLICT)
    await check(journal, waves)
    # Members added after their entries, members removed, and adopted.
    await journal.add_members("w2", ["a", "c", "e", "y"], endpoint="")
    await check(journal, waves)
    assert await journal.adopt_members("w2", endpoint=other) == 4
    await check(journal, waves)
    assert await journal.remove_members("w1", endpoint=other) == 1
    await check(journal, waves)
    await journal.record(intent("y", wave="w2", endpoint=other), Outcome.APPLIED)
    await check(journal, waves)


async def test_state_ages_count_the_latest_applied_or_observed_state(journal: Journal) -> None:
    a = await journal.begin(intent("a", to_state="SYNCING/syncing"))
    await journal.settle(a, Outcome.APPLIED)
    b = await journal.begin(intent("b", to_state="SYNCING/syncing"))
    await journal.settle(b, Outcome.APPLIED)
    await journal.record(
        intent("b", trigger=None, from_state="SYNCING/syncing", to_state="CUTOVERING/cutovering"),
        Outcome.OBSERVED,
    )
    await journal.begin(intent("c"))  # pending: where it is is not known yet
    failed = await journal.begin(intent("d"))
    await journal.settle(failed, Outcome.FAILED)

    ages = {state: (n, since) for state, n, since in await journal.state_ages()}

    entries = {(e.source_id, e.to_state): e for e in await journal.history()}
    a_since = entries["a", "SYNCING/syncing"].settled_at
    assert ages == {
        "SYNCING/syncing": (1, a_since),
        "CUTOVERING/cutovering": (1, entries["b", "CUTOVERING/cutovering"].settled_at),
    }
