"""Wire models: documented limits, exact bodies, tolerant error parsing."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sms_flow.errors import InvalidRequestError, UnknownValueError
from sms_flow.states import CopyState, MigrationCycle, SdkCycle, Spelling
from sms_flow.wire import (
    SOURCES_PATH,
    ChangeStateRequest,
    ErrorBody,
    SourceServer,
    changestate_path,
    parse_error_body,
    source_path,
    validate_source_id,
)


def test_body_matches_the_pages_example_byte_for_byte() -> None:
    body = ChangeStateRequest.of("WAITING", "cutovered").to_wire()
    assert body == b'{"copystate": "WAITING", "migrationcycle": "cutovered"}'
    assert len(body) == 55  # the signing test vector's body


def test_fields_left_out_are_not_sent() -> None:
    assert json.loads(ChangeStateRequest.of(copystate="clearing").to_wire()) == {
        "copystate": "clearing"
    }
    assert json.loads(ChangeStateRequest.of(migrationcycle="SETTING").to_wire()) == {
        "migrationcycle": "setting"
    }


def test_lower_case_spelling() -> None:
    body = ChangeStateRequest.of(CopyState.FINISHED, MigrationCycle.CUTOVERED).to_wire(
        Spelling.LOWER
    )
    assert body == b'{"copystate": "finished", "migrationcycle": "cutovered"}'


def test_empty_change_is_refused_before_sending() -> None:
    with pytest.raises(InvalidRequestError, match="changes nothing"):
        ChangeStateRequest.of()
    with pytest.raises(ValidationError, match="changes nothing"):
        ChangeStateRequest.model_validate({})


def test_unknown_values_are_clear_errors() -> None:
    with pytest.raises(UnknownValueError, match="unknown copystate 'DONE'"):
        ChangeStateRequest.of("DONE")
    with pytest.raises(
        UnknownValueError, match=r"unknown migrationcycle 'tested'.*does not accept"
    ):
        ChangeStateRequest.of(migrationcycle="tested")


@pytest.mark.parametrize(
    ("source_id", "problem"),
    [
        ("", "empty"),
        ("x" * 256, "256 characters; the API takes at most 255"),
        ("a/b", "not safe in a URL path"),
        ("..", "not safe in a URL path"),
        ("a b", "not safe in a URL path"),
        ("a?b=c", "not safe in a URL path"),
        ("a%2Fb", "not safe in a URL path"),
        ("a\nb", "not safe in a URL path"),
    ],
)
def test_bad_source_ids(source_id: str, problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        validate_source_id(source_id)


def test_good_source_ids_are_percent_encoded_in_the_path() -> None:
    assert validate_source_id("x" * 255) == "x" * 255
    assert (
        changestate_path("dcdbe339-b02d-4578-95a1-9c9c547dxxxx")
        == "/v3/sources/dcdbe339-b02d-4578-95a1-9c9c547dxxxx/changestate"
    )
    assert changestate_path("ünï:cöde") == "/v3/sources/%C3%BCn%C3%AF%3Ac%C3%B6de/changestate"
    assert source_path("a~b_c.d") == f"{SOURCES_PATH}/a~b_c.d" == "/v3/sources/a~b_c.d"


def documented_rules_refuse(source_id: str) -> bool:
    """The rules of validate_source_id's docstring, written out plainly."""
    unsafe = any(ch in "/\\?#%" or not ch.isprintable() or ch.isspace() for ch in source_id)
    return not source_id or len(source_id) > 255 or unsafe or source_id in (".", "..")


@given(
    st.one_of(
        st.text(max_size=300),
        st.from_regex(r"[A-Za-z0-9._~-]{0,260}", fullmatch=True),
        st.uuids().map(str),
    )
)
def test_path_helpers_follow_the_documented_rules(source_id: str) -> None:
    """Every id is checked by the same rules, the usual (UUID) shape included."""
    if documented_rules_refuse(source_id):
        for helper in (validate_source_id, source_path, changestate_path):
            with pytest.raises(InvalidRequestError):
                helper(source_id)
        return
    assert validate_source_id(source_id) == source_id
    assert source_path(source_id) == f"/v3/sources/{quote(source_id, safe='')}"
    assert changestate_path(source_id) == f"{source_path(source_id)}/changestate"


def test_documented_error_body_limits() -> None:
    body = ErrorBody.model_validate(
        {
            "error_code": "SMS.9004",
            "error_msg": "no permission",
            "encoded_authorization_message": "XXXXXX",
            "error_param": ["You do not have permission"],
            "details": [{"error_code": "SMS.9004", "error_msg": "You do not have permission"}],
        }
    )
    assert body.details is not None and body.details[0].error_code == "SMS.9004"
    with pytest.raises(ValidationError):
        ErrorBody.model_validate({"error_code": "x" * 256})
    with pytest.raises(ValidationError):
        ErrorBody.model_validate({"error_param": []})
    with pytest.raises(ValidationError):
        ErrorBody.model_validate({"error_param": ["p"] * 21})


@pytest.mark.parametrize(
    ("text", "code", "msg"),
    [
        ('{"error_code": "SMS.9004", "error_msg": "denied"}', "SMS.9004", "denied"),
        ('{"errorCode": "SMS.1", "errorMsg": "camel"}', "SMS.1", "camel"),
        ('{"code": "APIG.0308", "message": "throttled"}', "APIG.0308", "throttled"),
        (
            '{"error": {"code": "APIG.0101", "message": "no api"}, "request_id": "r"}',
            "APIG.0101",
            "no api",
        ),
    ],
)
def test_error_bodies_of_every_shape(text: str, code: str, msg: str) -> None:
    body = parse_error_body(text)
    assert body is not None and body.error_code == code and body.error_msg == msg


def test_error_bodies_that_say_nothing() -> None:
    assert parse_error_body("<html>bad gateway</html>") is None
    assert parse_error_body("[1, 2]") is None
    assert parse_error_body('{"unrelated": 1}') is None


@given(
    st.dictionaries(
        st.sampled_from(
            ["error_code", "errorCode", "code", "error_msg", "message", "error_param", "details"]
        ),
        st.one_of(
            st.text(max_size=400),
            st.integers(),
            st.none(),
            st.lists(st.text(max_size=5), max_size=30),
        ),
    )
)
def test_error_parsing_never_crashes(raw: dict[str, object]) -> None:
    parse_error_body(json.dumps(raw))


def test_source_read_side_is_tolerant() -> None:
    src = SourceServer.model_validate(
        {"id": "s1", "state": "finished", "migration_cycle": "cutovered", "extra": 1}
    )
    assert src.copystate is CopyState.FINISHED
    assert str(src.pair) == "FINISHED/cutovered"
    odd = SourceServer.model_validate(
        {"id": "s2", "state": "initialize", "migration_cycle": "testing"}
    )
    assert odd.copystate is CopyState.INIT and odd.cycle is SdkCycle.TESTING and odd.pair is None
    unknown = SourceServer.model_validate({"id": "s3", "state": "teleporting"})
    assert unknown.copystate is None and unknown.pair is None
    assert unknown.describe_state() == "teleporting/?"
