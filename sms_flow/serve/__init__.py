"""``sms-flow serve``: a validating gateway in front of SMS, its metrics and a JSON API.

:mod:`.gateway` (the ``/v3`` routes and their error codes), :mod:`.access` (who may call
what), :mod:`.metrics` (``/metrics``), :mod:`.api` (``/api/v1``), :mod:`.app` (the service
that holds them together), :mod:`.cli` (the ``sms-flow serve`` command).
"""

from __future__ import annotations

from sms_flow.serve.access import ApiTokens, CallerKeys, Role
from sms_flow.serve.app import ServeConfig, Service
from sms_flow.serve.gateway import GatewayCode

__all__ = ["ApiTokens", "CallerKeys", "GatewayCode", "Role", "ServeConfig", "Service"]
