"""One voice session scored by the daemon: the framework-neutral core of the integrations.

`submit()` takes 16-bit PCM as it enters the framework and returns at once (a bounded queue, no
I/O), so the framework's audio path is never held up. A background task sends the audio on one
daemon stream per session through `clients.client` and turns the stream's results into `Score`s,
each carrying its latency: from the frame that completed the hop entering `submit()` to the
score arriving here.

Daemon loss (no pong within `request_timeout_s`, an error reply, or the daemon closing the
stream) makes the session stale: one `Score` with `stale=True` repeats the last values, and the
session reconnects with backoff on a new stream `<session id>.r<n>` while `submit()` goes on
taking frames (the last `max_queued_s` of them are sent once it is back). A daemon that is
reachable but sends no result for `stale_after_s` while audio flows also marks the session
stale, until results come again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import structlog
import zmq

from clients.client import (
    DEFAULT_INGEST_ENDPOINT,
    DEFAULT_RESULTS_ENDPOINT,
    AsyncDetectorClient,
    AsyncStream,
    DaemonReplyError,
    ResultSubscription,
)
from daemon.wire.limits import MAX_STREAM_ID_CHARS

log = structlog.get_logger(__name__)

Decision = Literal["bonafide", "spoof", "codec", "undecided"]
State = Literal["idle", "connecting", "live", "stale", "closed"]
ScoreCallback = Callable[["Score"], Awaitable[None]]
MAX_SESSION_ID = MAX_STREAM_ID_CHARS - 8  # ".r<n>" is added to the stream id on reconnection


@dataclass(frozen=True)
class SessionConfig:
    endpoint: str = DEFAULT_INGEST_ENDPOINT
    results_endpoint: str = DEFAULT_RESULTS_ENDPOINT
    frame_ms: int = 20  # audio message length on the wire (the client cuts frames to this)
    request_timeout_s: float = 1.0  # open / close / ping replies; a ping over this = daemon lost
    ping_interval_s: float = 1.0
    stale_after_s: float = 1.0  # no result this long while audio flows = stale
    max_queued_s: float = 1.0  # audio held while the sender waits (oldest dropped beyond)
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 5.0
    close_timeout_s: float = 3.0  # stop(): wait this long for the last results
    subscribe_settle_s: float = 0.5  # hold audio until the stream's `opened` event shows the
    # result subscription has joined (ZeroMQ slow joiner), at most this long


@dataclass(frozen=True)
class Score:
    """One scored hop (or, with `stale`, the last known values once the daemon is lost)."""

    session_id: str
    stream_id: str
    seq: int  # hop index within `stream_id`; -1 on a stale mark before any result
    t_start_s: float  # hop audio time within the session (across reconnections)
    t_end_s: float
    p_spoof: float | None
    p_codec: float | None
    p_spoof_smooth: float | None
    p_codec_smooth: float | None
    decision: Decision
    model_id: str
    latency_s: float | None  # frame that completed the hop entering submit() -> this score
    stale: bool = False
    # the second tier (docs/verifier.md), when the daemon runs it: its latest scores of the stream
    # (None before its first, or with the verifier off) and the fused spoof probability
    p_spoof_verifier: float | None = None
    p_codec_verifier: float | None = None
    p_spoof_fused: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _optional_float(value: Any) -> float | None:
    """A result field that is absent or null in some results (the verifier's) as a float or None."""
    return None if value is None else float(value)


@dataclass
class SessionStats:
    frames_submitted: int = 0
    audio_dropped_s: float = 0.0  # dropped from the queue (daemon away or slower than real time)
    scores: int = 0
    stale_marks: int = 0
    reconnects: int = 0


@dataclass(frozen=True)
class _Chunk:
    pcm: bytes
    rate_hz: int
    channels: int
    entered: float  # time.monotonic() when the frame entered the integration

    @property
    def frames(self) -> int:
        return len(self.pcm) // (2 * self.channels)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate_hz


class _StreamLost(Exception):
    """The daemon closed the stream (shutdown, idle, error) or the results went away."""


_FLUSH = _Chunk(b"", 1, 1, 0.0)  # stop(): close the stream after what is queued


class ScoringSession:
    """Streams one session's audio to the daemon and reports `Score`s to `on_score`.

    `on_spoof` is called once each time the decision turns to `spoof` from another decided
    state (`undecided` hops in between, as after a reconnection, do not count as leaving it).
    """

    def __init__(
        self,
        session_id: str,
        on_score: ScoreCallback,
        *,
        on_spoof: ScoreCallback | None = None,
        participant: str | None = None,
        metadata: Mapping[str, str] | None = None,
        integration: str = "python",
        config: SessionConfig | None = None,
    ) -> None:
        if not 1 <= len(session_id) <= MAX_SESSION_ID or not session_id.isprintable():
            raise ValueError(f"session id must be 1..{MAX_SESSION_ID} printable characters: {session_id!r}")
        self.session_id = session_id
        self.config = config or SessionConfig()
        self.stats = SessionStats()
        self._on_score = on_score
        self._on_spoof = on_spoof
        self._metadata = {"session_id": session_id, "integration": integration, **dict(metadata or {})}
        if participant:
            self._metadata["participant"] = participant
        self._pending: deque[_Chunk] = deque()
        self._pending_s = 0.0
        self._wakeup = asyncio.Event()
        self._format_hint: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._state: State = "idle"
        self._stale = False
        self._stopping = False
        self._generation = 0
        self._last: Score | None = None
        self._last_decided: Decision = "undecided"
        # per open stream: (frames sent up to the end of a chunk, when that chunk entered)
        self._marks: deque[tuple[int, float]] = deque()
        self._stream_offset_s = 0.0
        self._session_s = 0.0  # session audio submitted so far
        self._last_audio_at: float | None = None
        self._last_result_at = 0.0

    @property
    def state(self) -> State:
        return "stale" if self._stale and self._state == "live" else self._state

    @property
    def stale(self) -> bool:
        return self._stale

    @property
    def last_score(self) -> Score | None:
        return self._last

    @property
    def stream_id(self) -> str:
        return self.session_id if self._generation == 0 else f"{self.session_id}.r{self._generation}"

    def start(self) -> None:
        """Start the background task; the stream opens with the format of the first frame."""
        if self._task is None and not self._stopping:
            self._state = "connecting"
            self._task = asyncio.create_task(self._run(), name=f"spoofwatch-session-{self.session_id}")

    def submit(self, pcm: bytes, sample_rate_hz: int, channels: int = 1, entered: float | None = None) -> None:
        """Queue 16-bit little-endian PCM (interleaved when stereo). Never blocks, never raises
        for the daemon's sake; beyond `max_queued_s` the oldest audio is dropped (counted)."""
        if self._stopping or not pcm:
            return
        chunk = _Chunk(bytes(pcm), sample_rate_hz, channels, time.monotonic() if entered is None else entered)
        self.stats.frames_submitted += 1
        self._session_s += chunk.seconds
        self._pending.append(chunk)
        self._pending_s += chunk.seconds
        while self._pending_s > self.config.max_queued_s and len(self._pending) > 1:
            dropped = self._pending.popleft()
            self._pending_s -= dropped.seconds
            self.stats.audio_dropped_s += dropped.seconds
        self._wakeup.set()

    async def stop(self) -> None:
        """Close the stream after the queued audio and wait (bounded) for its last scores."""
        if self._stopping:
            return
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            if self._state == "live" and not self._stale:
                self._pending.append(_FLUSH)
                self._wakeup.set()
                await asyncio.wait({task}, timeout=self.config.close_timeout_s)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._state = "closed"

    async def abort(self) -> None:
        """Stop at once: queued audio and scores still on their way are dropped."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._state = "closed"

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            rate_hz, channels = await self._next_format()
            client = AsyncDetectorClient(
                self.config.endpoint, self.config.results_endpoint,
                timeout_s=self.config.request_timeout_s, frame_ms=self.config.frame_ms,
            )
            lost = True
            try:
                results = client.subscribe([self.stream_id])
                await client.ping()
                stream = await client.open_stream(
                    self.stream_id, encoding="pcm_s16le", sample_rate_hz=rate_hz, channels=channels,
                    metadata=self._metadata,
                )
                attempt = 0
                self._went_live(stream)
                await self._serve(client, stream, results)
                lost = False
            except (TimeoutError, DaemonReplyError, _StreamLost, zmq.ZMQError) as exc:
                await self._mark_stale(f"{type(exc).__name__}: {exc}", lost=True)
            except Exception as exc:  # a bug here must not end the session: reconnect as after a loss
                log.exception("spoofwatch_session_failed", session_id=self.session_id)
                await self._mark_stale(f"{type(exc).__name__}: {exc}", lost=True)
            finally:
                await client.close(linger_ms=0 if lost else None)
            if self._stopping:
                break
            self._generation += 1
            if lost:
                self.stats.reconnects += 1
                delay = min(self.config.reconnect_max_s, self.config.reconnect_initial_s * 2**attempt)
                attempt += 1
                self._state = "connecting"
                await asyncio.sleep(delay)

    async def _next_format(self) -> tuple[int, int]:
        while True:
            for chunk in self._pending:
                if chunk is not _FLUSH:
                    return chunk.rate_hz, chunk.channels
            if self._format_hint is not None:
                return self._format_hint
            self._wakeup.clear()
            await self._wakeup.wait()

    def _went_live(self, stream: AsyncStream) -> None:
        self._state = "live"
        self._marks.clear()
        self._stream_offset_s = self._session_s - self._pending_s
        self._last_result_at = time.monotonic()
        self._format_hint = (stream.format.sample_rate_hz, stream.format.channels)
        log.info("spoofwatch_session_live", session_id=self.session_id, stream_id=stream.stream_id,
                 model_id=stream.info.model_id)

    async def _serve(self, client: AsyncDetectorClient, stream: AsyncStream, results: ResultSubscription) -> None:
        """Send, receive and watch the stream; returns when it was closed on purpose."""
        closing, subscribed = asyncio.Event(), asyncio.Event()
        tasks = {
            asyncio.create_task(self._send(stream, closing, subscribed)),
            asyncio.create_task(self._receive(results, stream, closing, subscribed)),
            asyncio.create_task(self._watch(client)),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the loss, if that is why it ended
            # the sender closed the stream: let the receiver take the last results
            pending = [t for t in tasks if not t.done()]
            await asyncio.wait(pending, timeout=self.config.close_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, stream: AsyncStream, closing: asyncio.Event, subscribed: asyncio.Event) -> None:
        fmt = stream.format
        sent_frames = 0
        try:
            await asyncio.wait_for(subscribed.wait(), self.config.subscribe_settle_s)
        except TimeoutError:
            log.info("spoofwatch_subscription_unconfirmed", session_id=self.session_id, stream_id=stream.stream_id)
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            chunk = self._pending[0]
            if chunk is _FLUSH or (chunk.rate_hz, chunk.channels) != (fmt.sample_rate_hz, fmt.channels):
                if chunk is _FLUSH:
                    self._pending.popleft()
                closing.set()  # a format change reopens the stream with the new format
                await stream.close()
                return
            self._pending.popleft()
            self._pending_s -= chunk.seconds
            await stream.send(chunk.pcm)
            sent_frames += chunk.frames
            self._marks.append((sent_frames, chunk.entered))
            self._last_audio_at = time.monotonic()

    async def _receive(
        self, results: ResultSubscription, stream: AsyncStream, closing: asyncio.Event, subscribed: asyncio.Event
    ) -> None:
        rate_hz = stream.format.sample_rate_hz
        async for message in results:
            kind = message.get("type")
            if kind == "opened":
                subscribed.set()
            elif kind == "result":
                await self._scored(message, rate_hz)
            elif kind == "closed":
                if closing.is_set():
                    return
                raise _StreamLost(f"the daemon closed stream {stream.stream_id!r} ({message.get('reason')})")
            elif kind == "error":
                log.warning("spoofwatch_stream_error", session_id=self.session_id, code=message.get("code"),
                            message=message.get("message"))
        raise _StreamLost("the result subscription ended")

    async def _scored(self, message: dict[str, Any], rate_hz: int) -> None:
        now = time.monotonic()
        hop_end = round(float(message["t_end_s"]) * rate_hz)
        while len(self._marks) > 1 and self._marks[0][0] < hop_end:
            self._marks.popleft()
        latency = now - self._marks[0][1] if self._marks and self._marks[0][0] >= hop_end else None
        score = Score(
            session_id=self.session_id, stream_id=str(message["stream_id"]), seq=int(message["seq"]),
            t_start_s=self._stream_offset_s + float(message["t_start_s"]),
            t_end_s=self._stream_offset_s + float(message["t_end_s"]),
            p_spoof=float(message["p_spoof"]), p_codec=float(message["p_codec"]),
            p_spoof_smooth=float(message["p_spoof_smooth"]), p_codec_smooth=float(message["p_codec_smooth"]),
            decision=message["decision"], model_id=str(message["model_id"]), latency_s=latency,
            p_spoof_verifier=_optional_float(message.get("p_spoof_verifier")),
            p_codec_verifier=_optional_float(message.get("p_codec_verifier")),
            p_spoof_fused=_optional_float(message.get("p_spoof_fused")),
        )
        self._last_result_at = now
        if self._stale:
            self._stale = False
            log.info("spoofwatch_session_fresh", session_id=self.session_id, stream_id=score.stream_id)
        self._last = score
        self.stats.scores += 1
        await self._on_score(score)
        entering_spoof = score.decision == "spoof" and self._last_decided != "spoof"
        if score.decision != "undecided":
            self._last_decided = score.decision
        if entering_spoof and self._on_spoof is not None:
            await self._on_spoof(score)

    async def _watch(self, client: AsyncDetectorClient) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            await client.ping()  # TimeoutError: the daemon is gone
            now = time.monotonic()
            flowing = self._last_audio_at is not None and now - self._last_audio_at < self.config.stale_after_s
            if flowing and now - self._last_result_at > self.config.stale_after_s:
                await self._mark_stale("no results while audio flows", lost=False)

    async def _mark_stale(self, reason: str, *, lost: bool) -> None:
        if self._stopping:
            return
        if lost:
            self._state = "connecting"
        if self._stale:
            return
        self._stale = True
        self.stats.stale_marks += 1
        log.warning("spoofwatch_session_stale", session_id=self.session_id, stream_id=self.stream_id, reason=reason)
        last = self._last
        if last is None:
            last = Score(self.session_id, self.stream_id, -1, 0.0, 0.0, None, None, None, None, "undecided", "", None)
        await self._on_score(replace(last, stale=True, latency_s=None))
