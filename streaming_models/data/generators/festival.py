"""Festival: the kal diphone voice (festvox-kallpc16k) and the slt HTS voice (festvox-us-slt-hts)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from streaming_models.data.generators.base import (
    GenerationError,
    GeneratorUnavailable,
    Voice,
    check_output,
    read_wav_file,
    require_binary,
    run_engine,
)

# voice id -> (festival voice function, Debian package, folder that proves it is installed)
_VOICES: dict[str, tuple[str, str, str]] = {
    "kal_diphone": ("voice_kal_diphone", "festvox-kallpc16k",
                    "/usr/share/festival/voices/english/kal_diphone"),
    "slt_hts": ("voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts",
                "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts"),
}


class FestivalTTS:
    family = "festival"

    def check_available(self) -> None:
        require_binary("text2wave", "festival")
        for _, package, folder in _VOICES.values():
            if not Path(folder).is_dir():
                raise GeneratorUnavailable(f"festival voice missing: apt-get install {package}")

    def voices(self) -> list[Voice]:
        return [Voice(v, "en") for v in _VOICES]

    def synthesize(self, text: str, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        if voice.voice_id not in _VOICES:
            raise GenerationError(f"festival: unknown voice {voice.voice_id!r}, known: {sorted(_VOICES)}")
        stretch = float(rng.uniform(0.85, 1.15))
        voice_fn = _VOICES[voice.voice_id][0]
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            out = Path(tmp) / "out.wav"
            run_engine(
                ["text2wave", "-o", str(out), "-eval", f"({voice_fn})",
                 "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.3f})"],
                stdin_text=text,
            )
            audio, sr = read_wav_file(out)
        return check_output(audio, sr, f"festival voice {voice.voice_id}")
