"""Reconstruction losses: multi-resolution STFT (spectral convergence + log magnitude) and log-mel L1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streaming_models.resynthesis.dsp import LogMel, stft_magnitude


class MultiResolutionSTFTLoss(torch.nn.Module):
    def __init__(self, resolutions: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.resolutions = resolutions

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """fake, real: (batch, samples). Mean over resolutions of SC + log-magnitude L1."""
        total = fake.new_zeros(())
        for n_fft, hop in self.resolutions:
            mag_f = stft_magnitude(fake, n_fft, hop)
            mag_r = stft_magnitude(real, n_fft, hop)
            spectral_convergence = torch.linalg.norm(mag_r - mag_f) / torch.linalg.norm(mag_r).clamp_min(1e-7)
            log_mag = F.l1_loss(torch.log(mag_f), torch.log(mag_r))
            total = total + spectral_convergence + log_mag
        return total / len(self.resolutions)


class MelLoss(torch.nn.Module):
    def __init__(self, sample_rate_hz: int, n_fft: int, hop: int, n_mels: int) -> None:
        super().__init__()
        self.log_mel = LogMel(sample_rate_hz, n_fft, hop, n_mels)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.log_mel(fake), self.log_mel(real))
