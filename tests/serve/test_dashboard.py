"""The dashboard of ``sms-flow serve`` (``sms_flow/serve/dashboard.py``): what the page shows
of the journal, a source's history, access by API token, and in a real browser (headless
Chromium) the page following a running wave without a reload."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from sms_flow.journal import Intent, Outcome
from sms_flow.serve import ApiTokens, Service
from sms_flow.simulator import Faults, Simulator
from sms_flow.wave import WaveSession
from tests.conftest import eventually
from tests.serve.conftest import SECRETS, SERVE_SIMULATOR, Browser, ServeFactory, in_thread
from tests.wave.conftest import RETRY, spec

pytestmark = SERVE_SIMULATOR

VIEWER = "viewer-token-" + "v" * 24
OPERATOR = "operator-token-" + "o" * 24
TOKENS = f"viewer:{VIEWER}, operator:{OPERATOR}"


def intent(source_id: str, from_state: str, to_state: str, **fields: Any) -> Intent:
    base: dict[str, Any] = {
        "source_id": source_id,
        "trigger": "start",
        "from_state": from_state,
        "to_state": to_state,
        "actor": "cli:alice",
        "reason": "wave 1 go-live",
        "wave": "w1",
    }
    return Intent(**{**base, **fields})


async def get(url: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, allow_redirects=False, **kwargs) as resp,
    ):
        return resp.status, await resp.text(), resp


def shown_counts(page: str) -> dict[str, int]:
    """The chart's counts on a page: copystate → number of sources."""
    found = re.findall(r'data-state="([A-Z_]+)">([\d,]+)<', page)
    return {state: int(n.replace(",", "")) for state, n in found}


async def test_the_page_counts_sources_by_state_and_shows_each_wave_with_its_failures(
    gateway: Service,
) -> None:
    journal = gateway.journal
    await journal.add_members("w1", ["a", "b", "c"])
    await journal.record(intent("a", "WAITING/checking", "REPLICATE/replicating"), Outcome.APPLIED)
    await journal.record(intent("b", "WAITING/checking", "REPLICATE/replicating"), Outcome.APPLIED)
    step = intent("b", "REPLICATE/replicating", "CUTOVERING/cutovering", trigger="cutover")
    failed = await journal.begin(step)
    await journal.settle(failed, Outcome.FAILED, error="HTTP 503: busy", request_id="r-503")
    await journal.begin(intent("c", "WAITING/checking", "WAITING/setting", trigger="configure"))
    status, page, resp = await get(gateway.url + "/")
    assert status == 200 and resp.content_type == "text/html"
    assert shown_counts(page) == {
        **dict.fromkeys(shown_counts(page), 0),
        "REPLICATE": 2,  # a, and b whose step out failed
        "WAITING": 1,  # c: its step is still open
    }
    assert 'data-count="sources">3<' in page and 'data-count="failing">1<' in page
    wave = page[page.index('data-wave="w1"') :]
    assert "<strong data-wave-members>3</strong>" in wave
    assert '<a href="/sources/b">b</a>: cutover failed — HTTP 503: busy' in wave
    # Nothing is loaded from another site: the page's own stylesheet and script.
    assert re.findall(r'(?:src|href)="(https?:[^"]*)"', page) == []
    for name in ("dashboard.css", "dashboard.js"):
        status, body, _ = await get(f"{gateway.url}/static/{name}")
        assert status == 200 and len(body) > 100
    status, data, _ = await get(gateway.url + "/dashboard.json")
    census = await journal.census(stuck_before=0)
    assert status == 200 and '"states": {"REPLICATE/replicating": 2' in data
    assert census.states == {"REPLICATE/replicating": 2, "WAITING/checking": 1}


async def test_a_source_page_shows_who_asked_why_the_outcome_and_the_request_id(
    gateway: Service,
) -> None:
    journal = gateway.journal
    await journal.record(
        intent("src-1", "WAITING/checking", "WAITING/setting", trigger="configure"),
        Outcome.APPLIED,
        request_id="req-applied-1",
    )
    step = intent("src-1", "WAITING/setting", "INIT/replicating", actor="ak:AKCALLER01",
                  reason="change CHG-42")  # fmt: skip
    failed = await journal.begin(step)
    await journal.settle(failed, Outcome.FAILED, request_id="req-failed-2", error="HTTP 500")
    status, page, _ = await get(gateway.url + "/sources/src-1")
    assert status == 200
    assert "Now: <strong data-state-now>WAITING/setting</strong>" in page
    rows = re.findall(r"<tr class=\"(\w+)\">(.*?)</tr>", page)
    assert [outcome for outcome, _ in rows] == ["failed", "applied"]  # newest first
    newest = rows[0][1]
    for shown in ("ak:AKCALLER01", "change CHG-42", "req-failed-2", "HTTP 500", "WAITING/setting"):
        assert shown in newest
    assert "cli:alice" in rows[1][1] and "req-applied-1" in rows[1][1]
    status, page, _ = await get(gateway.url + "/sources/nobody-here")
    assert status == 200 and "The journal holds nothing of this source." in page
    status, text, _ = await get(gateway.url + "/sources/" + "x" * 300)
    assert status == 400 and "source" in text.lower()


