"""Spoof generator families, by name. Engines are imported only when a family is made."""

from __future__ import annotations

import importlib
from pathlib import Path

from streaming_models.data.generators.base import (
    CopySynthesis,
    GenerationError,
    Generator,
    GeneratorUnavailable,
    TextToSpeech,
    Voice,
)

# family -> (module, class, constructor arguments; "cache" is replaced by the engine cache dir)
_FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "espeak": ("espeak", "EspeakTTS", ()),
    "flite": ("flite", "FliteTTS", ()),
    "festival": ("festival", "FestivalTTS", ()),
    "kokoro": ("kokoro", "KokoroTTS", ("cache",)),
    "hibari": ("hibari", "HibariTTS", ()),
    "piper": ("piper", "PiperTTS", ()),
    "openjtalk": ("openjtalk", "OpenJTalkTTS", ()),
    "world": ("world", "WorldVocoder", ()),
    "griffinlim": ("griffinlim", "GriffinLimVocoder", ()),
    "hifigan": ("hifigan", "HifiganVocoder", ("universal",)),
    "hifigan-lj": ("hifigan", "HifiganVocoder", ("ljspeech",)),
    "inhouse-vocoder": ("inhouse", "InhouseVocoderGenerator", ()),
}

# Families whose weights are trained here (build artefacts, not packages): the command that makes them.
TRAINED_FAMILIES: dict[str, str] = {
    "inhouse-vocoder": "spoofwatch resynth train --config configs/resynthesis/vocoder_mel.toml",
}


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def make_generator(family: str, cache_dir: Path) -> Generator:
    if family not in _FAMILIES:
        raise ValueError(f"unknown generator family {family!r}; known: {list_families()}")
    module_name, class_name, arguments = _FAMILIES[family]
    module = importlib.import_module(f"streaming_models.data.generators.{module_name}")
    cls = getattr(module, class_name)
    generator: Generator = cls(*(Path(cache_dir) if a == "cache" else a for a in arguments))
    return generator


def is_text_to_speech(generator: Generator) -> bool:
    return hasattr(generator, "synthesize")


__all__ = [
    "TRAINED_FAMILIES",
    "CopySynthesis",
    "GenerationError",
    "Generator",
    "GeneratorUnavailable",
    "TextToSpeech",
    "Voice",
    "is_text_to_speech",
    "list_families",
    "make_generator",
]
