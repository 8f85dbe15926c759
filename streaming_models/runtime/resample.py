"""Per-stream streaming resamplers: soxr's, and a low-delay twin for integer upsampling.

soxr's `ResampleStream` compensates its filter delay by holding output back and releases it
in blocks: at 8 kHz -> 16 kHz with HQ a hop is complete 80 ms (p50) to 120 ms (max) after the
message carrying its last sample (benchmarks/resampler.py). For an integer ratio R the
resampler is a linear, shift-invariant filter per output phase, so the same output can be
computed directly: `SoxrFirUpsampler` takes soxr's own impulse response at the chosen quality
and convolves each chunk as it arrives. It only waits for the filter's look-ahead (about
10 ms at 8 kHz HQ), and its output equals soxr's to float32 rounding (tests/test_resample.py).
Lower soxr qualities are no substitute: their output changes the model's verdicts (the
detector was trained on HQ-resampled audio; see docs/performance.md).
"""

from __future__ import annotations

from functools import cache
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soxr

IMPULSE_FLOOR = 1e-7  # taps below this (relative to the peak) are left out: under float32 rounding
FIR_TOLERANCE = 1e-5  # largest difference from soxr's own output for the direct FIR to be used


class StreamResampler(Protocol):
    def resample_chunk(self, x: npt.NDArray[np.float32], last: bool = False) -> npt.NDArray[np.float32]:
        """The output that is final so far; `last=True` also returns the tail."""
        ...


@cache
def polyphase_taps(source_rate_hz: int, ratio: int, quality: str) -> tuple[npt.NDArray[np.float32], int]:
    """soxr's impulse response for upsampling by `ratio`, as taps [ratio, 2K+1] and K:
    output[ratio * n + p] = sum over k in -K..K of input[n + k] * taps[p, K - k]."""
    span = 4096  # input samples each side of the impulse: far more than any soxr filter
    impulse = np.zeros(2 * span + 1, dtype=np.float64)
    impulse[span] = 1.0
    response = soxr.resample(impulse, source_rate_hz, source_rate_hz * ratio, quality=quality)
    centre = span * ratio
    relative = np.abs(response) / np.abs(response).max()
    significant = np.nonzero(relative > IMPULSE_FLOOR)[0]
    reach = int(max(centre - significant.min(), significant.max() - centre))
    half = -(-reach // ratio)  # K, in input samples
    taps = np.zeros((ratio, 2 * half + 1), dtype=np.float64)
    for phase in range(ratio):
        for k in range(-half, half + 1):
            # input n + k contributes to output ratio * n + phase through response[centre + phase - ratio * k]
            index = centre + phase - ratio * k
            if 0 <= index < len(response):
                taps[phase, half - k] = response[index]
    result = taps.astype(np.float32)
    result.setflags(write=False)
    return result, half


class SoxrFirUpsampler:
    """Integer-ratio upsampling with soxr's filter, applied directly (no block buffering)."""

    def __init__(self, source_rate_hz: int, ratio: int, quality: str = "HQ") -> None:
        if ratio < 2:
            raise ValueError(f"upsampling ratio must be an integer >= 2, got {ratio}")
        self.ratio = ratio
        self._taps, self._half = polyphase_taps(source_rate_hz, ratio, quality)
        # inputs not yet fully used: the window starts K samples before the next output's input,
        # and before the stream's first sample those are zeros (as soxr assumes)
        self._history = np.zeros(self._half, dtype=np.float32)
        self._ended = False

    @property
    def delay_samples(self) -> int:
        """Input samples the output waits for (the filter's look-ahead)."""
        return self._half

    def output_for(self, more_input: int) -> int:
        """How many samples `resample_chunk` would return now for `more_input` more input samples."""
        return self.ratio * max(0, len(self._history) + more_input - 2 * self._half)

    def resample_chunk(self, x: npt.NDArray[np.float32], last: bool = False) -> npt.NDArray[np.float32]:
        if self._ended:
            raise ValueError("resample_chunk after the last chunk")
        window = np.concatenate((self._history, np.asarray(x, dtype=np.float32)))
        if last:
            self._ended = True
            window = np.concatenate((window, np.zeros(self._half, dtype=np.float32)))
        ready = len(window) - 2 * self._half  # inputs whose whole neighbourhood has arrived
        if ready <= 0:
            self._history = window
            return np.zeros(0, dtype=np.float32)
        out = np.empty((ready, self.ratio), dtype=np.float32)  # [input n, phase]
        for phase in range(self.ratio):
            out[:, phase] = np.convolve(window, self._taps[phase], mode="valid")
        self._history = window[ready:]
        return out.reshape(-1)


@cache
def fir_matches_soxr(source_rate_hz: int, ratio: int, quality: str) -> bool:
    """Whether `SoxrFirUpsampler` reproduces soxr for this case (checked once on noise): true
    for the single-stage designs soxr uses for small ratios (2, 3 at HQ), not for all."""
    probe = np.random.default_rng(0).uniform(-0.5, 0.5, source_rate_hz // 2).astype(np.float32)
    expected = soxr.resample(probe, source_rate_hz, source_rate_hz * ratio, quality=quality)
    upsampler = SoxrFirUpsampler(source_rate_hz, ratio, quality)
    step = max(1, source_rate_hz // 50)
    pieces = [upsampler.resample_chunk(probe[i:i + step]) for i in range(0, len(probe), step)]
    got = np.concatenate([*pieces, upsampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)])
    return got.shape == expected.shape and float(np.abs(got - expected).max()) <= FIR_TOLERANCE


TELEPHONE_RATES_HZ = (8000, 16000)


def prepare_low_delay(target_rate_hz: int, quality: str) -> None:
    """Derive and check the filters for the telephone rates now (~15 ms each, once), so that the
    first call of the day does not pay for it on the event loop."""
    for rate in TELEPHONE_RATES_HZ:
        ratio, remainder = divmod(target_rate_hz, rate)
        if remainder == 0 and ratio >= 2:
            fir_matches_soxr(rate, ratio, quality)


def make_stream_resampler(source_rate_hz: int, target_rate_hz: int, quality: str,
                          low_delay: bool) -> StreamResampler | None:
    """None when the rates match; with `low_delay`, the direct FIR for an integer upsampling
    ratio where it reproduces soxr; otherwise soxr's streaming resampler."""
    if source_rate_hz == target_rate_hz:
        return None
    ratio, remainder = divmod(target_rate_hz, source_rate_hz)
    if low_delay and remainder == 0 and ratio >= 2 and fir_matches_soxr(source_rate_hz, ratio, quality):
        return SoxrFirUpsampler(source_rate_hz, ratio, quality)
    return soxr.ResampleStream(source_rate_hz, target_rate_hz, 1, dtype="float32", quality=quality)
