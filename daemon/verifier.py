"""The second tier in the daemon (docs/verifier.md, "In the daemon"): each stream's latest window of
audio, scored every `every_hops` hops by one batcher that runs the verifier off the event loop.

    LiveStream, per scored hop: VerifierTrack.add_hop (the hop's model-rate samples into the stream's
      ring of `window_s`; screening) -> when due, VerifierBatcher.offer (a copy of the window, never waits)
    VerifierBatcher.run: up to `max_batch` windows of different streams -> OnnxVerifier.run in its own
      one-thread executor -> each track's `latest` score
    LiveStream, every result: VerifierBatcher.fields -> the latest verifier scores and the fused p_spoof

The streaming path never waits for the verifier: a window is queued or dropped, at once. At most one
window per stream waits (a newer one takes its place, counted `superseded`), and at most `max_queued`
in all (past that a new window is dropped, counted `dropped_backlog`), so a verifier that falls behind
costs stale verifier scores, never memory or hop latency.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

from daemon.config import VerifierConfig
from daemon.errors import ConfigError, DaemonError
from daemon.metrics import VerifierMetrics
from daemon.wire.results import VerifierFields
from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.fusion import fused_p_spoof
from streaming_models.runtime.model_format import ModelMetadata
from streaming_models.runtime.verifier_format import VerifierMetadata

log = structlog.get_logger(__name__)


class VerifierError(DaemonError):
    """The configured verifier cannot run: the message names the key and what is wrong."""


class WindowScorer(Protocol):
    metadata: VerifierMetadata

    def run(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities float32 [B, 2] (spoof, codec) of windows float32 [B, samples]."""
        ...


def load_verifier(config: VerifierConfig, streaming: ModelMetadata, cwd: Path | None = None) -> WindowScorer:
    """The configured verifier, checked against the streaming model and the configured window, and
    run once on a silent window, so that anything wrong stops the daemon at start."""
    # onnxruntime is loaded only when the verifier is on (as the backends load theirs when chosen)
    from streaming_models.runtime.verifier_onnx import OnnxVerifier

    path = Path(config.path).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    if not path.is_file():
        raise VerifierError(f"verifier.path: no such file {path}; export the verifier to ONNX "
                            "(streaming_models.verifier.model.export_onnx, docs/verifier.md) or set verifier.enabled = false")
    try:
        verifier = OnnxVerifier(path, providers=config.providers, intra_op_threads=config.intra_op_threads)
    except (BackendError, ModelFormatError) as exc:
        raise VerifierError(f"verifier.path: {exc}") from exc
    meta = verifier.metadata
    if meta.sample_rate_hz != streaming.sample_rate_hz:
        raise VerifierError(f"verifier.path: the verifier takes {meta.sample_rate_hz} Hz audio, the streaming model "
                            f"{streaming.model_id} cuts {streaming.sample_rate_hz} Hz hops; the verifier reuses them, "
                            "so both must have one rate")
    if config.window_s > meta.max_window_s:
        raise ConfigError("verifier.window_s", f"{config.window_s} s is longer than the verifier {meta.model_id} "
                          f"takes ({meta.max_window_s:g} s)")
    window = meta.samples(config.window_s)
    if window < streaming.hop_samples:
        raise ConfigError("verifier.window_s", f"{config.window_s} s is shorter than one hop "
                          f"({streaming.hop_samples / streaming.sample_rate_hz:g} s)")
    try:
        probe = verifier.run(np.zeros((1, window), np.float32))
    except Exception as exc:  # whatever the runtime raises, the daemon must not start
        raise VerifierError(f"verifier.path: {path} could not score a {config.window_s} s window: {exc}") from exc
    if probe.shape != (1, 2) or not np.all(np.isfinite(probe)):
        raise VerifierError(f"verifier.path: {path} answered {probe!r} for a silent {config.window_s} s window")
    if abs(config.window_s - meta.window_s) > 1e-6:
        log.warning("verifier_window_differs_from_training", window_s=config.window_s, trained_window_s=meta.window_s)
    return verifier


@dataclass(frozen=True)
class VerifierScore:
    p_spoof: float
    p_codec: float
    t_end_s: float  # the end of the scored window, in the stream's audio time


class VerifierTrack:
    """One stream's side of the verifier: the last `window_samples` of its model-rate audio (a ring,
    allocated on its first hop), which hops are due, whether it is screened in, its latest score."""

    __slots__ = ("_every_hops", "_filled", "_position", "_ring", "_screen_threshold", "_window_samples",
                 "closed", "hops", "latest", "screened_in")

    def __init__(self, window_samples: int, every_hops: int, screen_threshold: float) -> None:
        self._window_samples = window_samples
        self._every_hops = every_hops
        self._screen_threshold = screen_threshold
        self._ring: npt.NDArray[np.float32] | None = None
        self._position = 0  # where the next sample goes
        self._filled = 0  # samples held, up to window_samples
        self.hops = 0
        self.screened_in = screen_threshold <= 0.0
        self.latest: VerifierScore | None = None
        self.closed = False

    def add_hop(self, audio: npt.NDArray[np.float32], p_spoof: float) -> bool:
        """Keep the hop's samples and its streaming p_spoof; True when a window is due now: every
        `every_hops` hops of the stream, once the stream is screened in (p_spoof reached the
        threshold at some hop, this one included)."""
        self._append(audio)
        self.hops += 1
        if not self.screened_in and p_spoof >= self._screen_threshold:
            self.screened_in = True
        return self.screened_in and self.hops % self._every_hops == 0

    def _append(self, audio: npt.NDArray[np.float32]) -> None:
        if self._ring is None:
            self._ring = np.zeros(self._window_samples, np.float32)
        size = self._window_samples
        audio = audio[-size:]
        head = min(len(audio), size - self._position)
        self._ring[self._position:self._position + head] = audio[:head]
        self._ring[:len(audio) - head] = audio[head:]
        self._position = (self._position + len(audio)) % size
        self._filled = min(size, self._filled + len(audio))

    def window(self) -> npt.NDArray[np.float32]:
        """A copy of the window, oldest sample first; while the stream is shorter than the window, its
        audio so far followed by zeros (training pads a short clip at its end the same way)."""
        if self._ring is None:
            return np.zeros(self._window_samples, np.float32)
        if self._filled < self._window_samples:
            return self._ring.copy()  # written from index 0 on, the rest still zeros
        return np.concatenate([self._ring[self._position:], self._ring[:self._position]])


