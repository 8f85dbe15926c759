"""CMU flite: diphone (kal) and clustergen (awb, rms, slt) voices."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from streaming_models.data.generators.base import (
    GenerationError,
    Voice,
    check_output,
    read_wav_file,
    require_binary,
    run_engine,
)

_VOICES = ("kal", "kal16", "awb", "rms", "slt")


class FliteTTS:
    family = "flite"

    def check_available(self) -> None:
        require_binary("flite", "flite")

    def voices(self) -> list[Voice]:
        return [Voice(v, "en") for v in _VOICES]

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        if voice.voice_id not in _VOICES:
            raise GenerationError(f"flite: unknown voice {voice.voice_id!r}, known: {_VOICES}")
        stretch = float(rng.uniform(0.85, 1.15))
        with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
            out = Path(tmp) / "out.wav"
            run_engine(["flite", "-voice", voice.voice_id, "--setf", f"duration_stretch={stretch:.3f}",
                        "-t", text, "-o", str(out)])
            audio, sr = read_wav_file(out)
        return check_output(audio, sr, f"flite voice {voice.voice_id}")
