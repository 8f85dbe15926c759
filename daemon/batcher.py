"""Cross-stream batching of ready hops into one stateful model call.

Each stream submits one hop at a time and awaits its future (sherpa-onnx style). The
batch closes when `max_batch` distinct streams are waiting or when the oldest hop has
waited `max_wait_ms`, whichever comes first: an awaitable deadline, no polling. The model
runs in an executor thread, so the event loop never blocks on inference.

Recurrent state lives in a `StreamSlot` per stream: the runtime's scorer
(streaming_models/runtime/scorer.py, the one the offline tools use too) stacks the slots' states
into the batch, runs the backend, and cuts each row's state out; the batcher writes it back to
the slot. A slot is in at most one batch at a time (a second hop of the same stream waits for the
next batch), so states stay in order.
`release(slot)` frees the state when the stream closes.

The app runs `run_batches` under `daemon/supervise.Supervisor`: if a bug ends the loop it is
restarted, and the hops of a batch it had taken (their states and outcome unknown) fail, which
ends just their streams with `error`. While a model call runs, `in_flight_s()` says for how long,
so a call that never returns is noticed (`daemon/health.InferenceStallCheck`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import structlog

from daemon.metrics import DaemonMetrics
from daemon.stream_api import StreamClosedError
from streaming_models.runtime.backend import Backend
from streaming_models.runtime.scorer import HopScorer, StreamState

log = structlog.get_logger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher stopped before this hop was scored."""


class BatchAbandoned(RuntimeError):
    """The batching loop died while this hop's batch was taken; the loop was restarted."""


class StreamSlot:
    """One stream's recurrent state: arrays [1, *shape], or None before its first hop."""

    __slots__ = ("closed", "name", "states")

    def __init__(self, name: str) -> None:
        self.name = name
        self.states: StreamState | None = None
        self.closed = False


@dataclass
class _Item:
    slot: StreamSlot
    audio: npt.NDArray[np.float32]
    future: asyncio.Future[npt.NDArray[np.float32]]
    enqueued_at: float


@dataclass
class BatcherStats:
    batches: int = 0
    hops: int = 0
    failures: int = 0
    recent_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000))