async def test_stuck_sources_are_those_in_a_state_past_the_threshold_final_states_apart(
    gateway: Service,
) -> None:
    journal = gateway.journal
    await journal.record(intent("fresh", "WAITING/checking", "WAITING/setting"), Outcome.APPLIED)
    await journal.record(intent("old", "WAITING/checking", "WAITING/setting"), Outcome.APPLIED)
    await journal.record(
        intent("done", "CUTOVERING/cutovering", "FINISHED/cutovered"), Outcome.APPLIED
    )
    # Two sources moved two hours ago: written so in the journal's file.
    path = Path(gateway.config.journal)  # type: ignore[arg-type]
    with sqlite3.connect(path) as conn:
        two_hours_ago = time.time() - 7200
        conn.execute(
            "UPDATE entries SET created_at = ?, settled_at = ? WHERE source_id IN ('old', 'done')",
            (two_hours_ago, two_hours_ago),
        )
    status, page, _ = await get(gateway.url + "/?stuck=3600")
    assert status == 200
    stuck = page[page.index('data-part="stuck"') :]
    assert '<a href="/sources/old">old</a></td><td>WAITING/setting</td><td>2 h 0 min' in stuck
    assert "/sources/fresh" not in stuck and "/sources/done" not in stuck
    assert 'data-count="stuck">1<' in page
    for bad in ("0", "soon", "-5"):
        status, text, _ = await get(gateway.url + f"/?stuck={bad}")
        assert status == 400
        assert f"stuck must be a number of seconds from 1 to 31622400, not '{bad}'" in text


