"""Training-time augmentation: what each transform does to a known signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streaming_models.data.manifest import CorpusItem, Source
from streaming_models.training_data import (
    Augmentation,
    Clip,
    augment,
    ground_truth_pairs,
    sample_batch,
    sampling_weights,
)


def test_augment_is_seeded_and_never_clips() -> None:
    audio = torch.randn(4, 8000, generator=torch.Generator().manual_seed(1)) * 0.5
    once = augment(audio, Augmentation(), torch.Generator().manual_seed(7))
    assert torch.equal(once, augment(audio, Augmentation(), torch.Generator().manual_seed(7)))
    assert not torch.equal(once, augment(audio, Augmentation(), torch.Generator().manual_seed(8)))
    assert np.isfinite(once.numpy()).all() and once.abs().max() <= 0.99 + 1e-6
    plain = augment(audio, Augmentation(gain_db=(0.0, 0.0), noise_prob=0.0, tilt_prob=0.0), torch.Generator())
    peak_guard = (audio.abs().amax(1, keepdim=True) / 0.99).clamp(min=1.0)
    assert torch.allclose(plain, audio / peak_guard, atol=1e-6)  # nothing drawn changes the audio


def _clip(source: Source, generator: str, audio: np.ndarray | None = None, channel: tuple[str, ...] = ()) -> Clip:
    item = CorpusItem(path="x.flac", source=source, generator=generator, channel=channel)
    return Clip(item, np.zeros(16000, np.int16) if audio is None else audio, int(source == "spoof"), 0)


def _mass(clips: list[Clip], weights: np.ndarray, generator: str) -> float:
    return float(sum(w for c, w in zip(clips, weights, strict=True) if c.item.generator == generator))


def test_generator_weights_shift_mass_between_generators_and_keep_the_class_balance() -> None:
    clips = ([_clip("bonafide", "human")] * 5 + [_clip("spoof", "espeak")] * 6 + [_clip("spoof", "hifigan")] * 2
             + [_clip("spoof", "kokoro")])
    plain = sampling_weights(clips)
    assert _mass(clips, plain, "human") == pytest.approx(0.5)  # each target pair gets equal mass
    assert [_mass(clips, plain, g) for g in ("espeak", "hifigan", "kokoro")] == pytest.approx([1 / 6] * 3)
    assert np.array_equal(plain, sampling_weights(clips, {}))  # no weights: the recipe's sampler exactly

    weighted = sampling_weights(clips, {"espeak": 0.25, "kokoro": 2.0})
    assert weighted.sum() == pytest.approx(1.0)
    assert _mass(clips, weighted, "human") == pytest.approx(0.5)  # a weight never moves mass across classes
    # within the spoof half, shares follow 0.25 : 1 : 2
    assert [_mass(clips, weighted, g) for g in ("espeak", "hifigan", "kokoro")] == pytest.approx(
        [0.5 * 0.25 / 3.25, 0.5 * 1 / 3.25, 0.5 * 2 / 3.25])


def _paired_clip(source: Source, item_id: str, audio: np.ndarray, parent: str | None = None) -> Clip:
    item = CorpusItem(path="x.flac", source=source, generator="human" if source == "bonafide" else "vits",
                      item_id=item_id, parent=parent)
    return Clip(item, audio, int(source == "spoof"), 0)


def test_ground_truth_pairs_link_spoofs_to_their_genuine_parent_only() -> None:
    ramp = np.arange(32000, dtype=np.int16)
    clips = [_paired_clip("bonafide", "gt", ramp), _paired_clip("spoof", "tts", ramp, parent="gt"),
             _paired_clip("spoof", "orphan", ramp, parent="not-loaded"),
             _paired_clip("bonafide", "codec-copy", ramp, parent="gt"),  # genuine: not a spoof pair
             _paired_clip("spoof", "of-a-spoof", ramp, parent="tts")]  # its parent is no ground truth
    assert ground_truth_pairs(clips).tolist() == [[1, 0]]
    assert ground_truth_pairs(clips[:1]).shape == (0, 2)


def test_pair_rows_are_cropped_at_the_same_place_and_the_rest_of_the_batch_is_unchanged() -> None:
    truth = np.arange(32000, dtype=np.int16)
    fake = (np.arange(32000) // 2).astype(np.int16)  # sample k of the pair's spoof holds k // 2
    clips = [_paired_clip("bonafide", "gt", truth), _paired_clip("spoof", "tts", fake, parent="gt")]
    weights, pairs = np.array([0.5, 0.5]), ground_truth_pairs(clips)
    batch = sample_batch(clips, weights, np.random.default_rng(1), 8, 1600, 2, 2, pairs, 2)
    assert batch.pair_rows.tolist() == [[4, 5], [6, 7]]
    for spoof_row, truth_row in batch.pair_rows:
        assert batch.spoof[spoof_row] == 1 and batch.spoof[truth_row] == 0
        start = round(float(batch.audio[truth_row, 0]) * 32768.0)
        assert round(float(batch.audio[spoof_row, 0]) * 32768.0) == start // 2
    plain = sample_batch(clips, weights, np.random.default_rng(1), 4, 1600, 2, 2)
    assert torch.equal(plain.audio, batch.audio[:4]) and plain.pair_rows.shape == (0, 2)
    with pytest.raises(ValueError, match="no \\(spoof, ground truth\\) pairs"):
        sample_batch(clips[:1], np.ones(1), np.random.default_rng(1), 8, 1600, 2, 2, pairs[:0], 2)
