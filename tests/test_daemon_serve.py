"""A real `spoofwatch serve` subprocess: SIGTERM drains the streams and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import encode_samples
from daemon.wire.results import decode_pub
from daemon.wire.zmq_messages import AudioMessage, OpenMessage, PingMessage, PongReply, parse_reply

REPO = Path(__file__).resolve().parent.parent


def _wait_ready(process: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    """Read the JSON log until `daemon_ready` (it names the bound endpoints)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "daemon_ready":
            return record
    raise AssertionError("daemon never became ready:\n" + "".join(seen))


def test_sigterm_drains_streams_publishes_summaries_and_exits_0(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[model]\npath = "{tiny_model[0]}"\nproviders = ["CPUExecutionProvider"]\n'
        '[zmq]\ningest_endpoint = "tcp://127.0.0.1:*"\npub_endpoint = "tcp://127.0.0.1:*"\n'
        '[webrtc]\nenabled = false\nport = 0\n')  # logging.format auto: stderr is a pipe, so JSON lines
    process = subprocess.Popen([sys.executable, "-m", "clients.cli", "serve", "--config", str(config)],
                               cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    context = zmq.Context()
    try:
        ready = _wait_ready(process)
        dealer = context.socket(zmq.DEALER)
        dealer.connect(ready["ingest_endpoint"])
        dealer.setsockopt(zmq.RCVTIMEO, 5000)
        sub = context.socket(zmq.SUB)
        sub.subscribe(b"")
        sub.setsockopt(zmq.RCVTIMEO, 10000)
        sub.connect(ready["pub_endpoint"])
        time.sleep(0.3)  # let the subscription reach the PUB socket
        fmt = {"a": AudioFormat("mulaw", 8000), "b": AudioFormat("pcm_s16le", 44100, 2)}
        # 0.9 s each: the 9th hop completes only with the resampler tail, i.e. during the drain
        frames = {"a": 7200, "b": 39690}
        for stream_id, f in fmt.items():
            dealer.send_multipart(OpenMessage(stream_id, f).to_frames())
            assert parse_reply(dealer.recv_multipart()).stream_id == stream_id  # type: ignore[union-attr]
            shape = (frames[stream_id], 2) if f.channels == 2 else (frames[stream_id],)
            samples = 0.2 * np.random.default_rng(0).standard_normal(shape)
            dealer.send_multipart(AudioMessage(stream_id, 0, encode_samples(samples, f)).to_frames())
        dealer.send_multipart(PingMessage().to_frames())
        assert isinstance(parse_reply(dealer.recv_multipart()), PongReply)  # all audio is in the daemon

        process.send_signal(signal.SIGTERM)
        closed: dict[str, dict[str, Any]] = {}
        results: dict[str, list[int]] = {"a": [], "b": []}
        while len(closed) < 2:
            message = decode_pub(sub.recv_multipart())
            if message["type"] == "result":
                results[message["stream_id"]].append(message["seq"])
            elif message["type"] == "closed":
                closed[message["stream_id"]] = message
        assert process.wait(timeout=30) == 0
        expected_hops = {"a": (2 * 7200) // 1600, "b": round(39690 * 16000 / 44100) // 1600}
        assert expected_hops == {"a": 9, "b": 9}
        for stream_id, hops in expected_hops.items():
            assert closed[stream_id]["reason"] == "shutdown"
            assert closed[stream_id]["summary"]["hops"] == hops
            assert results[stream_id] == list(range(hops))
        log = process.stderr.read() if process.stderr else ""
        assert "shutdown_complete" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        context.destroy(linger=0)


def test_second_signal_forces_exit_during_a_long_drain(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[model]\npath = "{tiny_model[0]}"\nproviders = ["CPUExecutionProvider"]\n'
        '[zmq]\ningest_endpoint = "tcp://127.0.0.1:*"\npub_endpoint = "tcp://127.0.0.1:*"\n'
        '[webrtc]\nenabled = false\nport = 0\n'
        # one stream's hops are scored one per batch, each batch waits 50 ms: 600 hops take ~30 s
        '[batching]\nmax_wait_ms = 50.0\n[streams]\nmax_buffered_s = 600.0\n[shutdown]\ntimeout_s = 60.0\n')
    process = subprocess.Popen([sys.executable, "-m", "clients.cli", "serve", "--config", str(config)],
                               cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    context = zmq.Context()
    try:
        ready = _wait_ready(process)
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.RCVTIMEO, 5000)
        dealer.connect(ready["ingest_endpoint"])
        sub = context.socket(zmq.SUB)
        sub.subscribe(b"")
        sub.setsockopt(zmq.RCVTIMEO, 10000)
        sub.connect(ready["pub_endpoint"])
        time.sleep(0.3)
        fmt = AudioFormat("pcm_f32le", 16000)
        dealer.send_multipart(OpenMessage("long", fmt).to_frames())
        parse_reply(dealer.recv_multipart())
        second = encode_samples(np.full(16000, 0.1, dtype=np.float32), fmt)
        for seq in range(60):
            dealer.send_multipart(AudioMessage("long", seq, second).to_frames())
        dealer.send_multipart(PingMessage().to_frames())
        assert isinstance(parse_reply(dealer.recv_multipart()), PongReply)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=15) == 1
        assert time.monotonic() - started < 10
        while True:  # the forced stream still got its summary
            message = decode_pub(sub.recv_multipart())
            if message["type"] == "closed":
                break
        assert message["reason"] == "shutdown"
        assert 0 < message["summary"]["hops"] < 600
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        context.destroy(linger=0)
