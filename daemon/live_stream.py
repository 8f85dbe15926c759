"""One open stream, the daemon's `StreamHandle`: its audio goes one way and never back to the hub.

    push(AudioChunk) -> StreamBuffer (resample, cut hops) -> pending hops (capped)
      -> the stream's scoring task: Batcher.submit, one hop at a time (the backend runs there)
      -> DecisionTracker.update -> the event sink (PUB socket) and the in-process event feeds

`DaemonHub.open` builds every collaborator and hands it over (`LiveStream(...)`, then `start()`);
the stream reads nothing of the hub. When it has finished (closed summary published, model state
released) it calls `on_finished`, which is how the hub forgets it. Closing flushes the buffer,
scores the last full hops, frees the model state and publishes the `closed` summary.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

from daemon.batcher import Batcher
from daemon.metrics import DaemonMetrics
from daemon.policy import DecisionTracker
from daemon.stream_api import AudioChunk, StreamClosedError, StreamEvent, StreamSpec
from daemon.verifier import VerifierBatcher
from daemon.wire.results import (
    StreamSummary,
    closed_event,
    error_event,
    opened_event,
    result_message,
)
from streaming_models.runtime.hops import StreamBuffer

log = structlog.get_logger(__name__)


class EventSink(Protocol):
    """Where a stream's messages go out (`ResultPublisher`): False when one was refused (a full queue)."""

    def publish(self, message: StreamEvent, owner: str = "") -> bool: ...


@dataclass(frozen=True)
class PendingHop:
    index: int
    start_sample: int  # at the model rate, from the start of the stream
    audio: npt.NDArray[np.float32]
    ready_at: float  # loop time when the hop became complete


