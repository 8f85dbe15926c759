"""The daemon's implementation of the stream API (`daemon/stream_api.py`).

`DaemonHub.open()` gives an adapter a `LiveStream`. Data flow, one direction only:
`push` -> `StreamBuffer` (resample, cut hops) -> the stream's pending hops (capped) ->
its scoring task submits one hop at a time to the `Batcher` -> decision -> publish on the
PUB socket and to in-process event subscribers. Closing flushes the buffer, scores the last
full hops, frees the model state and publishes the `closed` summary.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from daemon.admission import Admission
from daemon.batcher import Batcher
from daemon.config import DecisionConfig, StreamsConfig
from daemon.metrics import DaemonMetrics
from daemon.policy import DecisionTracker
from daemon.publisher import ResultPublisher
from daemon.stream_api import AudioChunk, StreamClosedError, StreamSpec
from daemon.streams import StreamRegistry
from daemon.wire.results import (
    StreamSummary,
    closed_event,
    error_event,
    opened_event,
    result_message,
)
from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.model_format import ModelMetadata
from streaming_models.runtime.resample import prepare_low_delay

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PendingHop:
    index: int
    start_sample: int  # at the model rate, from the start of the stream
    audio: npt.NDArray[np.float32]
    ready_at: float  # loop time when the hop became complete


class EventFeed:
    """One in-process subscriber's bounded queue; iterates until the `closed` event."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue(maxsize)
        self._finished = False
        self.dropped = 0

    def offer(self, message: Mapping[str, Any]) -> None:
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

    async def __anext__(self) -> Mapping[str, Any]:
        if self._finished:
            raise StopAsyncIteration
        message = await self._queue.get()
        if message["type"] == "closed":
            self._finished = True
        return message


