"""``/api/v1/openapi.json``: a valid OpenAPI 3.1 document, and every answer of every route in it.

Each answer is checked against the document: its status must be one the document gives for
the route and method, and its body must validate (JSON Schema 2020-12, the dialect of OpenAPI
3.1) against that answer's schema. The answers come from requests written out (each route's
success and its errors) and from requests hypothesis makes up (sent from a thread with the
standard library's HTTP client, while the service runs on the test's event loop).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from sms_flow.chart import default_chart
from sms_flow.planner import Planner
from sms_flow.serve import ApiTokens
from sms_flow.serve.api import Api
from sms_flow.serve.openapi import document
from sms_flow.simulator import Simulator
from tests.serve.conftest import SERVE_SIMULATOR, ServeFactory

pytestmark = SERVE_SIMULATOR

VIEWER, OPERATOR = "viewer-token-" + "v" * 24, "operator-token-" + "o" * 24
DOC = document()


@dataclass(frozen=True)
class Call:
    """One request: the route it is for (as the document names it) and what is sent."""

    route: str
    method: str
    path: str
    body: object = None
    token: str | None = OPERATOR


@dataclass
class Seen:
    route: str
    method: str
    status: int
    body: Any


def send(base: str, call: Call) -> Seen:
    """The request, with the standard library (synchronous: run it in a thread)."""
    data = None if call.body is None else json.dumps(call.body).encode()
    req = urllib.request.Request(base + call.path, data=data, method=call.method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if call.token is not None:
        req.add_header("Authorization", f"Bearer {call.token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return Seen(call.route, call.method, status, json.loads(raw))


def check_against_document(seen: Seen) -> None:
    """The answer's status is documented for its route, and its body fits that answer's schema."""
    operation = DOC["paths"][seen.route][seen.method.lower()]
    answers = operation["responses"]
    assert str(seen.status) in answers, (
        f"{seen.method} {seen.route} answered {seen.status}, which the document does not "
        f"give (it gives {sorted(answers)}): {seen.body}"
    )
    schema = answers[str(seen.status)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": DOC["components"]})
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(seen.body)
    ]
    assert not errors, f"{seen.method} {seen.route} {seen.status}: {errors}"


def test_the_document_is_valid_openapi_3_1() -> None:
    validate_spec(DOC)
    assert DOC["openapi"].startswith("3.1")


async def test_the_document_is_served_and_names_every_route(serve_factory: ServeFactory) -> None:
    service = await serve_factory(tokens=ApiTokens.parse(f"viewer:{VIEWER}"))
    seen = await asyncio.to_thread(
        send, service.url, Call("/api/v1/openapi.json", "GET", "/api/v1/openapi.json", None, VIEWER)
    )
    assert (seen.status, seen.body) == (200, DOC)
    api = Api(Planner(default_chart()), service.journal)
    served = {(path, method.lower()) for method, path, _, _ in api.routes()}
    documented = {(path, method) for path, ops in DOC["paths"].items() for method in ops}
    assert served == documented


def written_calls(sid: str, frozen: str) -> list[Call]:
    """Each route's success and its errors."""
    src, hist = "/api/v1/sources/{source_id}", "/api/v1/sources/{source_id}/history"
    changes, wave = "/api/v1/sources/{source_id}/changes", "/api/v1/waves/{name}"
    check, plan = "/api/v1/check", "/api/v1/plan"
    pair = {"from": "SYNCING/syncing", "to": "CUTOVERING"}
    return [
        Call(check, "GET", "/api/v1/check?from=SYNCING/syncing&to=CUTOVERING"),
        Call(check, "GET", "/api/v1/check?from=SYNCING/syncing&to=FINISHED/cutovered"),
        Call(check, "GET", "/api/v1/check?from=NOWHERE/x&to=INIT"),
        Call(check, "GET", "/api/v1/check", token=None),
        Call(check, "POST", check, pair),
        Call(check, "POST", check, [pair]),
        Call(plan, "POST", plan, pair),
        Call(plan, "POST", plan, {"from": "SYNCING/syncing", "to": "SYNCING/cutovered"}),
        Call(plan, "POST", plan, {"from": "SYNCING/syncing"}),
        Call(plan, "POST", plan, pair, token="not-a-token"),
        Call(src, "GET", f"/api/v1/sources/{sid}"),
        Call(src, "GET", "/api/v1/sources/no-such-source"),
        Call(src, "GET", "/api/v1/sources/" + "x" * 300),
        Call(src, "GET", "/api/v1/sources/%0A%7B"),  # no route matches: 404 in the same shape
        Call(hist, "GET", f"/api/v1/sources/{sid}/history?limit=5&outcome=applied"),
        Call(hist, "GET", f"/api/v1/sources/{sid}/history?limit=0"),
        Call(changes, "POST", f"/api/v1/sources/{sid}/changes", {"to": "SYNCING"}, VIEWER),
        Call(changes, "POST", f"/api/v1/sources/{sid}/changes", {"to": "SYNCING", "actor": "a"}),
        Call(changes, "POST", f"/api/v1/sources/{sid}/changes", {"to": "SYNCING"}),  # noop
        Call(changes, "POST", f"/api/v1/sources/{sid}/changes", {"to": "FINISHED/cutovered"}),
        Call(
            changes,
            "POST",
            f"/api/v1/sources/{sid}/changes",
            {"to": "FINISHED/cutovered", "path": True, "yes": True},
        ),
        Call(changes, "POST", f"/api/v1/sources/{frozen}/changes", {"to": "SYNCING"}),
        Call(changes, "POST", "/api/v1/sources/no-such-source/changes", {"to": "SYNCING"}),
        Call(changes, "POST", f"/api/v1/sources/{sid}/changes", {"to": 7}),
        Call("/api/v1/waves", "GET", "/api/v1/waves"),
        Call("/api/v1/waves", "GET", "/api/v1/waves", token="wrong-token-" + "w" * 20),
        Call(wave, "GET", "/api/v1/waves/w1"),
        Call(wave, "GET", "/api/v1/waves/w2"),
        Call("/api/v1/openapi.json", "GET", "/api/v1/openapi.json", token=None),
        Call("/api/v1/openapi.json", "GET", "/api/v1/openapi.json", token=VIEWER),
    ]


