"""ZeroMQ ROUTER ingest (protocol v1, docs/protocol.md): translates messages into hub calls.

One receive loop handles every client in arrival order, so each stream's audio is
pushed in order. Nothing in the loop waits on inference: `push` only buffers, and a
`close` (which drains the stream) runs in its own task that replies when done.
A rejected message gets an error reply to its sender only and touches no other stream,
and is counted by reason (the daemon's `Refusals`). An `audio_batch` message (many streams' audio
from one gateway) is handled entry by entry in message order, exactly as that many `audio`
messages would be; a bad entry is refused alone. A message that makes the adapter itself fail
(a bug) gets `internal_error` and is logged with its traceback; the receive loop runs
under a `Supervisor`, so even a failure outside one message restarts it instead of ending
ZeroMQ ingest for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import zmq
import zmq.asyncio

from daemon.config import ZmqConfig
from daemon.refusals import Refusals
from daemon.stream_api import (
    AudioChunk,
    StreamClosedError,
    StreamHandle,
    StreamHub,
    StreamRejected,
    StreamSpec,
)
from daemon.supervise import Supervisor
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import PayloadError, decode_payload, decode_payloads
from daemon.wire.zmq_messages import (
    AudioBatchMessage,
    AudioMessage,
    ClosedReply,
    CloseMessage,
    OpenedReply,
    OpenMessage,
    PingMessage,
    PongReply,
    ProtocolError,
    parse_request,
)
from daemon.zmq_auth import CurveKeys, make_server, user_of

log = structlog.get_logger(__name__)

DRAIN_BUDGET = 256  # messages (or batch entries) handled before the receive loop lets other tasks run (~2-3 ms)


@dataclass
class _ClientStream:
    owner: bytes  # ROUTER identity of the client that opened it
    handle: StreamHandle
    format: AudioFormat


class ZmqIngest:
    def __init__(self, hub: StreamHub, config: ZmqConfig, *, refusals: Refusals, model_id: str = "",
                 hop_ms: float = 0.0, context: zmq.asyncio.Context | None = None,
                 curve: CurveKeys | None = None) -> None:
        self._hub = hub
        self._refusals = refusals
        self._curve = curve  # a CURVE server: each stream records the User-Id of its opener
        self._config = config
        self._model_id = model_id
        self._hop_ms = hop_ms
        self._context = context or zmq.asyncio.Context.instance()
        self._socket: zmq.asyncio.Socket | None = None
        self._streams: dict[str, _ClientStream] = {}
        self._task: asyncio.Task[None] | None = None
        self._supervisor = Supervisor("zmq-ingest", self.run_receive)
        self._closers: set[asyncio.Task[Any]] = set()
        self.endpoint = ""
        self.replies_dropped = 0
        self.messages_rejected = 0

    async def start(self) -> None:
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.RCVHWM, self._config.ingest_hwm)
        socket.setsockopt(zmq.SNDHWM, self._config.ingest_hwm)
        socket.setsockopt(zmq.MAXMSGSIZE, self._config.max_message_bytes)
        socket.setsockopt(zmq.LINGER, 500)
        if self._curve is not None:
            make_server(socket, self._curve)
        socket.bind(self._config.ingest_endpoint)
        self.endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._socket = socket
        self._task = asyncio.create_task(self._supervisor.run(), name="zmq-ingest")
        log.info("zmq_ingest_listening", endpoint=self.endpoint)

    @property
    def restarts(self) -> int:
        """How often the receive loop died and was restarted."""
        return self._supervisor.restarts

    async def stop(self) -> None:
        """Stop accepting: end the receive loop, let pending close acks finish, close the socket."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._closers:
            await asyncio.gather(*list(self._closers), return_exceptions=True)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def run_receive(self) -> None:
        """Wait until the socket is readable, then drain it without the per-message future
        machinery of zmq.asyncio (a plain shadow socket, non-blocking), yielding to the loop
        every DRAIN_BUDGET messages so scoring and batching never starve under steady input.

        Once the socket is empty, the loop sleeps `receive_tick_ms` before polling again: at
        real-time pacing the messages of many streams otherwise arrive one by one, and each
        costs a full event-loop wakeup (epoll, zmq.asyncio's poll future, task switch), which
        was most of the daemon's CPU per message. A tick of a few ms batches them."""
        assert self._socket is not None
        drain: zmq.Socket[bytes] = zmq.Socket.shadow(self._socket.underlying)
        tick_s = self._config.receive_tick_ms / 1000.0
        while True:
            await self._socket.poll()  # readable (POLLIN is the default)
            while await self._drain(drain) == DRAIN_BUDGET:
                await asyncio.sleep(0)
            if tick_s:
                await asyncio.sleep(tick_s)

    async def _drain(self, drain: zmq.Socket[bytes]) -> int:
        """Handle queued messages in arrival order until DRAIN_BUDGET of work is done (an
        `audio_batch` counts one per entry) or the socket is empty; returns DRAIN_BUDGET when
        the budget ran out, else the work done."""
        work = 0
        while work < DRAIN_BUDGET:
            try:
                if self._curve is None:
                    frames = drain.recv_multipart(flags=zmq.NOBLOCK)
                    user = ""
                else:  # the ZAP User-Id travels on the frames the peer sent
                    parts = drain.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    user = user_of(parts[-1])
                    frames = [part.bytes for part in parts]
            except zmq.Again:
                return work
            work += max(1, len(frames) - 2)  # [identity, header, payloads...]
            await self._dispatch(frames, user)
        return DRAIN_BUDGET

    async def _dispatch(self, frames: list[bytes], user: str = "") -> None:
        if len(frames) < 2:
            return  # no identity: cannot happen on ROUTER, nothing to answer
        identity, body = frames[0], frames[1:]
        try:
            await self._handle(identity, body, user)
        except ProtocolError as exc:
            await self._refuse(identity, exc)
        except Exception as exc:  # one message must never end ingest
            log.exception("zmq_message_failed", frames=len(body), size=sum(map(len, body)))
            await self._internal_error(identity, exc, "message")

    async def _refuse(self, identity: bytes, exc: ProtocolError) -> None:
        self.messages_rejected += 1
        self._refusals.refuse("zmq", exc.code, message=exc.message, stream_id=exc.stream_id, ref=exc.ref)
        await self._reply(identity, exc.reply().to_frames())

    async def _internal_error(self, identity: bytes, exc: Exception, what: str, *, stream_id: str | None = None,
                              ref: str = "?", seq: int | None = None, index: int | None = None) -> None:
        self.messages_rejected += 1
        self._refusals.refuse("zmq", "internal_error", error=repr(exc)[:200])
        error = ProtocolError("internal_error", f"the daemon failed on this {what} ({type(exc).__name__}); "
                              "it was dropped and logged", stream_id=stream_id, ref=ref, seq=seq, index=index)
        await self._reply(identity, error.reply().to_frames())

    async def _handle(self, identity: bytes, body: Sequence[bytes], user: str = "") -> None:
        message = parse_request(body)
        if isinstance(message, AudioMessage):
            await self._on_audio(identity, message)
        elif isinstance(message, AudioBatchMessage):
            await self._on_audio_batch(identity, message)
        elif isinstance(message, OpenMessage):
            await self._on_open(identity, message, user)
        elif isinstance(message, CloseMessage):
            self._on_close(identity, message)
        elif isinstance(message, PingMessage):
            await self._reply(identity, PongReply().to_frames())

    def _owned(self, identity: bytes, stream_id: str, ref: str, seq: int | None = None) -> _ClientStream:
        entry = self._streams.get(stream_id)
        if entry is not None and entry.handle.closed:
            del self._streams[stream_id]  # closed by the daemon (idle, error)
            entry = None
        if entry is None:
            raise ProtocolError("unknown_stream", f"stream {stream_id!r} is not open", stream_id=stream_id,
                                ref=ref, seq=seq)
        if entry.owner != identity:
            raise ProtocolError("stream_owned_by_other", f"stream {stream_id!r} belongs to another connection",
                                stream_id=stream_id, ref=ref, seq=seq)
        return entry

    async def _on_open(self, identity: bytes, message: OpenMessage, user: str = "") -> None:
        self._forget_closed()
        spec = StreamSpec(stream_id=message.stream_id, sample_rate_hz=message.format.sample_rate_hz,
                          transport="zmq", metadata=dict(message.metadata), owner=user)
        try:
            handle = await self._hub.open(spec)
        except StreamRejected as exc:
            raise ProtocolError(exc.code, exc.message, stream_id=message.stream_id, ref="open") from None
        self._streams[message.stream_id] = _ClientStream(identity, handle, message.format)
        await self._reply(identity, OpenedReply(message.stream_id, self._model_id, self._hop_ms).to_frames())

    async def _on_audio(self, identity: bytes, message: AudioMessage) -> None:
        entry = self._owned(identity, message.stream_id, "audio", message.seq)
        try:
            samples = decode_payload(message.payload, entry.format)
        except PayloadError as exc:
            raise ProtocolError("bad_payload", str(exc), stream_id=message.stream_id, ref="audio",
                                seq=message.seq) from None
        await self._push(entry, message, samples, "audio")

    async def _push(self, entry: _ClientStream, message: AudioMessage, samples: npt.NDArray[np.float32],
                    ref: str) -> None:
        try:
            await entry.handle.push(AudioChunk(samples, message.seq))
        except StreamClosedError:
            self._streams.pop(message.stream_id, None)
            raise ProtocolError("unknown_stream", f"stream {message.stream_id!r} was closed",
                                stream_id=message.stream_id, ref=ref, seq=message.seq) from None

    async def _on_audio_batch(self, identity: bytes, message: AudioBatchMessage) -> None:
        """Each entry as its own `audio` message, pushed in message order; one entry's error (or
        a bug while pushing it) is answered for that entry alone, with its index, after the
        pushes, in entry order. The payloads are decoded together (`decode_payloads`): one
        table lookup for all mono G.711 entries instead of one per entry."""
        refused: list[ProtocolError] = []
        owned: list[tuple[int, AudioMessage, _ClientStream]] = []
        for index, entry in enumerate(message.entries):
            if isinstance(entry, ProtocolError):
                refused.append(entry)
                continue
            try:
                owned.append((index, entry, self._owned(identity, entry.stream_id, "audio_batch", entry.seq)))
            except ProtocolError as exc:
                exc.index = index
                refused.append(exc)
        decoded = decode_payloads([(entry.payload, stream.format) for _, entry, stream in owned])
        failures: list[tuple[int, AudioMessage, Exception]] = []
        for (index, entry, stream), samples in zip(owned, decoded, strict=True):
            try:
                if isinstance(samples, PayloadError):
                    raise ProtocolError("bad_payload", str(samples), stream_id=entry.stream_id, ref="audio_batch",
                                        seq=entry.seq)
                await self._push(stream, entry, samples, "audio_batch")
            except ProtocolError as exc:
                exc.index = index
                refused.append(exc)
            except Exception as exc:  # this entry's failure only
                log.exception("zmq_batch_entry_failed", stream_id=entry.stream_id, index=index)
                failures.append((index, entry, exc))
        for problem in sorted(refused, key=lambda e: e.index or 0):
            await self._refuse(identity, problem)
        for index, entry, failure in failures:
            await self._internal_error(identity, failure, "entry", stream_id=entry.stream_id, ref="audio_batch",
                                       seq=entry.seq, index=index)

    def _on_close(self, identity: bytes, message: CloseMessage) -> None:
        entry = self._owned(identity, message.stream_id, "close")
        del self._streams[message.stream_id]
        task = asyncio.create_task(self._close_and_ack(identity, entry.handle), name=f"zmq-close:{message.stream_id}")
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _close_and_ack(self, identity: bytes, handle: StreamHandle) -> None:
        await handle.close("client")
        await self._reply(identity, ClosedReply(handle.stream_id).to_frames())

    def _forget_closed(self) -> None:
        for stream_id in [k for k, v in self._streams.items() if v.handle.closed]:
            del self._streams[stream_id]

    async def _reply(self, identity: bytes, frames: list[bytes]) -> None:
        if self._socket is None:
            return
        try:
            await self._socket.send_multipart([identity, *frames], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.replies_dropped += 1

