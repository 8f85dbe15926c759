"""espeak-ng formant synthesis: many languages, voice variants, random rate and pitch."""

from __future__ import annotations

import numpy as np

from streaming_models.data.generators.base import (
    GenerationError,
    Voice,
    check_output,
    read_wav_bytes,
    require_binary,
    run_engine,
)

_VARIANTS = ("", "+m1", "+m3", "+m5", "+m7", "+f1", "+f2", "+f4", "+klatt", "+klatt3", "+adam",
             "+linda", "+steph", "+robert", "+edward", "+grandma", "+aunty")
_LANGUAGE_VOICES: dict[str, tuple[str, ...]] = {
    "en": ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"),
    "es": ("es", "es-419"),
    "fr": ("fr-fr", "fr-be"),
    "it": ("it",),
    "de": ("de",),
}


class EspeakTTS:
    family = "espeak"

    def check_available(self) -> None:
        require_binary("espeak-ng", "espeak-ng")

    def voices(self) -> list[Voice]:
        out: list[Voice] = []
        for language, bases in _LANGUAGE_VOICES.items():
            for base in bases:
                for variant in _VARIANTS:
                    out.append(Voice(f"{base}{variant}", language))
        return out

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        if not text.strip():
            raise GenerationError("espeak-ng: empty text")
        rate_wpm = int(rng.integers(135, 195))
        pitch = int(rng.integers(25, 75))
        blob = run_engine(
            ["espeak-ng", "-v", voice.voice_id, "-s", str(rate_wpm), "-p", str(pitch), "--stdout", "-b", "1", text]
        )
        audio, sr = read_wav_bytes(blob)
        return check_output(audio, sr, f"espeak-ng voice {voice.voice_id}")
