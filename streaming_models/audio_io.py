"""Read an audio file as mono float32 at the model's rate (soundfile + soxr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioReadError(ValueError):
    """The file is missing, unreadable or empty; the message names it."""


def load_audio(path: str | Path, sample_rate_hz: int) -> np.ndarray:
    """[samples] float32 mono at `sample_rate_hz`; channels are averaged."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"cannot read audio {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioReadError(f"audio file {path} is empty")
    mono = data.mean(axis=1)
    if rate != sample_rate_hz:
        mono = soxr.resample(mono, rate, sample_rate_hz, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
