"""WHIP end to end through the real daemon (in process, tiny ONNX model): an aiortc client sends an
Opus track; results come back on its data channel AND on the PUB socket; DELETE ends the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio
from running_daemon import free_port

from clients.whip import whip_send
from daemon.app import Daemon, build_backend
from daemon.config import build_config
from daemon.wire.results import decode_pub

pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
async def daemon(tiny_model: tuple[Path, Path]) -> AsyncIterator[Daemon]:
    config = build_config({
        "model": {"path": str(tiny_model[0])},
        "zmq": {"ingest_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "pub_endpoint": f"tcp://127.0.0.1:{free_port()}"},
        "webrtc": {"port": 0},
    })
    app = Daemon(config, build_backend(config, tiny_model[0]))
    await app.start()
    try:
        yield app
    finally:
        await app.shutdown()


async def collect_pub(endpoint: str, stream_id: str, into: list[dict[str, Any]]) -> None:
    context = zmq.asyncio.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, stream_id.encode())
    socket.connect(endpoint)
    try:
        while True:
            message = decode_pub(await socket.recv_multipart())
            into.append(message)
            if message["type"] == "closed":
                return
    finally:
        socket.close(linger=0)
        context.term()


async def test_whip_opus_results_on_data_channel_and_pub(daemon: Daemon) -> None:
    published: list[dict[str, Any]] = []
    listener = asyncio.create_task(collect_pub(daemon.state.endpoints["pub"], "whip-e2e", published))
    await asyncio.sleep(0.2)
    t = np.arange(int(2.0 * 16000)) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 250 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)

    result = await whip_send(daemon.state.endpoints["whip"], clip, 16000, stream_id="whip-e2e",
                             metadata={"call_id": "w1"}, codec="opus", tail_s=0.5)
    await asyncio.wait_for(listener, 5)

    # the data channel got the stream's own events, in order, ending with the summary
    assert published[0]["type"] == "opened" and published[0]["transport"] == "webrtc"
    assert result.events[0]["type"] == "opened"  # replayed to the feed the adapter took after open()
    assert published[0]["sample_rate_hz"] == 48000  # Opus decodes at 48 kHz
    assert result.events[-1]["type"] == "closed"
    channel_hops = [e["seq"] for e in result.results]
    assert len(channel_hops) >= 15 and channel_hops == list(range(len(channel_hops)))
    assert all(e["metadata"] == {"call_id": "w1"} and e["model_id"] == "tiny-gru" for e in result.results)
    # the PUB socket published the same results and the same summary
    pub_hops = [m for m in published if m["type"] == "result"]
    assert [m["seq"] for m in pub_hops] == channel_hops
    assert [m["p_spoof"] for m in pub_hops] == [e["p_spoof"] for e in result.results]
    closed = published[-1]
    assert closed["type"] == "closed" and closed["reason"] == "client"  # DELETE ended it
    assert result.summary == closed["summary"]
    assert closed["summary"]["hops"] == len(channel_hops)
    assert 1.5 <= closed["summary"]["audio_s"] <= 2.2
    assert daemon.hub is not None and "whip-e2e" not in daemon.hub.registry
