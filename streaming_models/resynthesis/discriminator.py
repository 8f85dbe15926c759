"""A small multi-scale STFT discriminator (EnCodec MS-STFTD style) with hinge and feature-matching losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

LEAKY_SLOPE = 0.2


class STFTDiscriminator(torch.nn.Module):
    """(batch, samples) -> logits map and the feature maps of each layer, on one STFT resolution."""

    def __init__(self, n_fft: int, channels: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = torch.nn.ModuleList([
            weight_norm(torch.nn.Conv2d(2, channels, (3, 9), padding=(1, 4))),
            weight_norm(torch.nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(torch.nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(torch.nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.out = weight_norm(torch.nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        window: torch.Tensor = self.window  # type: ignore[assignment]
        spec = torch.stft(audio, self.n_fft, self.hop, window=window, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (batch, 2, frames, bins)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(torch.nn.Module):
    def __init__(self, resolutions: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.discriminators = torch.nn.ModuleList(STFTDiscriminator(n, channels) for n in resolutions)

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """audio: (batch, samples)."""
        return [d(audio) for d in self.discriminators]


def discriminator_loss(real: list[tuple[torch.Tensor, list[torch.Tensor]]],
                       fake: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> torch.Tensor:
    """Hinge loss; `fake` must come from detached generator output."""
    total = real[0][0].new_zeros(())
    for (logits_real, _), (logits_fake, _) in zip(real, fake, strict=True):
        total = total + F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    return total / len(real)


def generator_adversarial_loss(fake: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> torch.Tensor:
    total = fake[0][0].new_zeros(())
    for logits_fake, _ in fake:
        total = total + F.relu(1 - logits_fake).mean()
    return total / len(fake)


def feature_matching_loss(real: list[tuple[torch.Tensor, list[torch.Tensor]]],
                          fake: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> torch.Tensor:
    """Relative L1 between discriminator features of real and generated audio (EnCodec's normalisation)."""
    total = fake[0][0].new_zeros(())
    count = 0
    for (_, feats_real), (_, feats_fake) in zip(real, fake, strict=True):
        for f_real, f_fake in zip(feats_real, feats_fake, strict=True):
            f_real = f_real.detach()
            total = total + F.l1_loss(f_fake, f_real) / f_real.abs().mean().clamp_min(1e-5)
            count += 1
    return total / count
