"""The ZeroMQ receive loop drains bursts in arrival order, across drain budgets and ticks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import zmq
import zmq.asyncio

from daemon.config import ZmqConfig
from daemon.ingest.zmq import DRAIN_BUDGET, ZmqIngest
from daemon.refusals import Refusals
from daemon.stream_api import AudioChunk, StreamSpec
from daemon.wire.frames import AudioFormat
from daemon.wire.zmq_messages import AudioMessage, OpenMessage, PingMessage, PongReply, parse_reply

MULAW = AudioFormat("mulaw", 8000, 1)


class RecordingStream:
    def __init__(self, stream_id: str, pushed: list[tuple[str, int | None]]) -> None:
        self._stream_id = stream_id
        self._pushed = pushed
        self.closed = False

    @property
    def stream_id(self) -> str:
        return self._stream_id

    async def push(self, chunk: AudioChunk) -> None:
        self._pushed.append((self._stream_id, chunk.sequence))

    async def close(self, reason: str = "client") -> None:
        self.closed = True

    async def events(self) -> AsyncIterator[Mapping[str, Any]]:
        return
        yield


class RecordingHub:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, int | None]] = []

    async def open(self, spec: StreamSpec) -> RecordingStream:
        return RecordingStream(spec.stream_id, self.pushed)


async def test_a_burst_over_several_drain_budgets_arrives_in_order() -> None:
    context = zmq.asyncio.Context()
    hub = RecordingHub()
    ingest = ZmqIngest(hub, ZmqConfig(ingest_endpoint="tcp://127.0.0.1:*", receive_tick_ms=5.0),
                       refusals=Refusals(), context=context)
    await ingest.start()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(ingest.endpoint)
    try:
        streams = ["a", "b", "c"]
        for stream_id in streams:
            await dealer.send_multipart(OpenMessage(stream_id, MULAW).to_frames())
        for _ in streams:
            await asyncio.wait_for(dealer.recv_multipart(), 5)
        sent = [(stream_id, seq) for seq in range(DRAIN_BUDGET) for stream_id in streams]  # 3 budgets' worth
        for stream_id, seq in sent:
            await dealer.send_multipart(AudioMessage(stream_id, seq, b"\xff" * 160).to_frames())
        await dealer.send_multipart(PingMessage().to_frames())
        reply = await asyncio.wait_for(dealer.recv_multipart(), 10)
        assert isinstance(parse_reply(reply), PongReply)
        assert hub.pushed == sent
    finally:
        dealer.close(linger=0)
        await ingest.stop()
        context.term()
