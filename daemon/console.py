"""The live web console, served on the daemon's HTTP server next to WHIP.

    GET /               -> redirect to /console/
    GET /console/       the page (daemon/static/index.html) and its script (console.js)
    GET /console/events Server-Sent Events: first a `snapshot` of the streams the console
                        knows (metadata, recent results), then every message published on
                        the PUB socket (`opened`, `result`, `closed`, `error`), as JSON

The console is one more subscriber of the PUB socket (a SUB socket on the daemon's own
ZeroMQ context), so it sees exactly what other subscribers see and needs no hook in the
hub. Each browser has a bounded queue: a slow browser loses events (counted per client
and in total), never stalls the relay or the daemon. The relay runs under
`daemon/supervise.Supervisor`: a bug that ends it is logged and the relay restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import structlog
import zmq
import zmq.asyncio
from aiohttp import web

from daemon.config import ConsoleConfig
from daemon.http import HttpServer
from daemon.supervise import Supervisor
from daemon.wire.results import decode_pub
from daemon.zmq_auth import make_client

log = structlog.get_logger(__name__)

NO_CACHE = {"Cache-Control": "no-cache"}
KEEPALIVE_S = 15.0
_RESULT_FIELDS = ("seq", "t_end_s", "p_spoof", "p_codec", "p_spoof_smooth", "p_codec_smooth", "decision")


def static_file(name: str) -> bytes:
    """A file of the console's page from the package data (daemon/static), wherever it is installed."""
    return (resources.files("daemon") / "static" / name).read_bytes()


def local_endpoint(endpoint: str) -> str:
    """The PUB socket's bound endpoint as a local subscriber connects to it (wildcards -> loopback)."""
    return endpoint.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://[::]:", "tcp://[::1]:")


@dataclass
class StreamView:
    stream_id: str
    transport: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    decision: str = "undecided"
    closed: bool = False
    history: deque[dict[str, Any]] = field(default_factory=deque)

    def to_dict(self) -> dict[str, Any]:
        return {"stream_id": self.stream_id, "transport": self.transport, "metadata": self.metadata,
                "decision": self.decision, "closed": self.closed, "history": list(self.history)}


class ConsoleState:
    """What a newly connected browser needs to draw: recent streams and their recent results."""

    def __init__(self, max_streams: int, history_points: int) -> None:
        self._max_streams = max_streams
        self._history_points = history_points
        self.streams: OrderedDict[str, StreamView] = OrderedDict()

    def apply(self, message: Mapping[str, Any]) -> None:
        stream_id = str(message.get("stream_id", ""))
        kind = message.get("type")
        view = self.streams.get(stream_id)
        if view is None:
            if kind not in ("opened", "result"):
                return
            view = self.streams[stream_id] = StreamView(stream_id, history=deque(maxlen=self._history_points))
            self._forget_oldest()
        if kind == "opened":
            view.transport = str(message.get("transport", ""))
            view.metadata = dict(message.get("metadata") or {})
        elif kind == "result":
            view.history.append({k: message.get(k) for k in _RESULT_FIELDS})
            view.decision = str(message.get("decision", view.decision))
            if not view.metadata:
                view.metadata = dict(message.get("metadata") or {})
        elif kind == "closed":
            view.closed = True

    def _forget_oldest(self) -> None:
        while len(self.streams) > self._max_streams:
            victim = next((k for k, v in self.streams.items() if v.closed), next(iter(self.streams)))
            del self.streams[victim]

    def snapshot(self) -> dict[str, Any]:
        return {"type": "snapshot", "streams": [v.to_dict() for v in self.streams.values()]}


class ConsoleClient:
    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self.dropped = 0

    def offer(self, text: str | None) -> bool:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True


def sse_frame(text: str) -> bytes:
    return b"data: " + text.encode() + b"\n\n"


class WebConsole:
    """Registers the console routes on `server`; `start()` subscribes to the PUB socket."""

    def __init__(self, config: ConsoleConfig, server: HttpServer, pub_endpoint: str,
                 context: zmq.asyncio.Context, curve: tuple[bytes, bytes, bytes] | None = None) -> None:
        self._config = config
        self._curve = curve  # (public, secret, server public): a monitor key when CURVE is on
        self._pub_endpoint = local_endpoint(pub_endpoint)
        self._context = context
        self.state = ConsoleState(config.max_tracked_streams, config.history_points)
        self._clients: set[ConsoleClient] = set()
        self._relay: asyncio.Task[None] | None = None
        self._relay_supervisor: Supervisor | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self.events_relayed = 0
        self.events_dropped = 0
        self._page, self._script = static_file("index.html"), static_file("console.js")
        app = server.app
        app.router.add_get("/", self.handle_root)
        app.router.add_get("/console", self.handle_root)
        app.router.add_get("/console/", self.handle_page)
        app.router.add_get("/console/console.js", self.handle_script)
        app.router.add_get("/console/events", self.handle_events)

    @property
    def clients(self) -> set[ConsoleClient]:
        """The browsers connected to the live feed now."""
        return self._clients

    async def start(self) -> None:
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        if self._curve is not None:
            make_client(socket, *self._curve)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(self._pub_endpoint)
        self._socket = socket
        self._relay_supervisor = Supervisor("console-relay", functools.partial(self.run_relay, socket))
        self._relay = asyncio.create_task(self._relay_supervisor.run(), name="console-relay")
        log.info("console_ready", pub_endpoint=self._pub_endpoint)

    @property
    def relay_restarts(self) -> int:
        """How often the relay died and was restarted."""
        return self._relay_supervisor.restarts if self._relay_supervisor is not None else 0

    async def stop(self) -> None:
        for client in list(self._clients):
            while not client.offer(None):  # the end marker always gets in
                client.queue.get_nowait()
        if self._relay is not None:
            self._relay.cancel()
            await asyncio.gather(self._relay, return_exceptions=True)
            self._relay = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        log.info("console_stopped", relayed=self.events_relayed, dropped=self.events_dropped)

    async def run_relay(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            frames = await socket.recv_multipart()
            try:
                message = decode_pub(frames)
            except ValueError as exc:
                log.warning("console_bad_pub_message", error=str(exc)[:200])
                continue
            self.state.apply(message)
            text = json.dumps(message, separators=(",", ":"))
            self.events_relayed += 1
            for client in self._clients:
                if not client.offer(text):
                    self.events_dropped += 1

    async def handle_root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/")

    async def handle_page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8", headers=NO_CACHE)

    async def handle_script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._script, content_type="text/javascript", charset="utf-8", headers=NO_CACHE)

    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        if len(self._clients) >= self._config.max_clients:
            return web.Response(status=503, text=f"at most {self._config.max_clients} console clients\n")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        client = ConsoleClient(self._config.client_queue_size)
        self._clients.add(client)
        try:
            await response.write(sse_frame(json.dumps(self.state.snapshot(), separators=(",", ":"))))
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        text = await client.queue.get()
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if text is None:
                    break
                await response.write(sse_frame(text))
        except (ConnectionError, OSError):
            pass  # the browser went away
        finally:
            self._clients.discard(client)
            if client.dropped:
                log.info("console_client_dropped_events", dropped=client.dropped)
        with contextlib.suppress(ConnectionError, OSError):
            await response.write_eof()
        return response
