"""An SMS-compatible simulator: a real aiohttp server on loopback, for tests and demos.

It answers what sms-flow (and the official SDK) call, like the documented service:

* ``PUT /v3/sources/{id}/changestate``: ``200 {}``; either field may be left out (it keeps
  its value); both enum spellings accepted (``WAITING``/``clearing`` and all lower case,
  ``initialize`` = INIT); ignored with ``200 {}`` while the source is frozen (unavailable,
  stopping, stopped, deleting, finished, clearing, clearfailed).
* ``GET /v3/sources/{id}``, ``GET /v3/sources?state=&migration_cycle=&name=&id=&limit=&offset=``
  (``state`` in lower case, ``initialize`` for INIT, as the read side spells it),
  ``POST /v3/sources`` (register).
* Auth as configured: ``X-Auth-Token``, or an ``SDK-HMAC-SHA256`` signature with
  ``X-Project-Id``; a refusal is ``403 SMS.9004`` in the documented body shape.
* ``X-Request-Id`` on every answer; the limits and error bodies of the API.
* The service's own moves (``by: service`` edges such as stopping → stopped) after
  ``service_delay`` seconds; ``strict`` mode refuses changes the chart does not permit.
* Faults on demand (latency, drops, 429, 5xx, applied-then-503), seeded for repeatable runs.
* A history of applied changes per source; an optional SQLite state file.

Test controls, never faulted: ``GET /_simulator/sources/{id}``,
``GET /_simulator/sources/{id}/history``, ``POST /_simulator/sources/{id}/move``
(``{"trigger": "resume"}`` or ``{"copystate": …, "migrationcycle": …}``),
``POST /_simulator/sources`` (``{"name": …}`` or ``{"count": N, "prefix": P}``),
``GET /_simulator/stats``, ``GET``/``PUT /_simulator/faults``. Open when no credentials are
configured; with a token or AK/SK they need the same credentials, or the control token
(``control_token``) in ``X-Auth-Token``, else ``403 SMS.9004``. The Python API
(:meth:`Simulator.register`, :meth:`Simulator.move` …) needs nothing.

Safe to leave running: a header timeout, a cap on open connections (the longest idle one
makes room for a newcomer), and a non-loopback ``host`` only with credentials
(:class:`SimulatorConfig`).

The error codes are listed in :mod:`sms_flow.simulator.app` (:class:`ErrorCode`); the
``SMS.SIM*`` ones are the simulator's own.

Run it from Python (``async with Simulator(SimulatorConfig(...)) as sim``), from the
command line (``sms-flow simulator`` or ``python -m sms_flow.simulator``), or in pytest
through the :mod:`sms_flow.testing` plugin.

The names below are imported when first used, so that ``sms_flow.simulator.faults`` (the
fault definitions that ``sms-flow``'s options and wave files share) imports alone, without
aiohttp and the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "ErrorCode": "sms_flow.simulator.app",
    "SimulatorStats": "sms_flow.simulator.app",
    "SimulatorConfig": "sms_flow.simulator.config",
    "Faults": "sms_flow.simulator.faults",
    "Simulator": "sms_flow.simulator.server",
    "HistoryEntry": "sms_flow.simulator.store",
    "MovedBy": "sms_flow.simulator.store",
    "SourceSnapshot": "sms_flow.simulator.store",
}

if TYPE_CHECKING:
    from sms_flow.simulator.app import ErrorCode, SimulatorStats
    from sms_flow.simulator.config import SimulatorConfig
    from sms_flow.simulator.faults import Faults
    from sms_flow.simulator.server import Simulator
    from sms_flow.simulator.store import HistoryEntry, MovedBy, SourceSnapshot


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sms_flow.simulator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ErrorCode",
    "Faults",
    "HistoryEntry",
    "MovedBy",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "SourceSnapshot",
]
