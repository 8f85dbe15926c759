"""Python client of the daemon's ZeroMQ protocol (docs/protocol.md): async and sync.

    async with AsyncDetectorClient() as client:
        results = client.subscribe(["call-1"], until_closed=True)   # subscribe first (ZeroMQ slow joiner)
        stream = await client.open_stream("call-1", encoding="mulaw", sample_rate_hz=8000)
        await stream.send(samples, realtime=True)   # float32/int16 numpy, or payload bytes
        await stream.close()
        async for message in results: ...

    with DetectorClient() as client:       # the same API, blocking; runs the async client on a thread
        ...

A gateway that holds many calls sends each one's 20 ms frame in one message per tick
(`audio_batch`, docs/protocol.md), which costs the daemon less per frame than one message each:

        streams = [await client.open_stream(f"call-{i}", encoding="mulaw", sample_rate_hz=8000) for i in ...]
        while ...:   # every 20 ms
            errors = await client.send_batch([(stream, frame_of(stream)) for stream in streams])

Messages are built and parsed by `daemon.wire.zmq_messages` and `daemon.wire.results`,
never here. A daemon error reply raises `DaemonReplyError` with its reason code: at once
for open/close/ping, and on the stream's next `send`/`close` for rejected audio.

Daemon restarts (`reconnect=True`, the default): ZeroMQ reconnects the socket by itself, but
the new daemon knows none of the old streams. The client notices the loss (its socket's
monitor reports the disconnect, or the daemon answers `unknown_stream` to audio) and reopens
each open stream under a new id `<id>~<n>` whose metadata records `resumed_from` (the id it
replaces), pinging with exponential backoff until the daemon answers. Audio sent to the lost
stream, and real-time audio that arrives while the stream is being reopened, is not scored:
`stream.gaps` lists each gap (`Gap.frames`, `Gap.seconds`). Subscriptions made through the
client follow the new id, and a `closed` summary of reason `shutdown` for a stream the client
still has open does not end an `until_closed` subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np
import numpy.typing as npt
import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from daemon.wire.endpoints import DEFAULT_INGEST_ENDPOINT, DEFAULT_RESULTS_ENDPOINT
from daemon.wire.frames import AudioFormat, Encoding
from daemon.wire.pcm import MAX_PAYLOAD_S, MIN_PAYLOAD_S, encode_samples
from daemon.wire.results import decode_pub
from daemon.wire.zmq_messages import (
    MAX_BATCH_ENTRIES,
    AudioBatchMessage,
    AudioMessage,
    ClosedReply,
    CloseMessage,
    ErrorReply,
    OpenedReply,
    OpenMessage,
    PingMessage,
    PongReply,
    Reply,
    parse_reply,
)
from daemon.zmq_auth import make_client
from streaming_models.runtime.errors import SpoofwatchError

log = structlog.get_logger(__name__)

DEFAULT_FRAME_MS = 20
RESUMED_FROM_KEY = "resumed_from"  # metadata of a reopened stream: the id it replaces
RESUBSCRIBE_SETTLE_S = 0.05  # a subscription reaches the PUB socket shortly after the handshake
T = TypeVar("T")


class DaemonReplyError(SpoofwatchError):
    """The daemon answered with an error reply; `code` is its stable reason code. (The daemon's own
    `daemon.errors.DaemonError` is what the daemon raises inside itself; this is what a client gets.)"""

    def __init__(self, reply: ErrorReply) -> None:
        where = f" (stream {reply.stream_id!r}, {reply.ref}" + (f" seq {reply.seq})" if reply.seq is not None else ")")
        super().__init__(f"{reply.code}: {reply.message}{where if reply.stream_id else ''}")
        self.code = reply.code
        self.message = reply.message
        self.stream_id = reply.stream_id
        self.ref = reply.ref
        self.seq = reply.seq


@dataclass(frozen=True)
class StreamInfo:
    stream_id: str
    model_id: str
    hop_ms: float


@dataclass(frozen=True)
class Gap:
    """Audio no daemon scored because the connection was lost (a daemon restart)."""

    previous_stream_id: str
    stream_id: str  # the stream that replaced it
    frames: int  # messages sent to the lost stream after the loss, or dropped while reopening
    seconds: float
    reopened_after_s: float  # from noticing the loss to the new stream being open


@dataclass(frozen=True)
class CurveCredentials:
    """A client's CURVE key pair and the daemon's public key, for a daemon with ZeroMQ
    authentication on (docs/security.md)."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_files(cls, client_secret_file: str | Path, server_public_file: str | Path) -> CurveCredentials:
        """`NAME.key_secret` (from `spoofwatch keys generate NAME`) and the daemon's `server.key`."""
        from zmq.auth.certs import load_certificate

        public, secret = load_certificate(client_secret_file)
        if secret is None:
            raise ValueError(f"{client_secret_file} holds no secret key (pass NAME.key_secret)")
        server_public, _ = load_certificate(server_public_file)
        return cls(public, secret, server_public)

    def apply(self, socket: zmq.Socket[Any]) -> None:
        make_client(socket, self.public, self.secret, self.server_public)