@dataclass
class _Window:
    track: VerifierTrack
    audio: npt.NDArray[np.float32]
    t_end_s: float
    enqueued_at: float


class VerifierBatcher:
    """Scores the streams' windows in batches of up to `max_batch`, one call at a time, in `executor`
    (its own thread: the streaming model's never waits for it). Owned by the composition root."""

    def __init__(self, verifier: WindowScorer, config: VerifierConfig, executor: Executor | None,
                 metrics: VerifierMetrics) -> None:
        self.verifier = verifier
        self.config = config
        self.window_samples = verifier.metadata.samples(config.window_s)
        self.metrics = metrics
        self._executor = executor
        self._waiting: dict[VerifierTrack, _Window] = {}  # insertion order = queue order
        self._wake = asyncio.Event()
        self._closed = False
        self._in_flight = 0  # windows in the verifier call running now
        metrics.queued.set_function(lambda: len(self._waiting))

    def open_track(self) -> VerifierTrack:
        return VerifierTrack(self.window_samples, self.config.every_hops, self.config.screen_threshold)

    def open_stream(self) -> StreamVerifier:
        """A new stream's handle: its track, bound to this batcher."""
        return StreamVerifier(self, self.open_track())

    def release(self, track: VerifierTrack) -> None:
        """The stream has closed: its waiting window, if any, is forgotten and no score is kept."""
        track.closed = True
        self._waiting.pop(track, None)

    def offer(self, track: VerifierTrack, t_end_s: float) -> bool:
        """Queue the track's current window without waiting; False when it was dropped (full queue)."""
        if self._closed or track.closed:
            return False
        now = asyncio.get_running_loop().time()
        if track in self._waiting:  # the older one never ran: the newer window takes its place in line
            self._waiting[track] = _Window(track, track.window(), t_end_s, self._waiting[track].enqueued_at)
            self.metrics.windows.labels("superseded").inc()
            return True
        if len(self._waiting) >= self.config.max_queued:
            self.metrics.windows.labels("dropped_backlog").inc()
            return False
        self._waiting[track] = _Window(track, track.window(), t_end_s, now)
        self._wake.set()
        return True

    def fields(self, track: VerifierTrack, p_spoof: float) -> VerifierFields:
        """What a result of the stream carries: the latest verifier score and the fused p_spoof."""
        latest = track.latest
        p_verifier = latest.p_spoof if latest is not None else None
        return VerifierFields(
            p_spoof_verifier=p_verifier, p_codec_verifier=latest.p_codec if latest is not None else None,
            verifier_t_end_s=latest.t_end_s if latest is not None else None,
            p_spoof_fused=fused_p_spoof(self.config.fusion, p_spoof, p_verifier))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        """A window is waiting or being scored."""
        return bool(self._waiting) or self._in_flight > 0

    async def run(self) -> None:
        """The scoring loop; owned and cancelled by the app."""
        while True:
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            batch = self._take(self.config.max_batch)
            self._in_flight = len(batch)
            try:
                await self._score(batch)
            finally:
                self._in_flight = 0

    def _take(self, count: int) -> list[_Window]:
        tracks = list(self._waiting)[:count]
        return [self._waiting.pop(track) for track in tracks]

    async def _score(self, batch: list[_Window]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for item in batch:
            self.metrics.queue_wait.observe(started - item.enqueued_at)
        windows = np.stack([item.audio for item in batch])
        try:
            probs = await loop.run_in_executor(self._executor, self.verifier.run, windows)
        except Exception as exc:  # noqa: BLE001 - a verifier failure costs its windows, never a stream
            log.warning("verifier_batch_failed", size=len(batch), error=repr(exc))
            self.metrics.windows.labels("failed").inc(len(batch))
            return
        self.metrics.inference.observe(loop.time() - started)
        self.metrics.batch_size.observe(len(batch))
        for row, item in enumerate(batch):
            if not np.all(np.isfinite(probs[row])):
                self.metrics.windows.labels("failed").inc()
                continue
            self.metrics.windows.labels("scored").inc()
            if not item.track.closed:
                item.track.latest = VerifierScore(float(probs[row, 0]), float(probs[row, 1]), item.t_end_s)

    def close(self) -> None:
        self._closed = True
        self._waiting.clear()


@dataclass(frozen=True)
class StreamVerifier:
    """One stream's side of the verifier, as its `LiveStream` uses it."""

    batcher: VerifierBatcher
    track: VerifierTrack

    def on_hop(self, audio: npt.NDArray[np.float32], p_spoof: float, t_end_s: float) -> VerifierFields:
        """A hop the streaming model has scored: into the window (queued when due); the result's fields."""
        if self.track.add_hop(audio, p_spoof):
            self.batcher.offer(self.track, t_end_s)
        return self.batcher.fields(self.track, p_spoof)

    def release(self) -> None:
        self.batcher.release(self.track)
