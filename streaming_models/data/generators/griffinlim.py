"""Griffin-Lim phase reconstruction from a mel spectrogram (the Tacotron-1 era vocoder)."""

from __future__ import annotations

import numpy as np

from streaming_models.data.generators.base import check_output, require_module

_SAMPLE_RATE_HZ = 16000
_N_FFT = 1024
_HOP = 256
_N_MELS = 80


def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """Slaney-style triangular mel filters, shape (n_mels, n_fft // 2 + 1)."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bins_hz = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin_hz)), hz_to_mel(np.array(fmax_hz)), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bins_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (upper - lower))  # equal area per filter
    return weights.astype(np.float32)


class GriffinLimVocoder:
    family = "griffinlim"

    def check_available(self) -> None:
        require_module("torch", "torch==2.13.0")

    def resynthesize(
        self, audio: np.ndarray, sample_rate_hz: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        import soxr
        import torch

        x = audio if sample_rate_hz == _SAMPLE_RATE_HZ else soxr.resample(audio, sample_rate_hz, _SAMPLE_RATE_HZ)
        wav = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        window = torch.hann_window(_N_FFT)
        spec = torch.stft(wav, _N_FFT, _HOP, window=window, return_complex=True)  # (freq, frames)
        fb = torch.from_numpy(mel_filterbank(_SAMPLE_RATE_HZ, _N_FFT, _N_MELS, 0.0, 8000.0))
        mel = fb @ spec.abs()  # (mels, frames)
        # Back to linear magnitude through the pseudo-inverse, as a mel-only TTS front end would.
        magnitude = torch.clamp(torch.linalg.pinv(fb) @ mel, min=1e-5)
        n_iter = int(rng.integers(16, 48))
        momentum = 0.99
        angles = torch.exp(2j * np.pi * torch.rand(magnitude.shape, generator=torch.Generator().manual_seed(
            int(rng.integers(0, 2**31)))))
        previous = torch.zeros_like(angles)
        for _ in range(n_iter):
            inverse = torch.istft(magnitude * angles, _N_FFT, _HOP, window=window, length=wav.numel())
            rebuilt = torch.stft(inverse, _N_FFT, _HOP, window=window, return_complex=True)
            angles = rebuilt - (momentum / (1 + momentum)) * previous
            previous = rebuilt
            angles = angles / torch.clamp(angles.abs(), min=1e-8)
        y = torch.istft(magnitude * angles, _N_FFT, _HOP, window=window, length=wav.numel()).numpy()
        return check_output(y.astype(np.float32), _SAMPLE_RATE_HZ, "Griffin-Lim resynthesis")
