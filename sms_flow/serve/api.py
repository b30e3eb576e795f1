"""sms-flow's own JSON API under ``/api/v1`` (read-only so far): check a change, a source's history.

* ``GET /api/v1/check?from=COPYSTATE/cycle&to=COPYSTATE/cycle``: the planner's verdict
  (:meth:`Verdict.to_dict <sms_flow.planner.Verdict.to_dict>`): allowed or not, the trigger,
  every reason and the shortest legal path. ``to`` may leave a part out, as on the command
  line (``CUTOVERING``, ``/cutovering``).
* ``GET /api/v1/sources/{source_id}/history[?limit=N]``: what the journal holds for the
  source, oldest first (the last ``N`` entries with ``limit``):
  ``{"source_id": ..., "entries": [...]}``, each entry as :meth:`Entry.to_dict
  <sms_flow.journal.Entry.to_dict>` gives it (who asked, why, the outcome, the request id).

Both take a ``viewer`` token when API tokens are configured. A bad parameter is answered
400 with ``{"error_code": "SMSFLOW.0006", "error_msg": ...}`` naming it.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from sms_flow.errors import InputError
from sms_flow.journal import Journal
from sms_flow.planner import Planner
from sms_flow.states import parse_pair, parse_request
from sms_flow.wire import validate_source_id

__all__ = ["Api"]

_INVALID: Final = "SMSFLOW.0006"
_LIMIT_MAX: Final = 10_000


def _bad(message: str) -> web.Response:
    return web.json_response({"error_code": _INVALID, "error_msg": message}, status=400)


class Api:
    """The ``/api/v1`` handlers over a planner and a journal."""

    def __init__(self, planner: Planner, journal: Journal) -> None:
        self.planner = planner
        self.journal = journal

    async def check(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        given = {name: query.get(name, "").strip() for name in ("from", "to")}
        missing = [name for name, value in given.items() if not value]
        if missing:
            return _bad(
                f"give {' and '.join(missing)}: /api/v1/check?from=SYNCING/syncing"
                "&to=CUTOVERING/cutovering"
            )
        try:
            current = parse_pair(given["from"])
            requested = parse_request(given["to"])
        except InputError as exc:
            return _bad(str(exc))
        return web.json_response(self.planner.check(current, requested).to_dict())

    async def history(self, request: web.Request) -> web.Response:
        source_id = request.match_info["source_id"]
        try:
            validate_source_id(source_id)
        except InputError as exc:
            return _bad(str(exc))
        raw = request.rel_url.query.get("limit", "").strip()
        limit: int | None = None
        if raw:
            limit = int(raw) if raw.isdigit() else 0
            if not 1 <= limit <= _LIMIT_MAX:
                return _bad(f"limit must be an integer from 1 to {_LIMIT_MAX:,}, not {raw[:40]!r}")
        entries = await self.journal.history(source_id=source_id, limit=limit)
        body: dict[str, Any] = {
            "source_id": source_id,
            "entries": [e.to_dict() for e in entries],
        }
        return web.json_response(body)
