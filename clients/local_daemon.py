"""Start, probe and stop a `spoofwatch serve` subprocess on loopback.

Shared by `spoofwatch demo`, the load benchmark and the tests, which all run
their own daemon on free ports.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import zmq

from daemon.wire.zmq_messages import PingMessage


class DaemonNotReady(RuntimeError):
    """The daemon exited, or did not answer a ping in time."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daemon_command(model: Path, ingest: str, results: str, *extra: str) -> list[str]:
    """`serve` on `model` with ZeroMQ on the given endpoints, WebRTC off unless `extra` turns it on;
    the HTTP listener (/metrics) on a free port unless `extra` names one."""
    return [sys.executable, "-m", "daemon", "--model.path", str(model),
            "--zmq.ingest-endpoint", ingest, "--zmq.pub-endpoint", results,
            "--webrtc.enabled", "false", "--webrtc.port", "0", "--logging.level", "warning", *extra]


def wait_for_pong(endpoint: str, process: subprocess.Popen[bytes] | None = None,
                  timeout_s: float = 30.0) -> None:
    """Ping until the daemon answers (it is then accepting streams)."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise DaemonNotReady(f"the daemon exited with status {process.returncode}")
            dealer.send_multipart(PingMessage().to_frames())
            if dealer.poll(300):
                dealer.recv_multipart()
                return
        raise DaemonNotReady(f"no pong from the daemon at {endpoint} within {timeout_s:.0f} s")
    finally:
        dealer.close()
        context.term()


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM (the daemon drains and exits), then SIGKILL if it takes longer than `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
