from __future__ import annotations

import numpy as np
import pytest
import torch

from streaming_models.features import (
    SpectralFrontEnd,
    dct_matrix,
    dft_basis,
    interpolate_masked,
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


def test_masked_channels_are_a_straight_line_between_their_neighbours() -> None:
    log_spec = torch.randn(3, 10, 4)
    masked = torch.zeros(3, 10, dtype=torch.bool)
    masked[0, 3:6] = True  # inside: interpolate between channels 2 and 6
    masked[1, :2] = True  # at the low edge: take channel 2
    masked[1, 8:] = True  # at the high edge: take channel 7
    out = interpolate_masked(log_spec, masked)
    assert torch.equal(out[~masked], log_spec[~masked])  # unmasked channels untouched
    assert torch.equal(out[2], log_spec[2])  # a row with no mask
    for k, channel in enumerate((3, 4, 5), 1):
        expected = log_spec[0, 2] + (log_spec[0, 6] - log_spec[0, 2]) * k / 4
        assert torch.allclose(out[0, channel], expected, atol=1e-6)
    assert torch.equal(out[1, 0], log_spec[1, 2]) and torch.equal(out[1, 1], log_spec[1, 2])
    assert torch.equal(out[1, 8], log_spec[1, 7]) and torch.equal(out[1, 9], log_spec[1, 7])


def test_a_band_mask_changes_the_features_only_where_it_hides_something() -> None:
    fe = SpectralFrontEnd("lfcc", 16000, 320, 160, n_filters=60, n_ceps=40)
    audio = 0.1 * torch.randn(2, 160 + 10 * 160, generator=torch.Generator().manual_seed(0))
    spec = fe.spectrum(audio)
    mask = torch.zeros(2, fe.bands, dtype=torch.bool)
    mask[1, 40:52] = True
    masked = fe.from_spectrum(spec, fe.bins, mask)
    assert fe.bands == 60
    assert torch.equal(masked[0], fe.from_spectrum(spec, fe.bins)[0])
    assert not torch.allclose(masked[1], fe.from_spectrum(spec, fe.bins)[1])