@dataclass
class ReconnectPolicy:
    """How a client reopens its streams after a daemon restart."""

    enabled: bool = True
    initial_delay_s: float = 0.1  # first wait between attempts; doubled up to max_delay_s
    max_delay_s: float = 2.0
    give_up_after_s: float = 60.0  # then the stream's next send/close raises ConnectionError
    ping_timeout_s: float = 1.0
    history: list[Gap] = field(default_factory=list)  # every gap of this client's streams


class AsyncStream:
    """One open stream: cuts audio into `frame_ms` messages with increasing `seq` and sends them."""

    def __init__(self, client: AsyncDetectorClient, info: StreamInfo, fmt: AudioFormat, frame_ms: int,
                 metadata: Mapping[str, str] | None = None) -> None:
        self.info = info
        self.format = fmt
        self.next_seq = 0  # of the current stream (a reopened stream starts at 0 again)
        self.frames_sent = 0  # every stream this one has been, together
        self.frame_bytes = fmt.bytes_per_frame * fmt.sample_rate_hz * frame_ms // 1000
        self._frame_s = frame_ms / 1000
        self._client = client
        self._remainder = b""
        self._clock_start: float | None = None
        self._clock_frames = 0
        self._closed = False
        self.metadata = dict(metadata or {})
        self.base_id = info.stream_id
        self.gaps: list[Gap] = []
        self._lost_from_seq: int | None = None  # set when the connection to this stream's daemon is lost
        self._lost_at = 0.0
        self._dropped_frames = 0
        self._resume: asyncio.Task[None] | None = None

    @property
    def lost(self) -> bool:
        return self._lost_from_seq is not None

    def mark_lost(self, from_seq: int | None = None) -> None:
        """The daemon holding this stream is gone (or no longer knows it); frames from `from_seq`
        on were not scored."""
        seq = self.next_seq if from_seq is None else min(from_seq, self.next_seq)
        if self._lost_from_seq is None:
            self._lost_from_seq = seq
            self._lost_at = time.monotonic()
            log.warning("client_stream_lost", stream_id=self.stream_id, from_seq=seq)
        else:
            self._lost_from_seq = min(self._lost_from_seq, seq)

    @property
    def stream_id(self) -> str:
        return self.info.stream_id

    def encode(self, audio: npt.ArrayLike | bytes) -> bytes:
        """numpy float samples in [-1, 1] or int16 ([n] or [n, channels]) -> payload bytes; bytes pass through."""
        if isinstance(audio, (bytes, bytearray, memoryview)):
            return bytes(audio)
        samples = np.asarray(audio)
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        elif not np.issubdtype(samples.dtype, np.floating):
            raise TypeError(f"audio must be float or int16 samples, or payload bytes; got {samples.dtype}")
        return encode_samples(samples, self.format)

    async def send(self, audio: npt.ArrayLike | bytes, *, realtime: bool = False) -> int:
        """Send audio; returns the number of messages sent. A partial last frame waits for the
        next call (or `close`). With `realtime`, frames leave at the pace of the audio clock."""
        self._check_open()
        data = self._remainder + self.encode(audio)
        whole = len(data) - len(data) % self.frame_bytes
        self._remainder = data[whole:]
        sent = 0
        for start in range(0, whole, self.frame_bytes):
            if realtime:
                await self._wait_for_slot()
            await self._send_payload(data[start : start + self.frame_bytes], realtime=realtime)
            sent += 1
        return sent

    async def close(self) -> None:
        """Flush the partial frame (padded with silence when shorter than 10 ms), then close."""
        if self._closed:
            return
        self._check_open()
        if self.lost:
            await self._resumed()
        if self._remainder:
            payload = self._remainder
            shortest = int(np.ceil(MIN_PAYLOAD_S * self.format.sample_rate_hz)) * self.format.bytes_per_frame
            if len(payload) < shortest:
                silence = np.zeros((shortest - len(payload)) // self.format.bytes_per_frame, dtype=np.float32)
                if self.format.channels > 1:
                    silence = np.repeat(silence[:, None], self.format.channels, axis=1)
                payload += encode_samples(silence, self.format)
            self._remainder = b""
            await self._send_payload(payload)
        try:
            await self._client.close_stream(self.stream_id)
        except DaemonReplyError as exc:
            if not (self._client.reconnect.enabled and exc.code == "unknown_stream"):
                raise
            self.mark_lost()  # the daemon restarted before it answered: close the reopened stream
            await self._resumed()
            await self._client.close_stream(self.stream_id)
        self._closed = True

    async def _send_payload(self, payload: bytes, *, realtime: bool = False) -> None:
        assert len(payload) <= MAX_PAYLOAD_S * self.format.sample_rate_hz * self.format.bytes_per_frame
        self._clock_frames += 1
        if self.lost:
            if realtime and (self._resume is None or not self._resume.done()):
                self._start_resume()
                self._dropped_frames += 1  # live audio cannot wait for the daemon: the gap grows
                return
            await self._resumed()
        self._client.raise_stream_error(self.stream_id)
        await self._client.send_frames(AudioMessage(self.stream_id, self.next_seq, payload).to_frames())
        self.next_seq += 1
        self.frames_sent += 1

    def _start_resume(self) -> None:
        if self._resume is None:
            self._resume = asyncio.create_task(self._reopen(), name=f"resume:{self.stream_id}")

    async def _resumed(self) -> None:
        """Wait until the lost stream is open again (raises ConnectionError when given up)."""
        self._start_resume()
        assert self._resume is not None
        await self._resume

    async def _reopen(self) -> None:
        client = self._client
        policy = client.reconnect
        old_id = self.stream_id
        new_id = f"{self.base_id}~{len(self.gaps) + 1}"
        metadata = {**self.metadata, RESUMED_FROM_KEY: old_id}
        delay = policy.initial_delay_s
        deadline = self._lost_at + policy.give_up_after_s
        tried_open = False
        info: StreamInfo | None = None
        while info is None:
            try:
                await client.ping(timeout_s=policy.ping_timeout_s)
                await client.subscriptions_connected(old_id, policy.ping_timeout_s)  # or `opened` is lost
                client.follow(old_id, new_id)  # before the open: its `opened` may arrive before the reply
                tried_open = True
                reply = await client._request(("open", new_id), OpenMessage(new_id, self.format, metadata).to_frames())
                assert isinstance(reply, OpenedReply)
                info = StreamInfo(new_id, reply.model_id, reply.hop_ms)
                break
            except TimeoutError:
                pass
            except DaemonReplyError as exc:
                if exc.code == "stream_exists" and tried_open:  # an earlier attempt's open got through
                    info = StreamInfo(new_id, self.info.model_id, self.info.hop_ms)
                    break
                if exc.code not in ("server_shutting_down", "too_many_streams"):
                    raise
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"stream {old_id!r}: no daemon at {client.endpoint} accepted it again "
                                      f"within {policy.give_up_after_s} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_delay_s)
        assert self._lost_from_seq is not None
        frames = self.next_seq - self._lost_from_seq + self._dropped_frames
        gap = Gap(old_id, new_id, frames, round(frames * self._frame_s, 6),
                  round(time.monotonic() - self._lost_at, 3))
        self.gaps.append(gap)
        policy.history.append(gap)
        client.stream_reopened(self, old_id, info)
        self.info = info
        self.next_seq = 0
        self._lost_from_seq = None
        self._dropped_frames = 0
        self._resume = None  # a later loss starts a new attempt
        log.warning("client_stream_reopened", previous_stream_id=old_id, stream_id=new_id, gap_frames=frames,
                    gap_s=gap.seconds, after_s=gap.reopened_after_s)

    def batch_entry(self, audio: npt.ArrayLike | bytes) -> AudioMessage:
        """`audio` as this stream's next message, for `send_batch`: one payload of 10 ms .. 1 s
        in whole frames, not cut into `frame_ms` pieces; takes the next `seq`."""
        if self._closed:
            raise RuntimeError(f"stream {self.stream_id!r} is closed")
        if self._remainder:
            raise RuntimeError(f"stream {self.stream_id!r} holds a partial frame from send(); "
                               "send the rest with send() before batching it")
        payload = self.encode(audio)
        frames, rest = divmod(len(payload), self.format.bytes_per_frame)
        rate = self.format.sample_rate_hz
        if rest or not np.ceil(MIN_PAYLOAD_S * rate) <= frames <= MAX_PAYLOAD_S * rate:
            raise ValueError(f"a batch entry is one payload of whole frames lasting {MIN_PAYLOAD_S * 1000:.0f} ms "
                             f"to {MAX_PAYLOAD_S:.0f} s; got {len(payload)} bytes of {self.format.encoding} "
                             f"at {rate} Hz, {self.format.channels} channel(s)")
        entry = AudioMessage(self.stream_id, self.next_seq, payload)
        self.next_seq += 1
        return entry

    async def _wait_for_slot(self) -> None:
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start = now
        due = self._clock_start + self._clock_frames * self._frame_s
        if due > now:
            await asyncio.sleep(due - now)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"stream {self.stream_id!r} is closed")
        self._client.raise_stream_error(self.stream_id)


