"""Spectral front-end computed inside the model, so the ONNX graph needs only raw audio.

The STFT is a strided convolution with a fixed real-DFT basis (cos and sin rows of a
Hann-windowed DFT): it exports to plain ONNX Conv, runs fast in onnxruntime at any
batch size, and needs no STFT operator. Three feature kinds share it:

- `logpow`: log power of every linear-frequency bin (n_fft/2 + 1 bins). Keeps the fine
  spectral structure and the high band where vocoder and codec artefacts live.
- `lfcc`:   linear-spaced triangular filterbank -> log -> DCT (the ASVspoof LFCC baseline).
- `logmel`: mel triangular filterbank -> log (the speech-recognition default).

docs/model-card.md records the measured comparison that picked the default.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

FeatureKind = Literal["logpow", "lfcc", "logmel"]
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)
LOG_FLOOR = 1e-7  # power floor: digital silence gives a finite log


def dft_basis(window_samples: int, bins: int | None = None) -> torch.Tensor:
    """[2 * bins, 1, window] conv kernel: Hann-windowed cos rows then sin rows of the lowest
    `bins` DFT bins (default: all window/2 + 1)."""
    bins = window_samples // 2 + 1 if bins is None else bins
    n = torch.arange(window_samples, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)
    window = torch.hann_window(window_samples, periodic=True, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * n[None, :] / window_samples  # [bins, window]
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # [2*bins, window]
    return basis.to(torch.float32).unsqueeze(1)


def triangular_filterbank(edges_hz: torch.Tensor, bins: int, sample_rate_hz: int) -> torch.Tensor:
    """[filters, bins] triangles between consecutive edge frequencies (len(edges) = filters + 2)."""
    freqs = torch.linspace(0, sample_rate_hz / 2, bins, dtype=torch.float64)
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (freqs[None, :] - lo) / (mid - lo)
    falling = (hi - freqs[None, :]) / (hi - mid)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


def linear_filterbank(filters: int, bins: int, sample_rate_hz: int, top_hz: float) -> torch.Tensor:
    edges = torch.linspace(0, top_hz, filters + 2, dtype=torch.float64)
    return triangular_filterbank(edges, bins, sample_rate_hz)


def mel_filterbank(filters: int, bins: int, sample_rate_hz: int, top_hz: float) -> torch.Tensor:
    def to_mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    mels = torch.linspace(0, to_mel(top_hz), filters + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    return triangular_filterbank(edges, bins, sample_rate_hz)


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """[n_out, n_in] orthonormal DCT-II."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return m.to(torch.float32)


def band_top(top_hz: float | None, sample_rate_hz: int) -> float:
    """The highest frequency features describe: top_hz, or Nyquist when None; refuses others."""
    nyquist = sample_rate_hz / 2
    if top_hz is None:
        return nyquist
    if not 0 < top_hz <= nyquist:
        raise ValueError(f"top_hz must be in (0, {nyquist:g}] Hz, got {top_hz}")
    return top_hz


