"""A compact SoundStream/EnCodec-style codec: causal conv encoder -> RVQ -> conv or iSTFT decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streaming_models.resynthesis.config import CodecConfig
from streaming_models.resynthesis.layers import CausalConv1d, CausalConvTranspose1d, ResidualUnit
from streaming_models.resynthesis.quantizer import QuantizerOutput, ResidualVectorQuantizer


class Encoder(torch.nn.Module):
    """(batch, 1, samples) -> (batch, latent_dim, samples / hop)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        widths = cfg.stage_channels
        ch = widths[0]
        layers: list[torch.nn.Module] = [CausalConv1d(1, ch, 7)]
        for stride, out_ch in zip(cfg.strides, widths[1:], strict=True):
            layers += [ResidualUnit(ch, d) for d in cfg.residual_dilations]
            layers += [torch.nn.ELU(), CausalConv1d(ch, out_ch, 2 * stride, stride=stride)]
            ch = out_ch
        layers += [torch.nn.ELU(), CausalConv1d(ch, cfg.latent_dim, 3)]
        self.net = torch.nn.Sequential(*layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(audio)


class ConvDecoder(torch.nn.Module):
    """Mirror of the encoder: (batch, latent_dim, frames) -> (batch, 1, frames * hop)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        widths = cfg.stage_channels[::-1]
        ch = widths[0]
        layers: list[torch.nn.Module] = [CausalConv1d(cfg.latent_dim, ch, 7)]
        for stride, out_ch in zip(reversed(cfg.strides), widths[1:], strict=True):
            layers += [torch.nn.ELU(), CausalConvTranspose1d(ch, out_ch, stride)]
            ch = out_ch
            layers += [ResidualUnit(ch, d) for d in cfg.residual_dilations]
        layers += [torch.nn.ELU(), CausalConv1d(ch, 1, 7), torch.nn.Tanh()]
        self.net = torch.nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)


class ConvNeXtBlock(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.depthwise = torch.nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.pointwise_in = torch.nn.Linear(dim, 3 * dim)
        self.pointwise_out = torch.nn.Linear(3 * dim, dim)
        self.scale = torch.nn.Parameter(torch.full((dim,), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).transpose(1, 2)  # (batch, frames, dim)
        y = self.pointwise_out(F.gelu(self.pointwise_in(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class ISTFTDecoder(torch.nn.Module):
    """Vocos-style: ConvNeXt at the latent frame rate predicts STFT magnitude and phase, then iSTFT.

    hop = codec hop, n_fft = istft_n_fft_factor * hop. Frames -> frames * hop samples.
    """

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.hop = cfg.hop_samples
        self.n_fft = cfg.istft_n_fft_factor * self.hop
        bins = self.n_fft // 2 + 1
        self.embed = torch.nn.Conv1d(cfg.latent_dim, cfg.istft_dim, 7, padding=3)
        self.norm = torch.nn.LayerNorm(cfg.istft_dim)
        self.blocks = torch.nn.Sequential(*(ConvNeXtBlock(cfg.istft_dim) for _ in range(cfg.istft_layers)))
        self.final_norm = torch.nn.LayerNorm(cfg.istft_dim)
        self.head = torch.nn.Linear(cfg.istft_dim, 2 * bins)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        frames = latent.shape[-1]
        # torch.istft(center=True) needs frames + 1 STFT frames for frames * hop samples.
        x = F.pad(latent, (0, 1), mode="replicate")
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        x = self.final_norm(self.blocks(x).transpose(1, 2))  # (batch, frames + 1, dim)
        log_mag, phase = self.head(x).transpose(1, 2).chunk(2, dim=1)  # (batch, bins, frames + 1) each
        magnitude = torch.exp(log_mag).clamp(max=1e2)
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        window: torch.Tensor = self.window  # type: ignore[assignment]
        audio = torch.istft(spec, n_fft=self.n_fft, hop_length=self.hop, win_length=self.n_fft,
                            window=window, center=True, length=frames * self.hop)
        return audio.unsqueeze(1)


@dataclass
class CodecOutput:
    audio: torch.Tensor  # (batch, 1, samples)
    quantizer: QuantizerOutput


class Codec(torch.nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = ResidualVectorQuantizer(cfg.latent_dim, cfg.codebook_size, cfg.num_quantizers,
                                                 cfg.quantizer, cfg.ema_decay, cfg.dead_code_threshold)
        self.decoder: torch.nn.Module = ISTFTDecoder(cfg) if cfg.architecture == "istft" else ConvDecoder(cfg)

    @property
    def bitrate_bps(self) -> float:
        return self.cfg.bitrate_bps

    def _pad(self, audio: torch.Tensor) -> tuple[torch.Tensor, int]:
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"codec input must be (batch, 1, samples), got {tuple(audio.shape)}")
        samples = audio.shape[-1]
        hop = self.cfg.hop_samples
        return F.pad(audio, (0, (-samples) % hop)), samples

    def forward(self, audio: torch.Tensor, quantize: bool = True) -> CodecOutput:
        """(batch, 1, samples) -> reconstruction of the same length, plus quantizer losses and codes.

        quantize=False bypasses the RVQ (a plain autoencoder, no codes): the trainer's warm-up, so the
        EMA codebooks are seeded from latents that already carry the signal.
        """
        padded, samples = self._pad(audio)
        latent = self.encoder(padded)
        if quantize:
            q = self.quantizer(latent)
        else:
            zero = latent.new_zeros(())
            no_codes = latent.new_zeros((0, latent.shape[0], latent.shape[2]), dtype=torch.long)
            q = QuantizerOutput(quantized=latent, codes=no_codes,
                                commitment_loss=zero, codebook_loss=zero)
        return CodecOutput(audio=self.decoder(q.quantized)[..., :samples], quantizer=q)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> codes (stages, batch, frames)."""
        padded, _ = self._pad(audio)
        return self.quantizer(self.encoder(padded)).codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (stages, batch, frames) -> (batch, 1, frames * hop)."""
        return self.decoder(self.quantizer.decode(codes))
