"""The contract between an exported detector (ONNX) and whoever runs it.

Pure stdlib on purpose: the daemon reads it without importing torch.

An exported model is one ONNX file. Its graph is stateless and every state is
explicit (Silero-VAD style), so one graph serves a batch of unrelated streams:

    inputs:  `audio`  float32 [batch, hop_samples]      mono, at sample_rate_hz
             one input per state, float32 [batch, *shape] (batch is always dim 0)
    outputs: `logits` float32 [batch, len(heads)]        heads = ("spoof", "codec")
             one output per state, same shape as its input

A new stream starts from all-zero states. The file's metadata_props hold one key,
`spoofwatch`, whose value is the JSON of `ModelMetadata` below.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

METADATA_KEY = "spoofwatch"
FORMAT_VERSION = 1
AUDIO_INPUT = "audio"
LOGITS_OUTPUT = "logits"
HEADS = ("spoof", "codec")


class ModelFormatError(ValueError):
    """The model file does not follow this contract; the message says how."""


@dataclass(frozen=True)
class StateSpec:
    input_name: str
    output_name: str
    shape: tuple[int, ...]  # per stream, without the batch dimension


@dataclass(frozen=True)
class ModelMetadata:
    model_id: str
    sample_rate_hz: int
    hop_samples: int
    states: tuple[StateSpec, ...]
    heads: tuple[str, ...] = HEADS
    label_policy: str = "unknown"
    corpus_hash: str = "unknown"
    version: str = "0"
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hop_ms(self) -> float:
        return 1000.0 * self.hop_samples / self.sample_rate_hz

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"metadata '{METADATA_KEY}' is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ModelFormatError(f"metadata '{METADATA_KEY}' must be a JSON object")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFormatError(
                f"model format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        try:
            states = tuple(
                StateSpec(s["input_name"], s["output_name"], tuple(int(d) for d in s["shape"]))
                for s in raw["states"]
            )
            meta = cls(
                model_id=str(raw["model_id"]),
                sample_rate_hz=int(raw["sample_rate_hz"]),
                hop_samples=int(raw["hop_samples"]),
                states=states,
                heads=tuple(str(h) for h in raw.get("heads", HEADS)),
                label_policy=str(raw.get("label_policy", "unknown")),
                corpus_hash=str(raw.get("corpus_hash", "unknown")),
                version=str(raw.get("version", "0")),
                format_version=FORMAT_VERSION,
                extra=dict(raw.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"metadata '{METADATA_KEY}' is incomplete or malformed: {exc!r}") from exc
        meta.validate()
        return meta

    def validate(self) -> None:
        if not 8000 <= self.sample_rate_hz <= 48000:
            raise ModelFormatError(f"sample_rate_hz {self.sample_rate_hz} outside 8000..48000")
        if self.hop_samples <= 0:
            raise ModelFormatError(f"hop_samples must be positive, got {self.hop_samples}")
        if tuple(self.heads[:2]) != HEADS:
            raise ModelFormatError(f"heads must start with {HEADS}, got {self.heads}")
        for state in self.states:
            if any(d <= 0 for d in state.shape):
                raise ModelFormatError(f"state {state.input_name!r} has a non-positive dimension")

    def enter_thresholds_by_hop(self, head: str) -> tuple[float, ...]:
        """The early operating thresholds of `head` (`spoofwatch calibrate`), one per hop.

        `extra["threshold_<head>_by_s"]` is [[seconds, threshold], ...]; hop h (h * hop seconds
        of audio heard) takes the threshold of the last point at or before it (the first point's
        before that), up to the last point, from which the last threshold holds for good. Empty
        when the model has no valid schedule.
        """
        raw = self.extra.get(f"threshold_{head}_by_s")
        try:
            points = sorted((float(s), float(t)) for s, t in raw)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            return ()
        if not points or not all(s > 0 and 0.0 <= t <= 1.0 for s, t in points):
            return ()
        hop_s = self.hop_samples / self.sample_rate_hz
        last_hop = max(1, round(points[-1][0] / hop_s))
        by_hop = []
        for hop in range(1, last_hop + 1):
            heard = hop * hop_s + 1e-9
            by_hop.append(next((t for s, t in reversed(points) if s <= heard), points[0][1]))
        return tuple(by_hop)