class Batcher:
    def __init__(self, backend: Backend, max_batch: int, max_wait_ms: float,
                 executor: Executor | None = None, metrics: DaemonMetrics | None = None) -> None:
        self.backend = backend
        self._scorer = HopScorer(backend)
        self.metrics = metrics if metrics is not None else DaemonMetrics()
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._executor = executor
        self._hop_samples = backend.metadata.hop_samples
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._taken: list[_Item] = []  # the batch being scored, until its futures are settled
        self._call_started: float | None = None  # time.monotonic() when the model call in flight began
        self._call_size = 0
        self.stats = BatcherStats()

    def open_slot(self, name: str) -> StreamSlot:
        return StreamSlot(name)

    def release(self, slot: StreamSlot) -> None:
        """Free the stream's state; later submits for it fail."""
        slot.closed = True
        slot.states = None

    async def submit(self, slot: StreamSlot, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Score one hop of one stream; returns probabilities float32 [2] (spoof, codec)."""
        if self._closed:
            raise BatcherClosed("the batcher has stopped")
        if slot.closed:
            raise StreamClosedError(f"stream {slot.name!r} is closed")
        if audio.shape != (self._hop_samples,):
            raise ValueError(f"a hop is {self._hop_samples} samples, got shape {audio.shape}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[npt.NDArray[np.float32]] = loop.create_future()
        was_empty = not self._queue
        self._queue.append(_Item(slot, audio, future, loop.time()))
        self._idle.clear()
        if was_empty or len(self._queue) >= self.max_batch:
            self._wake.set()
        return await future

    async def run_batches(self) -> None:
        """The batching loop; owned and cancelled by the app, restarted by its supervisor."""
        loop = asyncio.get_running_loop()
        self._fail_abandoned()
        while True:
            while not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            deadline = self._queue[0].enqueued_at + self.max_wait_s
            while self._distinct_waiting() < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._wake.wait()
                except TimeoutError:
                    break
            self._taken = self._take_batch()
            await self._run(self._taken)
            self._taken = []

    def _fail_abandoned(self) -> None:
        """After a restart: the batch the dead loop had taken is failed, not retried (its states may
        be half written, and retrying a batch that killed the loop could kill it again)."""
        abandoned, self._taken = self._taken, []
        self._call_started = None
        for item in abandoned:
            if not item.future.done():
                self._fail(item, BatchAbandoned("the batcher failed while scoring this hop"))
        if abandoned:
            log.error("batch_abandoned", size=len(abandoned))

    def in_flight_s(self) -> float:
        """How long the model call now running has been running (0.0 when none is)."""
        started = self._call_started
        return 0.0 if started is None else max(0.0, time.monotonic() - started)

    @property
    def in_flight_size(self) -> int:
        """Hops in the model call now running (0 when none is)."""
        return self._call_size if self._call_started is not None else 0

    def _distinct_waiting(self) -> int:
        if len(self._queue) < self.max_batch:
            return len({id(item.slot) for item in self._queue})
        return len({id(item.slot) for item in list(self._queue)[: 4 * self.max_batch]})

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        taken: set[int] = set()
        kept: deque[_Item] = deque()
        while self._queue:
            item = self._queue.popleft()
            if len(batch) < self.max_batch and id(item.slot) not in taken:
                batch.append(item)
                taken.add(id(item.slot))
            else:
                kept.append(item)
        self._queue = kept
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        live = []
        for item in batch:
            if item.future.done():  # the submitter was cancelled
                continue
            if item.slot.closed:
                item.future.set_exception(StreamClosedError(f"stream {item.slot.name!r} is closed"))
                continue
            live.append(item)
        if not live:
            return
        try:
            await self._score(live)
        except Exception as exc:  # noqa: BLE001 - isolate the failing stream(s) below
            if len(live) == 1:
                self._fail(live[0], exc)
                return
            log.warning("batch_failed_retrying_singly", size=len(live), error=repr(exc))
            for item in live:
                try:
                    await self._score([item])
                except Exception as single_exc:  # noqa: BLE001 - this stream's error only
                    self._fail(item, single_exc)

    def _fail(self, item: _Item, exc: Exception) -> None:
        self.stats.failures += 1
        self.metrics.batch_failures.inc()
        if not item.future.done():
            item.future.set_exception(exc)

    async def _score(self, items: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        audio = np.stack([item.audio for item in items])  # [B, hop_samples]
        states = [item.slot.states for item in items]
        started = loop.time()
        for item in items:
            self.metrics.queue_wait.observe(started - item.enqueued_at)
        self._call_started, self._call_size = time.monotonic(), len(items)
        try:
            probs, new_states = await loop.run_in_executor(self._executor, self._scorer.score_hops, audio, states)
        finally:
            self._call_started = None
        self.metrics.inference.observe(loop.time() - started)
        self.stats.batches += 1
        self.stats.hops += len(items)
        self.stats.recent_batch_sizes.append(len(items))
        self.metrics.batches.inc()
        self.metrics.batch_size.observe(len(items))
        self.metrics.hops.inc(len(items))
        for row, item in enumerate(items):
            if not np.all(np.isfinite(probs[row])):
                self._fail(item, RuntimeError("the model produced a non-finite probability"))
                continue
            if not item.slot.closed:
                item.slot.states = new_states[row]
            if not item.future.done():
                item.future.set_result(probs[row].copy())

    async def wait_idle(self) -> None:
        """Until nothing is queued or running."""
        await self._idle.wait()

    def close(self) -> None:
        """Refuse new hops and fail the queued ones (after the app has drained the streams)."""
        self._closed = True
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(BatcherClosed("the daemon stopped before this hop was scored"))
