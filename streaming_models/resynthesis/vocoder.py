"""A small HiFi-GAN-style mel vocoder: log-mel (n_mels, frames) -> waveform (frames * hop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from streaming_models.resynthesis.config import SAMPLE_RATE_HZ, VocoderConfig
from streaming_models.resynthesis.dsp import LogMel

LEAKY_SLOPE = 0.1


class ResBlock(torch.nn.Module):
    """HiFi-GAN ResBlock1: dilated conv pairs with residual connections."""

    def __init__(self, channels: int, dilations: tuple[int, ...], kernel: int = 3) -> None:
        super().__init__()
        self.dilated = torch.nn.ModuleList(
            weight_norm(torch.nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2))
            for d in dilations)
        self.plain = torch.nn.ModuleList(
            weight_norm(torch.nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2))
            for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain, strict=True):
            y = dilated(F.leaky_relu(x, LEAKY_SLOPE))
            x = x + plain(F.leaky_relu(y, LEAKY_SLOPE))
        return x


class MelVocoder(torch.nn.Module):
    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.log_mel = LogMel(SAMPLE_RATE_HZ, cfg.n_fft, cfg.hop_samples, cfg.n_mels, f_max_hz=cfg.f_max_hz)
        ch = cfg.channels
        self.conv_pre = weight_norm(torch.nn.Conv1d(cfg.n_mels, ch, 7, padding=3))
        self.upsamples = torch.nn.ModuleList()
        self.resblocks = torch.nn.ModuleList()
        for rate in cfg.upsample_rates:
            self.upsamples.append(weight_norm(torch.nn.ConvTranspose1d(
                ch, ch // 2, 2 * rate, stride=rate, padding=rate // 2 + rate % 2, output_padding=rate % 2)))
            ch //= 2
            self.resblocks.append(ResBlock(ch, cfg.residual_dilations))
        self.conv_post = weight_norm(torch.nn.Conv1d(ch, 1, 7, padding=3))

    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, n_mels, samples // hop + 1)."""
        return self.log_mel(audio)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) -> (batch, 1, frames * hop)."""
        x = self.conv_pre(mel)
        for upsample, resblock in zip(self.upsamples, self.resblocks, strict=True):
            x = resblock(upsample(F.leaky_relu(x, LEAKY_SLOPE)))
        return torch.tanh(self.conv_post(F.leaky_relu(x, LEAKY_SLOPE)))

    def resynthesize(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, 1, samples): mel analysis, then generation, trimmed."""
        samples = audio.shape[-1]
        return self.forward(self.mel(audio[:, 0]))[..., :samples]
