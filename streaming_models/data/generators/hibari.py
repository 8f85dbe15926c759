"""hibari-tts: a small ONNX TTS distilled from Kokoro (counted as a Kokoro relative).

Only the voice bundled in the wheel ("heart") is used: the others would be
downloaded at run time, which this project never does.
"""

from __future__ import annotations

import os

import numpy as np

from streaming_models.data.generators.base import (
    GeneratorUnavailable,
    Voice,
    check_output,
    require_module,
)

_VOICE = "heart"


class HibariTTS:
    family = "hibari"

    def __init__(self) -> None:
        self._tts: object | None = None

    def _bundled_model(self) -> str:
        import hibari

        path = os.path.join(os.path.dirname(hibari.__file__), "assets", "hibari.onnx")
        if not os.path.isfile(path):
            raise GeneratorUnavailable(f"hibari's bundled model is missing at {path}: reinstall hibari-tts")
        return path

    def check_available(self) -> None:
        require_module("hibari", "hibari-tts")
        self._bundled_model()

    def voices(self) -> list[Voice]:
        return [Voice(_VOICE, "en")]

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        from hibari import SAMPLE_RATE, Hibari

        if self._tts is None:
            self._tts = Hibari(voice=_VOICE, model=self._bundled_model(), threads=1)
        audio = self._tts(text, speed=float(rng.uniform(0.85, 1.15)), seed=int(rng.integers(0, 2**31)))  # type: ignore[operator]
        return check_output(np.asarray(audio, np.float32), int(SAMPLE_RATE), "hibari heart")