class LiveStream:
    """One open stream (implements `StreamHandle`). Created only by `DaemonHub.open`."""

    def __init__(self, spec: StreamSpec, hub: DaemonHub) -> None:
        meta = hub.metadata
        self.spec = spec
        self._hub = hub
        self.buffer = StreamBuffer(spec.sample_rate_hz, meta.sample_rate_hz, meta.hop_samples,
                                   hub.streams_config.max_buffered_s, hub.streams_config.resample_quality,
                                   hub.streams_config.low_delay_resampling)
        self._max_pending = max(1, math.ceil(self.buffer.cap_samples / meta.hop_samples))
        self._pending: deque[PendingHop] = deque()
        self._hop_ready = asyncio.Event()
        self._slot = hub.batcher.open_slot(spec.stream_id)
        self._tracker = DecisionTracker(hub.decision_config, hub.early_thresholds)
        self._feeds: list[EventFeed] = []
        self._opened_message: Mapping[str, Any] | None = None  # replayed to feeds subscribed after open
        self._closed_message: Mapping[str, Any] | None = None
        self._closing = False
        self._done = asyncio.Event()
        self.close_reason = ""
        self.last_activity = asyncio.get_running_loop().time()
        self.hops_scored = 0
        self.hops_dropped_overflow = 0
        self.results_dropped = 0
        self.events_dropped = 0
        self._sum_spoof = self._sum_codec = 0.0
        self._max_spoof = self._max_codec = 0.0
        self._task = asyncio.create_task(self._run_scoring(), name=f"score:{spec.stream_id}")

    @property
    def stream_id(self) -> str:
        return self.spec.stream_id

    @property
    def closed(self) -> bool:
        """True once closing has begun (no more audio accepted)."""
        return self._closing

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
            self._hub.metrics.drops.labels("buffer_overflow").inc()
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
                probs = await self._hub.batcher.submit(self._slot, hop.audio)
            except Exception as exc:  # noqa: BLE001 - any failure ends this stream only
                log.error("stream_scoring_failed", stream_id=self.stream_id, error=repr(exc))
                self._emit(error_event(stream_id=self.stream_id, code="inference_failed", message=str(exc)))
                self._hub.spawn(self.close("error"), f"close:{self.stream_id}")
                return
            self._publish_result(hop, float(probs[0]), float(probs[1]))

    def _publish_result(self, hop: PendingHop, p_spoof: float, p_codec: float) -> None:
        meta = self._hub.metadata
        spoof_smooth, codec_smooth, decision = self._tracker.update(p_spoof, p_codec)
        self.hops_scored += 1
        self._sum_spoof += p_spoof
        self._sum_codec += p_codec
        self._max_spoof = max(self._max_spoof, p_spoof)
        self._max_codec = max(self._max_codec, p_codec)
        rate = meta.sample_rate_hz
        latency_s = asyncio.get_running_loop().time() - hop.ready_at
        self._hub.metrics.hop_latency.observe(latency_s)
        message = result_message(
            stream_id=self.stream_id, seq=hop.index, t_start_s=hop.start_sample / rate,
            t_end_s=(hop.start_sample + meta.hop_samples) / rate, p_spoof=p_spoof, p_codec=p_codec,
            p_spoof_smooth=spoof_smooth, p_codec_smooth=codec_smooth, decision=decision,
            model_id=meta.model_id, latency_ms=1000.0 * latency_s,
            metadata=self.spec.metadata)
        self._emit(message)

    def _emit(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "opened":
            self._opened_message = message
        if not self._hub.publisher.publish(message, self.spec.owner) and message["type"] == "result":
            self.results_dropped += 1
            self._hub.metrics.drops.labels("pub_full").inc()
        for feed in self._feeds:
            before = feed.dropped
            feed.offer(message)
            if feed.dropped > before:
                self.events_dropped += feed.dropped - before
                self._hub.metrics.drops.labels("event_queue_full").inc(feed.dropped - before)

    def events(self) -> EventFeed:
        feed = EventFeed(self._hub.streams_config.events_queue_size)
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
                self.buffer.flush()
                self._take_hops()
                self._hop_ready.set()
                await asyncio.shield(self._task)  # drain: score the pending full hops
            finally:
                self._finish()
        await self._done.wait()

    def _finish(self) -> None:
        if self._done.is_set():
            return
        if not self._task.done():
            self._task.cancel()
        self._hub.batcher.release(self._slot)
        self._pending.clear()
        message = closed_event(stream_id=self.stream_id, reason=self.close_reason, summary=self.summary())
        self._closed_message = message
        self._emit(message)
        self._feeds.clear()
        self._hub.forget(self)
        self._hub.metrics.streams_closed.labels(self.close_reason or "unknown").inc()
        self._done.set()
        log.info("stream_closed", stream_id=self.stream_id, reason=self.close_reason, hops=self.hops_scored)

    def summary(self) -> StreamSummary:
        counters = self.buffer.counters
        n = self.hops_scored
        return StreamSummary(
            hops=n,
            audio_s=round(counters.samples_out / self._hub.metadata.sample_rate_hz, 6),
            p_spoof_mean=round(self._sum_spoof / n, 6) if n else None,
            p_spoof_max=round(self._max_spoof, 6) if n else None,
            p_codec_mean=round(self._sum_codec / n, 6) if n else None,
            p_codec_max=round(self._max_codec, 6) if n else None,
            final_decision=self._tracker.decision,
            gaps_filled=counters.gaps_filled,
            samples_filled=counters.samples_filled,
            duplicates_dropped=counters.duplicates_dropped,
            samples_dropped_overflow=counters.samples_dropped_overflow
            + self.hops_dropped_overflow * self._hub.metadata.hop_samples,
            results_dropped=self.results_dropped,
        )


class DaemonHub:
    """Implements `StreamHub`: admission, the open streams, the idle reaper, draining."""

    def __init__(self, metadata: ModelMetadata, batcher: Batcher, publisher: ResultPublisher,
                 streams_config: StreamsConfig, decision_config: DecisionConfig,
                 early_thresholds: Mapping[str, Sequence[float]] | None = None,
                 metrics: DaemonMetrics | None = None) -> None:
        self.metadata = metadata
        self.metrics = metrics if metrics is not None else batcher.metrics
        self.batcher = batcher
        self.publisher = publisher
        self.streams_config = streams_config
        self.decision_config = decision_config
        self.early_thresholds = dict(early_thresholds or {})  # per-hop enter thresholds, per head
        self.registry: StreamRegistry[LiveStream] = StreamRegistry()
        self.admission = Admission(self.registry, streams_config.max_streams)
        self.metrics.streams_open.set_function(lambda: len(self.registry))
        self.metrics.streams_max.set(streams_config.max_streams)
        if streams_config.low_delay_resampling:
            prepare_low_delay(metadata.sample_rate_hz, streams_config.resample_quality)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper_wake = asyncio.Event()
        self.streams_opened = 0

    async def open(self, spec: StreamSpec) -> LiveStream:
        self.admission.check(spec)  # raises StreamRejected
        stream = LiveStream(spec, self)
        self.registry.add(spec.stream_id, stream)
        self.streams_opened += 1
        self.metrics.streams_opened.labels(spec.transport).inc()
        self._reaper_wake.set()
        stream._emit(opened_event(stream_id=spec.stream_id, transport=spec.transport,
                                  sample_rate_hz=spec.sample_rate_hz, metadata=spec.metadata,
                                  model_id=self.metadata.model_id))
        log.info("stream_opened", stream_id=spec.stream_id, transport=spec.transport,
                 sample_rate_hz=spec.sample_rate_hz)
        return stream

    def forget(self, stream: LiveStream) -> None:
        self.registry.remove(stream.stream_id, stream)

    def spawn(self, coro: Any, name: str) -> None:
        """Run a coroutine as a task the hub owns (awaited at shutdown)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_idle_reaper(self) -> None:
        """Close streams that got no audio for `idle_timeout_s`; sleeps until the earliest deadline."""
        loop = asyncio.get_running_loop()
        timeout = self.streams_config.idle_timeout_s
        while True:
            now = loop.time()
            streams = [s for s in self.registry.values() if not s.closed]
            for stream in streams:
                if now - stream.last_activity >= timeout:
                    log.info("stream_idle", stream_id=stream.stream_id, idle_s=round(now - stream.last_activity, 3))
                    self.spawn(stream.close("idle"), f"close:{stream.stream_id}")
            live = [s.last_activity for s in streams if now - s.last_activity < timeout]
            self._reaper_wake.clear()
            if live:
                wait = max(0.0, min(live) + timeout - loop.time())
                try:
                    async with asyncio.timeout(wait):
                        await self._reaper_wake.wait()
                except TimeoutError:
                    pass
            else:
                await self._reaper_wake.wait()

    def stop_accepting(self) -> None:
        self.admission.stop_accepting()

    @property
    def accepting(self) -> bool:
        return self.admission.accepting

    @property
    def at_capacity(self) -> bool:
        return self.admission.at_capacity

    async def close_all(self, reason: str) -> None:
        """Drain every open stream (score pending full hops, publish summaries)."""
        streams = self.registry.values()
        await asyncio.gather(*(s.close(reason) for s in streams), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
