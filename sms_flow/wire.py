"""Request, response and error models of the SMS API, with every documented limit.

Shared by the client and the simulator (and nothing else of either). The limits are those
of the changestate page: ``source_id`` up to 255 characters, a token 1..16,384 characters,
error fields and arrays as documented, and a request body of at most 10,240 bytes. One limit
is the client's own: it reads at most :data:`ANSWER_MAX_BYTES` of an answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sms_flow.errors import InvalidRequestError, truncate
from sms_flow.states import (
    CopyState,
    MigrationCycle,
    SdkCycle,
    Spelling,
    StatePair,
    parse_copystate,
    parse_cycle,
    parse_service_copystate,
    parse_service_cycle,
    wire_value,
)

__all__ = [
    "ANSWER_MAX_BYTES",
    "BODY_MAX_BYTES",
    "SOURCES_PATH",
    "SOURCE_ID_MAX",
    "TOKEN_MAX",
    "ChangeStateRequest",
    "ErrorBody",
    "ErrorDetail",
    "RegisterSourceRequest",
    "SourceList",
    "SourceServer",
    "changestate_path",
    "parse_error_body",
    "source_path",
    "validate_source_id",
]

SOURCE_ID_MAX = 255
TOKEN_MAX = 16_384
BODY_MAX_BYTES = 10_240
ERROR_FIELD_MAX = 255
LONG_FIELD_MAX = 65_535
ERROR_ARRAY_MAX = 20

ANSWER_MAX_BYTES: Final = 8 * 1024 * 1024
"""The most the client reads of one answer, counted after decompression: 8 MiB.

