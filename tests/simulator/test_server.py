"""The :class:`~sms_flow.simulator.Simulator` itself (``sms_flow/simulator/server.py``): its
Python API for tests."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from yarl import URL

from sms_flow.errors import InvalidRequestError, UsageError
from sms_flow.simulator import Simulator
from sms_flow.states import CopyState
from tests.conftest import eventually
from tests.simulator.conftest import SIMULATOR, pair

pytestmark = SIMULATOR


async def test_python_api_moves_and_refusals(sim: Simulator) -> None:
    sid = await sim.register("web-01")
    snap = await sim.move(sid, trigger="configure")
    assert snap.pair == pair("WAITING", "setting")
    with pytest.raises(ValueError, match="no move 'resume'"):
        await sim.move(sid, trigger="resume")
    assert (await sim.move(sid, pair="ERROR/setting")).copystate is CopyState.ERROR
    with pytest.raises(InvalidRequestError, match="no source 'nope'"):
        sim.source("nope")
    with pytest.raises(UsageError, match="exactly one of trigger= or pair="):
        await sim.move(sid)
    assert await sim.register_many(0) == []


# -- safe to leave running: the header timeout and the connection cap ---------------------------


async def open_partial(
    sim: Simulator, n: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``n`` connections opened at once, each with a request whose headers never end."""
    url = URL(sim.url)
    assert url.host is not None and url.port is not None

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(b"GET /v3/sources HTTP/1.1\r\nHost: sim\r\nX-Auth-Token: ")
        await writer.drain()
        return reader, writer

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def closed_by_the_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (waits for the close)."""
    return await asyncio.wait_for(reader.read(), 30)  # the bound only catches a hang


@pytest.mark.simulator(max_connections=8, header_timeout=60)
async def test_partial_requests_beyond_the_cap_never_keep_a_client_from_an_answer(
    sim: Simulator,
) -> None:
    """1,100 idle partial requests made the simulator stop answering; now, at the cap, the
    connection idle the longest is closed to make room for each newcomer."""
    partial = await open_partial(sim, 12)
    async with aiohttp.ClientSession() as http:
        sid = await sim.register("web-01")
        async with http.get(f"{sim.url}/v3/sources/{sid}") as answer:
            assert answer.status == 200
    # 12 partial and 1 client through a cap of 8: 5 partial ones made room, closed without an
    # answer long before their header timeout; the other 7 are open still.
    await eventually(lambda: sum(reader.at_eof() for reader, _ in partial) >= 5)
    assert sum(reader.at_eof() for reader, _ in partial) == 5
    for reader, writer in partial:
        if reader.at_eof():
            assert await reader.read() == b""
        writer.close()


@pytest.mark.simulator(header_timeout=0.5)
async def test_a_request_whose_headers_never_end_is_closed_after_the_header_timeout(
    sim: Simulator,
) -> None:
    [(reader, writer)] = await open_partial(sim, 1)
    assert await closed_by_the_server(reader) == b""  # closed, never answered
    writer.close()


@pytest.mark.simulator(max_connections=4, header_timeout=0.5)
async def test_at_the_cap_with_none_idle_a_newcomer_is_answered_503(sim: Simulator) -> None:
    """Connections whose requests are in progress (bodies on their way) are not closed to make
    room; a newcomer is told so, in the documented error shape."""
    url = URL(sim.url)
    assert url.host is not None and url.port is not None
    sid = await sim.register("web-01")
    busy = []
    for _ in range(4):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            f"PUT /v3/sources/{sid}/changestate HTTP/1.1\r\nHost: sim\r\n"
            "Content-Type: application/json\r\nContent-Length: 40\r\n"
            "Expect: 100-continue\r\n\r\n{".encode()
        )
        await writer.drain()
        # Proof that its request is in progress: the server asks for the body.
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        busy.append((reader, writer))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    refused = await closed_by_the_server(reader)
    writer.close()
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert json.loads(body)["error_code"] == "SMS.SIM6"
    # Each body that does not come within the timeout is answered 408, and the connection closed.
    for reader, writer in busy:
        answer = await closed_by_the_server(reader)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"SMS.SIM5"' in answer
        writer.close()
    assert sim.history(sid) == []
