"""The contract between an exported detector (ONNX) and whoever runs it.

Pure stdlib on purpose: the daemon reads it without importing torch.

An exported model is one ONNX file. Its graph is stateless and every state is
explicit (Silero-VAD style), so one graph serves a batch of unrelated streams:

    inputs:  `audio`  float32 [batch, hop_samples]      mono, at sample_rate_hz
             one input per state, float32 [batch, *shape] (batch is always dim 0)
    outputs: `logits` float32 [batch, len(heads)]        heads = ("spoof", "codec")
             one output per state, same shape as its input

A new stream starts from all-zero states. The file's metadata_props hold one key,
`spoofwatch`, whose value is the JSON of `ModelMetadata` below. The operating thresholds are
typed fields of `ModelMetadata`, but on disk they stay where they always were, in `extra`:
`threshold_<head>` (a probability) and `threshold_<head>_by_s` ([[seconds, probability], ...]).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from streaming_models.runtime.errors import ModelFormatError

METADATA_KEY = "spoofwatch"
FORMAT_VERSION = 1
AUDIO_INPUT = "audio"
LOGITS_OUTPUT = "logits"
HEADS = ("spoof", "codec")

Schedule = tuple[tuple[float, float], ...]  # ((seconds of audio heard, threshold), ...), seconds ascending

def threshold_key(head: str) -> str:
    """Where a head's operating threshold is stored in the metadata's `extra`."""
    return f"threshold_{head}"


def schedule_key(head: str) -> str:
    """Where a head's early thresholds (`spoofwatch calibrate`) are stored in the metadata's `extra`."""
    return f"threshold_{head}_by_s"


def parse_threshold(raw: object) -> float | None:
    """A stored operating threshold: a number (or numeric text) in 0..1; anything else is none."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if 0.0 <= value <= 1.0 else None  # NaN fails both comparisons


def parse_schedule(raw: object) -> Schedule:
    """Stored early thresholds, [[seconds, threshold], ...], sorted by time; empty unless every point
    has seconds > 0 and a threshold in 0..1."""
    try:
        points = tuple(sorted((float(s), float(t)) for s, t in raw))  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return ()
    if not all(s > 0 and 0.0 <= t <= 1.0 for s, t in points):
        return ()
    return points


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
    # per head: the operating threshold chosen in training (1 % false alarms on its dev split)
    operating_thresholds: dict[str, float] = field(default_factory=dict)
    # per head: early thresholds by elapsed time (`spoofwatch calibrate`), each in force from its time on
    early_thresholds_by_s: dict[str, Schedule] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # facts for people (training run, members, ...)

    @property
    def hop_ms(self) -> float:
        return 1000.0 * self.hop_samples / self.sample_rate_hz

    def to_json(self) -> str:
        raw = asdict(self)
        raw.pop("operating_thresholds")
        raw.pop("early_thresholds_by_s")
        raw["extra"].update({threshold_key(head): t for head, t in self.operating_thresholds.items()})
        raw["extra"].update({schedule_key(head): [list(point) for point in schedule]
                             for head, schedule in self.early_thresholds_by_s.items()})
        return json.dumps(raw, sort_keys=True)

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
            heads = tuple(str(h) for h in raw.get("heads", HEADS))
            extra = dict(raw.get("extra", {}))
            # A stored threshold that is not a probability counts as none, as it always has: the
            # daemon then keeps its configured thresholds and says so at start.
            operating = {head: parse_threshold(extra.pop(threshold_key(head), None)) for head in heads}
            schedules = {head: parse_schedule(extra.pop(schedule_key(head), None)) for head in heads}
            meta = cls(
                model_id=str(raw["model_id"]),
                sample_rate_hz=int(raw["sample_rate_hz"]),
                hop_samples=int(raw["hop_samples"]),
                states=states,
                heads=heads,
                label_policy=str(raw.get("label_policy", "unknown")),
                corpus_hash=str(raw.get("corpus_hash", "unknown")),
                version=str(raw.get("version", "0")),
                format_version=FORMAT_VERSION,
                operating_thresholds={head: t for head, t in operating.items() if t is not None},
                early_thresholds_by_s={head: s for head, s in schedules.items() if s},
                extra=extra,
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
        for head, threshold in self.operating_thresholds.items():
            if head not in self.heads or not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
                raise ModelFormatError(f"operating threshold {head}={threshold!r}: needs a head and a probability")
        for head, schedule in self.early_thresholds_by_s.items():
            if head not in self.heads or not schedule or parse_schedule(schedule) != tuple(schedule):
                raise ModelFormatError(f"early thresholds of {head!r} must be ((seconds > 0, probability), ...) "
                                       f"in time order, got {schedule!r}")
        for head in self.heads:
            for key in (threshold_key(head), schedule_key(head)):
                if key in self.extra:
                    raise ModelFormatError(f"extra[{key!r}]: thresholds are the typed fields operating_thresholds "
                                           "and early_thresholds_by_s, not extra")

    def enter_thresholds_by_hop(self, head: str) -> tuple[float, ...]:
        """The early operating thresholds of `head` (`spoofwatch calibrate`), one per hop.

        Hop h (h * hop seconds of audio heard) takes the threshold of the last point of
        `early_thresholds_by_s[head]` at or before it (the first point's before that), up to the
        last point, from which the last threshold holds for good. Empty when the head has none.
        """
        points = self.early_thresholds_by_s.get(head, ())
        if not points:
            return ()
        hop_s = self.hop_samples / self.sample_rate_hz
        last_hop = max(1, round(points[-1][0] / hop_s))
        by_hop = []
        for hop in range(1, last_hop + 1):
            heard = hop * hop_s + 1e-9
            by_hop.append(next((t for s, t in reversed(points) if s <= heard), points[0][1]))
        return tuple(by_hop)
