"""systemd's notify protocol (sd_notify(3)), written here so the daemon needs no libsystemd binding.

Under a `Type=notify` unit systemd sets `$NOTIFY_SOCKET`: a path, or `@name` for a socket in the
abstract namespace. Each notification is one datagram of `KEY=VALUE` lines. The daemon sends:

- `READY=1` (with `STATUS=`) once every listener is bound and the model is loaded;
- `WATCHDOG=1` every half of `$WATCHDOG_USEC` (what `WatchdogSec=` sets) **while `/healthz` says
  the daemon is healthy** (daemon/health.py: the event-loop lag watchdog, and no model call hung
  past `model.stall_timeout_s`). The pings come from a task on the event loop, so a loop blocked
  outright sends none, and a loop that keeps lagging or an inference call that never returns holds
  them back too; either way systemd kills and restarts the daemon once `WatchdogSec` passes
  without one;
- `STOPPING=1` when a graceful shutdown begins (it drains, then exits).

Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing. A notification that cannot be sent
is logged once and dropped: losing it must never hurt the streams the daemon is serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

# How often the feeding task looks at the watchdog, at most: a ping held back by a lag spike goes
# out soon after the loop is healthy again, not a whole ping interval later.
MAX_CHECK_INTERVAL_S = 1.0


def socket_address(notify_socket: str) -> str | bytes:
    """`$NOTIFY_SOCKET` as `socket.sendto` takes it: `@name` is the abstract-namespace `\\0name`."""
    if notify_socket.startswith("@"):
        return b"\0" + notify_socket[1:].encode()
    return notify_socket


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of `$WATCHDOG_USEC` (sd_watchdog_enabled(3)), or None when the watchdog is off or is
    meant for another process (`$WATCHDOG_PID` names a different one)."""
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class SystemdNotifier:
    """Sends notifications to `$NOTIFY_SOCKET`; the watchdog feed runs as one asyncio task."""

    def __init__(self, notify_socket: str | None, ping_interval_s: float | None,
                 healthy: Callable[[], bool], lag_window_s: float = 0.0,
                 problem: Callable[[], str] = lambda: "event loop lagging") -> None:
        self._address = socket_address(notify_socket) if notify_socket else None
        self.ping_interval_s = ping_interval_s if self._address is not None else None
        self._healthy = healthy
        self._problem = problem
        self._lag_window_s = lag_window_s
        self._status = ""
        self._socket: socket.socket | None = None
        self._feed: asyncio.Task[None] | None = None
        self._send_failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], healthy: Callable[[], bool],
                     lag_window_s: float = 0.0,
                     problem: Callable[[], str] = lambda: "event loop lagging") -> SystemdNotifier:
        """`healthy` is what `/healthz` answers, `problem` why not (for the STATUS= line);
        `lag_window_s` how long one lag spike keeps it unhealthy (only to warn when `WatchdogSec=`
        is too short for it)."""
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog_interval_s(environ, os.getpid()), healthy,
                   lag_window_s, problem)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """One datagram of `KEY=VALUE` lines; True when it was sent."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)  # a full receiver queue must not stall the loop
            self._socket.sendto("\n".join(assignments).encode(), self._address)
            return True
        except OSError as exc:
            if not self._send_failed:
                self._send_failed = True
                log.warning("systemd_notify_failed", error=str(exc), message=assignments[0])
            return False

    def ready(self, status: str) -> None:
        """READY=1, then the watchdog feed (when `WatchdogSec=` is set). Call on the event loop."""
        self._status = status
        if not self.notify("READY=1", f"STATUS={status}"):
            return
        log.info("systemd_ready", watchdog_ping_interval_s=self.ping_interval_s)
        if self.ping_interval_s is None:
            return
        if self.ping_interval_s <= self._lag_window_s:
            # one lag spike holds the pings back for the whole window: systemd may restart a
            # daemon that had a single slow moment
            log.warning("systemd_watchdog_short", watchdog_sec=self.ping_interval_s * 2,
                        lag_window_s=self._lag_window_s,
                        advice="set WatchdogSec above twice observability.lag_window_s")
        self._feed = asyncio.create_task(self.feed_watchdog(self.ping_interval_s), name="systemd-watchdog")

    def stopping(self, status: str) -> None:
        """STOPPING=1: the drain has begun. The watchdog is still fed until `close()`."""
        self.notify("STOPPING=1", f"STATUS={status}")

    async def close(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def feed_watchdog(self, ping_interval_s: float) -> None:
        """WATCHDOG=1 every `ping_interval_s` while `healthy()`; none while it is not."""
        check_interval_s = min(MAX_CHECK_INTERVAL_S, ping_interval_s)
        last_ping: float | None = None
        held_back = False
        while True:
            now = time.monotonic()
            if self._healthy():
                if held_back:
                    held_back = False
                    log.info("systemd_watchdog_resumed")
                    self.notify(f"STATUS={self._status}")
                if last_ping is None or now - last_ping >= ping_interval_s:
                    self.notify("WATCHDOG=1")
                    last_ping = now
            elif not held_back:
                held_back = True
                problem = self._problem()
                log.warning("systemd_watchdog_held_back", reason=f"{problem} (/healthz 503)")
                self.notify(f"STATUS={problem}: watchdog pings held back")
            await asyncio.sleep(check_interval_s)
