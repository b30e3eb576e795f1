"""The wire values: exact enum values, tolerant parsing, clear errors, spelling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_flow.errors import UnknownValueError
from sms_flow.states import (
    CopyState,
    MigrationCycle,
    SdkCycle,
    Spelling,
    StatePair,
    StateRequest,
    parse_copystate,
    parse_cycle,
    parse_pair,
    parse_request,
    parse_service_copystate,
    parse_service_cycle,
    wire_value,
)

PAGE_COPYSTATES = [
    "UNAVAILABLE", "WAITING", "INIT", "REPLICATE", "SYNCING", "STOPPING", "STOPPED",
    "SKIPPING", "DELETING", "ERROR", "CLONING", "CUTOVERING", "FINISHED", "clearing",
    "cleared", "clearfailed", "premigready", "premiging", "premiged", "premigfailed",
]  # fmt: skip
PAGE_CYCLES = ["cutovering", "cutovered", "checking", "setting", "replicating", "syncing"]


def test_copystate_values_are_exactly_the_pages() -> None:
    assert sorted(cs.value for cs in CopyState) == sorted(PAGE_COPYSTATES)
    assert len(CopyState) == 20


def test_cycle_values_are_exactly_the_pages() -> None:
    assert sorted(c.value for c in MigrationCycle) == sorted(PAGE_CYCLES)


@given(st.sampled_from(PAGE_COPYSTATES), st.sampled_from(["lower", "upper", "swap", "pad"]))
def test_copystate_parsing_ignores_case_and_padding(value: str, how: str) -> None:
    text = {
        "lower": value.lower(),
        "upper": value.upper(),
        "swap": value.swapcase(),
        "pad": f" {value} ",
    }[how]
    assert parse_copystate(text).value == value


def test_initialize_means_init() -> None:
    assert parse_copystate("initialize") is CopyState.INIT
    assert parse_copystate("INITIALIZE") is CopyState.INIT
    assert parse_service_copystate("initialize") is CopyState.INIT


def test_unknown_copystate_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownValueError) as info:
        parse_copystate("REPLICATING")
    message = str(info.value)
    assert "'REPLICATING'" in message
    for value in PAGE_COPYSTATES:
        assert value in message
    assert isinstance(info.value, ValueError)


def test_sdk_only_cycles_are_read_from_the_service_but_refused_from_a_user() -> None:
    for value in ("no_ready", "ready_for_test", "testing", "tested"):
        assert isinstance(parse_service_cycle(value), SdkCycle)
        assert isinstance(parse_service_cycle(value.upper()), SdkCycle)
        with pytest.raises(UnknownValueError, match="service may report it"):
            parse_cycle(value)


def test_unknown_values_from_the_service_do_not_crash_a_reader() -> None:
    assert parse_service_copystate("migrating-somehow") is None
    assert parse_service_cycle("future_stage") is None
    assert parse_service_copystate("FINISHED") is CopyState.FINISHED
    assert parse_service_cycle("CUTOVERED") is MigrationCycle.CUTOVERED


def test_pair_and_request_parsing() -> None:
    assert parse_pair("syncing/SYNCING") == StatePair(CopyState.SYNCING, MigrationCycle.SYNCING)
    assert str(parse_pair("waiting/cutovered")) == "WAITING/cutovered"
    assert parse_request("CUTOVERING") == StateRequest(CopyState.CUTOVERING, None)
    assert parse_request("/setting") == StateRequest(None, MigrationCycle.SETTING)
    assert parse_request("*/setting") == StateRequest(None, MigrationCycle.SETTING)
    assert str(StateRequest(CopyState.ERROR, None)) == "ERROR/*"
    with pytest.raises(UnknownValueError, match="both parts"):
        parse_pair("SYNCING")
    with pytest.raises(UnknownValueError, match="at least one"):
        parse_request("/")


def test_spelling_chooses_what_is_sent() -> None:
    assert wire_value(CopyState.WAITING) == "WAITING"
    assert wire_value(CopyState.CLEARING) == "clearing"
    assert wire_value(CopyState.WAITING, Spelling.LOWER) == "waiting"
    assert wire_value(MigrationCycle.CUTOVERED, Spelling.LOWER) == "cutovered"


def test_enum_members_hash_like_their_wire_strings() -> None:
    # The planner's tables rely on this: a plain string finds the same entry.
    table: dict[str, int] = {CopyState.WAITING: 1}
    assert table["WAITING"] == 1
    assert hash(MigrationCycle.SYNCING) == hash("syncing")


def test_a_mistyped_state_is_answered_with_the_closest_one() -> None:
    with pytest.raises(UnknownValueError, match=r"'SYNCNG' \(did you mean 'SYNCING'\?\); valid"):
        parse_copystate("SYNCNG")
    with pytest.raises(UnknownValueError, match=r"'Cutoverd' \(did you mean 'cutovered'\?\)"):
        parse_pair("FINISHED/Cutoverd")
    with pytest.raises(UnknownValueError) as far:
        parse_copystate("XYZ")
    assert "did you mean" not in str(far.value), "no suggestion when nothing is close"