def bins_below(top_hz: float, window_samples: int, sample_rate_hz: int) -> int:
    """How many DFT bins (from 0 Hz) lie at or below top_hz."""
    return min(window_samples // 2, math.floor(top_hz * window_samples / sample_rate_hz)) + 1


def feature_dim(kind: str, window_samples: int, n_filters: int, n_ceps: int,
                top_hz: float | None = None, sample_rate_hz: int = 16000) -> int:
    top = band_top(top_hz, sample_rate_hz)
    if kind == "logpow":
        return bins_below(top, window_samples, sample_rate_hz)
    if kind == "lfcc":
        return n_ceps
    if kind == "logmel":
        return n_filters
    raise ValueError(f"feature kind must be one of {FEATURE_KINDS}, got {kind!r}")


class SpectralFrontEnd(nn.Module):
    """Audio with `window - frame_hop` samples of left context -> normalized features per frame.

    Input [B, context + n * frame_hop] gives n frames: the caller carries the context.
    `top_hz` (default: Nyquist) is the highest frequency the features describe: the filterbank
    spans 0..top_hz, or logpow keeps the bins up to it. A detector that must not read the high
    band (which telephone channels remove and vocoders fill in their own way) sets it to 4000.
    """

    basis: torch.Tensor
    filterbank: torch.Tensor
    dct: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, kind: str, sample_rate_hz: int, window_samples: int, frame_hop_samples: int,
                 n_filters: int, n_ceps: int, top_hz: float | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.frame_hop_samples = frame_hop_samples
        self.out_dim = feature_dim(kind, window_samples, n_filters, n_ceps, top_hz, sample_rate_hz)
        top = band_top(top_hz, sample_rate_hz)
        all_bins = window_samples // 2 + 1
        # Only the bins up to top_hz are computed: every filter is zero above it, and a low-band
        # model's STFT then costs half as much per hop.
        self.bins = bins_below(top, window_samples, sample_rate_hz)
        self.register_buffer("basis", dft_basis(window_samples, self.bins), persistent=False)
        if kind == "logpow":
            proj = torch.empty(0)
        elif kind == "lfcc":
            proj = linear_filterbank(n_filters, all_bins, sample_rate_hz, top)[:, : self.bins]
        else:
            proj = mel_filterbank(n_filters, all_bins, sample_rate_hz, top)[:, : self.bins]
        self.register_buffer("filterbank", proj, persistent=False)  # [filters, bins]
        self.register_buffer("dct", dct_matrix(n_ceps, n_filters) if kind == "lfcc" else torch.empty(0),
                             persistent=False)
        # Per-feature standardization, fitted on training audio before training starts (train.py).
        self.register_buffer("mean", torch.zeros(self.out_dim))
        self.register_buffer("std", torch.ones(self.out_dim))

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> [B, 2 * bins, frames]: real rows of the lowest `bins` DFT bins, then imaginary rows."""
        return nn.functional.conv1d(audio.unsqueeze(1), self.basis, stride=self.frame_hop_samples)

    def raw(self, audio: torch.Tensor) -> torch.Tensor:
        """Un-normalized features: [B, samples] -> [B, F, frames]."""
        return self.raw_from_spectrum(self.spectrum(audio), self.bins)

    def raw_from_spectrum(self, spec: torch.Tensor, spec_bins: int) -> torch.Tensor:
        """Un-normalized features from a spectrum() of `spec_bins` >= self.bins bins, which a front
        end with the same window and frame hop but a wider band may have computed (a shared STFT)."""
        if spec_bins < self.bins:
            raise ValueError(f"the spectrum has {spec_bins} bins, this front end needs {self.bins}")
        power = spec[:, : self.bins] ** 2 + spec[:, spec_bins: spec_bins + self.bins] ** 2  # [B, bins, frames]
        if self.kind != "logpow":
            power = torch.einsum("fk,bkt->bft", self.filterbank, power)  # [B, filters, frames]
        feats = torch.log(power + LOG_FLOOR)
        if self.kind == "lfcc":
            feats = torch.einsum("cf,bft->bct", self.dct, feats)  # [B, ceps, frames]
        return feats

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.from_spectrum(self.spectrum(audio), self.bins)

    def from_spectrum(self, spec: torch.Tensor, spec_bins: int) -> torch.Tensor:
        """Normalized features [B, F, frames] from a spectrum (see raw_from_spectrum)."""
        feats = self.raw_from_spectrum(spec, spec_bins)
        return (feats - self.mean[:, None]) / self.std[:, None]

    def shares_stft_with(self, other: SpectralFrontEnd) -> bool:
        """Whether the wider of the two spectra serves both: the basis rows of a bin depend only on
        the window, so the same window and frame hop are enough."""
        return (self.frame_hop_samples, self.basis.shape[2]) == (other.frame_hop_samples, other.basis.shape[2])

    @torch.no_grad()
    def fit_normalization(self, audio: torch.Tensor) -> None:
        """Set mean/std per feature from a batch of training audio [B, samples]."""
        feats = self.raw(audio).transpose(1, 2).reshape(-1, self.out_dim)  # [B*frames, F]
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp(min=1e-3))
