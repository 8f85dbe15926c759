"""Inference plug-ins: the trained in-house codecs as corpus transforms, the mel vocoder as a generator.

Codecs implement the corpus builder's AudioTransform interface (name, kind, codec_family,
codec_objective, check_available(), apply(audio, rng)); the vocoder implements the copy-synthesis
generator interface (family, check_available(), resynthesize(audio, sr, rng)). Each loads its
checkpoint lazily from `artifacts/resynthesis/NAME/model.pt` unless given another path; names,
families and objectives come from `configs/resynthesis/NAME.toml` and must match the checkpoint.
Both folders are the project's, in the working directory (streaming_models/paths.py).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import numpy as np
import soxr

from streaming_models.data.generators.base import GeneratorUnavailable
from streaming_models.data.transforms.base import NeuralCodec, TransformUnavailable, check_audio
from streaming_models.paths import resynthesis_artifacts_dir, resynthesis_configs_dir
from streaming_models.resynthesis.config import SAMPLE_RATE_HZ, ResynthConfig, load_config


class ResynthesisUnavailable(TransformUnavailable, GeneratorUnavailable):
    """A trained model is missing or unusable; the message names the command that makes it.

    Both registries' "unavailable" errors, so the corpus builder's preflight reports it either way.
    """


def default_checkpoint(model_name: str) -> Path:
    return resynthesis_artifacts_dir() / model_name / "model.pt"


def model_config(model_name: str) -> ResynthConfig:
    """configs/resynthesis/NAME.toml of the project in the working directory: it names the model."""
    path = resynthesis_configs_dir() / f"{model_name}.toml"
    if not path.is_file():
        raise ResynthesisUnavailable(
            f"{model_name}: no {path}; the in-house models are defined by the project's "
            "configs/resynthesis: run from the spoofwatch checkout")
    return load_config(path)


def train_command(model_name: str) -> str:
    return f"spoofwatch resynth train --config configs/resynthesis/{model_name}.toml"


class _CheckpointModel:
    """Loads one checkpoint on first use (thread-safe) and checks it is the model the config names."""

    def __init__(self, model_name: str, checkpoint_path: Path | None, expected: ResynthConfig) -> None:
        self.model_name = model_name
        self.path = Path(checkpoint_path) if checkpoint_path is not None else default_checkpoint(model_name)
        self.expected = expected
        self._model: object | None = None
        self._lock = threading.Lock()

    def check_available(self) -> None:
        if not self.path.is_file():
            raise ResynthesisUnavailable(
                f"{self.expected.family}: no trained model at {self.path}; make it with `{train_command(self.model_name)}`"
                + ("" if self.path == default_checkpoint(self.model_name) else f" --out {self.path.parent}"))
        self.get()

    def get(self) -> object:
        with self._lock:
            if self._model is None:
                from streaming_models.resynthesis.checkpoint import CheckpointError, load_model

                try:
                    config, model = load_model(self.path)
                except CheckpointError as exc:
                    raise ResynthesisUnavailable(f"{exc}; retrain with `{train_command(self.model_name)}`") from exc
                if (config.kind, config.family) != (self.expected.kind, self.expected.family):
                    raise ResynthesisUnavailable(
                        f"{self.path} holds {config.kind} {config.family!r}, expected "
                        f"{self.expected.kind} {self.expected.family!r}")
                self._model = model
            return self._model


class InhouseCodecTransform(NeuralCodec):
    """A trained in-house neural codec as an AudioTransform (16 kHz native, no delay to remove).

    The transform's name (its registry spec and manifest channel entry) is the codec family,
    e.g. "inhouse-comp6k"; NeuralCodec.apply does the input checks and length fitting.
    """

    native_rate_hz = SAMPLE_RATE_HZ
    model_name: str = ""

    def __init__(self, checkpoint_path: Path | None = None, model_name: str | None = None) -> None:
        name = model_name or self.model_name
        if not name:
            raise ValueError("model_name is required (a config name under configs/resynthesis)")
        config = model_config(name)
        if config.kind != "codec":
            raise ValueError(f"{name} is a {config.kind}, not a codec")
        super().__init__(config.family)
        self.codec_family = config.family
        self.codec_objective: Literal["none", "compression", "synthesis"] = config.codec_objective
        self.bitrate_bps = config.codec.bitrate_bps
        self._model = _CheckpointModel(name, checkpoint_path, config)

    def check_available(self) -> None:
        self._model.check_available()

    def resynthesize(self, audio: np.ndarray) -> np.ndarray:
        import torch

        model = self._model.get()
        assert isinstance(model, torch.nn.Module)
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None]).audio
        return np.clip(out[0, 0].numpy(), -1.0, 1.0).astype(np.float32)


class InhouseComp6k(InhouseCodecTransform):
    model_name = "codec_comp6k"


class InhouseIstft(InhouseCodecTransform):
    model_name = "codec_istft"


class InhouseToken1k(InhouseCodecTransform):
    model_name = "codec_token1k"


class InhouseVocoderGenerator:
    """Copy-synthesis spoof generator: bonafide audio -> log-mel -> in-house vocoder -> 16 kHz audio."""

    model_name = "vocoder_mel"

    def __init__(self, checkpoint_path: Path | None = None) -> None:
        config = model_config(self.model_name)
        self.family = config.family
        self._model = _CheckpointModel(self.model_name, checkpoint_path, config)

    def check_available(self) -> None:
        self._model.check_available()

    def resynthesize(self, audio: np.ndarray, sample_rate_hz: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, int]:
        import torch

        if sample_rate_hz <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate_hz}")
        samples = check_audio(audio)
        if sample_rate_hz != SAMPLE_RATE_HZ:
            samples = soxr.resample(samples, sample_rate_hz, SAMPLE_RATE_HZ, quality="HQ").astype(np.float32)
        from streaming_models.resynthesis.vocoder import MelVocoder

        model = self._model.get()
        assert isinstance(model, MelVocoder)
        with torch.inference_mode():
            out = model.resynthesize(torch.from_numpy(np.ascontiguousarray(samples))[None, None])
        return np.clip(out[0, 0].numpy(), -1.0, 1.0).astype(np.float32), SAMPLE_RATE_HZ


CODEC_TRANSFORMS: tuple[type[InhouseCodecTransform], ...] = (InhouseComp6k, InhouseIstft, InhouseToken1k)


def make_codec_transform(model_name: str) -> InhouseCodecTransform:
    """The transform registry's factory: "codec_comp6k" -> InhouseComp6k() at the default checkpoint."""
    for cls in CODEC_TRANSFORMS:
        if cls.model_name == model_name:
            return cls()
    raise ValueError(f"unknown in-house codec {model_name!r}; known: {[c.model_name for c in CODEC_TRANSFORMS]}")
