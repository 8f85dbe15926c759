from __future__ import annotations

import numpy as np
import pytest
import torch

from streaming_models.features import (
    SpectralFrontEnd,
    dct_matrix,
    dft_basis,
    linear_filterbank,
    mel_filterbank,
)


def test_dft_conv_power_matches_numpy_rfft() -> None:
    window, hop = 320, 160
    audio = np.random.default_rng(0).standard_normal(window + 3 * hop).astype(np.float32)
    spec = torch.nn.functional.conv1d(torch.from_numpy(audio)[None, None], dft_basis(window), stride=hop)[0]
    power = (spec[:161] ** 2 + spec[161:] ** 2).numpy()  # [bins, frames]
    hann = np.hanning(window + 1)[:-1]  # periodic Hann
    for frame in range(power.shape[1]):
        ref = np.abs(np.fft.rfft(audio[frame * hop: frame * hop + window] * hann)) ** 2
        np.testing.assert_allclose(power[:, frame], ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("bank", [linear_filterbank, mel_filterbank])
def test_filterbanks_cover_the_band_with_unit_peaks(bank) -> None:  # type: ignore[no-untyped-def]
    fb = bank(40, 161, 16000, 8000.0)
    assert fb.shape == (40, 161)
    assert (fb >= 0).all()
    peaks = fb.max(dim=1).values
    assert (peaks > 0.5).all() and (peaks <= 1.0).all()  # every filter sees at least one bin
    assert (fb.sum(dim=0)[5:-5] > 0).all()  # no hole between filters


def test_dct_is_orthonormal() -> None:
    m = dct_matrix(20, 20)
    assert torch.allclose(m @ m.T, torch.eye(20), atol=1e-5)


@pytest.mark.parametrize("kind,dim", [("logpow", 161), ("lfcc", 30), ("logmel", 50)])
def test_frontend_dims_and_standardization(kind: str, dim: int) -> None:
    fe = SpectralFrontEnd(kind, 16000, 320, 160, n_filters=50, n_ceps=30)
    audio = 0.1 * torch.randn(4, 160 + 20 * 160)
    assert fe(audio).shape == (4, dim, 20)
    fe.fit_normalization(audio)
    feats = fe(audio).transpose(1, 2).reshape(-1, dim)
    assert feats.mean(0).abs().max() < 1e-3
    assert (feats.std(0) - 1).abs().max() < 1e-2


def test_silence_gives_finite_features() -> None:
    fe = SpectralFrontEnd("logpow", 16000, 320, 160, 60, 40)
    assert torch.isfinite(fe(torch.zeros(1, 160 + 1600))).all()


@pytest.mark.parametrize("kind,dim", [("logpow", 81), ("lfcc", 30), ("logmel", 50)])
def test_top_hz_features_ignore_everything_above_it(kind: str, dim: int) -> None:
    fe = SpectralFrontEnd(kind, 16000, 320, 160, n_filters=50, n_ceps=30, top_hz=4000.0)
    t = torch.arange(160 + 20 * 160, dtype=torch.float64) / 16000  # float32 phase jitter would leak
    speech_band = (0.1 * torch.sin(2 * torch.pi * 700 * t)[None]).float()
    with_high_band = speech_band + (0.1 * torch.sin(2 * torch.pi * 6000 * t)[None]).float()
    low, both = fe(speech_band), fe(with_high_band)
    assert low.shape == (1, dim, 20)
    # A 6 kHz tone sits more than a filter (or a bin) above 4 kHz: it changes nothing the model sees.
    assert torch.allclose(low[:, :, 1:], both[:, :, 1:], atol=1e-3)
    full = SpectralFrontEnd(kind, 16000, 320, 160, n_filters=50, n_ceps=30)
    assert not torch.allclose(full(speech_band), full(with_high_band), atol=1e-1)  # the full band does see it


def test_top_hz_outside_the_band_is_refused() -> None:
    with pytest.raises(ValueError, match="top_hz"):
        SpectralFrontEnd("lfcc", 16000, 320, 160, 60, 40, top_hz=9000.0)
