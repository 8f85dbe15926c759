from __future__ import annotations

import numpy as np
import pytest

from daemon.streams import StreamRegistry
from streaming_models.runtime.hops import StreamBuffer


def _tone(n: int, rate: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 300 * np.arange(n) / rate)).astype(np.float32)


@pytest.mark.parametrize("source_rate,chunk", [(8000, 160), (48000, 960), (44100, 441), (16000, 320)])
def test_hops_follow_the_resampled_length(source_rate: int, chunk: int) -> None:
    buffer = StreamBuffer(source_rate, 16000, 1600, max_buffered_s=60)
    total_in = chunk * 157
    hops = []
    for seq, offset in enumerate(range(0, total_in, chunk)):
        buffer.push(_tone(total_in, source_rate)[offset:offset + chunk], seq)
        hops += buffer.pop_hops()
    buffer.flush()
    hops += buffer.pop_hops()
    resampled = round(total_in * 16000 / source_rate)
    assert buffer.counters.samples_out == resampled
    assert len(hops) == resampled // 1600
    assert all(h.shape == (1600,) and h.dtype == np.float32 for h in hops)
    assert buffer.counters.samples_unscored == resampled % 1600


def test_streaming_resampler_equals_one_shot_resampling() -> None:
    import soxr

    x = _tone(48000, 48000)
    buffer = StreamBuffer(48000, 16000, 400, max_buffered_s=60)
    for offset in range(0, len(x), 480):
        buffer.push(x[offset:offset + 480])
    buffer.flush()
    streamed = np.concatenate(buffer.pop_hops())
    whole = soxr.resample(x, 48000, 16000)
    np.testing.assert_allclose(streamed, whole[:len(streamed)], atol=1e-4)


def test_hop_spans_give_index_and_start() -> None:
    buffer = StreamBuffer(16000, 16000, 100)
    buffer.push(np.arange(350, dtype=np.float32))
    spans = buffer.pop_hop_spans()
    assert [(i, s) for i, s, _ in spans] == [(0, 0), (1, 100), (2, 200)]
    np.testing.assert_array_equal(spans[1][2], np.arange(100, 200, dtype=np.float32))


def test_cap_drops_the_oldest_audio_and_counts_it() -> None:
    buffer = StreamBuffer(16000, 16000, 1600, max_buffered_s=0.5)  # cap 8000 samples
    buffer.push((np.arange(16000) / 16000).astype(np.float32))
    assert buffer.buffered_samples == 8000
    assert buffer.counters.samples_dropped_overflow == 8000
    spans = buffer.pop_hop_spans()
    assert spans[0][1] == 8000  # the newest audio survives, with its true position
    np.testing.assert_allclose(spans[0][2][0], 0.5)


def test_gap_is_filled_with_silence_of_the_estimated_length() -> None:
    buffer = StreamBuffer(8000, 8000, 80, max_buffered_s=10)
    ones = np.ones(160, dtype=np.float32)
    buffer.push(ones, 0)
    buffer.push(ones, 3)  # 1 and 2 lost: 2 chunks x 160 samples
    assert buffer.counters.gaps_filled == 1
    assert buffer.counters.samples_filled == 320
    audio = np.concatenate(buffer.pop_hops())
    assert len(audio) == 640
    np.testing.assert_array_equal(audio[160:480], 0)
    np.testing.assert_array_equal(audio[480:], 1)


def test_duplicates_and_old_sequence_numbers_are_dropped() -> None:
    buffer = StreamBuffer(8000, 8000, 80, max_buffered_s=10)
    chunk = np.ones(160, dtype=np.float32)
    for seq in (0, 1, 1, 0, 2):
        buffer.push(chunk, seq)
    assert buffer.counters.duplicates_dropped == 2
    assert buffer.counters.samples_in == 480


def test_huge_gap_fill_is_bounded_by_the_cap() -> None:
    buffer = StreamBuffer(8000, 8000, 80, max_buffered_s=1.0)
    buffer.push(np.ones(160, dtype=np.float32), 0)
    buffer.push(np.ones(160, dtype=np.float32), 10**9)
    assert buffer.counters.samples_filled == 8000
    assert buffer.buffered_samples <= 8000


def test_push_after_flush_fails_and_flush_is_idempotent() -> None:
    buffer = StreamBuffer(8000, 16000, 160)
    buffer.push(np.zeros(800, dtype=np.float32))
    buffer.flush()
    out = buffer.counters.samples_out
    buffer.flush()
    assert buffer.counters.samples_out == out == 1600
    with pytest.raises(ValueError, match="after flush"):
        buffer.push(np.zeros(80, dtype=np.float32))


def test_registry_keeps_open_streams_by_id() -> None:
    registry: StreamRegistry[object] = StreamRegistry()
    a, b = object(), object()
    registry.add("a", a)
    registry.add("b", b)
    with pytest.raises(RuntimeError, match="already in the registry"):  # admission refuses duplicates first
        registry.add("a", object())
    assert registry.get("a") is a
    registry.remove("a", object())  # not the registered one: ignored
    assert "a" in registry
    registry.remove("a", a)
    assert len(registry) == 1 and registry.values() == [b] and "a" not in registry
