"""Training-time augmentation: what each transform does to a known signal."""

from __future__ import annotations

import numpy as np
import torch

from streaming_models.training_data import Augmentation, augment, random_lowpass


def _tones(n: int, fractions_of_nyquist: tuple[float, ...]) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64)
    return sum(torch.sin(torch.pi * f * t) for f in fractions_of_nyquist).float()[None, :]


def _level_at(audio: torch.Tensor, fraction: float) -> float:
    spectrum = torch.fft.rfft(audio[0]).abs()
    return float(spectrum[round(fraction * (audio.shape[1] // 2))])


def test_random_lowpass_removes_the_band_above_the_cutoff_only() -> None:
    audio = _tones(4000, (0.25, 0.75))
    out = random_lowpass(audio, Augmentation(lowpass_prob=1.0, lowpass_cutoff=(0.5, 0.5)), torch.Generator())
    assert abs(_level_at(out, 0.25) - _level_at(audio, 0.25)) < 1e-3 * _level_at(audio, 0.25)
    assert _level_at(out, 0.75) < 1e-4 * _level_at(audio, 0.75)


def test_random_lowpass_leaves_unchosen_rows_alone() -> None:
    audio = _tones(4000, (0.25, 0.75))
    out = random_lowpass(audio, Augmentation(lowpass_prob=0.0), torch.Generator())
    assert torch.allclose(out, audio, atol=1e-5)


def test_augment_is_seeded_and_the_band_limit_is_applied_within_it() -> None:
    audio = torch.randn(4, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    plain = augment(audio, Augmentation(), torch.Generator().manual_seed(7))
    limited = augment(audio, Augmentation(lowpass_prob=1.0), torch.Generator().manual_seed(7))
    assert not torch.allclose(plain, limited)
    assert torch.equal(plain, augment(audio, Augmentation(), torch.Generator().manual_seed(7)))
    assert np.isfinite(limited.numpy()).all() and limited.abs().max() <= 0.99 + 1e-6
