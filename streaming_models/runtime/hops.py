"""Per-stream audio buffering: sequence handling, streaming resampling, hop cutting, memory cap.

`StreamBuffer` is synchronous and transport-free: the daemon keeps one per live stream, and the
offline tools feed whole files through it (`iter_file_hops`), so offline scores see exactly the
hops a live stream of the same audio gets (same resampler, same hop boundaries).

Two implementations sit behind the same methods: the compiled `HopCutter` (`_fastpath.c`) for
the low-delay FIR and equal rates, and the pure-Python one (numpy, soxr) for every case;
`runtime/fastpath.py` chooses (and `SPOOFWATCH_PURE_PYTHON_INGEST=1` forces Python). Both give
the same hops, counters and hop timing (tests/test_fastpath.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streaming_models.runtime.fastpath import ingest_path, load_extension
from streaming_models.runtime.resample import (
    SoxrFirUpsampler,
    make_stream_resampler,
    polyphase_taps,
)


@dataclass
class BufferCounters:
    gaps_filled: int = 0  # sequence gaps seen (one per jump, whatever its size)
    samples_filled: int = 0  # silence inserted for gaps, at the source rate
    duplicates_dropped: int = 0  # chunks with an old or repeated sequence number
    samples_dropped_overflow: int = 0  # oldest audio dropped for the cap, at the model rate
    samples_in: int = 0  # source-rate samples accepted (audio + filled silence)
    samples_out: int = 0  # model-rate samples produced by the resampler
    hops_cut: int = 0
    samples_unscored: int = 0  # the final partial hop left at flush(), at the model rate


class StreamBuffer:
    """Mono float32 audio at the source rate in, hops of exactly `hop_samples` at the model rate out.

    - `sequence` numbers (when the transport has them) must grow by one per chunk. The first
      one seen sets the start. A jump fills the gap with silence of the estimated missing
      length (missing chunks x length of the previous chunk, at most `max_buffered_s`);
      an old or repeated number drops the chunk. Both are counted.
    - Audio not yet cut into hops is capped at `max_buffered_s` (model rate, at least one
      hop); above it the oldest samples are dropped and counted.
    - `flush()` ends the stream: the resampler's tail comes out, full hops can still be popped,
      and a final partial hop is NOT scored (counted in `samples_unscored`).

    `compiled`: None chooses as `ingest_path()` says; True requires the compiled path (ValueError
    where it cannot run: extension missing, or soxr's resampler needed); False the Python path.
    """

    def __init__(self, source_rate_hz: int, model_rate_hz: int, hop_samples: int,
                 max_buffered_s: float = 5.0, quality: str = "HQ", low_delay: bool = True,
                 compiled: bool | None = None) -> None:
        if hop_samples <= 0:
            raise ValueError(f"hop_samples must be positive, got {hop_samples}")
        self.source_rate_hz = source_rate_hz
        self.model_rate_hz = model_rate_hz
        self.hop_samples = hop_samples
        self.cap_samples = max(hop_samples, round(max_buffered_s * model_rate_hz))
        self._max_fill_samples = round(max_buffered_s * source_rate_hz)
        self._resampler = make_stream_resampler(source_rate_hz, model_rate_hz, quality, low_delay)
        # The direct FIR's output is known in advance, so input is held here (source rate) until it
        # completes a hop: one filter call per hop instead of per message, the same samples, and
        # each hop still completes on the very message that made it complete.
        self._deferred: list[npt.NDArray[np.float32]] = []
        self._deferred_samples = 0
        self._pieces: deque[npt.NDArray[np.float32]] = deque()
        self._buffered = 0
        self._consumed = 0  # model-rate samples removed from the front (cut into hops or dropped)
        self._next_sequence: int | None = None
        self._last_chunk_len = 0
        self._flushed = False
        self._counters = BufferCounters()
        self._cutter = self._make_cutter(compiled, quality)

    def _make_cutter(self, compiled: bool | None, quality: str) -> Any:
        """The compiled `HopCutter` where it applies and is chosen, else None (the Python path)."""
        if compiled is False or (compiled is None and not ingest_path().compiled):
            return None
        extension = load_extension()
        fir = isinstance(self._resampler, SoxrFirUpsampler)
        if extension is None or not (fir or self._resampler is None):
            if compiled:
                raise ValueError("the compiled path cannot run here: "
                                 + ("extension not built" if extension is None else "soxr's resampler needed"))
            return None
        if fir:
            ratio = self.model_rate_hz // self.source_rate_hz
            taps, half = polyphase_taps(self.source_rate_hz, ratio, quality)
            reversed_taps = np.ascontiguousarray(taps[:, ::-1], dtype=np.float32)
        else:
            ratio, half, reversed_taps = 1, 0, np.ones((1, 1), dtype=np.float32)
        self._resampler = None  # the cutter holds the filter and its state now
        return extension.HopCutter(reversed_taps.tobytes(), ratio, half, self.hop_samples, self.cap_samples)

    @property
    def compiled(self) -> bool:
        """Whether this buffer runs the compiled path."""
        return self._cutter is not None

    @property
    def counters(self) -> BufferCounters:
        cutter = self._cutter
        if cutter is not None:  # the counts the compiled path keeps itself
            self._counters.samples_out = cutter.samples_out
            self._counters.samples_dropped_overflow = cutter.dropped
        return self._counters

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    @property
    def flushed(self) -> bool:
        return self._flushed

    def push(self, samples: npt.NDArray[np.float32], sequence: int | None = None) -> None:
        if self._flushed:
            raise ValueError("push after flush(): the stream has ended")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono 1-D, got shape {samples.shape}")
        if sequence is not None:
            if self._next_sequence is not None and sequence < self._next_sequence:
                self._counters.duplicates_dropped += 1
                return
            if self._next_sequence is not None and sequence > self._next_sequence:
                missing_chunks = sequence - self._next_sequence
                estimate = missing_chunks * (self._last_chunk_len or len(samples))
                fill = min(estimate, self._max_fill_samples)
                self._counters.gaps_filled += 1
                self._counters.samples_filled += fill
                if self._cutter is not None:
                    self._counters.samples_in += fill
                    self._buffered = self._cutter.push_zeros(fill)
                else:
                    self._append(np.zeros(fill, dtype=np.float32))
            self._next_sequence = sequence + 1
        self._last_chunk_len = len(samples)
        if self._cutter is not None:
            self._counters.samples_in += len(samples)
            self._buffered = self._cutter.push(samples)
            return
        self._append(samples)

    def _append(self, samples: npt.NDArray[np.float32]) -> None:
        self._counters.samples_in += len(samples)
        if isinstance(self._resampler, SoxrFirUpsampler):
            self._deferred.append(samples.copy())  # the caller may reuse its array
            self._deferred_samples += len(samples)
            if self._buffered + self._resampler.output_for(self._deferred_samples) >= self.hop_samples:
                self._resample_deferred()
            return
        out = samples.copy() if self._resampler is None else self._resampler.resample_chunk(samples)
        self._store(out)

    def _resample_deferred(self) -> None:
        if self._deferred and self._resampler is not None:
            pending = self._deferred[0] if len(self._deferred) == 1 else np.concatenate(self._deferred)
            self._deferred.clear()
            self._deferred_samples = 0
            self._store(self._resampler.resample_chunk(pending))

    def _store(self, out: npt.NDArray[np.float32]) -> None:
        if len(out):
            self._pieces.append(out)
            self._buffered += len(out)
            self._counters.samples_out += len(out)
        excess = self._buffered - self.cap_samples
        if excess > 0:
            self._drop_front(excess)
            self._counters.samples_dropped_overflow += excess

    def _drop_front(self, count: int) -> None:
        self._buffered -= count
        self._consumed += count
        while count:
            head = self._pieces[0]
            if len(head) <= count:
                self._pieces.popleft()
                count -= len(head)
            else:
                self._pieces[0] = head[count:]
                count = 0

    def _take_front(self, count: int) -> npt.NDArray[np.float32]:
        parts = []
        needed = count
        while needed:
            head = self._pieces[0]
            if len(head) <= needed:
                parts.append(self._pieces.popleft())
                needed -= len(head)
            else:
                parts.append(head[:needed])
                self._pieces[0] = head[needed:]
                needed = 0
        self._buffered -= count
        self._consumed += count
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def pop_hop_spans(self) -> list[tuple[int, int, npt.NDArray[np.float32]]]:
        """Every complete hop as (hop index, start sample within the stream at the model rate, audio)."""
        if self._cutter is not None:
            return self._pop_compiled()
        hops = []
        while self._buffered >= self.hop_samples:
            start = self._consumed
            hops.append((self._counters.hops_cut, start, self._take_front(self.hop_samples)))
            self._counters.hops_cut += 1
        return hops

    def _pop_compiled(self) -> list[tuple[int, int, npt.NDArray[np.float32]]]:
        count, hop = self._buffered // self.hop_samples, self.hop_samples
        if not count:
            return []
        block = np.empty((count, hop), dtype=np.float32)
        start = self._cutter.take(block)
        self._buffered = self._cutter.buffered
        first = self._counters.hops_cut
        self._counters.hops_cut += count
        return [(first + i, start + i * hop, block[i]) for i in range(count)]

    def pop_hops(self) -> list[npt.NDArray[np.float32]]:
        """Every complete hop, each exactly `hop_samples` float32 at the model rate."""
        return [audio for _, _, audio in self.pop_hop_spans()]

    def flush(self) -> None:
        """End of stream: drain the resampler. Pop the last full hops after this; the
        remainder shorter than a hop is discarded unscored. Idempotent."""
        if self._flushed:
            return
        self._flushed = True
        if self._cutter is not None:
            self._cutter.flush()
            self._buffered = self._cutter.buffered
            self._counters.samples_unscored = self._buffered % self.hop_samples
            return
        self._resample_deferred()
        if self._resampler is not None:
            self._store(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self._counters.samples_unscored = self._buffered % self.hop_samples


def iter_file_hops(samples: npt.NDArray[np.float32], source_rate_hz: int, model_rate_hz: int,
                   hop_samples: int, chunk_s: float = 0.02) -> Iterator[npt.NDArray[np.float32]]:
    """Offline helper: a whole mono signal through a `StreamBuffer` in live-sized chunks."""
    buffer = StreamBuffer(source_rate_hz, model_rate_hz, hop_samples,
                          max_buffered_s=max(1.0, len(samples) / source_rate_hz + 1.0))
    step = max(1, int(chunk_s * source_rate_hz))
    for offset in range(0, len(samples), step):
        buffer.push(samples[offset:offset + step])
        yield from buffer.pop_hops()
    buffer.flush()
    yield from buffer.pop_hops()
