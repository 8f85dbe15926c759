"""Neural-codec names in public corpora -> codec_family and codec_objective labels.

The objective follows a codec's design goal (the criterion of "How to Label Resynthesized
Audio", ICASSP 2026): "compression" for codecs built to transmit or store audio at a low
bitrate with waveform fidelity, "synthesis" for codecs built as token spaces for language-model
speech generation (semantic distillation, single-codebook LM tokenizers). Families not listed
default to "compression"; callers can override per item.
"""

from __future__ import annotations

import re

from streaming_models.data.manifest import CodecObjective

# normalized prefix -> family; longest prefixes first so "xcodec2" wins over "xcodec"
_FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("descriptaudiocodec", "dac"), ("encodecvocos", "encodec"), ("vocosencodec", "encodec"),
    ("speechtokenizer", "speechtokenizer"), ("semanticodec", "semanticodec"), ("languagecodec", "languagecodec"),
    ("wavtokenizer", "wavtokenizer"), ("spectralcodec", "spectralcodec"), ("soundstream", "soundstream"),
    ("hificodec", "hificodec"), ("funcodec", "funcodec"), ("audiodec", "audiodec"), ("bigcodec", "bigcodec"),
    ("stablecodec", "stablecodec"), ("llmcodec", "llmcodec"), ("facodec", "facodec"), ("ticodec", "ticodec"),
    ("xcodec2", "xcodec2"), ("xcodec", "xcodec"), ("encodec", "encodec"), ("snac", "snac"), ("mimi", "mimi"),
    ("lyra", "lyra"), ("dac", "dac"),
)

CODEC_OBJECTIVES: dict[str, CodecObjective] = {
    # built for transmission/storage: reconstruct the waveform at a low bitrate
    "encodec": "compression", "dac": "compression", "soundstream": "compression", "lyra": "compression",
    "hificodec": "compression", "audiodec": "compression", "funcodec": "compression", "snac": "compression",
    "bigcodec": "compression", "spectralcodec": "compression", "stablecodec": "compression",
    # built as token spaces for LM-based speech generation (semantic or disentangled tokens)
    "mimi": "synthesis", "xcodec": "synthesis", "xcodec2": "synthesis", "speechtokenizer": "synthesis",
    "semanticodec": "synthesis", "wavtokenizer": "synthesis", "facodec": "synthesis",
    "languagecodec": "synthesis", "llmcodec": "synthesis", "ticodec": "synthesis",
}


def codec_family(name: str) -> str:
    """Family of a codec/system name: "EnCodec-24k-6kbps" -> "encodec", "DescriptAudioCodec" -> "dac"."""
    normalized = re.sub(r"[^a-z0-9]", "", name.lower())
    for prefix, family in _FAMILY_PREFIXES:
        if normalized.startswith(prefix):
            return family
    head = re.split(r"[^a-z0-9]+", name.lower().strip())[0] if name.strip() else ""
    return head or "unknown"


def codec_objective(family: str) -> CodecObjective:
    return CODEC_OBJECTIVES.get(family, "compression")
