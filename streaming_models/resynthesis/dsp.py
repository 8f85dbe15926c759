"""Spectral front-ends shared by losses, the vocoder and the quality metrics (torch.stft only)."""

from __future__ import annotations

import math

import numpy as np
import torch


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, f_min_hz: float = 0.0,
                   f_max_hz: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters, area-normalised (Slaney style)."""
    f_max = sample_rate_hz / 2 if f_max_hz is None else f_max_hz
    bin_hz = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(np.array(f_min_hz)), hz_to_mel(np.array(f_max)), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (upper - lower))
    return torch.from_numpy(weights.astype(np.float32))


def stft_magnitude(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """(batch, samples) -> (batch, n_fft // 2 + 1, frames) magnitude, Hann window."""
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(audio, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window,
                      center=True, pad_mode="reflect" if audio.shape[-1] > n_fft // 2 else "constant",
                      return_complex=True)
    return spec.abs().clamp_min(1e-7)


class LogMel(torch.nn.Module):
    """(batch, samples) -> (batch, n_mels, frames) natural-log mel magnitude."""

    def __init__(self, sample_rate_hz: int, n_fft: int, hop: int, n_mels: int,
                 f_max_hz: float | None = None) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = hop
        self.register_buffer("filters", mel_filterbank(sample_rate_hz, n_fft, n_mels, f_max_hz=f_max_hz),
                             persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mag = stft_magnitude(audio, self.n_fft, self.hop)
        filters: torch.Tensor = self.filters  # type: ignore[assignment]
        return torch.log(torch.matmul(filters, mag).clamp_min(1e-5))


def num_frames(samples: int, hop: int) -> int:
    """Frames torch.stft(center=True) yields for `samples` samples."""
    return 1 + samples // hop


def db(x: float) -> float:
    return 20.0 * math.log10(max(x, 1e-12))
