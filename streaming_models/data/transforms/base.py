"""The audio-transform contract: neural codecs, telephone codecs and channel effects.

Every transform maps float32 mono 16 kHz audio to float32 mono 16 kHz audio of the
same length (codec delay removed, tail padded or trimmed), so a chain of transforms
can be applied in any order and the result still lines up with the input.
"""

from __future__ import annotations

import abc
import shutil
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import soxr

SAMPLE_RATE_HZ = 16000

TransformKind = Literal["neural", "telephony", "channel"]
Objective = Literal["none", "compression", "synthesis"]


class TransformUnavailable(RuntimeError):
    """An engine (binary, Python package, model files) is missing; the message says what to install."""


@runtime_checkable
class AudioTransform(Protocol):
    name: str
    kind: TransformKind
    codec_family: str
    codec_objective: Objective

    def check_available(self) -> None:
        """Raise TransformUnavailable (naming the package to install) if the engine is missing."""

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 mono 16 kHz in, float32 mono 16 kHz of the same length out."""


def check_audio(audio: np.ndarray) -> np.ndarray:
    """Validate a transform input and return it as contiguous float32."""
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"audio must be a numpy array, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio is empty")
    out = np.ascontiguousarray(audio, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("audio contains NaN or inf")
    return out


def fit_length(audio: np.ndarray, num_samples: int, delay_samples: int = 0) -> np.ndarray:
    """Drop `delay_samples` from the front, then zero-pad or trim to `num_samples`."""
    out = audio[delay_samples:] if delay_samples > 0 else audio
    if len(out) >= num_samples:
        return np.ascontiguousarray(out[:num_samples], dtype=np.float32)
    return np.concatenate([out, np.zeros(num_samples - len(out), np.float32)]).astype(np.float32)


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    if from_hz == to_hz:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, from_hz, to_hz, quality="HQ").astype(np.float32)


def find_binary(binary: str, debian_package: str) -> str:
    """Absolute path of an executable (name on PATH or a path), or TransformUnavailable."""
    found = shutil.which(binary)
    if found is None:
        raise TransformUnavailable(
            f"{binary!r} not found: install the Debian package {debian_package!r} "
            f"(apt-get install {debian_package}; listed in scripts/system-packages.txt)"
        )
    return found


class NeuralCodec(abc.ABC):
    """Base for neural codecs: subclasses implement `resynthesize` at their native rate.

    Adding a codec (EnCodec, DAC, Mimi, ...) is one subclass: set the class attributes and
    implement `check_available` and `resynthesize`. Resampling to and from the native rate,
    delay compensation and length fitting happen here.
    """

    kind: TransformKind = "neural"
    codec_family: str = "unknown"
    codec_objective: Objective = "compression"
    native_rate_hz: int = SAMPLE_RATE_HZ
    delay_samples: int = 0  # codec delay at the native rate, removed from the output

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def check_available(self) -> None: ...

    @abc.abstractmethod
    def resynthesize(self, audio: np.ndarray) -> np.ndarray:
        """Encode + decode float32 mono audio at `native_rate_hz`; any output length."""

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        native = resample(audio, SAMPLE_RATE_HZ, self.native_rate_hz)
        decoded = fit_length(self.resynthesize(native), len(native), self.delay_samples)
        return fit_length(resample(decoded, self.native_rate_hz, SAMPLE_RATE_HZ), len(audio))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def model_dir_error(path: Path, what: str) -> TransformUnavailable:
    return TransformUnavailable(
        f"{what} model files not found under {path}: point SPOOFWATCH_SHARED_DATA at the shared "
        f"data folder (see ../shared/data/README.md)"
    )