Far above any SMS answer (a page of 200 source servers, the largest, is well under 1 MiB),
and low enough that an answer that is not SMS's (a 100 MB body, a small gzip that expands to
gigabytes) is refused with :class:`~sms_flow.errors.AnswerTooLargeError` before it fills the
memory: the client stops reading at the cap.
"""

SOURCES_PATH: Final = "/v3/sources"
"""The collection of source servers; :func:`source_path` and :func:`changestate_path` extend it."""

_PATH_UNSAFE = frozenset("/\\?#%")
# The usual shape of a source id (a UUID): unreserved characters only, within the limit. Such
# an id passes every check below and is its own percent-encoding.
_PLAIN_ID_RE: Final = re.compile(rf"[A-Za-z0-9._~-]{{1,{SOURCE_ID_MAX}}}")
_DOT_SEGMENTS: Final = frozenset({".", ".."})


def validate_source_id(source_id: str) -> str:
    """Check that ``source_id`` is within the documented limits and safe in a path segment.

    Refuses an empty id, one over 255 characters, and one holding ``/ \\ ? # %``, white
    space or control characters, or that is ``.`` or ``..``: each could change the path a
    gateway sees. Raises :class:`InvalidRequestError` naming the problem.
    """
    if not isinstance(source_id, str):
        raise InvalidRequestError(f"source_id must be a string, not {type(source_id).__name__}")
    if _PLAIN_ID_RE.fullmatch(source_id) and source_id not in _DOT_SEGMENTS:
        return source_id  # the usual shape passes every check below
    if not source_id:
        raise InvalidRequestError("source_id is empty; give the id of a source server in SMS")
    if len(source_id) > SOURCE_ID_MAX:
        raise InvalidRequestError(
            f"source_id {truncate(source_id, 40)!r} is {len(source_id)} characters; "
            f"the API takes at most {SOURCE_ID_MAX}"
        )
    bad = sorted(
        {ch for ch in source_id if ch in _PATH_UNSAFE or not ch.isprintable() or ch.isspace()}
    )
    if bad or source_id in _DOT_SEGMENTS:
        shown = ", ".join(repr(ch) for ch in bad) if bad else repr(source_id)
        raise InvalidRequestError(
            f"source_id {truncate(source_id, 40)!r} is not safe in a URL path ({shown}); "
            "SMS source ids are UUIDs such as dcdbe339-b02d-4578-95a1-9c9c547d0000"
        )
    return source_id


def source_path(source_id: str) -> str:
    """``/v3/sources/{source_id}`` with the id checked and percent-encoded."""
    plain = isinstance(source_id, str) and _PLAIN_ID_RE.fullmatch(source_id)
    if plain and source_id not in _DOT_SEGMENTS:
        return f"{SOURCES_PATH}/{source_id}"  # checked, and its own encoding
    return f"{SOURCES_PATH}/{quote(validate_source_id(source_id), safe='')}"


def changestate_path(source_id: str) -> str:
    """``/v3/sources/{source_id}/changestate`` with the id checked and percent-encoded."""
    return f"{source_path(source_id)}/changestate"


class ChangeStateRequest(BaseModel):
    """The body of ``PUT /v3/sources/{source_id}/changestate``.

    Both fields are optional in the API, but a request naming neither changes nothing and
    is refused here, before anything is sent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    copystate: CopyState | None = None
    migrationcycle: MigrationCycle | None = None

    @field_validator("copystate", mode="before")
    @classmethod
    def _parse_copystate(cls, value: Any) -> Any:
        return None if value is None else parse_copystate(value)

    @field_validator("migrationcycle", mode="before")
    @classmethod
    def _parse_cycle(cls, value: Any) -> Any:
        return None if value is None else parse_cycle(value)

    def model_post_init(self, __context: Any) -> None:
        if self.copystate is None and self.migrationcycle is None:
            raise InvalidRequestError(
                "the change names neither copystate nor migrationcycle, so it changes nothing; "
                "give at least one"
            )

    @classmethod
    def of(
        cls,
        copystate: CopyState | str | None = None,
        migrationcycle: MigrationCycle | str | None = None,
    ) -> ChangeStateRequest:
        """Build a request from user input, raising sms-flow's own errors.

        :class:`~sms_flow.errors.UnknownValueError` for an unknown value (listing the valid
        ones), :class:`~sms_flow.errors.InvalidRequestError` for an empty change.
        """
        cs = None if copystate is None else parse_copystate(copystate)
        cy = None if migrationcycle is None else parse_cycle(migrationcycle)
        if cs is None and cy is None:
            raise InvalidRequestError(
                "the change names neither copystate nor migrationcycle, so it changes nothing; "
                "give at least one"
            )
        return cls.model_construct(copystate=cs, migrationcycle=cy)

    @classmethod
    def from_body(cls, body: bytes | Mapping[str, Any]) -> ChangeStateRequest:
        """Read a changestate body as the service receives it (the simulator, a gateway).

        ``body`` is the raw bytes or an already parsed JSON object. A field left out or
        ``null`` is not requested; other keys are ignored. Raises
        :class:`~sms_flow.errors.InvalidRequestError` (not JSON, not an object, a field that
        is not a string, neither field given; ``field`` names the offending one) or
        :class:`~sms_flow.errors.UnknownValueError` (an unknown value, listing the valid ones).
        """
        if isinstance(body, Mapping):
            data: Any = body
        else:
            try:
                data = json.loads(body)
            except ValueError:
                raise InvalidRequestError(
                    "the request body is not JSON; send a JSON object such as "
                    '{"copystate": "WAITING", "migrationcycle": "cutovered"}',
                    field="body",
                ) from None
        if not isinstance(data, Mapping):
            raise InvalidRequestError(
                f"the request body is JSON {type(data).__name__}, not an object", field="body"
            )
        fields: dict[str, str] = {}
        for name in ("copystate", "migrationcycle"):
            value = data.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidRequestError(
                    f"{name} must be a string, not {type(value).__name__}", field=name
                )
            fields[name] = value
        return cls.of(fields.get("copystate"), fields.get("migrationcycle"))

    def to_wire(self, spelling: Spelling = Spelling.PAGE) -> bytes:
        """The exact JSON body sent; fields left out are not sent."""
        body: dict[str, str] = {}
        if self.copystate is not None:
            body["copystate"] = wire_value(self.copystate, spelling)
        if self.migrationcycle is not None:
            body["migrationcycle"] = wire_value(self.migrationcycle, spelling)
        data = json.dumps(body, separators=(", ", ": ")).encode()
        if len(data) > BODY_MAX_BYTES:  # pragma: no cover - two enum values never get here
            raise InvalidRequestError(
                f"request body is {len(data)} bytes; the limit is {BODY_MAX_BYTES}"
            )
        return data