async def test_every_written_answer_is_in_the_document(
    sim: Simulator, serve_factory: ServeFactory
) -> None:
    service = await serve_factory(tokens=ApiTokens.parse(f"viewer:{VIEWER},operator:{OPERATOR}"))
    sid, frozen = await sim.register("doc-01"), await sim.register("doc-02")
    await sim.move(sid, pair=("REPLICATE", "replicating"))
    await sim.move(frozen, pair=("STOPPING", "replicating"))
    await service.journal.add_members("w1", [sid, frozen], endpoint=sim.url)
    seen = [await asyncio.to_thread(send, service.url, call) for call in written_calls(sid, frozen)]
    for answer in seen:
        check_against_document(answer)
    statuses = {(s.route, s.method, s.status) for s in seen}
    # each route answered with success and at least one error
    for route, ops in DOC["paths"].items():
        for method in ops:
            got = {status for r, m, status in statuses if (r, m.lower()) == (route, method)}
            assert 200 in got and any(s >= 400 for s in got), (route, method, got)


# -- requests hypothesis makes up ---------------------------------------------------------

_STATES = ["SYNCING/syncing", "WAITING/checking", "CUTOVERING", "/cutovered", "nope", "", "A/b"]
_text = st.one_of(st.sampled_from(_STATES), st.text(max_size=20))
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_pair_body = st.one_of(
    st.fixed_dictionaries({"from": _text, "to": _text}),
    st.dictionaries(st.sampled_from(["from", "to", "x"]), _json, max_size=3),
    _json,
)
_change_body = st.one_of(
    st.fixed_dictionaries(
        {"to": _text},
        optional={
            "path": st.booleans() | _json,
            "yes": st.booleans(),
            "allow": st.lists(st.sampled_from(["cutover", "finish", "x"]), max_size=2) | _json,
            "actor": _text,
            "reason": _text,
        },
    ),
    _json,
)
_segment = st.one_of(
    st.sampled_from(["SID", "no-such-source", "w1", "x" * 70]), st.text(max_size=12)
)
_query = st.dictionaries(
    st.sampled_from(["from", "to", "limit", "since", "until", "outcome", "actor", "zz"]),
    st.one_of(_text, st.sampled_from(["2h", "1", "0", "applied", "2026-12-01"])),
    max_size=4,
)
_token = st.sampled_from([None, VIEWER, OPERATOR, "wrong-token"])


@st.composite
def calls(draw: st.DrawFn, sid: str) -> Call:
    route = draw(st.sampled_from(sorted((p, m) for p, ops in DOC["paths"].items() for m in ops)))
    template, method = route
    segment = draw(_segment).replace("SID", sid)
    path = template.replace("{source_id}", urllib.parse.quote(segment, safe="")).replace(
        "{name}", urllib.parse.quote(segment, safe="")
    )
    if not segment:  # an empty segment is another route: keep the one drawn
        path = template.replace("{source_id}", sid).replace("{name}", "w1")
    query = draw(_query) if method == "get" else {}
    if query:
        path += "?" + urllib.parse.urlencode(query)
    body: object = None
    if method == "post":
        body = draw(_change_body if template.endswith("/changes") else _pair_body)
    return Call(template, method.upper(), path, body, draw(_token))


HISTORY = "/api/v1/sources/{source_id}/history"
SOURCE = "/api/v1/sources/{source_id}"
WAVE = "/api/v1/waves/{name}"


async def test_every_made_up_answer_is_in_the_document(
    sim: Simulator, serve_factory: ServeFactory
) -> None:
    service = await serve_factory(tokens=ApiTokens.parse(f"viewer:{VIEWER},operator:{OPERATOR}"))
    sid = await sim.register("fuzz-01")
    await sim.move(sid, pair=("SYNCING", "syncing"))
    await service.journal.add_members("w1", [sid], endpoint=sim.url)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(calls(sid))
    # Found by CI: a brace in a path segment did not reach the handler (aiohttp's default
    # pattern leaves braces out), so the catch-all answered an undocumented 404.
    @example(Call(HISTORY, "GET", "/api/v1/sources/%7B/history", None, VIEWER))
    @example(Call(SOURCE, "GET", "/api/v1/sources/a%7Db", None, VIEWER))
    @example(Call(WAVE, "GET", "/api/v1/waves/%7Bw%7D", None, VIEWER))
    def answers_fit(call: Call) -> None:
        check_against_document(send(service.url, call))

    await asyncio.to_thread(answers_fit)
