"""The live dashboard of ``sms-flow serve``: server-rendered pages that update themselves.

Routes (:meth:`Dashboard.routes`):

* ``GET /[?stuck=SECONDS]``: every wave with its counts per state and its failures; the
  statechart laid out in HTML (a box per copystate, grouped as the chart groups them, with
  the number of sources in it now, its cycles and where it leads); the sources in a state
  for longer than ``stuck`` seconds (default :data:`DEFAULT_STUCK`), the chart's final
  states apart.
* ``GET /dashboard.json[?stuck=SECONDS]``: the same parts as HTML fragments with the counts,
  which the page's script (``static/dashboard.js``) fetches every few seconds to replace
  what changed, without a reload.
* ``GET /sources/{source_id}``: one source's journal history, newest first: who asked,
  why, the outcome, SMS's request id.
* ``GET /login`` and ``POST /login``: when API tokens are configured, a form that takes a
  ``viewer`` (or ``operator``) token and keeps it in an HTTP-only cookie; a page may also
  be opened with ``?token=...`` once, which sets the cookie the same way.
* ``GET /static/...``: the page's stylesheet and script (package data; nothing is loaded
  from another site, so the page works on an isolated network).

Counts come from the journal's :meth:`~sms_flow.journal.Journal.census` and
:meth:`~sms_flow.journal.Journal.wave_status`, counted in storage (on a connection of the
dashboard's own, :meth:`Dashboard.add_to`). Every viewer is answered at once from the latest
snapshot of those counts; when it is over :attr:`Dashboard.refresh` seconds old, a request
starts a new one in the background (one at a time), so the journal counts at most once per
interval however many pages are open, and not at all while none is. A request waits for
the counts only when there are none for its ``stuck`` threshold yet, or only counts over
:attr:`Dashboard.stale_after` seconds old (the first page after a quiet spell shows the
journal as it is, not as it was). No SMS credential is ever part of a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Final
from urllib.parse import quote

from aiohttp import web

from sms_flow.chart import Chart
from sms_flow.errors import InputError
from sms_flow.journal import Census, Entry, Journal, WaveStatus, iso_utc
from sms_flow.journal_sqlite import SqliteJournal
from sms_flow.log import get_logger
from sms_flow.serve.access import ApiTokens, Role
from sms_flow.wire import validate_source_id

__all__ = ["COOKIE", "DEFAULT_STUCK", "Dashboard"]

DEFAULT_STUCK: Final = 3600
"""Seconds in one state after which a source is listed as stuck (``?stuck=`` changes it)."""
COOKIE: Final = "smsflow_token"
"""The cookie that holds the API token a viewer logged in with."""
_SHOWN: Final = 20  # failures per wave and stuck sources shown
_HISTORY_SHOWN: Final = 500
_THRESHOLDS_KEPT: Final = 8  # stuck thresholds with a snapshot kept
_STALE_AFTER: Final = 10.0  # seconds; at least, see Dashboard.stale_after
_STUCK_MAX: Final = 366 * 86_400
_STATIC: Final = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}

_log = get_logger("sms_flow.serve")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def _source_link(source_id: str) -> str:
    return f'<a href="/sources/{quote(source_id, safe="")}">{_e(source_id)}</a>'


@dataclass(frozen=True, slots=True)
class _Snapshot:
    taken: float
    census: Census
    waves: list[WaveStatus]


class Dashboard:
    """The dashboard's handlers over a journal and a chart (see the module docstring)."""

    def __init__(
        self, journal: Journal, chart: Chart, tokens: ApiTokens, *, refresh: float = 2.0
    ) -> None:
        self.journal = journal
        self.chart = chart
        self.tokens = tokens
        self.refresh = refresh
        """Seconds a snapshot of the journal is shared, and how often the page asks again."""
        self.stale_after = max(_STALE_AFTER, 5 * refresh)
        """Seconds after which a snapshot is too old to show while a new one is counted: a
        page then waits for the new count (after a quiet spell, nobody is shown old counts)."""
        self._snapshots: dict[int, _Snapshot] = {}
        self._taking: dict[int, asyncio.Future[_Snapshot]] = {}
        self._reader: SqliteJournal | None = None
        self._settled = [str(p) for p in chart.pairs if chart.is_final(p)]

    def add_to(self, app: web.Application) -> None:
        """Register the routes on ``app``, and open (and close) a journal reader of its own
        with it when the journal is a SQLite file: a second connection, so that counting
        never waits on (or holds up) the writes of the gateway's connection."""
        app.router.add_routes(self.routes())
        app.on_startup.append(self._open_reader)
        app.on_cleanup.append(self._close)

    async def _open_reader(self, _: web.Application) -> None:
        if isinstance(self.journal, SqliteJournal):
            reader = SqliteJournal(self.journal.path, quick_check=False)
            await reader.open()
            self._reader = reader

    def _start_taking(self, stuck: int) -> asyncio.Future[_Snapshot]:
        task = self._taking.get(stuck)
        if task is None:
            task = self._taking[stuck] = asyncio.ensure_future(self._take(stuck))
            task.add_done_callback(_log_failure)
        return task

    async def _close(self, _: web.Application) -> None:
        for task in list(self._taking.values()):
            task.cancel()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self._guard(self.index)),
            web.get("/dashboard.json", self._guard(self.update)),
            web.get("/sources/{source_id:[^/]+}", self._guard(self.source)),
            web.get("/login", self.login_form),
            web.post("/login", self.login),
            web.get("/static/{name}", self.static),
        ]

    # --- access --------------------------------------------------------------------------

    def _guard(self, handler: Handler) -> Handler:
        tokens = self.tokens

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not tokens.enabled:
                return await handler(request)
            given = request.rel_url.query.get("token")
            from_query = given is not None
            if given is None:
                given = request.cookies.get(COOKIE, "")
            refusal = tokens.check({"Authorization": f"Bearer {given}"}, Role.VIEWER)
            if refusal is not None:
                if request.path.endswith(".json"):
                    return web.json_response(
                        {"error_code": "SMSFLOW.0007", "error_msg": refusal.reason},
                        status=refusal.status,
                    )
                return self._login_page(
                    request.path_qs if not from_query else request.path,
                    "That token is not valid; give a viewer or operator token." if given else "",
                    status=refusal.status,
                )
            if from_query:  # keep it in the cookie, and out of the address bar
                query = request.rel_url.query.copy()
                del query["token"]
                resp = _see_other(request.rel_url.with_query(query).path_qs)
                _set_cookie(resp, given, request.secure)
                return resp
            return await handler(request)

        return guarded

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return self._login_page(request.rel_url.query.get("next", "/"), "")

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        target = _local(str(form.get("next", "/")))
        if self.tokens.enabled:
            refusal = self.tokens.check({"Authorization": f"Bearer {token}"}, Role.VIEWER)
            if refusal is not None:
                return self._login_page(
                    target, "That token is not valid; give a viewer or operator token.", 401
                )
        resp = _see_other(target)
        _set_cookie(resp, token, request.secure)
        return resp

    def _login_page(self, target: str, problem: str, status: int = 200) -> web.Response:
        note = f'<p class="problem" role="alert">{_e(problem)}</p>' if problem else ""
        body = f"""<main class="login">
<h1>sms-flow</h1>
<p>This dashboard needs an API token (a <code>viewer</code> or <code>operator</code> token
from <code>SMS_FLOW_SERVE_TOKENS</code>), not a cloud credential.</p>
{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{_e(_local(target))}">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open the dashboard</button>
</form>
</main>"""
        return _page("sms-flow: log in", body, status=status, script=False)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = _STATIC.get(name)
        if kind is None:
            raise web.HTTPNotFound(text=f"no static file {name!r}; there are {', '.join(_STATIC)}")
        data = files("sms_flow.serve").joinpath("static", name).read_bytes()
        return web.Response(body=data, content_type=kind, headers={"Cache-Control": "no-cache"})

    # --- the data ------------------------------------------------------------------------

    def _stuck(self, request: web.Request) -> int:
        raw = request.rel_url.query.get("stuck", "").strip()
        if not raw:
            return DEFAULT_STUCK
        if not raw.isdigit() or not 1 <= int(raw) <= _STUCK_MAX:
            raise web.HTTPBadRequest(
                text=f"stuck must be a number of seconds from 1 to {_STUCK_MAX}, not {raw[:40]!r}"
            )
        return int(raw)

    async def snapshot(self, stuck: int) -> _Snapshot:
        """The journal's counts for ``stuck``: the latest snapshot at once, taking a new one
        in the background when it is over :attr:`refresh` seconds old (one at a time); a
        request waits for the counts when there is no snapshot yet, or only one over
        :attr:`stale_after` seconds old."""
        known = self._snapshots.get(stuck)
        task = self._taking.get(stuck)
        if known is not None and (age := time.time() - known.taken) < self.stale_after:
            if task is None and age >= self.refresh:
                self._start_taking(stuck)
            return known
        return await asyncio.shield(task or self._start_taking(stuck))

    async def recount(self, stuck: int = DEFAULT_STUCK) -> None:
        """Count the journal for ``stuck`` now (after a count under way, which may have begun
        before the latest writes) and wait for it: the pages show these counts from then on."""
        under_way = self._taking.get(stuck)
        if under_way is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(under_way)
        await asyncio.shield(self._start_taking(stuck))

    async def _take(self, stuck: int) -> _Snapshot:
        try:
            journal = self._reader or self.journal
            now = time.time()
            # The census and each wave counted side by side: on PostgreSQL each on a
            # connection of the pool (the first page waits for the longest, not the sum); on
            # the SQLite reader one after another, as its one connection takes them.
            names = await journal.waves()
            census, waves = await asyncio.gather(
                journal.census(stuck_before=now - stuck, settled=self._settled, shown=_SHOWN),
                asyncio.gather(*(journal.wave_status(w, shown=_SHOWN) for w in names)),
            )
            snap = _Snapshot(now, census, list(waves))
            if len(self._snapshots) >= _THRESHOLDS_KEPT and stuck not in self._snapshots:
                self._snapshots.pop(min(self._snapshots, key=lambda k: self._snapshots[k].taken))
            self._snapshots[stuck] = snap
            return snap
        finally:
            self._taking.pop(stuck, None)

    # --- pages ---------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        stuck = self._stuck(request)
        snap = await self.snapshot(stuck)
        parts = self._parts(snap, stuck)
        body = f"""<header>
<h1>sms-flow</h1>
<p class="summary"><span data-part="summary">{parts["summary"]}</span>
<span class="live" aria-live="polite" data-updated>updated {_e(iso_utc(snap.taken))}</span></p>
<nav aria-label="Sections"><a href="#waves">Waves</a> <a href="#chart">Statechart</a>
<a href="#stuck">Stuck sources</a></nav>
</header>
<main data-stuck="{stuck}" data-refresh="{self.refresh}">
<section id="waves" aria-labelledby="waves-h"><h2 id="waves-h">Waves</h2>
<div data-part="waves">{parts["waves"]}</div></section>
<section id="chart" aria-labelledby="chart-h"><h2 id="chart-h">Statechart: sources in each state now</h2>
<div data-part="chart">{parts["chart"]}</div></section>
<section id="stuck" aria-labelledby="stuck-h"><h2 id="stuck-h">Sources stuck for more than {_e(_age(stuck))}</h2>
<form method="get" action="/" class="stuck-form"><label for="stuck-s">Stuck after (seconds)</label>
<input id="stuck-s" name="stuck" type="number" min="1" value="{stuck}"> <button type="submit">Show</button></form>
<div data-part="stuck">{parts["stuck"]}</div></section>
</main>"""
        return _page("sms-flow dashboard", body)

    async def update(self, request: web.Request) -> web.StreamResponse:
        stuck = self._stuck(request)
        snap = await self.snapshot(stuck)
        census = snap.census
        return web.json_response(
            {
                "updated": iso_utc(snap.taken),
                "sources": census.sources,
                "states": census.states,
                "failing": census.failing,
                "stuck": census.stuck_count,
                "waves": {
                    w.wave: {"members": w.members, "states": w.states, "failed": w.failed}
                    for w in snap.waves
                },
                "html": self._parts(snap, stuck),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def source(self, request: web.Request) -> web.StreamResponse:
        source_id = request.match_info["source_id"]
        try:
            validate_source_id(source_id)
        except InputError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        entries = await self.journal.history(source_id=source_id, limit=_HISTORY_SHOWN)
        rows = "".join(_history_row(e) for e in reversed(entries))
        now_state = _state_of(entries)
        table = (
            '<div class="scroll"><table><caption>Newest first</caption><thead><tr>'
            "<th scope=col>When (UTC)</th><th scope=col>Step</th><th scope=col>From → to</th>"
            "<th scope=col>Who asked</th><th scope=col>Why</th><th scope=col>Outcome</th>"
            "<th scope=col>Request id</th><th scope=col>Wave</th><th scope=col>Error</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></div>"
            if entries
            else "<p>The journal holds nothing of this source.</p>"
        )
        body = f"""<header><nav><a href="/">← Dashboard</a></nav>
<h1>Source <code>{_e(source_id)}</code></h1>
<p class="summary">Now: <strong data-state-now>{_e(now_state)}</strong> ·
{len(entries)} journal entr{"y" if len(entries) == 1 else "ies"}{" (the latest)" if len(entries) == _HISTORY_SHOWN else ""}</p>
</header>
<main><section aria-labelledby="hist-h"><h2 id="hist-h">History</h2>{table}</section></main>"""
        return _page(f"sms-flow: {source_id}", body, script=False)

    # --- fragments -----------------------------------------------------------------------

    def _parts(self, snap: _Snapshot, stuck: int) -> dict[str, str]:
        census = snap.census
        failing = sum(census.failing.values())
        summary = (
            f'<strong data-count="sources">{census.sources:,}</strong> sources · '
            f'<strong data-count="failing">{failing:,}</strong> failing · '
            f'<strong data-count="stuck">{census.stuck_count:,}</strong> stuck · '
            f"{len(snap.waves)} wave{'s' if len(snap.waves) != 1 else ''}"
        )
        return {
            "summary": summary,
            "chart": self._chart(census),
            "waves": "".join(_wave(w) for w in snap.waves) or "<p>No waves in the journal yet.</p>",
            "stuck": _stuck_table(census, snap.taken),
        }

    def _chart(self, census: Census) -> str:
        by_copystate: dict[str, int] = {}
        failing: dict[str, int] = {}
        by_pair = census.states
        for state, n in by_pair.items():
            cs = state.partition("/")[0]
            by_copystate[cs] = by_copystate.get(cs, 0) + n
            failing[cs] = failing.get(cs, 0) + census.failing.get(state, 0)
        leads: dict[str, list[str]] = {}
        for edge in self.chart.edges:
            src, dst = edge.source.copystate.value, edge.dest.copystate.value
            if dst != src and dst not in leads.setdefault(src, []):
                leads[src].append(dst)
        groups: dict[str, list[str]] = {}
        for info in self.chart.states.values():
            cs = info.copystate.value
            n = by_copystate.get(cs, 0)
            cycles = "".join(
                f"<li>{_e(c.value)} <span>{by_pair.get(f'{cs}/{c.value}', 0):,}</span></li>"
                for c in info.cycles
            )
            flags = (" ❄ frozen" if info.frozen else "") + (" ✓ final" if info.final else "")
            fail = (
                f'<p class="fail" data-failing="{_e(cs)}">{failing[cs]:,} failing</p>'
                if failing.get(cs)
                else ""
            )
            nxt = ", ".join(leads.get(cs, [])) or "—"
            groups.setdefault(info.group, []).append(
                f'<article class="state{" empty" if not n else ""}{" frozen" if info.frozen else ""}" '
                f'aria-label="{_e(cs)}: {n} sources">'
                f"<h4>{_e(cs)}<small>{flags}</small></h4>"
                f'<p class="count" data-state="{_e(cs)}">{n:,}</p>{fail}'
                f'<ul class="cycles">{cycles}</ul><p class="next">→ {_e(nxt)}</p></article>'
            )
        other = sorted(set(by_copystate) - {i.copystate.value for i in self.chart.states.values()})
        for cs in other:  # a state the chart does not know (e.g. "unknown")
            groups.setdefault("other", []).append(
                f'<article class="state" aria-label="{_e(cs)}: {by_copystate[cs]} sources">'
                f'<h4>{_e(cs)}</h4><p class="count" data-state="{_e(cs)}">{by_copystate[cs]:,}</p></article>'
            )
        return "".join(
            f'<div class="group"><h3>{_e(group)}</h3><div class="states">{"".join(cards)}</div></div>'
            for group, cards in groups.items()
        )


def _wave(w: WaveStatus) -> str:
    counts = "".join(
        f'<li><span class="st">{_e(state)}</span> <strong data-wave-state="{_e(state)}">{n:,}</strong></li>'
        for state, n in sorted(w.states.items(), key=lambda kv: -kv[1])
    )
    failures = "".join(
        f"<li>{_source_link(e.source_id)}: {_e(e.trigger or '?')} {_e(e.outcome.value)}"
        f"{' — ' + _e(e.error) if e.error else ''}</li>"
        for e in w.failures
    )
    more = f"<p>and {w.failed - len(w.failures):,} more</p>" if w.failed > len(w.failures) else ""
    fails = (
        f'<details><summary>{w.failed:,} failing</summary><ul class="failures">{failures}</ul>{more}</details>'
        if w.failed
        else "<p>No failures.</p>"
    )
    last = iso_utc(w.last_activity) if w.last_activity is not None else "never"
    return (
        f'<article class="wave" data-wave="{_e(w.wave)}"><h3>{_e(w.wave)}</h3>'
        f'<p class="big"><strong data-wave-members>{w.members:,}</strong> sources · '
        f"<strong data-wave-failed>{w.failed:,}</strong> failing · {w.open_intents:,} open · "
        f"last activity {_e(last)}</p>"
        f'<ul class="wave-states">{counts}</ul>{fails}</article>'
    )


def _stuck_table(census: Census, now: float) -> str:
    if not census.stuck:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr><td>{_source_link(s.source_id)}</td><td>{_e(s.state)}</td>"
        f"<td>{_e(_age(now - s.since))}</td><td>{_e(s.outcome.value)}</td><td>{_e(s.wave or '')}</td></tr>"
        for s in census.stuck
    )
    more = (
        f"<p>The {len(census.stuck)} longest of {census.stuck_count:,}.</p>"
        if census.stuck_count > len(census.stuck)
        else ""
    )
    return (
        '<div class="scroll"><table><thead><tr><th scope=col>Source</th><th scope=col>State</th>'
        "<th scope=col>For</th><th scope=col>Last outcome</th><th scope=col>Wave</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>{more}"
    )


def _history_row(e: Entry) -> str:
    return (
        f'<tr class="{_e(e.outcome.value)}"><td>{_e(iso_utc(e.created_at))}</td>'
        f"<td>{_e(e.trigger or '')}</td><td>{_e(e.from_state)} → {_e(e.to_state)}</td>"
        f"<td>{_e(e.actor)}</td><td>{_e(e.reason or '')}</td><td>{_e(e.outcome.value)}</td>"
        f"<td><code>{_e(e.request_id or '')}</code></td><td>{_e(e.wave or '')}</td>"
        f"<td>{_e(e.error or '')}</td></tr>"
    )


def _state_of(entries: list[Entry]) -> str:
    for e in reversed(entries):
        if e.outcome.value in ("applied", "observed"):
            return e.to_state
    return entries[-1].from_state if entries else "unknown"


def _local(target: str) -> str:
    """``target`` when it is a path on this site, else ``/`` (no redirect elsewhere)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _set_cookie(resp: web.StreamResponse, token: str, secure: bool) -> None:
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/")


def _page(title: str, body: str, *, status: int = 200, script: bool = True) -> web.Response:
    js = '<script src="/static/dashboard.js" defer></script>' if script else ""
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="stylesheet" href="/static/dashboard.css">{js}
</head><body>
<a class="skip" href="#main">Skip to content</a>
<div id="main">{body}</div>
</body></html>"""
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
        },
    )


def _log_failure(task: asyncio.Future[_Snapshot]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        _log.warning("dashboard.counts_failed", error=str(exc))


def _see_other(target: str) -> web.Response:
    return web.Response(status=303, headers={"Location": target})
