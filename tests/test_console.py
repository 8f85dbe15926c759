"""The console's live feed (SSE relay of the PUB socket): a snapshot first, then every event; a
browser that stops reading loses its own events (counted) while others get everything; a
client over the limit is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import zmq
import zmq.asyncio

from daemon.config import ConsoleConfig
from daemon.console import WebConsole
from daemon.http import HttpServer
from daemon.wire.results import PROTOCOL_VERSION, encode_pub


def result(stream_id: str, seq: int, padding: int = 0) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": "result", "stream_id": stream_id, "seq": seq, "t_end_s": 0.1 * seq,
            "p_spoof": 0.2, "p_codec": 0.1, "p_spoof_smooth": 0.2, "p_codec_smooth": 0.1,
            "decision": "bonafide", "metadata": {"call_id": "c1", "pad": "x" * padding}}


class Feed:
    def __init__(self) -> None:
        self.context = zmq.asyncio.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind("tcp://127.0.0.1:*")
        self.endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)

    async def publish(self, message: dict[str, Any]) -> None:
        await self.pub.send_multipart(encode_pub(message))


@pytest.fixture
async def console() -> AsyncIterator[tuple[WebConsole, Feed, str]]:
    feed = Feed()
    server = HttpServer("127.0.0.1", 0)
    web_console = WebConsole(ConsoleConfig(max_clients=2, client_queue_size=100, history_points=5),
                             server, feed.endpoint, feed.context)
    await server.start()
    await web_console.start()
    try:
        yield web_console, feed, f"http://127.0.0.1:{server.port}"
    finally:
        await web_console.stop()
        await server.stop()
        feed.pub.close()
        feed.context.term()


async def read_events(response: aiohttp.ClientResponse, count: int,
                      into: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    events = [] if into is None else into
    async for line in response.content:
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
            if len(events) == count:
                break
    return events


async def test_snapshot_then_live_events_and_a_slow_browser_only_loses_its_own(
        console: tuple[WebConsole, Feed, str]) -> None:
    web_console, feed, base = console
    # PUB/SUB joins asynchronously: publish until the console has seen something
    while not web_console.state.streams:
        await feed.publish({"v": PROTOCOL_VERSION, "type": "opened", "stream_id": "early", "transport": "twilio",
                            "metadata": {"call_id": "c0"}})
        await asyncio.sleep(0.02)
    for seq in range(8):
        await feed.publish(result("early", seq))
    while len(web_console.state.streams["early"].history) < 5:
        await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        # a "browser" that connects and then never reads
        _stalled, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
        writer.write(b"GET /console/events HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with session.get(base + "/console/events") as live:
            assert live.headers["Content-Type"] == "text/event-stream"
            snapshot = (await read_events(live, 1))[0]
            assert snapshot["type"] == "snapshot"
            early = snapshot["streams"][0]
            assert early["stream_id"] == "early" and early["metadata"] == {"call_id": "c0"}
            assert [p["seq"] for p in early["history"]] == [3, 4, 5, 6, 7]  # history_points = 5
            # a third client is over max_clients = 2
            async with session.get(base + "/console/events") as refused:
                assert refused.status == 503
            # 3000 events of ~4 KB: far more than the stalled client's socket buffers and queue hold;
            # published in batches the reading browser keeps up with (its own queue holds 100)
            count, batch = 3000, 50
            received: list[dict[str, Any]] = []
            reading = asyncio.create_task(read_events(live, count, received))
            for seq in range(count):
                await feed.publish(result("busy", seq, padding=4000))
                if seq % batch == batch - 1:
                    async with asyncio.timeout(5):
                        while len(received) <= seq:
                            await asyncio.sleep(0.002)
            await asyncio.wait_for(reading, 5)
        writer.close()
    assert [e["seq"] for e in received] == list(range(count))  # the reading browser got every event
    assert web_console.events_relayed >= count + 8
    assert web_console.events_dropped > 0  # ... the stalled one lost its own, counted
