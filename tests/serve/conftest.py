"""Shared by the ``sms-flow serve`` tests: credentials, and the service in front of ``sim``.

The simulator behind the gateway (``sim``, the suite's own) takes an IAM token (``SIM_TOKEN``,
which token callers send and the gateway passes on) and the gateway's own AK/SK
(``GW_AK``/``GW_SK``/``GW_PROJECT``). Callers of the gateway sign with their own key
(``CALLER_AK``/``CALLER_SK``/``CALLER_PROJECT``), which only the gateway knows.

``serve_factory(**fields)`` starts a :class:`~sms_flow.serve.Service` in front of ``sim``
(loopback, any free port, a journal in ``tmp_path``), configured with ``fields`` of
:class:`~sms_flow.serve.ServeConfig` over those defaults; every service is stopped at
teardown. ``gateway`` is one with the defaults. ``sdk_client(url)`` is the official
``huaweicloudsdksms`` client pointed at ``url`` (the caller's key unless told otherwise);
``in_thread`` runs its synchronous calls off the event loop. ``browser`` is a headless
Chromium driven by Selenium (:class:`Browser`; skipped with the reason "no browser" where
none is installed, a failure then when ``SMS_FLOW_REQUIRE_BROWSER=1``); its calls go through
``in_thread`` too, since the pages it loads are served by the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdksms.v3 import SmsClient as SdkClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.remote.webdriver import WebDriver

from sms_flow.auth import AkSkAuth
from sms_flow.retry import RetryPolicy
from sms_flow.serve import CallerKeys, ServeConfig, Service
from sms_flow.simulator import Simulator

SIM_TOKEN = "sim-token-" + "S" * 40
GW_AK, GW_SK, GW_PROJECT = "AKGATEWAYOWN", "SK-gateway-own-secret-0123", "gwproject01"
CALLER_AK, CALLER_SK, CALLER_PROJECT = "AKCALLER01", "SK-caller-secret-4567", "callerproj01"
SECRETS = (SIM_TOKEN, GW_SK, CALLER_SK)

SERVE_SIMULATOR = pytest.mark.simulator(token=SIM_TOKEN, ak=GW_AK, sk=GW_SK, project_id=GW_PROJECT)
"""The ``sim`` behind the gateway (every serve test module uses it as its ``pytestmark``)."""

ServeFactory = Callable[..., Awaitable[Service]]
T = TypeVar("T")


@pytest.fixture
async def serve_factory(sim: Simulator, tmp_path: Path) -> AsyncIterator[ServeFactory]:
    started: list[Service] = []

    async def factory(**fields: Any) -> Service:
        defaults: dict[str, Any] = {
            "endpoint": sim.url,
            "auth": AkSkAuth(GW_AK, GW_SK, GW_PROJECT),
            "journal": tmp_path / f"journal-{len(started)}.sqlite",
            "port": 0,
            "keys": CallerKeys.parse(f"{CALLER_AK}:{CALLER_SK}:{CALLER_PROJECT}"),
            "retry": RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=5.0),
        }
        service = Service(ServeConfig(**{**defaults, **fields}))
        await service.start()
        started.append(service)
        return service

    yield factory
    for service in reversed(started):
        await service.aclose()


@pytest.fixture
async def gateway(serve_factory: ServeFactory) -> Service:
    return await serve_factory()


@contextmanager
def sdk_client(
    url: str, *, ak: str = CALLER_AK, sk: str = CALLER_SK, project_id: str = CALLER_PROJECT
) -> Iterator[Any]:
    """The official SDK's SmsClient pointed at ``url`` (plain HTTP, no retries)."""
    client = (
        SdkClient.new_builder()
        .with_credentials(BasicCredentials(ak, sk, project_id))
        .with_endpoints([url])
        .build()
    )
    try:
        yield client
    finally:
        client.get_http_client().close()


async def in_thread(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


BROWSER_REQUIRED_ENV = "SMS_FLOW_REQUIRE_BROWSER"
"""Set to ``1`` (``.ci/run`` does) to make a missing browser a failure instead of a skip."""
SCREENSHOTS_ENV = "SMS_FLOW_SCREENSHOTS"
"""A folder for the browser tests' screenshots (default: the test's ``tmp_path``)."""


@dataclass
class Browser:
    """A headless Chromium (``driver``: Selenium's WebDriver) and where screenshots go.

    Its calls block: from a test's event loop (which serves the pages), make them through
    :func:`in_thread`."""

    driver: WebDriver
    screenshots: Path

    def screenshot(self, name: str) -> Path:
        path = self.screenshots / name
        assert self.driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
        return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Chromium driven by Selenium through Debian's ``chromium-driver`` (``apt-get install
    -y chromium chromium-driver``), headless, quit at teardown. Skipped with the reason "no
    browser" where either is missing; a failure instead when ``SMS_FLOW_REQUIRE_BROWSER=1``."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        missing = "chromium" if chromium is None else "chromedriver"
        if os.environ.get(BROWSER_REQUIRED_ENV) == "1":
            pytest.fail(
                f"no browser: {missing} is not on PATH and {BROWSER_REQUIRED_ENV}=1; "
                "install it with apt-get install -y chromium chromium-driver"
            )
        why = f"{missing} is not on PATH; apt-get install -y chromium chromium-driver"
        pytest.skip(reason=f"no browser (a missing platform feature): {why}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,1400",
        "--no-proxy-server",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=driver_path))
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield Browser(driver, folder)
    finally:
        driver.quit()
