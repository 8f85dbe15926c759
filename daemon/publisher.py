"""Results out: the ZeroMQ PUB socket, never blocking, one subscriber's backlog its own business.

By default the socket is plain PUB: libzmq keeps one queue per subscriber (`pub_hwm`
messages plus kernel buffers) and drops a message only for the subscribers whose queue is
full, so a stuck or slow subscriber loses its own messages and costs the others nothing;
every `closed` summary reaches every subscriber that keeps up. A subscriber counts its own
losses from the summary (`hops` results were published for the stream).

With `pub_count_drops = true` the socket sets ZMQ_XPUB_NODROP: a full subscriber queue
makes the non-blocking send fail and the publisher counts the drop (`results_dropped` in
the summary). The cost (libzmq semantics): while one subscriber of a topic is stuck, that
topic's messages are dropped for all its subscribers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from daemon.wire.results import encode_pub
from daemon.zmq_auth import (
    MONITOR_PREFIX,
    CurveKeys,
    client_topic,
    make_server,
    mapped_subscription,
    user_of,
)

log = structlog.get_logger(__name__)

_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


class ResultPublisher:
    def __init__(self, context: zmq.Context[Any], endpoint: str, hwm: int, count_drops: bool = False,
                 sndbuf_bytes: int = 0, linger_ms: int = 1000, curve: CurveKeys | None = None,
                 connect: tuple[str, ...] = ()) -> None:
        # a plain (synchronous) socket: sends are non-blocking, so they never stall the loop.
        # With CURVE: an XPUB whose subscriptions the daemon installs itself, per User-Id
        self._curve = curve
        self._socket: zmq.Socket[bytes] = zmq.Socket(context, zmq.PUB if curve is None else zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        if sndbuf_bytes > 0:
            self._socket.setsockopt(zmq.SNDBUF, sndbuf_bytes)
        if count_drops:
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        if curve is not None:
            self._socket.setsockopt(zmq.XPUB_MANUAL, 1)
            make_server(self._socket, curve)
        self._socket.bind(endpoint)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        for upstream in connect:  # a results proxy's XSUB: it subscribes like any subscriber
            self._socket.connect(upstream)
        self.sent = 0
        self.dropped = 0
        self.connections = 0  # subscriber connections now (kept by `watch_connections`)

    def publish(self, message: Mapping[str, Any], owner: str = "") -> bool:
        """Send one message; False when it was refused (only with count_drops: a subscriber's queue is full)."""
        topic, body = encode_pub(message)
        if self._curve is not None:  # the owner's namespace, and the monitors'
            ok = self._send(MONITOR_PREFIX + topic, body)
            if owner.startswith("client:"):
                ok = self._send(client_topic(owner, topic), body) and ok
            return ok
        return self._send(topic, body)

    def _send(self, topic: bytes, body: bytes) -> bool:
        try:
            # two plain sends: pyzmq's send_multipart costs twice as much per message, and a
            # multipart message is atomic (a refused first frame means nothing was queued)
            self._socket.send(topic, _MORE_NOBLOCK)
            self._socket.send(body, _NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    async def run_subscriptions(self) -> None:
        """CURVE only: install each subscription in its sender's namespace (a client's own streams,
        or every stream for a monitor); runs until cancelled."""
        if self._curve is None:
            return
        reader: Any = zmq.asyncio.Socket.shadow(self._socket.underlying)
        while True:
            frame = await reader.recv(copy=False)
            data = frame.bytes
            if not data or data[0] not in (0, 1):
                continue
            option = zmq.SUBSCRIBE if data[0] == 1 else zmq.UNSUBSCRIBE
            self._socket.setsockopt(option, mapped_subscription(user_of(frame), data[1:]))

    async def watch_connections(self) -> None:
        """Count subscriber connections from the socket's monitor events; runs until cancelled."""
        events = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
        monitor: Any = self._socket.get_monitor_socket(events)
        try:
            while True:
                event = await recv_monitor_message(monitor)
                if event["event"] == zmq.EVENT_ACCEPTED:
                    self.connections += 1
                elif event["event"] == zmq.EVENT_DISCONNECTED:
                    self.connections = max(0, self.connections - 1)
        finally:
            if not self._socket.closed:
                self._socket.disable_monitor()
            monitor.close(linger=0)

    def close(self) -> None:
        """Close; queued messages get up to `linger_ms` to leave."""
        self._socket.close()
        log.info("publisher_closed", sent=self.sent, dropped=self.dropped)
