"""``sms-flow serve``: a validating gateway in front of SMS, a JSON API, a live dashboard
and metrics.

:mod:`.gateway` (the ``/v3`` routes and their error codes), :mod:`.access` (who may call
what), :mod:`.api` (``/api/v1``) and :mod:`.openapi` (its document), :mod:`.dashboard` (the
page at ``/`` and a source's history), :mod:`.app` (the service that holds them together and
serves :mod:`sms_flow.metrics` at ``/metrics``), :mod:`.cli` (the ``sms-flow serve`` command).
"""

from __future__ import annotations

from sms_flow.serve.access import ApiTokens, CallerKeys, Role
from sms_flow.serve.app import ServeConfig, Service
from sms_flow.serve.gateway import GatewayCode

__all__ = ["ApiTokens", "CallerKeys", "GatewayCode", "Role", "ServeConfig", "Service"]
