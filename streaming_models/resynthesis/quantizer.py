"""Residual vector quantizer (SoundStream/EnCodec style).

Two codebook update rules, chosen by config:
- "ema": codebooks are buffers updated by exponential moving averages of the vectors assigned to
  them; rarely used codes are re-seeded from the batch (EnCodec's dead-code restart). The encoder
  only gets the commitment loss.
- "straight_through": codebooks are parameters trained by the VQ-VAE codebook loss; the encoder
  gets the commitment loss.
Both pass gradients to the encoder with the straight-through estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streaming_models.resynthesis.config import QuantizerUpdate


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (batch, dim, frames), straight-through
    codes: torch.Tensor  # (stages, batch, frames) int64
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor  # zero for EMA codebooks


class VectorQuantizer(torch.nn.Module):
    codebook: torch.Tensor  # (codebook_size, dim): a buffer (EMA) or a parameter (straight-through)
    cluster_size: torch.Tensor  # EMA only: (codebook_size,) smoothed uses per step
    embed_sum: torch.Tensor  # EMA only: (codebook_size, dim) smoothed sum of assigned vectors
    initialised: torch.Tensor  # EMA only: bool scalar, codebook seeded from data
    def __init__(self, dim: int, codebook_size: int, update: QuantizerUpdate, ema_decay: float,
                 dead_code_threshold: float) -> None:
        super().__init__()
        self.update = update
        self.ema_decay = ema_decay
        self.dead_code_threshold = dead_code_threshold
        self.codebook_size = codebook_size
        if update == "ema":
            self.register_buffer("codebook", torch.zeros(codebook_size, dim))
            self.register_buffer("cluster_size", torch.zeros(codebook_size))
            self.register_buffer("embed_sum", torch.zeros(codebook_size, dim))
            self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        else:
            self.codebook = torch.nn.Parameter(torch.randn(codebook_size, dim) / dim ** 0.5)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """flat: (n, dim) -> (n,) index of the nearest code (squared L2)."""
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                     + self.codebook.pow(2).sum(1)[None, :])
        return distances.argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def _random_rows(self, flat: torch.Tensor, count: int) -> torch.Tensor:
        index = torch.randint(0, flat.shape[0], (count,), device=flat.device)
        return flat[index]

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        self.codebook.copy_(self._random_rows(flat, self.codebook_size))
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.codebook_size).type(flat.dtype)  # (n, K)
        decay = self.ema_decay
        self.cluster_size.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
        self.embed_sum.mul_(decay).add_(onehot.t() @ flat, alpha=1 - decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.codebook_size * 1e-5) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.dead_code_threshold
        dead_count = int(dead.sum())
        if dead_count:
            fresh = self._random_rows(flat, dead_count)
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0

    def forward(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """residual: (batch, dim, frames) -> (quantized, codes (batch, frames), commitment, codebook loss)."""
        batch, dim, frames = residual.shape
        flat = residual.permute(0, 2, 1).reshape(-1, dim)  # (batch*frames, dim)
        if self.update == "ema" and self.training and not bool(self.initialised):
            # Seed the codebook from data before the first assignment (no frame maps to an all-zero code).
            self._initialise(flat.detach())
        codes = self.nearest(flat.detach())
        quantized = self.lookup(codes).view(batch, frames, dim).permute(0, 2, 1)
        commitment = F.mse_loss(residual, quantized.detach())
        if self.update == "ema":
            if self.training:
                self._ema_update(flat.detach(), codes)
            codebook_loss = residual.new_zeros(())
        else:
            codebook_loss = F.mse_loss(quantized, residual.detach())
        return quantized, codes.view(batch, frames), commitment, codebook_loss


class ResidualVectorQuantizer(torch.nn.Module):
    def __init__(self, dim: int, codebook_size: int, num_quantizers: int, update: QuantizerUpdate,
                 ema_decay: float = 0.99, dead_code_threshold: float = 0.02) -> None:
        super().__init__()
        self.stages = torch.nn.ModuleList(
            VectorQuantizer(dim, codebook_size, update, ema_decay, dead_code_threshold)
            for _ in range(num_quantizers))

    def forward(self, latent: torch.Tensor) -> QuantizerOutput:
        """latent: (batch, dim, frames). Each stage quantizes what the previous stages left."""
        residual = latent
        quantized_sum = torch.zeros_like(latent)
        codes, commitments, codebook_losses = [], [], []
        for stage in self.stages:
            quantized, stage_codes, commitment, codebook_loss = stage(residual)
            residual = residual - quantized.detach()
            quantized_sum = quantized_sum + quantized
            codes.append(stage_codes)
            commitments.append(commitment)
            codebook_losses.append(codebook_loss)
        # Straight-through: forward uses the codes, backward passes the decoder gradient to the encoder
        # unchanged; codebooks learn only from the EMA or the codebook loss.
        straight_through = latent + (quantized_sum - latent).detach()
        return QuantizerOutput(quantized=straight_through, codes=torch.stack(codes),
                               commitment_loss=torch.stack(commitments).sum(),
                               codebook_loss=torch.stack(codebook_losses).sum())

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: (stages, batch, frames) -> (batch, dim, frames)."""
        stages: list[VectorQuantizer] = list(self.stages)  # type: ignore[arg-type]
        if codes.shape[0] != len(stages):
            raise ValueError(f"expected codes for {len(stages)} stages, got {codes.shape[0]}")
        vectors = [stage.lookup(stage_codes) for stage, stage_codes in zip(stages, codes, strict=True)]
        return torch.stack(vectors).sum(0).permute(0, 2, 1)