async def test_with_api_tokens_the_page_asks_for_one_and_keeps_it_in_a_cookie(
    serve_factory: ServeFactory,
) -> None:
    service = await serve_factory(tokens=ApiTokens.parse(TOKENS))
    status, page, _ = await get(service.url + "/")
    assert status == 401 and '<form method="post" action="/login">' in page
    status, data, _ = await get(service.url + "/dashboard.json")
    assert status == 401 and "no API token" in data
    cookie = {"Cookie": "smsflow_token=" + "w" * 30}
    status, page, _ = await get(service.url + "/sources/a", headers=cookie)
    assert status == 401 and "That token is not valid" in page
    # A cookie jar that keeps cookies of an IP address, as a browser does.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            service.url + "/login",
            data={"token": "nope-" + "n" * 20, "next": "/"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 401 and "That token is not valid" in await resp.text()
        async with http.post(
            service.url + "/login",
            data={"token": VIEWER, "next": "//elsewhere.example/"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/"
            set_cookie = resp.headers["Set-Cookie"]
            assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        async with http.get(service.url + "/dashboard.json") as resp:  # the cookie is sent
            assert resp.status == 200 and (await resp.json())["sources"] == 0
    # A link with ?token= sets the cookie and drops the token from the address.
    status, _, resp = await get(service.url + f"/sources/a?token={OPERATOR}&x=1")
    assert status == 303 and resp.headers["Location"] == "/sources/a?x=1"
    assert f"smsflow_token={OPERATOR}" in resp.headers["Set-Cookie"]
    status, page, _ = await get(service.url + "/", headers={"Cookie": f"smsflow_token={VIEWER}"})
    assert status == 200 and "Statechart" in page
    for secret in SECRETS:
        assert secret not in page


# --- in a browser ----------------------------------------------------------------------------

_PAGE_COUNTS = """
const counts = {};
for (const e of document.querySelectorAll('#chart [data-state]')) {
  counts[e.dataset.state] = parseInt(e.textContent.replace(/,/g, ''), 10);
}
return counts;
"""


def page_counts(browser: Browser) -> dict[str, int]:
    counts: dict[str, int] = browser.driver.execute_script(_PAGE_COUNTS)
    return {state: n for state, n in counts.items() if n}


@pytest.mark.slow
@pytest.mark.simulator(faults=Faults(latency=0.15), seed=12)  # a wave of ~10 s
async def test_in_a_browser_the_page_follows_a_running_wave_and_opens_a_source(
    sim: Simulator, serve_factory: ServeFactory, browser: Browser, tmp_path: Path
) -> None:
    journal_path = tmp_path / "shared.sqlite"
    service = await serve_factory(journal=journal_path)
    ids = await sim.register_many(24, prefix="web")
    driver = browser.driver
    await in_thread(driver.get, service.url + "/")
    assert "sms-flow" in await in_thread(lambda: driver.title)
    await in_thread(driver.execute_script, "window.notReloaded = true;")
    assert await in_thread(page_counts, browser) == {}  # nothing journalled yet

    async def journal_counts() -> dict[str, int]:
        census = await service.journal.census(stuck_before=0)
        counts: dict[str, int] = {}
        for state, n in census.states.items():
            cs = state.partition("/")[0]
            counts[cs] = counts.get(cs, 0) + n
        return counts

    async with WaveSession(
        spec(name="watched", sources={"ids": ids}, concurrency=3),
        endpoint=sim.url,
        journal_path=journal_path,
        client_options=RETRY,
    ) as session:
        wave = asyncio.ensure_future(session.runner.run())
        try:
            # The page changes by itself while the wave runs: its sources appear on the way.
            def running_on_page() -> bool:
                if wave.done():
                    raise AssertionError("the wave ended before the page showed it running")
                counts = page_counts(browser)
                return sum(counts.values()) > 0 and counts.get("FINISHED", 0) < len(ids)

            await eventually(
                lambda: in_thread(running_on_page),
                timeout=30,
                what="the page to show the wave under way",
            )
            await in_thread(browser.screenshot, "dashboard-running.png")
            report = await wave
        finally:
            if not wave.done():
                wave.cancel()
    assert report.ok
    final = await journal_counts()
    assert final == {"FINISHED": len(ids)}

    async def page_matches_journal() -> bool:
        return await in_thread(page_counts, browser) == await journal_counts()

    await eventually(page_matches_journal, timeout=30, what="the page to match the journal")
    assert await in_thread(driver.execute_script, "return window.notReloaded === true;")
    wave_card = await in_thread(driver.find_element, By.CSS_SELECTOR, '[data-wave="watched"]')
    assert f"{len(ids)} sources" in await in_thread(lambda: wave_card.text)
    await in_thread(browser.screenshot, "dashboard.png")

    # Keyboard: the first Tab reaches the skip link, the next ones the section links.
    body = await in_thread(driver.find_element, By.TAG_NAME, "body")
    await in_thread(body.send_keys, Keys.TAB)
    focused = await in_thread(lambda: driver.switch_to.active_element.text)
    assert focused == "Skip to content"

    # One source's history: every step, who asked, and SMS's request ids.
    source = ids[0]
    await in_thread(driver.get, f"{service.url}/sources/{source}")
    rows = await in_thread(driver.find_elements, By.CSS_SELECTOR, "tbody tr")
    entries = await service.journal.history(source_id=source)
    assert len(rows) == len(entries) > 0
    newest = await in_thread(lambda: rows[0].text)
    assert entries[-1].actor in newest and (entries[-1].trigger or "") in newest
    request_ids = {e.request_id for e in entries if e.request_id}
    shown = await in_thread(lambda: " ".join(r.text for r in rows))
    assert request_ids and all(r in shown for r in request_ids)
    state = await in_thread(driver.find_element, By.CSS_SELECTOR, "[data-state-now]")
    assert await in_thread(lambda: state.text) == "FINISHED/cutovered"
    await in_thread(browser.screenshot, "dashboard-source.png")


async def test_a_page_shows_recent_counts_at_once_and_waits_for_new_ones_after_a_quiet_spell(
    gateway: Service,
) -> None:
    dashboard = gateway.dashboard
    assert dashboard is not None
    journal = gateway.journal
    await journal.add_members("w1", ["a", "b"])
    await journal.record(intent("a", "WAITING/checking", "WAITING/setting"), Outcome.APPLIED)
    await dashboard.recount()
    await journal.record(intent("b", "WAITING/checking", "WAITING/setting"), Outcome.APPLIED)
    # Counts a moment old are shown at once (the page says when they were taken).
    dashboard.refresh, dashboard.stale_after = 3600.0, 3600.0
    status, page, _ = await get(gateway.url + "/")
    assert status == 200 and shown_counts(page)["WAITING"] == 1
    # Counts older than stale_after are not shown: the page waits for a new count.
    dashboard.stale_after = 0.2
    await asyncio.sleep(0.3)
    status, page, _ = await get(gateway.url + "/")
    assert status == 200 and shown_counts(page)["WAITING"] == 2
    status, data, _ = await get(gateway.url + "/dashboard.json")
    assert '"WAITING/setting": 2' in data
