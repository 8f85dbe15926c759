"""Loopback helpers for the telephony/console tests: the real daemon in process (tiny ONNX model)
with every front door on a free port, and a PUB subscriber that collects what it publishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq
import zmq.asyncio

from daemon.app import Daemon, build_backend
from daemon.config import build_config
from daemon.wire.results import decode_pub

SUBSCRIBE_SETTLE_S = 0.3  # PUB/SUB joins asynchronously


def daemon_settings(**sections: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    base: dict[str, dict[str, Any]] = {
        "model": {"providers": ["CPUExecutionProvider"]},
        "zmq": {"ingest_endpoint": "tcp://127.0.0.1:*", "pub_endpoint": "tcp://127.0.0.1:*"},
        "webrtc": {"enabled": False, "port": 0},
        "audiosocket": {"enabled": True, "port": 0},
        "twilio": {"enabled": True},
        "audiofork": {"enabled": True},
        "batching": {"max_batch": 8, "max_wait_ms": 5.0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


@asynccontextmanager
async def running_daemon(model_path: Path, **sections: Mapping[str, Any]) -> AsyncIterator[Daemon]:
    config = build_config(daemon_settings(model={"path": str(model_path)}, **sections))
    daemon = Daemon(config, build_backend(config, model_path))
    await daemon.start()
    try:
        yield daemon
    finally:
        if not daemon.state.shutting_down:
            await daemon.shutdown()


def http_base(daemon: Daemon) -> str:
    return daemon.state.endpoints["http"]


def audiosocket_port(daemon: Daemon) -> int:
    return int(daemon.state.endpoints["audiosocket"].rsplit(":", 1)[1])


class PubCollector:
    """Every message the daemon publishes, collected in the background from connect() on."""

    def __init__(self, endpoint: str) -> None:
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(endpoint)
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.messages.append(decode_pub(await self._socket.recv_multipart()))
            self._changed.set()

    async def until(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not done(self.messages):
                self._changed.clear()
                await self._changed.wait()

    async def closed(self, stream_id: str, timeout: float = 15.0) -> dict[str, Any]:
        await self.until(lambda ms: any(m["type"] == "closed" and m["stream_id"] == stream_id for m in ms), timeout)
        return self.of(stream_id, "closed")[0]

    def of(self, stream_id: str, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["stream_id"] == stream_id and m["type"] == kind]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._socket.close()
        self._context.term()


@asynccontextmanager
async def collecting(daemon: Daemon) -> AsyncIterator[PubCollector]:
    collector = PubCollector(daemon.state.endpoints["pub"])
    await asyncio.sleep(SUBSCRIBE_SETTLE_S)
    try:
        yield collector
    finally:
        await collector.close()


def speechlike(seconds: float, rate_hz: int, pitch_hz: float = 180.0, seed: int = 0) -> npt.NDArray[np.float32]:
    """A voiced-sounding test signal: harmonics with a syllable-rate envelope plus a little noise."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    voice = sum(np.sin(2 * np.pi * pitch_hz * k * t) / k for k in range(1, 6) if pitch_hz * k < rate_hz / 2)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.25 * voice * envelope + noise).astype(np.float32)


def to_int16_bytes(samples: npt.ArrayLike) -> bytes:
    return np.clip(np.round(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2").tobytes()
