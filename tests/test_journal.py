"""The journal's types, and the contract every back end keeps (run against each of them).

Back-end specific behaviour (files, durability, group commit, locks) is tested beside the
back end: ``tests/test_journal_sqlite.py``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from sms_flow.errors import JournalError, SmsFlowError
from sms_flow.journal import Entry, Intent, Journal, Outcome, default_journal_path
from sms_flow.journal_sqlite import SqliteJournal
from tests.conftest import eventually

Backend = Callable[[], Journal]
"""Makes a new, unopened journal on one back end's storage (the same storage every call)."""


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


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "state" / "journal.sqlite"
        return lambda: SqliteJournal(path)
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
    monkeypatch.chdir(tmp_path)
    assert default_journal_path() == tmp_path / ".sms-flow" / "journal.sqlite"


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
