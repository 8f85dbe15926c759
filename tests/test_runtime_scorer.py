"""The runtime's one hop-by-hop scorer: per-stream states (the daemon's way) and lockstep groups
(the offline tools' way) give the same scores as threading one stream's state by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streaming_models.runtime.model_format import ModelMetadata, StateSpec
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.runtime.scorer import HopScorer, StreamState


def _streams(hop: int, lengths: tuple[int, ...]) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(3)
    return [[(0.1 * (i + 1) * rng.standard_normal(hop)).astype(np.float32) for _ in range(n)]
            for i, n in enumerate(lengths)]


def _by_hand(backend: OnnxBackend, hops: list[np.ndarray]) -> np.ndarray:
    states = backend.initial_states(1)
    rows = []
    for hop in hops:
        probs, states = backend.run(hop[None], states)
        rows.append(probs[0])
    return np.stack(rows) if rows else np.zeros((0, 2), np.float32)


def test_groups_and_per_stream_states_score_like_one_stream_alone(tiny_model: tuple[Path, Path]) -> None:
    backend = OnnxBackend(tiny_model[0], providers=["CPUExecutionProvider"])
    scorer = HopScorer(backend)
    streams = _streams(backend.metadata.hop_samples, (4, 1, 0, 3))
    expected = [_by_hand(backend, hops) for hops in streams]

    for got, want in zip(scorer.score_streams(streams), expected, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)

    # The daemon's way: whichever streams have a hop ready, each bringing its own state; stream 3
    # starts one hop late, so fresh and carried states share a batch.
    states: list[StreamState | None] = [None] * len(streams)
    got_rows: list[list[np.ndarray]] = [[] for _ in streams]
    for t in range(4):
        ready = [i for i, hops in enumerate(streams) if 0 <= t - (i == 3) < len(hops)]
        audio = np.stack([streams[i][t - (i == 3)] for i in ready])
        probs, new_states = scorer.score_hops(audio, [states[i] for i in ready])
        for row, i in enumerate(ready):
            states[i] = new_states[row]
            got_rows[i].append(probs[row])
    for rows, want in zip(got_rows, expected, strict=True):
        np.testing.assert_allclose(np.stack(rows) if rows else np.zeros((0, 2)), want, atol=1e-6)


def test_signals_are_cut_as_a_live_stream_and_shorter_than_a_hop_gives_no_score(tiny_model: tuple[Path, Path]) -> None:
    scorer = HopScorer(OnnxBackend(tiny_model[0], providers=["CPUExecutionProvider"]))
    rate = 8000  # resampled to the model's 16 kHz on the way
    clip = np.random.default_rng(0).uniform(-0.3, 0.3, rate).astype(np.float32)
    one_second, too_short = scorer.score_signals([(clip, rate), (clip[:100], rate)])
    assert one_second.shape == (10, 2) and too_short.shape == (0, 2)
    [again] = scorer.score_streams([scorer.cut_hops(clip, rate)])
    np.testing.assert_array_equal(again, one_second)


class _WrongShape:
    metadata = ModelMetadata("bad", 16000, 4, (StateSpec("s_in", "s_out", (1,)),))

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, 1), np.float32)]

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        return np.zeros((len(audio), 3), np.float32), states


def test_a_backend_answering_the_wrong_shape_is_refused() -> None:
    with pytest.raises(RuntimeError, match="shape"):
        HopScorer(_WrongShape()).score_hops(np.zeros((2, 4), np.float32), [None, None])
