"""What the WebSocket telephony adapters (Twilio Media Streams, mod_audio_fork/jambonz) share:
a route on the daemon's one HTTP server, a connection limit, an owned task per connection,
bounded JSON parsing, and one way to end a connection that broke its protocol (close code,
logged and counted reason). Whatever else goes wrong while handling a message (a bug) closes
that connection with 1011 and its streams with reason `error`, never the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

from daemon.http import HttpServer
from daemon.refusals import Refusals
from daemon.stream_api import StreamClosedError, StreamRejected
from daemon.wire.limits import JsonRejected, loads_bounded, metadata_problem

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024
MAX_TEXT_BYTES = 64 * 1024  # one JSON text message (a Twilio media message is ~300 bytes)


class ProtocolViolation(Exception):
    """The peer broke its protocol: the connection is closed with `close_code` and this reason;
    `code` is the short reason counted in the daemon's `Refusals`."""

    def __init__(self, reason: str, close_code: int = WSCloseCode.POLICY_VIOLATION,
                 code: str = "protocol_error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code
        self.code = code


def json_object(text: str) -> dict[str, Any]:
    """One JSON text message as an object, bounded (size, depth, numbers); ProtocolViolation (1007) otherwise."""
    try:
        message = loads_bounded(text, max_bytes=MAX_TEXT_BYTES)
    except JsonRejected as exc:
        raise ProtocolViolation(f"text message refused: {exc.message}", WSCloseCode.INVALID_TEXT,
                                code=f"json_{exc.reason}") from None
    if not isinstance(message, dict):
        raise ProtocolViolation("text message is not a JSON object", WSCloseCode.INVALID_TEXT, code="json_not_object")
    return message


def string_metadata(items: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Call metadata as the hub wants it: string keys and values. Nested values are skipped
    (results echo the metadata; keep them flat and small); `check_metadata` enforces the limits."""
    return {f"{prefix}{key}": str(value) for key, value in items.items()
            if not isinstance(value, (dict, list)) and value is not None}


def check_metadata(metadata: Mapping[str, str]) -> None:
    """The one metadata limit of every transport (daemon/wire/limits.py), as a 1008 close."""
    problem = metadata_problem(metadata)
    if problem is not None:
        raise ProtocolViolation(problem, code="bad_metadata")


def _close_message(text: str) -> bytes:
    """A close frame's reason: at most 123 bytes of UTF-8 (RFC 6455), cut on a character boundary."""
    return text.encode()[:120].decode("utf-8", "ignore").encode()


class WebSocketConnection:
    """One accepted WebSocket. Subclasses implement `on_text`/`on_binary` and `close_streams`."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, transport: str, refusals: Refusals) -> None:
        self.ws = ws
        self.request = request
        self.transport = transport
        self._refusals = refusals
        self.log = log.bind(transport=transport, peer=request.remote)
        self.shutting_down = False  # set by the adapter's stop(): the streams end as `shutdown`

    async def on_text(self, text: str) -> None:
        raise ProtocolViolation("text messages are not part of this protocol", WSCloseCode.UNSUPPORTED_DATA)

    async def on_binary(self, data: bytes) -> None:
        raise ProtocolViolation("binary messages are not part of this protocol", WSCloseCode.UNSUPPORTED_DATA)

    async def close_streams(self, reason: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Read until the peer closes or breaks the protocol; always closes this connection's streams."""
        reason = "client"
        try:
            async for message in self.ws:
                if message.type == web.WSMsgType.TEXT:
                    await self.on_text(message.data)
                elif message.type == web.WSMsgType.BINARY:
                    await self.on_binary(message.data)
                elif message.type == web.WSMsgType.ERROR:
                    self.log.info("ws_transport_error", error=repr(self.ws.exception()))
                    break
            if self.shutting_down:
                reason = "shutdown"
            elif self.ws.close_code not in (None, WSCloseCode.OK, WSCloseCode.GOING_AWAY):
                self.log.info("ws_closed_by_peer", code=self.ws.close_code)
        except ProtocolViolation as exc:
            reason = "error"
            self._refusals.refuse(self.transport, exc.code, message=exc.reason[:200], peer=self.request.remote)
            self.log.warning("ws_protocol_error", reason=exc.reason)
            await self.ws.close(code=exc.close_code, message=_close_message(exc.reason))
        except StreamRejected as exc:
            reason = "error"
            self._refusals.refuse(self.transport, exc.code, message=exc.message[:200], peer=self.request.remote)
            self.log.warning("ws_stream_rejected", code=exc.code, reason=exc.message)
            close_code = WSCloseCode.POLICY_VIOLATION if exc.code == "bad_field" else WSCloseCode.TRY_AGAIN_LATER
            await self.ws.close(code=close_code, message=_close_message(f"{exc.code}: {exc.message}"))
        except StreamClosedError:
            self.log.info("ws_stream_closed_by_daemon")
            await self.ws.close(code=WSCloseCode.OK, message=b"stream closed by the daemon")
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        except Exception as exc:  # a bug on one message ends this connection only, as an error
            reason = "error"
            self._refusals.refuse(self.transport, "internal_error", error=repr(exc)[:200], peer=self.request.remote)
            self.log.exception("ws_message_failed")
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR,
                                message=_close_message(f"internal error ({type(exc).__name__}), logged"))
        finally:
            await self.close_streams(reason)


class WebSocketIngest:
    """Base of a WebSocket adapter: registers `path` on the shared `HttpServer` (whose owner starts it)."""

    transport = "websocket"
    subprotocols: tuple[str, ...] = ()

    def __init__(self, server: HttpServer, path: str, max_connections: int, refusals: Refusals) -> None:
        self.server = server
        self.path = path
        self._max_connections = max_connections
        self._refusals = refusals
        self._connections: dict[asyncio.Task[Any], WebSocketConnection] = {}
        self._stopping = False
        self.connections_refused = 0
        server.app.router.add_get(path, self.handle)

    def connect(self, ws: web.WebSocketResponse, request: web.Request) -> WebSocketConnection:
        raise NotImplementedError

    async def start(self) -> None:
        log.info("ws_ingest_ready", transport=self.transport, path=self.path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return web.Response(status=503, text="the daemon is shutting down\n")
        if len(self._connections) >= self._max_connections:
            self.connections_refused += 1
            self._refusals.refuse(self.transport, "too_many_connections", limit=self._max_connections, peer=request.remote)
            return web.Response(status=503, text=f"at most {self._max_connections} {self.transport} connections\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, protocols=self.subprotocols)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text=f"{self.path} expects a WebSocket upgrade\n")
        await ws.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        connection = self._connections[task] = self.connect(ws, request)
        try:
            await connection.run()
        finally:
            self._connections.pop(task, None)
            if not ws.closed:
                await ws.close()
        return ws

    async def stop(self) -> None:
        """Close every connection (going away); their streams close with reason `shutdown`."""
        self._stopping = True
        for connection in list(self._connections.values()):
            connection.shutting_down = True
            await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"daemon shutting down")
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