class ResultSubscription:
    """Messages from the results PUB socket, as dicts, filtered to `stream_ids` (None = all).

    Iteration raises `TimeoutError` after `timeout_s` without a message (None = wait forever)
    and, with `until_closed`, ends once every named stream has published `closed`.

    Each subscriber's losses are its own (a slow subscriber's queue overflows for it alone), so
    the subscription counts them: for a stream it saw open, `missed[stream_id]` is the number of
    results published (the `closed` summary's `hops`) that never arrived here.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_RESULTS_ENDPOINT,
        stream_ids: Iterable[str] | None = None,
        *,
        timeout_s: float | None = None,
        until_closed: bool = False,
        context: zmq.asyncio.Context | None = None,
        still_open: Callable[[str], bool] | None = None,
        curve: CurveCredentials | None = None,
    ) -> None:
        self._still_open = still_open  # a client's streams that will be reopened after a restart
        self._owned_context = context is None
        context = zmq.asyncio.Context() if context is None else context
        self._context = context
        self._wanted = set(stream_ids) if stream_ids is not None else None
        if until_closed and not self._wanted:
            raise ValueError("until_closed needs explicit stream_ids")
        self._open = set(self._wanted or ())
        self._until_closed = until_closed
        self._timeout_ms = None if timeout_s is None else int(timeout_s * 1000)
        self._socket = context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._socket)
        for topic in self._wanted or {""}:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(endpoint)
        self._received: dict[str, int] = {}  # results per stream seen from its `opened` on
        self.missed: dict[str, int] = {}
        self._connected = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None
        self._monitor_socket: Any = None
        if still_open is not None:  # a reconnecting client waits for this socket before reopening
            events = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
            self._monitor_socket = self._socket.get_monitor_socket(events)
            self._monitor = asyncio.create_task(self._watch(self._monitor_socket), name="subscription-monitor")

    async def _watch(self, monitor: Any) -> None:
        while True:
            event = await recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected.set()
            else:
                self._connected.clear()

    def wants(self, stream_id: str) -> bool:
        return self._wanted is None or stream_id in self._wanted

    async def wait_connected(self, timeout_s: float) -> None:
        """Until the socket is connected to a PUB socket again (after a daemon restart), and its
        subscriptions had a moment to reach it; gives up silently after `timeout_s`."""
        if self._monitor is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
            await asyncio.sleep(RESUBSCRIBE_SETTLE_S)

    def _count(self, message: dict[str, Any]) -> None:
        stream_id, kind = str(message.get("stream_id")), message.get("type")
        if kind == "opened":
            self._received[stream_id] = 0
        elif kind == "result" and stream_id in self._received:
            self._received[stream_id] += 1
        elif kind == "closed" and stream_id in self._received:
            hops = (message.get("summary") or {}).get("hops")
            received = self._received.pop(stream_id)
            if isinstance(hops, int):
                self.missed[stream_id] = max(0, hops - received)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._until_closed and not self._open:
                raise StopAsyncIteration
            if self._socket.closed:
                raise StopAsyncIteration
            if not await self._socket.poll(self._timeout_ms):
                raise TimeoutError(f"no result message within {self._timeout_ms} ms")
            try:
                message = decode_pub(await self._socket.recv_multipart())
            except ValueError as exc:
                log.warning("client_bad_pub_message", error=str(exc))
                continue
            stream_id = message.get("stream_id")
            if self._wanted is not None and stream_id not in self._wanted:
                continue  # topic filters match by prefix: "call-1" also receives "call-10"
            self._count(message)
            if message.get("type") == "closed" and not (
                    message.get("reason") == "shutdown" and self._still_open is not None
                    and self._still_open(str(stream_id))):
                self._open.discard(str(stream_id))
            return message

    def follow(self, old_id: str, new_id: str) -> None:
        """A stream was reopened as `new_id` after a daemon restart: receive its messages too, and
        with `until_closed` wait for its `closed` instead of the old one's."""
        if self._wanted is None or old_id not in self._wanted or new_id in self._wanted:
            return
        self._wanted.add(new_id)
        self._socket.setsockopt(zmq.SUBSCRIBE, new_id.encode())
        if old_id in self._open:
            self._open.discard(old_id)
            self._open.add(new_id)

    def close(self) -> None:
        if self._socket.closed:
            return
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
            self._socket.disable_monitor()
            self._monitor_socket.close(linger=0)
        self._socket.close(linger=0)
        if self._owned_context:
            self._context.term()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AsyncDetectorClient:
    """A DEALER connection to the daemon's ingest, plus result subscriptions."""

    def __init__(
        self,
        endpoint: str = DEFAULT_INGEST_ENDPOINT,
        results_endpoint: str = DEFAULT_RESULTS_ENDPOINT,
        *,
        timeout_s: float = 5.0,
        frame_ms: int = DEFAULT_FRAME_MS,
        reconnect: ReconnectPolicy | bool = True,
        curve: CurveCredentials | None = None,
    ) -> None:
        if not 10 <= frame_ms <= 1000:
            raise ValueError(f"frame_ms must be 10..1000, got {frame_ms}")
        self.curve = curve
        self.reconnect = reconnect if isinstance(reconnect, ReconnectPolicy) else ReconnectPolicy(enabled=reconnect)
        self.endpoint = endpoint
        self.results_endpoint = results_endpoint
        self.timeout_s = timeout_s
        self.frame_ms = frame_ms
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 2000)  # let queued audio leave on close
        if curve is not None:
            curve.apply(self._socket)
        self._socket.connect(endpoint)
        self._waiters: dict[tuple[str, str], asyncio.Future[Reply]] = {}
        self._pongs: deque[asyncio.Future[Reply]] = deque()
        self._stream_errors: dict[str, DaemonReplyError] = {}
        self.unmatched_errors: list[DaemonReplyError] = []
        self._reader: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._subscriptions: list[ResultSubscription] = []
        self._streams: dict[str, AsyncStream] = {}  # open streams, by their current id
        self._replaced: set[str] = set()  # ids of lost streams that were reopened under a new id
        self.disconnects = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, *, linger_ms: int | None = None) -> None:
        """Close the connection. Unsent messages hold the close for up to the socket's linger (2 s,
        so queued audio can leave); pass `linger_ms=0` to drop them at once, e.g. after the daemon
        was lost, when waiting would only block the event loop."""
        for task in (self._reader, self._monitor):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._reader = self._monitor = None
        for stream in self._streams.values():
            if stream._resume is not None:
                stream._resume.cancel()
        for subscription in self._subscriptions:
            subscription.close()
        self._socket.close(linger=linger_ms)
        self._context.term()

    def subscribe(
        self, stream_ids: Iterable[str] | None = None, *, timeout_s: float | None = None, until_closed: bool = False
    ) -> ResultSubscription:
        """Start receiving results now; iterate the returned object. Subscribe before opening
        streams: a ZeroMQ subscription takes a few ms to reach the daemon."""
        subscription = ResultSubscription(
            self.results_endpoint, stream_ids, timeout_s=timeout_s, until_closed=until_closed, context=self._context,
            still_open=(lambda stream_id: stream_id in self._streams) if self.reconnect.enabled else None,
            curve=self.curve,
        )
        self._subscriptions.append(subscription)
        return subscription

    async def ping(self, timeout_s: float | None = None) -> float:
        """Round trip to the daemon in seconds."""
        started = time.monotonic()
        future = self._loop_future()
        self._pongs.append(future)
        await self.send_frames(PingMessage().to_frames())
        await self._await_reply(future, "ping", timeout_s)
        return time.monotonic() - started

    async def open_stream(
        self,
        stream_id: str,
        *,
        encoding: Encoding = "pcm_s16le",
        sample_rate_hz: int = 16000,
        channels: int = 1,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncStream:
        fmt = AudioFormat(encoding, sample_rate_hz, channels)
        reply = await self._request(("open", stream_id), OpenMessage(stream_id, fmt, dict(metadata or {})).to_frames())
        assert isinstance(reply, OpenedReply)
        stream = AsyncStream(self, StreamInfo(stream_id, reply.model_id, reply.hop_ms), fmt, self.frame_ms, metadata)
        self._streams[stream_id] = stream
        return stream

    async def close_stream(self, stream_id: str) -> None:
        await self._request(("close", stream_id), CloseMessage(stream_id).to_frames())
        self._stream_errors.pop(stream_id, None)
        self._streams.pop(stream_id, None)

    async def subscriptions_connected(self, stream_id: str, timeout_s: float) -> None:
        """Until this client's subscriptions to `stream_id` are connected to the (restarted) daemon."""
        live = [s for s in self._subscriptions if not s._socket.closed and s.wants(stream_id)]
        await asyncio.gather(*(s.wait_connected(timeout_s) for s in live))

    def stream_reopened(self, stream: AsyncStream, old_id: str, info: StreamInfo) -> None:
        """Bookkeeping when `stream` was reopened as `info.stream_id` after a daemon restart."""
        self._streams.pop(old_id, None)
        self._streams[info.stream_id] = stream
        self._replaced.add(old_id)
        self._stream_errors.pop(old_id, None)  # replies to audio the old daemon never saw

    def follow(self, old_id: str, new_id: str) -> None:
        """This client's subscriptions to `old_id` receive `new_id`'s messages too."""
        for subscription in self._subscriptions:
            subscription.follow(old_id, new_id)

    async def send_frames(self, frames: list[bytes]) -> None:
        self._ensure_reader()
        await self._socket.send_multipart(frames)

    async def send_batch(self, items: Iterable[tuple[AsyncStream, npt.ArrayLike | bytes]]) -> list[DaemonReplyError]:
        """Send one piece of audio for each of many streams in one `audio_batch` message (or
        several, `MAX_BATCH_ENTRIES` entries each), as a gateway does every 20 ms. Each piece is
        one payload of 10 ms .. 1 s for that stream (numpy samples or payload bytes), its seq the
        stream's next. The daemon refuses a bad entry alone, so this never raises for one stream:
        it returns the error replies that had arrived for the audio of these streams (each
        stream's pending error, removed), and the frames are sent regardless."""
        errors: list[DaemonReplyError] = []
        entries: list[AudioMessage] = []
        for stream, audio in items:
            error = self._stream_errors.pop(stream.stream_id, None)
            if error is not None:
                errors.append(error)
            entries.append(stream.batch_entry(audio))
        for start in range(0, len(entries), MAX_BATCH_ENTRIES):
            await self.send_frames(AudioBatchMessage(entries[start:start + MAX_BATCH_ENTRIES]).to_frames())
        return errors

    def raise_stream_error(self, stream_id: str) -> None:
        error = self._stream_errors.pop(stream_id, None)
        if error is not None:
            raise error

    async def _request(self, key: tuple[str, str], frames: list[bytes]) -> Reply:
        if key in self._waiters:
            raise RuntimeError(f"a {key[0]} of stream {key[1]!r} is already in flight")
        future = self._loop_future()
        self._waiters[key] = future
        try:
            await self.send_frames(frames)
            return await self._await_reply(future, f"{key[0]} of {key[1]!r}")
        finally:
            self._waiters.pop(key, None)

    async def _await_reply(self, future: asyncio.Future[Reply], what: str, timeout_s: float | None = None) -> Reply:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no reply from the daemon at {self.endpoint} to {what} within {timeout_s} s") from None

    def _loop_future(self) -> asyncio.Future[Reply]:
        return asyncio.get_running_loop().create_future()

    def _ensure_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self.run_reader(), name="detector-client-reader")
        if self._monitor is None and self.reconnect.enabled:
            self._monitor = asyncio.create_task(self.run_monitor(), name="detector-client-monitor")

    async def run_monitor(self) -> None:
        """Watch the connection: a disconnect means every open stream is lost (the daemon
        restarted, or the network dropped): each is reopened on its next send or close."""
        monitor: Any = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            while True:
                event = await recv_monitor_message(monitor)
                if event["event"] == zmq.EVENT_DISCONNECTED:
                    self.disconnects += 1
                    log.warning("client_disconnected", endpoint=self.endpoint, open_streams=len(self._streams))
                    for stream in self._streams.values():
                        stream.mark_lost()
        finally:
            if not self._socket.closed:
                self._socket.disable_monitor()
            monitor.close(linger=0)

    async def run_reader(self) -> None:
        while True:
            frames = await self._socket.recv_multipart()
            try:
                self._dispatch(parse_reply(frames))
            except ValueError as exc:
                log.warning("client_bad_reply", error=str(exc))

    def _dispatch(self, reply: Reply) -> None:
        if isinstance(reply, PongReply):
            if self._pongs:
                self._resolve(self._pongs.popleft(), reply)
            return
        if isinstance(reply, OpenedReply):
            self._resolve(self._waiters.get(("open", reply.stream_id)), reply)
            return
        if isinstance(reply, ClosedReply):
            self._resolve(self._waiters.get(("close", reply.stream_id)), reply)
            return
        if reply.stream_id in self._replaced and reply.code == "unknown_stream":
            return  # queued audio of a stream already reopened under a new id (counted in its gap)
        error = DaemonReplyError(reply)
        lost = self._streams.get(reply.stream_id or "") if self.reconnect.enabled else None
        if lost is not None and reply.code == "unknown_stream" and reply.ref == "audio":
            lost.mark_lost(reply.seq)  # a restarted daemon: reopened on the stream's next send
            return
        waiter = self._waiters.get((reply.ref, reply.stream_id or ""))
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif reply.stream_id is not None and reply.ref in ("audio", "audio_batch"):
            self._stream_errors.setdefault(reply.stream_id, error)
        else:
            log.warning("client_unmatched_error", code=reply.code, message=reply.message)
            self.unmatched_errors.append(error)

    @staticmethod
    def _resolve(future: asyncio.Future[Reply] | None, reply: Reply) -> None:
        if future is not None and not future.done():
            future.set_result(reply)


