"""The low-delay upsampler gives soxr's samples, sooner."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.resample import (
    SoxrFirUpsampler,
    fir_matches_soxr,
    make_stream_resampler,
)


def _noise(seconds: float, rate: int, seed: int = 0) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).uniform(-0.8, 0.8, int(seconds * rate)).astype(np.float32)


def _stream(resampler: object, signal: npt.NDArray[np.float32], sizes: list[int]) -> npt.NDArray[np.float32]:
    pieces, offset, i = [], 0, 0
    while offset < len(signal):
        size = sizes[i % len(sizes)]
        pieces.append(resampler.resample_chunk(signal[offset:offset + size]))  # type: ignore[attr-defined]
        offset += size
        i += 1
    pieces.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))  # type: ignore[attr-defined]
    return np.concatenate(pieces)


@pytest.mark.parametrize(("rate", "ratio"), [(8000, 2), (16000, 3), (8000, 3)])
@pytest.mark.parametrize("quality", ["HQ", "VHQ"])
def test_direct_fir_gives_soxrs_samples(rate: int, ratio: int, quality: str) -> None:
    signal = _noise(1.3, rate)
    expected = soxr.resample(signal, rate, rate * ratio, quality=quality)
    soxr_stream = _stream(soxr.ResampleStream(rate, rate * ratio, 1, dtype="float32", quality=quality),
                          signal, [rate // 50])
    got = _stream(SoxrFirUpsampler(rate, ratio, quality), signal, [1, 37, rate // 50, 0, 999])
    assert got.shape == expected.shape == soxr_stream.shape
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(got - soxr_stream).max() < 1e-5


def test_output_waits_only_for_the_look_ahead() -> None:
    upsampler = SoxrFirUpsampler(8000, 2)
    assert 0 < upsampler.delay_samples <= 0.015 * 8000  # HQ's filter reaches about 12 ms ahead
    produced = 0
    for n in range(1, 51):
        produced += len(upsampler.resample_chunk(np.zeros(160, dtype=np.float32)))
        assert produced == 2 * (160 * n - upsampler.delay_samples)


def test_no_chunk_after_the_last() -> None:
    upsampler = SoxrFirUpsampler(8000, 2)
    upsampler.resample_chunk(np.zeros(10, dtype=np.float32), last=True)
    with pytest.raises(ValueError, match="after the last"):
        upsampler.resample_chunk(np.zeros(10, dtype=np.float32))


def test_falls_back_to_soxr_where_the_fir_does_not_match() -> None:
    assert not fir_matches_soxr(8000, 6, "HQ")  # a multi-stage soxr design
    assert isinstance(make_stream_resampler(8000, 48000, "HQ", low_delay=True), soxr.ResampleStream)
    assert isinstance(make_stream_resampler(48000, 16000, "HQ", low_delay=True), soxr.ResampleStream)
    assert isinstance(make_stream_resampler(8000, 16000, "HQ", low_delay=False), soxr.ResampleStream)
    assert isinstance(make_stream_resampler(8000, 16000, "HQ", low_delay=True), SoxrFirUpsampler)
    assert make_stream_resampler(16000, 16000, "HQ", low_delay=True) is None


def _completion_delays_ms(low_delay: bool) -> list[float]:
    """Per hop: ms between the 20 ms message carrying its last sample and the one completing it."""
    buffer = StreamBuffer(8000, 16000, 1600, max_buffered_s=30, low_delay=low_delay)
    signal = _noise(6.0, 8000, seed=3)
    delays = []
    for m in range(len(signal) // 160):
        buffer.push(signal[m * 160:(m + 1) * 160], m)
        for index, _, _ in buffer.pop_hop_spans():
            delays.append(20.0 * (m - (5 * (index + 1) - 1)))
    return delays


def test_hops_complete_one_message_late_at_most_instead_of_up_to_six() -> None:
    assert max(_completion_delays_ms(low_delay=True)) == 20.0
    assert max(_completion_delays_ms(low_delay=False)) >= 100.0  # soxr's own streaming output


def test_stream_buffer_hops_are_the_same_with_either_resampler() -> None:
    signal = _noise(3.0, 8000, seed=5)
    hops = []
    for low_delay in (True, False):
        buffer = StreamBuffer(8000, 16000, 1600, max_buffered_s=30, low_delay=low_delay)
        for m in range(len(signal) // 160):
            buffer.push(signal[m * 160:(m + 1) * 160], m)
        buffer.flush()
        hops.append(np.stack(buffer.pop_hops()))
    assert hops[0].shape == hops[1].shape
    assert np.abs(hops[0] - hops[1]).max() < 1e-5


def test_deferred_block_resampling_matches_per_message_resampling() -> None:
    """StreamBuffer holds input until it completes a hop, then filters it in one call: same
    samples as filtering every message, and every hop completes on the same message."""
    signal = _noise(4.0, 8000, seed=7)
    buffer = StreamBuffer(8000, 16000, 1600, max_buffered_s=30)
    upsampler = SoxrFirUpsampler(8000, 2)
    reference = np.zeros(0, dtype=np.float32)
    got_hops, expected_hops = [], []
    for m in range(len(signal) // 160):
        chunk = signal[m * 160:(m + 1) * 160]
        buffer.push(chunk, m)
        got_hops += [(m, audio) for _, _, audio in buffer.pop_hop_spans()]
        reference = np.concatenate((reference, upsampler.resample_chunk(chunk)))
        while len(reference) >= 1600:
            expected_hops.append((m, reference[:1600]))
            reference = reference[1600:]
    assert [m for m, _ in got_hops] == [m for m, _ in expected_hops]
    assert len(got_hops) == 39  # 4 s of 100 ms hops; the last waits for the look-ahead
    assert max(float(np.abs(a - b).max()) for (_, a), (_, b) in zip(got_hops, expected_hops, strict=True)) < 1e-6
