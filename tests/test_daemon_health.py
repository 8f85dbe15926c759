"""A model call that never returns makes the daemon unhealthy (daemon/health.py): /healthz and /readyz
answer 503 with the reason, a log line and a counter say so, and the systemd watchdog is no longer
fed. A real daemon runs the tiny model through a backend that blocks on purpose; nothing of the check
itself is replaced."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import zmq
import zmq.asyncio
from daemon_harness import Client, Subscriber, is_event, settings, wait_subscribed
from prometheus_client.parser import text_string_to_metric_families
from running_daemon import REPO_ROOT, free_port
from structlog.testing import capture_logs
from test_systemd_notify import NotifySocket

from clients.local_daemon import wait_for_pong
from daemon.app import Daemon
from daemon.config import build_config
from daemon.errors import ConfigError
from daemon.wire.frames import AudioFormat
from daemon.wire.zmq_messages import AudioMessage, OpenedReply, OpenMessage
from streaming_models.runtime.onnx_backend import OnnxBackend

F16 = AudioFormat("pcm_f32le", 16000, 1)
STALL_S = 1.0  # far above the time a request takes under load: "not yet stalled" is checked first


class BlockingBackend:
    """The tiny ONNX model, except that while `hang` is set a call blocks until `release` is set."""

    def __init__(self, model_path: Path) -> None:
        self._inner = OnnxBackend(model_path, providers=["CPUExecutionProvider"])
        self.metadata = self._inner.metadata
        self.hang = threading.Event()
        self.release = threading.Event()
        self.blocked = threading.Event()

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return self._inner.initial_states(batch)

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.hang.is_set():
            self.blocked.set()
            self.release.wait(60)
        return self._inner.run(audio, states)


@asynccontextmanager
async def daemon_with(backend: BlockingBackend, **sections: Any) -> AsyncIterator[Daemon]:
    daemon = Daemon(build_config(settings(**sections)), backend)  # type: ignore[arg-type]
    await daemon.start()
    try:
        yield daemon
    finally:
        backend.release.set()  # a blocked call returns, so the daemon can drain and stop
        await daemon.shutdown()


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, json.loads(await response.text())


async def metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        text = await response.text()
    return next(s.value for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == name and not s.labels)


async def notified(systemd: NotifySocket, key: str, timeout_s: float = 5.0) -> None:
    """Until a notification with `key` arrives (the daemon runs on this loop: never block it)."""
    async with asyncio.timeout(timeout_s):
        while not any(key in message for message in systemd.drain()):
            await asyncio.sleep(0.05)


def hop_of_audio(seq: int) -> list[bytes]:
    t = np.arange(1600) / 16000
    return AudioMessage("s", seq, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("<f4").tobytes()).to_frames()


@pytest.fixture
def notify_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-notify-") as directory:
        yield os.path.join(directory, "notify.sock")


async def test_a_hung_model_call_turns_healthz_readyz_and_the_systemd_watchdog_unhealthy(
        tiny_model: tuple[Path, Path], notify_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    systemd = NotifySocket(notify_path)
    monkeypatch.setenv("NOTIFY_SOCKET", notify_path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping due every 0.1 s
    backend = BlockingBackend(tiny_model[0])
    context = zmq.asyncio.Context()
    try:
        with capture_logs() as logs:
            async with daemon_with(backend, model={"stall_timeout_s": STALL_S}) as daemon:
                base = daemon.state.endpoints["http"]
                client = Client(context, daemon.state.endpoints["ingest"])
                subscriber = Subscriber(context, daemon.state.endpoints["pub"])
                await wait_subscribed(client, subscriber, F16)
                assert isinstance(await client.request(OpenMessage("s", F16).to_frames()), OpenedReply)
                await client.send(hop_of_audio(0))
                await subscriber.until(lambda m: is_event("s", "result")(m) and m["seq"] == 0)
                await notified(systemd, "WATCHDOG")
                assert (await get_json(f"{base}/healthz"))[0] == 200

                backend.hang.set()
                await client.send(hop_of_audio(1))
                assert await asyncio.to_thread(backend.blocked.wait, 5)
                status, body = await get_json(f"{base}/healthz")
                assert status == 200 and body["inference_in_flight_s"] < STALL_S  # in flight, not yet stalled
                await asyncio.sleep(STALL_S + 0.1)
                status, body = await get_json(f"{base}/healthz")
                assert status == 503 and body["status"] == "inference_stalled", body
                assert body["reasons"] == ["inference_stalled"] and body["inference_in_flight_s"] >= STALL_S
                assert body["stall_timeout_s"] == STALL_S
                status, body = await get_json(f"{base}/readyz")
                assert status == 503 and body["checks"]["inference_progressing"] is False, body
                assert await metric(base, "spoofwatch_inference_stalls_total") == 1
                assert await metric(base, "spoofwatch_inference_in_flight_seconds") >= STALL_S
                assert await metric(base, "spoofwatch_healthy") == 0

                systemd.drain()  # pings sent before the stall was seen
                await asyncio.sleep(0.5)  # five ping periods
                held_back = systemd.drain()
                assert not any("WATCHDOG" in m for m in held_back), held_back
                assert any("inference stalled" in m.get("STATUS", "") for m in systemd.received), systemd.received

                backend.hang.clear()
                backend.release.set()  # the call returns late: the stall ends, scoring goes on
                await subscriber.until(lambda m: is_event("s", "result")(m) and m["seq"] == 1)
                await client.send(hop_of_audio(2))
                await subscriber.until(lambda m: is_event("s", "result")(m) and m["seq"] == 2)
                assert (await get_json(f"{base}/healthz"))[0] == 200
                assert (await get_json(f"{base}/readyz"))[0] == 200
                await notified(systemd, "WATCHDOG")
                assert await metric(base, "spoofwatch_inference_stalls_total") == 1
                client.close()
                subscriber.close()
    finally:
        systemd.close()
        context.destroy(linger=0)
    assert systemd.received[0]["READY"] == "1"
    events = [entry["event"] for entry in logs]
    stalled = next(entry for entry in logs if entry["event"] == "inference_stalled")
    assert stalled["log_level"] == "error" and stalled["batch_size"] == 1 and stalled["in_flight_s"] >= STALL_S
    assert events.count("inference_stalled") == 1  # once per stall, not per check
    assert events.index("inference_resumed") > events.index("inference_stalled")
    assert "systemd_watchdog_held_back" in events and "systemd_watchdog_resumed" in events


async def test_a_slow_but_finishing_model_call_is_not_a_stall(tiny_model: tuple[Path, Path]) -> None:
    backend = BlockingBackend(tiny_model[0])
    context = zmq.asyncio.Context()
    async with daemon_with(backend, model={"stall_timeout_s": 2.0}) as daemon:
        base = daemon.state.endpoints["http"]
        client = Client(context, daemon.state.endpoints["ingest"])
        assert isinstance(await client.request(OpenMessage("s", F16).to_frames()), OpenedReply)
        backend.hang.set()
        await client.send(hop_of_audio(0))
        assert await asyncio.to_thread(backend.blocked.wait, 5)
        await asyncio.sleep(0.3)
        status, body = await get_json(f"{base}/healthz")
        assert status == 200 and 0.3 <= body["inference_in_flight_s"] < 2.0, body
        backend.hang.clear()
        backend.release.set()
        await asyncio.sleep(0.1)
        status, body = await get_json(f"{base}/healthz")
        assert status == 200 and body["inference_in_flight_s"] == 0.0
        assert await metric(base, "spoofwatch_inference_stalls_total") == 0
        client.close()
    context.destroy(linger=0)


@pytest.mark.parametrize(("model", "needle"), [
    ({"stall_timeout_s": 0}, "must be 0.1..3600"),
    ({"stall_timeout_s": 1.5, "backend": "triton", "triton_timeout_s": 1.0, "triton_retries": 1},
     "above model.triton_timeout_s x (model.triton_retries + 1) = 2 s"),
])
def test_stall_timeout_is_validated(model: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="model.stall_timeout_s") as error:
        build_config({"model": model})
    assert needle in str(error.value)


HANGING_DAEMON = """
import sys, threading
from daemon.__main__ import serve
from daemon.config import build_config
from streaming_models.runtime.onnx_backend import OnnxBackend