class ErrorDetail(BaseModel):
    """One entry of ``details`` in an error body."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    error_code: Annotated[str, StringConstraints(max_length=LONG_FIELD_MAX)] = ""
    error_msg: Annotated[str, StringConstraints(max_length=LONG_FIELD_MAX)] = ""


class ErrorBody(BaseModel):
    """The documented error body (403 and the others)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    error_code: Annotated[str, StringConstraints(max_length=ERROR_FIELD_MAX)] | None = None
    error_msg: Annotated[str, StringConstraints(max_length=ERROR_FIELD_MAX)] | None = None
    encoded_authorization_message: (
        Annotated[str, StringConstraints(max_length=LONG_FIELD_MAX)] | None
    ) = None
    error_param: list[Annotated[str, StringConstraints(max_length=LONG_FIELD_MAX)]] | None = Field(
        default=None, min_length=1, max_length=ERROR_ARRAY_MAX
    )
    details: list[ErrorDetail] | None = Field(
        default=None, min_length=1, max_length=ERROR_ARRAY_MAX
    )

    def to_wire(self) -> bytes:
        return json.dumps(self.model_dump(exclude_none=True)).encode()


def parse_error_body(text: str) -> ErrorBody | None:
    """Read an error body tolerantly.

    Accepts the documented shape, ``errorCode``/``errorMsg`` and ``code``/``message`` (as
    the SDK does), and clips fields over their documented length instead of failing.
    Returns ``None`` when the body is not JSON or holds none of these.
    """
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("error"), dict):  # the API gateway nests its answer
        raw = {**raw["error"], **{k: v for k, v in raw.items() if k != "error"}}
    code = raw.get("error_code", raw.get("errorCode", raw.get("code")))
    msg = raw.get("error_msg", raw.get("errorMsg", raw.get("message")))
    if code is None and msg is None:
        return None
    params = raw.get("error_param")
    details = raw.get("details")
    return ErrorBody(
        error_code=str(code)[:ERROR_FIELD_MAX] if code is not None else None,
        error_msg=str(msg)[:ERROR_FIELD_MAX] if msg is not None else None,
        encoded_authorization_message=(
            str(raw["encoded_authorization_message"])[:LONG_FIELD_MAX]
            if raw.get("encoded_authorization_message") is not None
            else None
        ),
        error_param=[str(p)[:LONG_FIELD_MAX] for p in params][:ERROR_ARRAY_MAX]
        if isinstance(params, list) and params
        else None,
        details=[
            ErrorDetail(
                error_code=str(d.get("error_code", ""))[:LONG_FIELD_MAX],
                error_msg=str(d.get("error_msg", ""))[:LONG_FIELD_MAX],
            )
            for d in details
            if isinstance(d, dict)
        ][:ERROR_ARRAY_MAX]
        or None
        if isinstance(details, list) and details
        else None,
    )


class SourceServer(BaseModel):
    """A source server as ``GET /v3/sources/{id}`` and ``GET /v3/sources`` return it.

    Only the fields sms-flow uses are modelled; the others are kept as they came. ``state``
    and ``migration_cycle`` keep the raw strings (the read side spells them in lower case,
    and may add values): :attr:`copystate`, :attr:`cycle` and :attr:`pair` parse them
    tolerantly and give ``None`` for a value sms-flow does not know.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    name: str | None = None
    state: str | None = None
    migration_cycle: str | None = None
    state_action_time: int | None = None
    stage_action_time: int | None = None

    @property
    def copystate(self) -> CopyState | None:
        return parse_service_copystate(self.state) if self.state else None

    @property
    def cycle(self) -> MigrationCycle | SdkCycle | None:
        return parse_service_cycle(self.migration_cycle) if self.migration_cycle else None

    @property
    def pair(self) -> StatePair | None:
        """The state as a pair, or ``None`` when either part is missing or not known."""
        cs, cy = self.copystate, self.cycle
        if cs is None or not isinstance(cy, MigrationCycle):
            return None
        return StatePair(cs, cy)

    def describe_state(self) -> str:
        return f"{self.state or '?'}/{self.migration_cycle or '?'}"


class SourceList(BaseModel):
    """The answer of ``GET /v3/sources``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    count: int = 0
    source_servers: list[SourceServer] = Field(default_factory=list)


class RegisterSourceRequest(BaseModel):
    """A minimal ``POST /v3/sources``: the agent sends many more fields, a name is enough here."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    ip: str | None = None
    hostname: str | None = None
    os_type: str | None = None
    os_version: str | None = None
