"""The wire values of SMS ``changestate``: copystates, migration cycles, and their pairs.

The enum values are exactly what the API page sends (``WAITING``, ``clearing``,
``premigready``, ``cutovered`` ...). Reading is tolerant, because editions of the API and the
read side disagree on case and on a few names: parsing is case-insensitive, ``initialize``
means ``INIT``, and the four migration cycles that only the SDK documents (``no_ready``,
``ready_for_test``, ``testing``, ``tested``) are understood when they come from the service.
A value a *user* gives that is not known is a clear :class:`~sms_flow.errors.UnknownValueError`
that lists the valid ones.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from sms_flow.errors import UnknownValueError, did_you_mean

__all__ = [
    "CopyState",
    "MigrationCycle",
    "SdkCycle",
    "Spelling",
    "StatePair",
    "StateRequest",
    "parse_copystate",
    "parse_cycle",
    "parse_pair",
    "parse_request",
    "parse_service_copystate",
    "parse_service_cycle",
    "read_side_state",
    "wire_value",
]


class CopyState(StrEnum):
    """The ``copystate`` of a source server; values as the changestate page spells them."""

    UNAVAILABLE = "UNAVAILABLE"
    WAITING = "WAITING"
    INIT = "INIT"
    REPLICATE = "REPLICATE"
    SYNCING = "SYNCING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    SKIPPING = "SKIPPING"
    DELETING = "DELETING"
    ERROR = "ERROR"
    CLONING = "CLONING"
    CUTOVERING = "CUTOVERING"
    FINISHED = "FINISHED"
    CLEARING = "clearing"
    CLEARED = "cleared"
    CLEARFAILED = "clearfailed"
    PREMIGREADY = "premigready"
    PREMIGING = "premiging"
    PREMIGED = "premiged"
    PREMIGFAILED = "premigfailed"


class MigrationCycle(StrEnum):
    """The ``migrationcycle`` (stage) of a source server: the six documented values."""

    CHECKING = "checking"
    SETTING = "setting"
    REPLICATING = "replicating"
    SYNCING = "syncing"
    CUTOVERING = "cutovering"
    CUTOVERED = "cutovered"


class SdkCycle(StrEnum):
    """Migration cycles only the official SDK documents.

    They are understood when the service reports them, but no edition of the changestate
    page lets a client send them, so a user cannot request them.
    """

    NO_READY = "no_ready"
    READY_FOR_TEST = "ready_for_test"
    TESTING = "testing"
    TESTED = "tested"


class Spelling(StrEnum):
    """How enum values are spelled on the wire when sms-flow sends them."""

    PAGE = "page"
    """Exactly as the changestate page lists them (``WAITING``, ``clearing``)."""
    LOWER = "lower"
    """All lower case, as editions of the API from 2025-11 on list them."""


class StatePair(NamedTuple):
    """The state of a source server: its copystate and its migration cycle."""

    copystate: CopyState
    migrationcycle: MigrationCycle

    def __str__(self) -> str:
        name = _PAIR_NAMES.get(self)
        if name is None:
            name = _PAIR_NAMES[self] = f"{self.copystate.value}/{self.migrationcycle.value}"
        return name


# "COPYSTATE/cycle" of each pair, made once (at most 20 x 6 of them): journalled on every step.
_PAIR_NAMES: dict[tuple[CopyState, MigrationCycle], str] = {}


class StateRequest(NamedTuple):
    """A requested change; either field may be left out, as in the API."""

    copystate: CopyState | None = None
    migrationcycle: MigrationCycle | None = None

    def __str__(self) -> str:
        cs = self.copystate.value if self.copystate is not None else "*"
        cy = self.migrationcycle.value if self.migrationcycle is not None else "*"
        return f"{cs}/{cy}"

    @property
    def empty(self) -> bool:
        """True when the request names neither field (and so changes nothing)."""
        return self.copystate is None and self.migrationcycle is None


_COPYSTATE_BY_FOLDED: dict[str, CopyState] = {cs.value.casefold(): cs for cs in CopyState}
_COPYSTATE_BY_FOLDED["initialize"] = CopyState.INIT
_CYCLE_BY_FOLDED: dict[str, MigrationCycle] = {c.value.casefold(): c for c in MigrationCycle}
_SDK_CYCLE_BY_FOLDED: dict[str, SdkCycle] = {c.value.casefold(): c for c in SdkCycle}

_VALID_COPYSTATES = ", ".join(cs.value for cs in CopyState)
_VALID_CYCLES = ", ".join(c.value for c in MigrationCycle)


def parse_copystate(text: str | CopyState) -> CopyState:
    """Parse a copystate, ignoring case; ``initialize`` is read as ``INIT``.

    Raises :class:`UnknownValueError` naming the value and listing the valid ones.
    """
    if isinstance(text, CopyState):
        return text
    found = _COPYSTATE_BY_FOLDED.get(str(text).strip().casefold())
    if found is None:
        raise UnknownValueError(
            "copystate",
            str(text),
            _VALID_COPYSTATES,
            hint=did_you_mean(str(text).strip(), [cs.value for cs in CopyState]),
        )
    return found


def parse_cycle(text: str | MigrationCycle) -> MigrationCycle:
    """Parse a migration cycle a user gives, ignoring case.

    The SDK-only cycles are refused here with a message saying why: only the service
    reports them.
    """
    if isinstance(text, MigrationCycle):
        return text
    folded = str(text).strip().casefold()
    found = _CYCLE_BY_FOLDED.get(folded)
    if found is not None:
        return found
    if folded in _SDK_CYCLE_BY_FOLDED:
        hint = " (the service may report it, but the changestate API does not accept it)"
    else:
        hint = did_you_mean(str(text).strip(), [c.value for c in MigrationCycle])
    raise UnknownValueError("migrationcycle", str(text), _VALID_CYCLES, hint=hint)


def parse_service_cycle(text: str) -> MigrationCycle | SdkCycle | None:
    """Parse a migration cycle read from the service; unknown values give ``None``.

    A reader must not crash on a value a newer edition of the service adds.
    """
    folded = text.strip().casefold()
    return _CYCLE_BY_FOLDED.get(folded) or _SDK_CYCLE_BY_FOLDED.get(folded)


def parse_service_copystate(text: str) -> CopyState | None:
    """Parse a copystate read from the service; unknown values give ``None``."""
    return _COPYSTATE_BY_FOLDED.get(text.strip().casefold())


def parse_pair(text: str) -> StatePair:
    """Parse ``COPYSTATE/MIGRATIONCYCLE`` (both parts required)."""
    copystate, sep, cycle = str(text).partition("/")
    if not sep or not copystate.strip() or not cycle.strip():
        raise UnknownValueError(
            "state",
            str(text),
            "COPYSTATE/MIGRATIONCYCLE, for example SYNCING/syncing",
            hint=" (both parts are needed for a current state)",
        )
    return StatePair(parse_copystate(copystate), parse_cycle(cycle))


def parse_request(text: str) -> StateRequest:
    """Parse a requested state: ``COPYSTATE/CYCLE``, ``COPYSTATE``, ``/CYCLE`` or ``*/CYCLE``.

    A part left out (or given as ``*``) means the request does not name it.
    """
    raw = str(text).strip()
    copystate, _, cycle = raw.partition("/")
    copystate, cycle = copystate.strip(), cycle.strip()
    cs = None if copystate in ("", "*") else parse_copystate(copystate)
    cy = None if cycle in ("", "*") else parse_cycle(cycle)
    if cs is None and cy is None:
        raise UnknownValueError(
            "requested state",
            raw,
            "COPYSTATE/MIGRATIONCYCLE, COPYSTATE or /MIGRATIONCYCLE",
            hint=" (a request must name at least one of the two fields)",
        )
    return StateRequest(cs, cy)


def wire_value(value: CopyState | MigrationCycle, spelling: Spelling = Spelling.PAGE) -> str:
    """The string sms-flow sends for ``value`` in the chosen spelling."""
    if spelling is Spelling.LOWER:
        return value.value.lower()
    return value.value


def read_side_state(copystate: CopyState) -> str:
    """``state`` as the read side (``GET /v3/sources``) spells it: lower case, ``initialize`` for INIT.

    The read side names INIT ``initialize`` where changestate says ``INIT``; everything else is
    the changestate value in lower case. The simulator answers with it, and the client filters
    listings with it.
    """
    return _READ_SIDE[copystate]


_READ_SIDE: dict[CopyState, str] = {
    cs: "initialize" if cs is CopyState.INIT else cs.value.lower() for cs in CopyState
}
