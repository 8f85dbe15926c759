"""The contract of an exported second-tier verifier (docs/verifier.md), and the fused p_spoof the
daemon publishes with each result.

Pure stdlib, as model_format.py: the daemon reads it without importing torch.

An exported verifier is one stateless ONNX file that scores whole windows:

    inputs:  `audio`  float32 [batch, samples]         one window per row, mono, at sample_rate_hz
    outputs: `logits` float32 [batch, len(heads)]      heads = ("spoof", "codec")

The file's metadata_props hold one key, `spoofwatch_verifier`, whose value is the JSON of
`VerifierMetadata`. It is not the streaming model's key (`spoofwatch`), so neither kind of file is
ever taken for the other: each reader names the key it misses.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from streaming_models.runtime.errors import ModelFormatError
from streaming_models.runtime.model_format import AUDIO_INPUT, HEADS, LOGITS_OUTPUT, parse_threshold

VERIFIER_METADATA_KEY = "spoofwatch_verifier"
VERIFIER_FORMAT = "spoofwatch-verifier"
VERIFIER_FORMAT_VERSION = 1
VERIFIER_AUDIO_INPUT = AUDIO_INPUT
VERIFIER_LOGITS_OUTPUT = LOGITS_OUTPUT



@dataclass(frozen=True)
class VerifierMetadata:
    model_id: str
    window_s: float  # the window it was trained on
    max_window_s: float  # the longest window its graph scores (Whisper's encoder: 30 s of positions)
    sample_rate_hz: int = 16000
    heads: tuple[str, ...] = HEADS
    format: str = VERIFIER_FORMAT
    format_version: int = VERIFIER_FORMAT_VERSION
    # per head: a threshold on the verifier's own probability, where a calibration chose one
    operating_thresholds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # facts for people (training run, encoder, ...)

    def samples(self, window_s: float) -> int:
        """A window of `window_s` seconds in samples at the verifier's rate."""
        return round(window_s * self.sample_rate_hz)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VerifierMetadata:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"metadata '{VERIFIER_METADATA_KEY}' is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ModelFormatError(f"metadata '{VERIFIER_METADATA_KEY}' must be a JSON object")
        if raw.get("format") != VERIFIER_FORMAT:
            raise ModelFormatError(f"metadata '{VERIFIER_METADATA_KEY}' is format {raw.get('format')!r}, "
                                   f"expected {VERIFIER_FORMAT!r}")
        if raw.get("format_version") != VERIFIER_FORMAT_VERSION:
            raise ModelFormatError(f"verifier format_version {raw.get('format_version')!r} is not supported "
                                   f"(expected {VERIFIER_FORMAT_VERSION})")
        try:
            heads = tuple(str(h) for h in raw.get("heads", HEADS))
            thresholds = {}
            for head, stored in dict(raw.get("operating_thresholds", {})).items():
                threshold = parse_threshold(stored)
                if threshold is None:
                    raise ValueError(f"operating threshold of {head!r} must be a probability, got {stored!r}")
                thresholds[str(head)] = threshold
            meta = cls(
                model_id=str(raw["model_id"]),
                window_s=float(raw["window_s"]),
                max_window_s=float(raw["max_window_s"]),
                sample_rate_hz=int(raw["sample_rate_hz"]),
                heads=heads,
                operating_thresholds=thresholds,
                extra=dict(raw.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"metadata '{VERIFIER_METADATA_KEY}' is incomplete or malformed: {exc!r}") from exc
        meta.validate()
        return meta

    def validate(self) -> None:
        if not 8000 <= self.sample_rate_hz <= 48000:
            raise ModelFormatError(f"verifier sample_rate_hz {self.sample_rate_hz} outside 8000..48000")
        if not (math.isfinite(self.window_s) and 0 < self.window_s <= self.max_window_s):
            raise ModelFormatError(f"verifier window_s {self.window_s} must be within (0, max_window_s = "
                                   f"{self.max_window_s}]")
        if tuple(self.heads) != HEADS:
            raise ModelFormatError(f"verifier heads must be {HEADS}, got {self.heads}")
        for head, threshold in self.operating_thresholds.items():
            if head not in self.heads or not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
                raise ModelFormatError(f"verifier operating threshold {head}={threshold!r}: needs a head and a "
                                       "probability")
