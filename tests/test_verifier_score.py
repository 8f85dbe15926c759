"""streaming_models/verifier/score.py: the windows a stream's verifier scores, and their scoring."""

from pathlib import Path

import numpy as np
import pytest
import torch

from streaming_models.verifier.score import WindowScorer, window_ends, windows


def test_windows_end_every_step_and_at_the_clip_end() -> None:
    assert window_ends(35, 10) == [10, 20, 30, 35]
    assert window_ends(30, 10) == [10, 20, 30]
    assert window_ends(4, 10) == [4]


def test_windows_hold_the_last_samples_and_pad_short_ones_at_the_end() -> None:
    audio = np.arange(1, 36, dtype=np.float32)
    out = windows(audio, 20, [10, 30, 35])
    np.testing.assert_array_equal(out[0], np.r_[audio[:10], np.zeros(10)])
    np.testing.assert_array_equal(out[1], audio[10:30])
    np.testing.assert_array_equal(out[2], audio[15:35])


class _Session:
    """Stands in for onnxruntime: logit = window mean, so each window's score is checkable."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, _names: None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        audio = feeds["audio"]
        self.batches.append(len(audio))
        return [np.stack([audio.mean(axis=1), -audio.mean(axis=1)], axis=1)]


def test_scorer_returns_probabilities_of_every_window_in_batches() -> None:
    session = _Session()
    scorer = WindowScorer(session, window_s=1.0, every_s=0.5, max_batch=3)  # type: ignore[arg-type]
    audio = np.full(16000 * 3 + 100, 0.5, np.float32)
    probs = scorer.score(audio)
    assert probs.shape == (7, 2) and session.batches == [3, 3, 1]
    first_mean = 0.5 * 8000 / 16000  # half a window of audio, half of zeros
    assert probs[0, 0] == pytest.approx(1 / (1 + np.exp(-first_mean)))
    assert probs[3, 0] == pytest.approx(1 / (1 + np.exp(-0.5)))
    np.testing.assert_allclose(probs[:, 0] + probs[:, 1], 1.0)


def test_a_checkpoint_scores_through_its_onnx_export_as_torch_does(tmp_path: Path) -> None:
    from ct2_files import write_tiny_whisper

    from streaming_models.verifier.model import VerifierConfig, build_verifier, save_checkpoint
    from streaming_models.verifier.score import scorer_from_checkpoint

    weights = write_tiny_whisper(tmp_path / "tiny", width=32, heads=2, layers=2)
    model = build_verifier(VerifierConfig(trainable_blocks=1, pool_hidden=8), weights).eval()
    save_checkpoint(tmp_path / "ckpt.pt", model, {"train": {"config": {"window_s": 1.0}}})
    scorer = scorer_from_checkpoint(tmp_path / "ckpt.pt", every_s=0.5, onnx_dir=tmp_path)
    audio = 0.1 * np.random.default_rng(0).standard_normal(16000 * 2 + 4000).astype(np.float32)
    probs = scorer.score(audio)
    ends = window_ends(len(audio), 8000)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(windows(audio, 16000, ends)))).numpy()
    assert probs.shape == (len(ends), 2)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
