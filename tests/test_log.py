"""Tests for sms_flow.log: where events go, whoever configured logging; the level check; redaction.

Each setup below is one way an application (or the CLI) may have configured logging; the same
events are logged through sms-flow's logger under each, and what was written is read back.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
import structlog

from sms_flow import log

TOKEN = "tok-" + "L" * 40
LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
Setup = Callable[[], AbstractContextManager[Callable[[], str]]]


@contextmanager
def stdlib_handler(level: int) -> Iterator[Callable[[], str]]:
    """A handler on the ``sms_flow`` standard library logger, at ``level``."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    package = logging.getLogger("sms_flow")
    saved = package.level
    package.addHandler(handler)
    package.setLevel(level)
    try:
        yield out.getvalue
    finally:
        package.removeHandler(handler)
        package.setLevel(saved)


@contextmanager
def sms_flow_configure(level: str) -> Iterator[Callable[[], str]]:
    out = io.StringIO()
    log.configure(level=level, json=True, stream=out)
    yield out.getvalue


@contextmanager
def reconfigured_by_the_application() -> Iterator[Callable[[], str]]:
    """sms-flow's configure() at warning, then the application lowers the level to info."""
    out = io.StringIO()
    log.configure(level="warning", json=True, stream=out)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    yield out.getvalue


@contextmanager
def structlog_over_the_standard_library() -> Iterator[Callable[[], str]]:
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    with stdlib_handler(logging.INFO) as read:
        yield read


@contextmanager
def structlog_not_configured(level: int) -> Iterator[Callable[[], str]]:
    structlog.reset_defaults()
    with stdlib_handler(level) as read:
        yield read


SETUPS: dict[str, Setup] = {
    "sms-flow at warning": lambda: sms_flow_configure("warning"),
    "sms-flow at debug": lambda: sms_flow_configure("debug"),
    "reconfigured by the application": reconfigured_by_the_application,
    "structlog over logging": structlog_over_the_standard_library,
    "structlog unconfigured, logging at info": lambda: structlog_not_configured(logging.INFO),
    "structlog unconfigured, logging at error": lambda: structlog_not_configured(logging.ERROR),
}


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_enabled_says_exactly_what_is_written(setup: Setup) -> None:
    logger = log.get_logger("sms_flow.client")
    for level in LEVELS:
        with setup() as read:
            expected = logger.enabled(level)
            assert log.enabled(level) == expected  # no level set on sms_flow.client alone
            getattr(logger, logging.getLevelName(level).lower())("sms.test", level=level)
            assert ("sms.test" in read()) == expected, (logging.getLevelName(level), read())


def test_the_level_check_follows_a_later_reconfiguration() -> None:
    logger = log.get_logger("sms_flow.engine")
    log.configure(level="warning", json=True)
    assert not logger.enabled(logging.INFO)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    assert logger.enabled(logging.DEBUG)
    structlog.configure(wrapper_class=structlog.BoundLogger)  # filters nothing itself
    assert logger.enabled(logging.DEBUG)


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_every_event_is_redacted(setup: Setup) -> None:
    logger = log.get_logger("sms_flow.client")
    with setup() as read:
        logger.error("sms.test", token=TOKEN, Authorization=f"Signature={TOKEN}", source_id="s1")
        written = read()
    assert "sms.test" in written and "s1" in written and "<hidden>" in written
    assert TOKEN not in written


def test_exception_attaches_the_exception_without_structlog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    structlog.reset_defaults()
    try:
        raise ValueError("boom")
    except ValueError:
        log.get_logger("sms_flow.simulator").exception("sim.failed", route="PUT /x")
    (record,) = caplog.records
    assert record.name == "sms_flow.simulator" and record.levelno == logging.ERROR
    assert record.getMessage() == "sim.failed route='PUT /x'"
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert record.funcName == "test_exception_attaches_the_exception_without_structlog"


# --- an application of its own, in a fresh interpreter ---------------------------------------

APP = """
import asyncio, logging, socket, sys
import structlog
{setup}
from sms_flow.client import SmsClient
from sms_flow.errors import ConnectError
from sms_flow.retry import RetryPolicy

with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

async def main() -> None:
    policy = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001)
    async with SmsClient(f"http://127.0.0.1:{{port}}", retry=policy) as client:
        try:
            await client.change_state("s1", "WAITING")
        except ConnectError:
            print("ConnectError")

asyncio.run(main())
print("structlog configured:", structlog.is_configured())
"""


def run_app(setup: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", APP.format(setup=setup)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_an_application_that_configures_nothing_gets_no_debug_or_info_lines() -> None:
    result = run_app("")
    assert result.stdout == "ConnectError\nstructlog configured: False\n"
    assert "sms.give_up" in result.stderr  # a warning: Python shows it on standard error
    assert "sms.retry" not in result.stderr and "sms.answer" not in result.stderr


def test_an_application_that_configures_logging_gets_the_levels_it_asked_for() -> None:
    result = run_app("logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)")
    lines = result.stdout.splitlines()
    assert lines[-2:] == ["ConnectError", "structlog configured: False"]
    events = [line.split()[0] for line in lines if ":sms_flow." in line]  # asyncio logs too
    assert events == [
        "DEBUG:sms_flow.client:sms.answer",
        "INFO:sms_flow.client:sms.retry",
        "DEBUG:sms_flow.client:sms.answer",
        "WARNING:sms_flow.client:sms.give_up",
    ]
    assert result.stderr == ""