class NeverReturns:
    def __init__(self, path):
        self._inner = OnnxBackend(path, providers=["CPUExecutionProvider"])
        self.metadata = self._inner.metadata
    def initial_states(self, batch):
        return self._inner.initial_states(batch)
    def run(self, audio, states):
        print("model_call_hung", flush=True)
        threading.Event().wait()

config = build_config({"zmq": {"ingest_endpoint": sys.argv[2], "pub_endpoint": sys.argv[3]},
                       "webrtc": {"enabled": False, "port": int(sys.argv[4])},
                       "model": {"providers": ["CPUExecutionProvider"], "stall_timeout_s": 0.5},
                       "shutdown": {"timeout_s": 1.0}})
sys.exit(serve(config, NeverReturns(sys.argv[1])))
"""


def test_a_daemon_whose_model_call_never_returns_still_exits_on_sigterm_within_its_stop_budget(
        tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    """The hung call's thread would hold the interpreter's exit until SIGKILL: `serve` exits past it,
    within DaemonConfig.graceful_stop_s, with the graceful status."""
    ingest, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    budget_s = build_config({"shutdown": {"timeout_s": 1.0}}).graceful_stop_s
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-c", HANGING_DAEMON, str(tiny_model[0]), ingest, results,
                                    str(free_port())], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_for_pong(ingest, process)
        context = zmq.Context()
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(ingest)
        dealer.send_multipart(OpenMessage("s", F16).to_frames())
        assert dealer.poll(5000) and dealer.recv_multipart()
        dealer.send_multipart(hop_of_audio(0))
        deadline = time.monotonic() + 10
        while b"model_call_hung" not in log_path.read_bytes():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        dealer.close()
        context.term()
        time.sleep(1.0)  # past stall_timeout_s: the daemon knows it is stalled
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=budget_s + 15)
        took_s = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_path.read_text()
    assert status == 0, output[-3000:]
    assert "inference_stalled" in output and "exiting_past_hung_inference" in output, output[-3000:]
    assert took_s <= budget_s + 1.0, (took_s, budget_s)  # + the interpreter's own teardown
