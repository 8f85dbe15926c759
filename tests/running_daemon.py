"""Start the real daemon (`python -m daemon`) as a subprocess on free loopback ports, for client/CLI tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq

from daemon.wire.zmq_messages import PingMessage

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunningDaemon:
    ingest_endpoint: str
    results_endpoint: str
    whip_url: str | None
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_pong(endpoint: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Ping until the daemon answers (it is then accepting streams)."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the daemon exited with status {process.returncode}")
            dealer.send_multipart(PingMessage().to_frames())
            if dealer.poll(300):
                dealer.recv_multipart()
                return
        raise RuntimeError(f"no pong from the daemon at {endpoint} within {timeout_s} s")
    finally:
        dealer.close()
        context.term()


@contextlib.contextmanager
def daemon_process(model_path: Path, *, webrtc: bool = False, extra: tuple[str, ...] = ()) -> Iterator[RunningDaemon]:
    ingest = f"tcp://127.0.0.1:{free_port()}"
    results = f"tcp://127.0.0.1:{free_port()}"
    whip_port = free_port()
    command = [
        sys.executable, "-m", "daemon", "--model.path", str(model_path),
        "--zmq.ingest-endpoint", ingest, "--zmq.pub-endpoint", results,
        "--webrtc.enabled", "true" if webrtc else "false", "--webrtc.port", str(whip_port),
        "--logging.level", "warning", *extra,
    ]
    with tempfile.TemporaryFile() as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for_pong(ingest, process)
            except RuntimeError as exc:
                log_file.seek(0)
                output = log_file.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}; daemon output:\n{output}") from None
            whip_url = f"http://127.0.0.1:{whip_port}/whip" if webrtc else None
            yield RunningDaemon(ingest, results, whip_url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