class EventFeed:
    """One in-process subscriber's bounded queue; iterates until the `closed` event."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue(maxsize)
        self._finished = False
        self.dropped = 0

    def offer(self, message: StreamEvent) -> None:
        if message["type"] == "closed":
            while self._queue.full():  # the end marker always gets in, at the oldest's cost
                self._queue.get_nowait()
                self.dropped += 1
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    def __aiter__(self) -> EventFeed:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._finished:
            raise StopAsyncIteration
        message = await self._queue.get()
        if message["type"] == "closed":
            self._finished = True
        return message


class LiveStream:
    """One open stream (implements `StreamHandle`), built by `DaemonHub.open` from explicit parts:

    - `buffer`: its `StreamBuffer` (source rate -> model rate, hop length, memory cap);
    - `batcher`: scores its hops in its own model-state slot;
    - `tracker`: its `DecisionTracker` (smoothing window, thresholds, current decision);
    - `sink`: where its messages are published, `owner`'s namespace included;
    - `metrics`: the daemon's metrics (drops, hop latency, closes);
    - `events_queue_size`: the bound of each in-process event feed;
    - `model_id`: echoed in every message; `on_finished`: called once, after the `closed` summary;
    - `verifier`: the second tier's batcher when it is on (each scored hop feeds the stream's window,
      each result carries the verifier's latest scores and the fused p_spoof), else None.
    """

    def __init__(self, spec: StreamSpec, *, buffer: StreamBuffer, batcher: Batcher, tracker: DecisionTracker,
                 sink: EventSink, metrics: DaemonMetrics, events_queue_size: int, model_id: str,
                 on_finished: Callable[[LiveStream], None], verifier: VerifierBatcher | None = None) -> None:
        self.spec = spec
        self.buffer = buffer
        self._batcher = batcher
        self._tracker = tracker
        self._sink = sink
        self._metrics = metrics
        self._events_queue_size = events_queue_size
        self._model_id = model_id
        self._on_finished = on_finished
        self._max_pending = max(1, math.ceil(buffer.cap_samples / buffer.hop_samples))
        self._pending: deque[PendingHop] = deque()
        self._hop_ready = asyncio.Event()
        self._slot = batcher.open_slot(spec.stream_id)
        self._verifier = verifier.open_stream() if verifier is not None else None
        self._feeds: list[EventFeed] = []
        self._opened_message: StreamEvent | None = None  # replayed to feeds subscribed after open
        self._closed_message: StreamEvent | None = None
        self._closing = False
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.close_reason = ""
        self.last_activity = asyncio.get_running_loop().time()
        self.hops_scored = 0
        self.hops_dropped_overflow = 0
        self.results_dropped = 0
        self.events_dropped = 0
        self._sum_spoof = self._sum_codec = 0.0
        self._max_spoof = self._max_codec = 0.0

    @property
    def stream_id(self) -> str:
        return self.spec.stream_id

    @property
    def closed(self) -> bool:
        """True once closing has begun (no more audio accepted)."""
        return self._closing

    def start(self) -> None:
        """Publish the `opened` event and start scoring. Called once, by the hub, after admission."""
        spec = self.spec
        self._emit(opened_event(stream_id=spec.stream_id, transport=spec.transport,
                                sample_rate_hz=spec.sample_rate_hz, metadata=spec.metadata, model_id=self._model_id))
        self._task = asyncio.create_task(self._run_scoring(), name=f"score:{spec.stream_id}")

    async def push(self, chunk: AudioChunk) -> None:
        if self._closing:
            raise StreamClosedError(f"stream {self.stream_id!r} is closed")
        self.last_activity = asyncio.get_running_loop().time()
        self.buffer.push(chunk.samples, chunk.sequence)
        if self.buffer.buffered_samples >= self.buffer.hop_samples:
            self._take_hops()

    def _take_hops(self) -> None:
        now = asyncio.get_running_loop().time()
        for index, start, audio in self.buffer.pop_hop_spans():
            self._pending.append(PendingHop(index, start, audio, now))
        while len(self._pending) > self._max_pending:  # scoring is behind: drop the oldest audio
            self._pending.popleft()
            self.hops_dropped_overflow += 1
            self._metrics.drops.labels("buffer_overflow").inc()
        if self._pending:
            self._hop_ready.set()

    async def _run_scoring(self) -> None:
        """Score pending hops in order, one at a time (the model state is sequential)."""
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._hop_ready.clear()
                await self._hop_ready.wait()
            hop = self._pending.popleft()
            try:
                probs = await self._batcher.submit(self._slot, hop.audio)
            except Exception as exc:  # noqa: BLE001 - any failure ends this stream only
                log.error("stream_scoring_failed", stream_id=self.stream_id, error=repr(exc))
                self._emit(error_event(stream_id=self.stream_id, code="inference_failed", message=str(exc)))
                self._end_from_scoring("error")
                return
            self._publish_result(hop, float(probs[0]), float(probs[1]))

    def _publish_result(self, hop: PendingHop, p_spoof: float, p_codec: float) -> None:
        spoof_smooth, codec_smooth, decision = self._tracker.update(p_spoof, p_codec)
        self.hops_scored += 1
        self._sum_spoof += p_spoof
        self._sum_codec += p_codec
        self._max_spoof = max(self._max_spoof, p_spoof)
        self._max_codec = max(self._max_codec, p_codec)
        rate = self.buffer.model_rate_hz
        t_end_s = (hop.start_sample + self.buffer.hop_samples) / rate
        verifier_fields = self._verifier.on_hop(hop.audio, p_spoof, t_end_s) if self._verifier is not None else None
        latency_s = asyncio.get_running_loop().time() - hop.ready_at
        self._metrics.hop_latency.observe(latency_s)
        message = result_message(
            stream_id=self.stream_id, seq=hop.index, t_start_s=hop.start_sample / rate,
            t_end_s=t_end_s, p_spoof=p_spoof, p_codec=p_codec,
            p_spoof_smooth=spoof_smooth, p_codec_smooth=codec_smooth, decision=decision,
            model_id=self._model_id, latency_ms=1000.0 * latency_s,
            metadata=self.spec.metadata, verifier=verifier_fields)
        self._emit(message)

    def _emit(self, message: StreamEvent) -> None:
        if message["type"] == "opened":
            self._opened_message = message
        if not self._sink.publish(message, self.spec.owner) and message["type"] == "result":
            self.results_dropped += 1
            self._metrics.drops.labels("pub_full").inc()
        for feed in self._feeds:
            before = feed.dropped
            feed.offer(message)
            if feed.dropped > before:
                self.events_dropped += feed.dropped - before
                self._metrics.drops.labels("event_queue_full").inc(feed.dropped - before)

    def events(self) -> EventFeed:
        feed = EventFeed(self._events_queue_size)
        if self._opened_message is not None:
            feed.offer(self._opened_message)
        if self._closed_message is not None:
            feed.offer(self._closed_message)
        else:
            self._feeds.append(feed)
        return feed

    async def close(self, reason: str = "client") -> None:
        if not self._closing:
            self._closing = True
            self.close_reason = reason
            try:
                self._queue_tail()
                if self._task is not None:
                    await asyncio.shield(self._task)  # drain: score the pending full hops
            finally:
                self._finish()
        await self._done.wait()

    def _queue_tail(self) -> None:
        """The buffer's last samples (the resampler's tail) become the last pending full hops."""
        self.buffer.flush()
        self._take_hops()
        self._hop_ready.set()

    def _end_from_scoring(self, reason: str) -> None:
        """Close from inside the scoring task, which is ending: nothing is left to drain. If a
        `close()` is already draining, that one finishes the stream, with its own reason."""
        if self._closing:
            return
        self._closing = True
        self.close_reason = reason
        try:
            self._queue_tail()
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._done.is_set():
            return
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
        self._batcher.release(self._slot)
        if self._verifier is not None:
            self._verifier.release()
        self._pending.clear()
        message = closed_event(stream_id=self.stream_id, reason=self.close_reason, summary=self.summary())
        self._closed_message = message
        self._emit(message)
        self._feeds.clear()
        self._on_finished(self)
        self._metrics.streams_closed.labels(self.close_reason or "unknown").inc()
        self._done.set()
        log.info("stream_closed", stream_id=self.stream_id, reason=self.close_reason, hops=self.hops_scored)

    def summary(self) -> StreamSummary:
        counters = self.buffer.counters
        n = self.hops_scored
        return StreamSummary(
            hops=n,
            audio_s=round(counters.samples_out / self.buffer.model_rate_hz, 6),
            p_spoof_mean=round(self._sum_spoof / n, 6) if n else None,
            p_spoof_max=round(self._max_spoof, 6) if n else None,
            p_codec_mean=round(self._sum_codec / n, 6) if n else None,
            p_codec_max=round(self._max_codec, 6) if n else None,
            final_decision=self._tracker.decision,
            gaps_filled=counters.gaps_filled,
            samples_filled=counters.samples_filled,
            duplicates_dropped=counters.duplicates_dropped,
            samples_dropped_overflow=counters.samples_dropped_overflow
            + self.hops_dropped_overflow * self.buffer.hop_samples,
            results_dropped=self.results_dropped,
        )
