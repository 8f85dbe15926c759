"""The spoof-generator interface: text-to-speech engines and copy-synthesis vocoders.

A generator is a small class with a `family` name and a `check_available()` that
raises `GeneratorUnavailable` naming the package to install. TTS engines turn text
into speech in one of their voices; copy-synthesis engines re-render a genuine
utterance through a vocoder. Both return float32 mono audio at the engine's rate.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import soundfile as sf


class GeneratorUnavailable(RuntimeError):
    """An engine, its weights or its binary is missing; the message names what to install."""


class GenerationError(RuntimeError):
    """An engine ran but produced no usable audio for this input."""


@dataclass(frozen=True)
class Voice:
    voice_id: str  # engine-local id, e.g. "en-us+f3", "slt", "jf_alpha:0.5+jm_kumo:0.5"
    language: str  # ISO 639-1 of the text it should be given ("en", "es", "ja", ...)


@runtime_checkable
class TextToSpeech(Protocol):
    family: str

    def check_available(self) -> None: ...

    def voices(self) -> list[Voice]: ...

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]: ...


@runtime_checkable
class CopySynthesis(Protocol):
    family: str

    def check_available(self) -> None: ...

    def resynthesize(
        self, audio: np.ndarray, sample_rate_hz: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]: ...


Generator = TextToSpeech | CopySynthesis


def require_binary(name: str, debian_package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise GeneratorUnavailable(
            f"`{name}` not found on PATH: install the Debian package `{debian_package}` "
            f"(apt-get install {debian_package}; listed in scripts/system-packages.txt)"
        )
    return path


def require_module(module: str, pypi_package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise GeneratorUnavailable(
            f"Python module `{module}` not importable: pip install {pypi_package} "
            f"(part of the `train` extra in pyproject.toml)"
        )


def run_engine(cmd: list[str], *, stdin_text: str | None = None, timeout_s: float = 120.0) -> bytes:
    """Run an engine binary; a non-zero exit is an error that quotes its stderr."""
    try:
        done = subprocess.run(
            cmd,
            input=stdin_text.encode("utf-8") if stdin_text is not None else None,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GenerationError(f"{cmd[0]} timed out after {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise GenerationError(f"{' '.join(cmd[:3])}... exited {done.returncode}: {done.stderr[-400:]!r}")
    return done.stdout


def read_wav_bytes(blob: bytes) -> tuple[np.ndarray, int]:
    """Decode a WAV produced by an engine (tolerates the streaming header espeak writes)."""
    if blob[:4] == b"RIFF" and len(blob) >= 44:
        # Streaming writers put 0x7fffffff sizes in the header; libsndfile rejects some of those.
        fixed = bytearray(blob)
        fixed[4:8] = (len(fixed) - 8).to_bytes(4, "little")
        data_at = blob.find(b"data")
        if data_at >= 0:
            fixed[data_at + 4:data_at + 8] = (len(fixed) - data_at - 8).to_bytes(4, "little")
        blob = bytes(fixed)
    audio, sr = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sr)


def read_wav_file(path: Path) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sr)


def check_output(audio: np.ndarray, sample_rate_hz: int, what: str) -> tuple[np.ndarray, int]:
    """Reject empty or silent output so that a broken engine never fills the corpus with silence."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size < sample_rate_hz // 10:
        raise GenerationError(f"{what}: produced {audio.size} samples (< 0.1 s)")
    if not np.all(np.isfinite(audio)):
        raise GenerationError(f"{what}: produced non-finite samples")
    if float(np.max(np.abs(audio))) < 1e-3:
        raise GenerationError(f"{what}: produced silence")
    return audio, sample_rate_hz
