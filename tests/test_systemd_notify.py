"""The daemon under systemd's notify protocol: READY=1 once it serves, WATCHDOG=1 only while its
event loop is healthy, STOPPING=1 on shutdown (daemon/systemd_notify.py). A real AF_UNIX datagram
socket plays systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import running_daemon
from running_daemon import REPO_ROOT, free_port
from tiny_models import tiny_metadata

from clients.local_daemon import daemon_command, stop_process, wait_for_pong
from daemon.systemd_notify import SystemdNotifier, socket_address, watchdog_interval_s


class NotifySocket:
    """What systemd listens on: a datagram socket; each datagram is one notification."""

    def __init__(self, address: str | bytes) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(address)
        self.received: list[dict[str, str]] = []

    def receive(self, timeout_s: float) -> dict[str, str] | None:
        self.socket.settimeout(timeout_s)
        try:
            data = self.socket.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.received.append(message)
        return message

    def until(self, key: str, timeout_s: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and key in message:
                return message
        raise AssertionError(f"no {key} within {timeout_s} s; got {self.received}")

    def drain(self) -> list[dict[str, str]]:
        """Every notification already queued, without waiting."""
        messages = []
        while (message := self.receive(0.001)) is not None:
            messages.append(message)
        return messages

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def notify_path() -> Iterator[str]:
    # AF_UNIX paths are limited to 107 bytes: a short directory, not pytest's tmp_path
    with tempfile.TemporaryDirectory(prefix="sw-notify-") as directory:
        yield os.path.join(directory, "notify.sock")


def test_socket_address_and_watchdog_interval_follow_sd_notify() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@spoofwatch/notify") == b"\0spoofwatch/notify"
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid=7) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval_s({}, pid=7) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, pid=7) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}, pid=7) is None


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier.from_environ({"WATCHDOG_USEC": "1000000"}, lambda: True)
    assert not notifier.enabled and notifier.ping_interval_s is None
    assert notifier.notify("READY=1") is False


def test_a_missing_socket_is_logged_not_raised(notify_path: str) -> None:
    notifier = SystemdNotifier(notify_path, None, lambda: True)  # nothing bound there
    assert notifier.notify("READY=1") is False
    assert notifier.notify("STOPPING=1") is False


def test_a_daemon_process_notifies_ready_watchdog_and_stopping(
        tiny_model: tuple[Path, Path], notify_path: str) -> None:
    systemd = NotifySocket(notify_path)
    ingest, results, http_port = (f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}",
                                  free_port())
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000"}
    command = daemon_command(tiny_model[0], ingest, results, "--webrtc.port", str(http_port))
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        ready = systemd.until("READY", timeout_s=60)
        # READY=1 means serving: the listeners answer at once, without a retry
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as answer:
            assert answer.status == 200
        wait_for_pong(ingest, process, timeout_s=2)
        assert ready["READY"] == "1"
        assert tiny_metadata().model_id in ready["STATUS"] and ingest in ready["STATUS"]
        pings = [systemd.until("WATCHDOG", timeout_s=5) for _ in range(3)]  # every 0.2 s
        assert all(p["WATCHDOG"] == "1" for p in pings)
    finally:
        stop_process(process)
        systemd.drain()
        systemd.close()
    assert process.returncode == 0
    kinds = [key for message in systemd.received for key in message if key in ("READY", "WATCHDOG", "STOPPING")]
    assert kinds[0] == "READY" and "STOPPING" in kinds
    assert kinds.index("STOPPING") > max(i for i, kind in enumerate(kinds) if kind == "READY")
    stopping = next(m for m in systemd.received if "STOPPING" in m)
    assert stopping["STATUS"].startswith("draining")


async def test_an_abstract_namespace_socket_gets_ready(
        tiny_model: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"@spoofwatch-test-{os.getpid()}-{time.monotonic_ns()}"
    systemd = NotifySocket(socket_address(name))
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    try:
        async with running_daemon(tiny_model[0]) as daemon:
            ready = systemd.until("READY", timeout_s=5)
            assert daemon.state.endpoints["ingest"] in ready["STATUS"]
            assert daemon.systemd.ping_interval_s is None  # no WatchdogSec, no pings
        assert "STOPPING" in systemd.until("STOPPING", timeout_s=5)
        assert not any("WATCHDOG" in m for m in systemd.received)
    finally:
        systemd.close()


async def test_no_watchdog_ping_while_the_event_loop_is_blocked_or_lagging(
        tiny_model: tuple[Path, Path], notify_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    systemd = NotifySocket(notify_path)
    monkeypatch.setenv("NOTIFY_SOCKET", notify_path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping due every 0.05 s
    observability = {"lag_interval_s": 0.02, "lag_threshold_s": 0.2, "lag_window_s": 0.8}
    try:
        async with running_daemon(tiny_model[0], observability=observability):
            systemd.until("READY", timeout_s=5)
            await asyncio.sleep(0.3)
            assert any("WATCHDOG" in m for m in systemd.drain())  # a healthy loop pings

            time.sleep(0.5)  # noqa: ASYNC251 - a stalled event loop: what systemd must see stop pinging
            # after the stall the lag watchdog reports it for lag_window_s: still no ping
            await asyncio.sleep(0.4)
            held_back = systemd.drain()
            assert not any("WATCHDOG" in m for m in held_back), held_back
            assert any("lagging" in m.get("STATUS", "") for m in held_back)

            resumed: list[dict[str, str]] = []
            for _ in range(40):  # the stall leaves the window (0.8 s): pings resume
                await asyncio.sleep(0.1)
                resumed += systemd.drain()
                if any("WATCHDOG" in m for m in resumed):
                    break
            assert any("WATCHDOG" in m for m in resumed), resumed
    finally:
        systemd.close()
