"""Running external codec engines (ffmpeg, sox) on raw float32 PCM, without a shell."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import numpy as np

from streaming_models.data.transforms.base import TransformUnavailable

ENGINE_TIMEOUT_S = 120.0


class EngineError(RuntimeError):
    """An engine ran but failed; the message carries the command and its stderr tail."""


def run_engine(cmd: Sequence[str], stdin: bytes, debian_package: str) -> bytes:
    try:
        done = subprocess.run(list(cmd), input=stdin, capture_output=True, timeout=ENGINE_TIMEOUT_S,
                              check=False)
    except FileNotFoundError as exc:
        raise TransformUnavailable(
            f"{cmd[0]!r} not found: install the Debian package {debian_package!r}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{' '.join(cmd)} timed out after {ENGINE_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-600:]
        raise EngineError(f"{' '.join(cmd)} exited with {done.returncode}: {tail}")
    return done.stdout


def to_f32le(audio: np.ndarray) -> bytes:
    return np.clip(audio, -1.0, 1.0).astype("<f4").tobytes()


def from_f32le(raw: bytes) -> np.ndarray:
    if len(raw) % 4:
        raw = raw[: len(raw) - len(raw) % 4]
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def engine_listing(cmd: Sequence[str], debian_package: str) -> str:
    """stdout + stderr of an engine's capability listing (`ffmpeg -encoders`, `sox -h`)."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise TransformUnavailable(
            f"{cmd[0]!r} not found: install the Debian package {debian_package!r}"
        ) from exc
    return (done.stdout + done.stderr).decode(errors="replace")
