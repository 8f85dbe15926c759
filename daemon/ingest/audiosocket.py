"""Asterisk AudioSocket ingest: a TCP server that Asterisk's `AudioSocket()` dialplan
application (or the AudioSocket channel driver) connects to, one connection per call.

Wire format (https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/):
every message is a 1-byte type, a 2-byte big-endian payload length and the payload.

    0x00         hangup (no payload; closing the socket means the same)
    0x01         the call's UUID, 16 bytes binary; always the first message
    0x03         one DTMF digit (1 ASCII byte): ignored here, counted
    0x10         signed linear 16-bit little-endian mono PCM at 8 kHz (320 bytes = 20 ms)
    0x11..0x18   the same at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz (Asterisk 20+/docs table);
                 rates above the daemon's 48 kHz limit close the connection with a reason
    0xff         an Asterisk-side error, optional error-code payload: the stream ends as `error`

The UUID becomes the stream id and the `call_id` metadata; the stream opens at the
first audio message (its rate is known only then). Anything malformed (wrong
lengths, unknown types, audio before the UUID, a rate change) closes only that
connection, with the reason logged. The daemon never sends audio back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
import uuid
from dataclasses import dataclass

import numpy as np
import structlog

from daemon.config import AudioSocketConfig
from daemon.refusals import Refusals
from daemon.stream_api import (
    AudioChunk,
    StreamClosedError,
    StreamHandle,
    StreamHub,
    StreamRejected,
    StreamSpec,
)
from daemon.webhooks import WebhookSender
from daemon.wire.frames import MAX_SAMPLE_RATE_HZ

log = structlog.get_logger(__name__)

TRANSPORT = "audiosocket"
KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_ERROR = 0xFF
SLIN_RATES_HZ: dict[int, int] = {
    0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000,
    0x15: 44100, 0x16: 48000, 0x17: 96000, 0x18: 192000,
}
HEADER = struct.Struct(">BH")


class AudioSocketProtocolError(ValueError):
    """The peer broke the protocol; the message says how (logged, the connection is closed)."""


@dataclass(frozen=True)
class Message:
    kind: int
    payload: bytes


def encode_message(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"an AudioSocket payload holds at most 65535 bytes, got {len(payload)}")
    return HEADER.pack(kind, len(payload)) + payload


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None when the peer closed the socket between messages."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise AudioSocketProtocolError(f"connection ended inside a message header ({len(exc.partial)} of 3 bytes)") from None
    kind, length = HEADER.unpack(header)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise AudioSocketProtocolError(
            f"connection ended inside a message of type 0x{kind:02x}: {len(exc.partial)} of {length} payload bytes"
        ) from None
    return Message(kind, payload)


def decode_slin(payload: bytes, kind: int) -> np.ndarray:
    if not payload or len(payload) % 2:
        raise AudioSocketProtocolError(
            f"audio message 0x{kind:02x} has {len(payload)} bytes; 16-bit PCM needs an even, non-zero length")
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) * np.float32(1.0 / 32768.0)


class AudioSocketCall:
    """One TCP connection = one call. Owns its hub stream; `run()` returns when the call ends."""

    def __init__(self, hub: StreamHub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 config: AudioSocketConfig, webhooks: WebhookSender | None, refusals: Refusals) -> None:
        self._hub = hub
        self._refusals = refusals
        self._reader = reader
        self._writer = writer
        self._config = config
        self._webhooks = webhooks
        self.call_id: str | None = None
        self.handle: StreamHandle | None = None
        self.sample_rate_hz: int | None = None
        self.frames = 0
        self.dtmf_digits = 0
        peer = writer.get_extra_info("peername")
        self._log = log.bind(peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer))

    async def run(self) -> None:
        reason = "client"
        try:
            await self._run_messages()
        except AudioSocketProtocolError as exc:
            reason = "error"
            self._refusals.refuse(TRANSPORT, "protocol_error", message=str(exc)[:200], call_id=self.call_id)
            self._log.warning("audiosocket_protocol_error", call_id=self.call_id, reason=str(exc))
        except StreamRejected as exc:
            reason = "error"
            self._refusals.refuse(TRANSPORT, exc.code, message=exc.message[:200], call_id=self.call_id)
            self._log.warning("audiosocket_stream_rejected", call_id=self.call_id, code=exc.code, reason=exc.message)
        except StreamClosedError:
            self._log.info("audiosocket_stream_closed_by_daemon", call_id=self.call_id)
        except TimeoutError:
            reason = "error"
            self._log.warning("audiosocket_timeout", call_id=self.call_id,
                              reason=f"no message for {self._config.read_timeout_s} s")
        except (ConnectionError, OSError) as exc:
            self._log.info("audiosocket_connection_lost", call_id=self.call_id, error=repr(exc))
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        except Exception as exc:  # noqa: BLE001 - a bug on one message ends this call only, as an error
            reason = "error"
            self._refusals.refuse(TRANSPORT, "internal_error", error=repr(exc)[:200], call_id=self.call_id)
            self._log.exception("audiosocket_message_failed", call_id=self.call_id)
        finally:
            await self._finish(reason)

    async def _run_messages(self) -> None:
        timeout = self._config.read_timeout_s
        while True:
            async with asyncio.timeout(timeout):
                message = await read_message(self._reader)
            if message is None or message.kind == KIND_HANGUP:
                self._log.info("audiosocket_hangup", call_id=self.call_id, frames=self.frames,
                               dtmf=self.dtmf_digits, by="socket_closed" if message is None else "hangup_message")
                return
            await self._handle(message)
            if message.kind == KIND_ERROR:
                raise AudioSocketProtocolError(f"Asterisk reported an error (code {message.payload.hex() or 'none'})")

    async def _handle(self, message: Message) -> None:
        kind, payload = message.kind, message.payload
        if kind == KIND_UUID:
            if self.call_id is not None:
                raise AudioSocketProtocolError("a second UUID message on one connection")
            if len(payload) != 16:
                raise AudioSocketProtocolError(f"UUID message has {len(payload)} bytes, expected 16")
            self.call_id = str(uuid.UUID(bytes=payload))
            self._log = self._log.bind(call_id=self.call_id)
            return
        if self.call_id is None:
            raise AudioSocketProtocolError(f"message type 0x{kind:02x} before the UUID message")
        if kind == KIND_DTMF:
            if len(payload) != 1:
                raise AudioSocketProtocolError(f"DTMF message has {len(payload)} bytes, expected 1")
            self.dtmf_digits += 1
            return
        if kind == KIND_ERROR:
            return
        rate = SLIN_RATES_HZ.get(kind)
        if rate is None:
            raise AudioSocketProtocolError(f"unknown message type 0x{kind:02x} ({len(payload)} bytes)")
        if rate > MAX_SAMPLE_RATE_HZ:
            raise AudioSocketProtocolError(f"audio at {rate} Hz (type 0x{kind:02x}) is above the daemon's "
                                           f"{MAX_SAMPLE_RATE_HZ} Hz limit; use slin..slin48 in Asterisk")
        samples = decode_slin(payload, kind)
        handle = await self._stream_at(rate)
        await handle.push(AudioChunk(samples))
        self.frames += 1

    async def _stream_at(self, rate: int) -> StreamHandle:
        if self.handle is not None:
            if rate != self.sample_rate_hz:
                raise AudioSocketProtocolError(f"audio rate changed from {self.sample_rate_hz} to {rate} Hz mid-call")
            return self.handle
        assert self.call_id is not None
        spec = StreamSpec(stream_id=self.call_id, sample_rate_hz=rate, transport=TRANSPORT,
                          metadata={"call_id": self.call_id, "gateway": "asterisk"})
        self.handle = await self._hub.open(spec)
        self.sample_rate_hz = rate
        if self._webhooks is not None and self._config.webhook_url:
            self._webhooks.watch(self.handle, self._config.webhook_url)
        return self.handle

    async def _finish(self, reason: str) -> None:
        if self.handle is not None:
            await self.handle.close(reason)
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class AudioSocketIngest:
    """The TCP server. `start()` listens (port 0 = any free port, see `.port`); `stop()` ends every call."""

    def __init__(self, hub: StreamHub, config: AudioSocketConfig, webhooks: WebhookSender | None = None, *,
                 refusals: Refusals) -> None:
        self._hub = hub
        self._refusals = refusals
        self._config = config
        self._webhooks = webhooks
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_refused = 0
        # AudioSocket has no credentials: with authentication on, the gateways' addresses are the check
        self._allowed = [ipaddress.ip_network(peer, strict=False) for peer in config.allowed_peers]

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("AudioSocketIngest is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self._config.host, self._config.port)
        log.info("audiosocket_listening", host=self._config.host, port=self.port)

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        if not self._allowed:
            return True
        peer = writer.get_extra_info("peername")
        try:
            address = ipaddress.ip_address(peer[0]) if peer else None
        except ValueError:
            return False
        return address is not None and any(address in network for network in self._allowed)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._peer_allowed(writer):
            self._refusals.refuse(TRANSPORT, "peer_not_allowed", peer=str(writer.get_extra_info("peername"))[:60])
            writer.close()
            return
        if len(self._tasks) >= self._config.max_connections:
            self.connections_refused += 1
            self._refusals.refuse(TRANSPORT, "too_many_connections", limit=self._config.max_connections)
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await AudioSocketCall(self._hub, reader, writer, self._config, self._webhooks, self._refusals).run()
        finally:
            self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
            log.info("audiosocket_stopped")
