"""Loopback helpers for daemon tests: an in-process daemon on free ports, a DEALER client
and a SUB subscriber speaking the real wire protocol."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from daemon.app import Daemon
from daemon.config import build_config
from daemon.wire.results import decode_pub
from daemon.wire.zmq_messages import CloseMessage, OpenMessage, Reply, parse_reply
from streaming_models.runtime.onnx_backend import OnnxBackend

BASE_SETTINGS: dict[str, dict[str, Any]] = {
    "zmq": {"ingest_endpoint": "tcp://127.0.0.1:*", "pub_endpoint": "tcp://127.0.0.1:*"},
    "webrtc": {"enabled": False, "port": 0},  # port 0: /metrics listens on a free port
    "model": {"providers": ["CPUExecutionProvider"]},
    "batching": {"max_batch": 8, "max_wait_ms": 5.0},
}


def settings(**sections: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    merged = {name: dict(values) for name, values in BASE_SETTINGS.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return merged


@asynccontextmanager
async def running_daemon(model_path: Path, **sections: Mapping[str, Any]) -> AsyncIterator[Daemon]:
    config = build_config(settings(**sections))
    daemon = Daemon(config, OnnxBackend(model_path, providers=["CPUExecutionProvider"]))
    await daemon.start()
    try:
        yield daemon
    finally:
        if not daemon.state.shutting_down:
            await daemon.shutdown()


class Client:
    def __init__(self, context: zmq.asyncio.Context, endpoint: str) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    async def send(self, frames: list[bytes]) -> None:
        await self.socket.send_multipart(frames)

    async def reply(self, timeout: float = 5.0) -> Reply:
        frames = await asyncio.wait_for(self.socket.recv_multipart(), timeout)
        return parse_reply(frames)

    async def request(self, frames: list[bytes], timeout: float = 5.0) -> Reply:
        await self.send(frames)
        return await self.reply(timeout)

    def close(self) -> None:
        self.socket.close()


class Subscriber:
    def __init__(self, context: zmq.asyncio.Context, endpoint: str, topic: bytes = b"") -> None:
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.subscribe(topic)
        self.socket.connect(endpoint)
        self.messages: list[dict[str, Any]] = []

    async def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """Collect messages until one satisfies `done`; returns it."""
        async with asyncio.timeout(timeout):
            while True:
                message = decode_pub(await self.socket.recv_multipart())
                self.messages.append(message)
                if done(message):
                    return message

    def of(self, stream_id: str, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["stream_id"] == stream_id and m["type"] == kind]

    def close(self) -> None:
        self.socket.close()


_probe_ids = itertools.count()


def is_event(stream_id: str, kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda message: message["stream_id"] == stream_id and message["type"] == kind


async def wait_subscribed(client: Client, subscriber: Subscriber, fmt: Any, prefix: str = "") -> None:
    """PUB/SUB joins asynchronously: open probe streams until the subscriber sees one."""
    for _ in range(50):
        probe = f"{prefix}probe-{next(_probe_ids)}"
        await client.request(OpenMessage(probe, fmt).to_frames())
        try:
            await subscriber.until(is_event(probe, "opened"), timeout=0.1)
            seen = True
        except TimeoutError:
            seen = False
        await client.request(CloseMessage(probe).to_frames())
        if seen:
            return
    raise TimeoutError("subscriber never joined")
