"""Resynthesis quality metrics: multi-resolution STFT distance and log-spectrogram correlation."""

from __future__ import annotations

import numpy as np
import torch

from streaming_models.resynthesis.dsp import stft_magnitude

METRIC_RESOLUTIONS: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128), (256, 64))
DYNAMIC_RANGE_DB = 80.0


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    if reference.ndim != 1 or estimate.ndim != 1:
        raise ValueError("metrics take mono 1-d arrays")
    n = min(reference.size, estimate.size)
    if n < 2048:
        raise ValueError(f"need at least 2048 common samples, got {n}")
    return (torch.from_numpy(np.ascontiguousarray(reference[:n], dtype=np.float32))[None],
            torch.from_numpy(np.ascontiguousarray(estimate[:n], dtype=np.float32))[None])


def mrstft_distance(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean over 4 resolutions of spectral convergence + L1 of natural-log magnitudes (lower is better).

    Magnitudes are floored DYNAMIC_RANGE_DB below the reference's peak bin, so bins that are silent
    in both (e.g. above a band limit) count as equal instead of dominating through log(~0).
    """
    ref, est = _pair(reference, estimate)
    total = 0.0
    for n_fft, hop in METRIC_RESOLUTIONS:
        mag_r, mag_e = stft_magnitude(ref, n_fft, hop), stft_magnitude(est, n_fft, hop)
        floor = mag_r.max() * 10 ** (-DYNAMIC_RANGE_DB / 20)
        mag_r, mag_e = mag_r.clamp_min(floor), mag_e.clamp_min(floor)
        sc = torch.linalg.norm(mag_r - mag_e) / torch.linalg.norm(mag_r).clamp_min(1e-7)
        total += float(sc + (torch.log(mag_r) - torch.log(mag_e)).abs().mean())
    return total / len(METRIC_RESOLUTIONS)


def log_spectrogram_db(audio: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """(bins, frames) dB magnitude, floored DYNAMIC_RANGE_DB below the peak (so silence doesn't dominate)."""
    mag = stft_magnitude(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None], n_fft, hop)[0]
    spec_db = 20.0 * np.log10(mag.numpy())
    return np.maximum(spec_db, spec_db.max() - DYNAMIC_RANGE_DB)


def log_spectrogram_correlation(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Pearson correlation of the two dB spectrograms over all time-frequency bins (1 = same shape)."""
    ref, est = _pair(reference, estimate)
    a = log_spectrogram_db(ref[0].numpy()).ravel()
    b = log_spectrogram_db(est[0].numpy()).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
