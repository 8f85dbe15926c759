"""Open JTalk HTS (pyopenjtalk-plus): Japanese statistical-parametric TTS with its bundled voice."""

from __future__ import annotations

import numpy as np

from streaming_models.data.generators.base import Voice, check_output, require_module


class OpenJTalkTTS:
    family = "openjtalk"

    def check_available(self) -> None:
        require_module("pyopenjtalk", "pyopenjtalk-plus")

    def voices(self) -> list[Voice]:
        return [Voice("mei-normal", "ja")]

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        import pyopenjtalk

        audio, sr = pyopenjtalk.tts(text, speed=float(rng.uniform(0.85, 1.15)),
                                    half_tone=float(rng.uniform(-3.0, 3.0)))
        return check_output((np.asarray(audio) / 32768.0).astype(np.float32), int(sr), "Open JTalk")
