"""The daemon's implementation of `StreamHub` (daemon/stream_api.py): opens, tracks and drains streams.

`DaemonHub.open` asks `Admission` (daemon/admission.py) whether the stream may open, then builds
the stream's parts (its `StreamBuffer`, `DecisionTracker`, model-state slot in the batcher, the
publisher it publishes to) and hands them to a `LiveStream` (daemon/live_stream.py), whose audio
path runs from there to the publisher without coming back here. The hub keeps the table of open
streams, the idle reaper and the shutdown drain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from daemon.admission import Admission
from daemon.batcher import Batcher
from daemon.config import DecisionConfig, StreamsConfig
from daemon.live_stream import EventSink, LiveStream
from daemon.metrics import DaemonMetrics
from daemon.policy import DecisionTracker
from daemon.stream_api import StreamSpec
from daemon.streams import StreamRegistry
from daemon.verifier import VerifierBatcher
from streaming_models.runtime.fastpath import ingest_path
from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.model_format import ModelMetadata
from streaming_models.runtime.resample import prepare_low_delay

log = structlog.get_logger(__name__)


class DaemonHub:
    """Implements `StreamHub`: admission, the open streams, the idle reaper, draining."""

    def __init__(self, metadata: ModelMetadata, batcher: Batcher, publisher: EventSink,
                 streams_config: StreamsConfig, decision_config: DecisionConfig,
                 early_thresholds: Mapping[str, Sequence[float]] | None = None,
                 metrics: DaemonMetrics | None = None, verifier: VerifierBatcher | None = None) -> None:
        self.metadata = metadata
        self._verifier = verifier
        self.metrics = metrics if metrics is not None else batcher.metrics
        self._batcher = batcher
        self._publisher = publisher
        self._streams_config = streams_config
        self.decision_config = decision_config
        self._early_thresholds = dict(early_thresholds or {})  # per-hop enter thresholds, per head
        self.registry: StreamRegistry[LiveStream] = StreamRegistry()
        self.admission = Admission(self.registry, streams_config.max_streams)
        self.metrics.streams_open.set_function(lambda: len(self.registry))
        self.metrics.streams_max.set(streams_config.max_streams)
        if streams_config.low_delay_resampling:
            prepare_low_delay(metadata.sample_rate_hz, streams_config.resample_quality)
        ingest_path()  # chosen and logged once at start: StreamBuffer's compiled or pure-Python path
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper_wake = asyncio.Event()
        self._emptied = asyncio.Event()  # set whenever the last open stream has finished
        self.streams_opened = 0

    async def open(self, spec: StreamSpec) -> LiveStream:
        self.admission.check(spec)  # raises StreamRejected
        stream = self._new_stream(spec)
        self.registry.add(spec.stream_id, stream)
        stream.start()
        self.streams_opened += 1
        self.metrics.streams_opened.labels(spec.transport).inc()
        self._reaper_wake.set()
        log.info("stream_opened", stream_id=spec.stream_id, transport=spec.transport,
                 sample_rate_hz=spec.sample_rate_hz)
        return stream

    def _new_stream(self, spec: StreamSpec) -> LiveStream:
        meta, streams = self.metadata, self._streams_config
        buffer = StreamBuffer(spec.sample_rate_hz, meta.sample_rate_hz, meta.hop_samples, streams.max_buffered_s,
                              streams.resample_quality, streams.low_delay_resampling)
        return LiveStream(spec, buffer=buffer, batcher=self._batcher,
                          tracker=DecisionTracker(self.decision_config, self._early_thresholds),
                          sink=self._publisher, metrics=self.metrics, events_queue_size=streams.events_queue_size,
                          model_id=meta.model_id, on_finished=self._forget, verifier=self._verifier)

    def _forget(self, stream: LiveStream) -> None:
        self.registry.remove(stream.stream_id, stream)
        if not len(self.registry):
            self._emptied.set()

    async def wait_until_empty(self) -> None:
        """Until no stream is open (at once when none is)."""
        while len(self.registry):
            self._emptied.clear()
            await self._emptied.wait()

    def _spawn(self, coro: Any, name: str) -> None:
        """Run a coroutine as a task the hub owns (awaited at shutdown)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_idle_reaper(self) -> None:
        """Close streams that got no audio for `idle_timeout_s`; sleeps until the earliest deadline."""
        loop = asyncio.get_running_loop()
        timeout = self._streams_config.idle_timeout_s
        while True:
            now = loop.time()
            streams = [s for s in self.registry.values() if not s.closed]
            for stream in streams:
                if now - stream.last_activity >= timeout:
                    log.info("stream_idle", stream_id=stream.stream_id, idle_s=round(now - stream.last_activity, 3))
                    self._spawn(stream.close("idle"), f"close:{stream.stream_id}")
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