class _LoopThread:
    """An event loop on a daemon thread, so the sync client can drive the async one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="detector-client", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Stream:
    """Blocking twin of `AsyncStream`."""

    def __init__(self, runner: _LoopThread, stream: AsyncStream) -> None:
        self._runner = runner
        self._stream = stream

    @property
    def info(self) -> StreamInfo:
        return self._stream.info

    @property
    def stream_id(self) -> str:
        return self._stream.stream_id

    @property
    def gaps(self) -> list[Gap]:
        return self._stream.gaps

    def send(self, audio: npt.ArrayLike | bytes, *, realtime: bool = False) -> int:
        return self._runner.run(self._stream.send(audio, realtime=realtime))

    @property
    def async_stream(self) -> AsyncStream:
        return self._stream

    def close(self) -> None:
        self._runner.run(self._stream.close())


class DetectorClient:
    """Blocking client with the same methods as `AsyncDetectorClient`."""

    def __init__(
        self,
        endpoint: str = DEFAULT_INGEST_ENDPOINT,
        results_endpoint: str = DEFAULT_RESULTS_ENDPOINT,
        *,
        timeout_s: float = 5.0,
        frame_ms: int = DEFAULT_FRAME_MS,
        reconnect: ReconnectPolicy | bool = True,
        curve: CurveCredentials | None = None,
    ) -> None:
        self._runner = _LoopThread()

        async def build() -> AsyncDetectorClient:
            return AsyncDetectorClient(endpoint, results_endpoint, timeout_s=timeout_s, frame_ms=frame_ms,
                                       reconnect=reconnect, curve=curve)

        self._client = self._runner.run(build())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.stop()

    def ping(self) -> float:
        return self._runner.run(self._client.ping())

    def send_batch(self, items: Iterable[tuple[Stream, npt.ArrayLike | bytes]]) -> list[DaemonReplyError]:
        """Blocking `AsyncDetectorClient.send_batch`."""
        pairs = [(stream.async_stream, audio) for stream, audio in items]
        return self._runner.run(self._client.send_batch(pairs))

    def open_stream(
        self,
        stream_id: str,
        *,
        encoding: Encoding = "pcm_s16le",
        sample_rate_hz: int = 16000,
        channels: int = 1,
        metadata: Mapping[str, str] | None = None,
    ) -> Stream:
        stream = self._runner.run(
            self._client.open_stream(
                stream_id, encoding=encoding, sample_rate_hz=sample_rate_hz, channels=channels, metadata=metadata
            )
        )
        return Stream(self._runner, stream)

    def subscribe(
        self, stream_ids: Iterable[str] | None = None, *, timeout_s: float | None = None, until_closed: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Subscribes now (before the first `next`), then yields result dicts like the async version."""

        async def build() -> ResultSubscription:
            return self._client.subscribe(stream_ids, timeout_s=timeout_s, until_closed=until_closed)

        return self._iterate(self._runner.run(build()))

    def _iterate(self, subscription: ResultSubscription) -> Iterator[dict[str, Any]]:
        async def next_message() -> dict[str, Any] | None:
            try:
                return await subscription.__anext__()
            except StopAsyncIteration:
                return None

        try:
            while (message := self._runner.run(next_message())) is not None:
                yield message
        finally:
            if not self._runner.loop.is_closed():
                self._runner.loop.call_soon_threadsafe(subscription.close)


__all__ = [
    "AsyncDetectorClient",
    "AsyncStream",
    "CurveCredentials",
    "DaemonReplyError",
    "DetectorClient",
    "Gap",
    "ReconnectPolicy",
    "ResultSubscription",
    "Stream",
    "StreamInfo",
]
