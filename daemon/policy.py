"""From per-hop probabilities to a smoothed score and a decision with hysteresis.

One `DecisionTracker` per stream (it holds the window and the current decision); the
rules, with f = smoothed fake score and c = smoothed p_codec:

- fewer than `min_hops` hops: `undecided`;
- f = p_spoof_smooth under `codec_as_bonafide`, max(p_spoof_smooth, p_codec_smooth) under
  `codec_as_spoof` (codec resynthesis counts as spoof evidence);
- `spoof` is entered at f >= spoof_enter and kept while f >= spoof_exit;
- otherwise, when f < spoof_exit: under `codec_as_bonafide`, `codec` (genuine speech that
  went through a neural codec) is entered at c >= codec_enter and kept while c >= codec_exit,
  else `bonafide`; under `codec_as_spoof`, `bonafide`;
- in between (spoof_exit <= f < spoof_enter, not spoof) the previous bonafide/codec decision
  holds, and a stream leaving spoof or never decided is `undecided`.

The enter thresholds are by default the model's (`resolve_thresholds`), and for a stream's first
seconds the model's early ones where it was calibrated (`early_thresholds`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from daemon.config import DecisionConfig
from streaming_models.runtime.model_format import HEADS, ModelMetadata


def resolve_thresholds(config: DecisionConfig, metadata: ModelMetadata) -> tuple[DecisionConfig, list[str]]:
    """The decision config with `thresholds = "model"` replaced by the model's operating thresholds.

    A fixed 0.7 means something different for every model; the operating threshold in the model's
    metadata was chosen for it (1 % false alarms on its dev split). Each exit keeps its configured
    distance below its enter. Returns the config (thresholds = "config") and the heads that had
    no threshold in the model and kept the configured values.
    """
    if config.thresholds != "model":
        return config, []
    changes: dict[str, Any] = {"thresholds": "config"}
    missing = []
    for head in HEADS:
        enter = metadata.operating_thresholds.get(head)
        if enter is None:
            missing.append(head)
            continue
        gap = getattr(config, f"{head}_enter") - getattr(config, f"{head}_exit")
        changes[f"{head}_enter"] = enter
        changes[f"{head}_exit"] = max(0.0, enter - gap)
    return dataclasses.replace(config, **changes), missing


def early_thresholds(config: DecisionConfig, metadata: ModelMetadata) -> dict[str, tuple[float, ...]]:
    """Per-hop enter thresholds for a stream's first seconds (`spoofwatch calibrate`), per head.

    Only with `thresholds = "model"`: configured values are used as they are. A head without a
    schedule in the model gets none, and its one enter threshold holds from the first hop.
    """
    if config.thresholds != "model":
        return {}
    return {head: by_hop for head in HEADS if (by_hop := metadata.enter_thresholds_by_hop(head))}


class DecisionTracker:
    def __init__(self, config: DecisionConfig, early: Mapping[str, Sequence[float]] | None = None) -> None:
        """`early[head][h - 1]` replaces the head's enter threshold at hop h while it lasts; each
        exit keeps the configured distance below its enter."""
        self.config = config
        self._early = {head: tuple(early.get(head, ())) for head in HEADS} if early else {}
        # per head: (configured enter, enter - exit), read once here rather than at every hop
        self._enter_and_gap = {head: (getattr(config, f"{head}_enter"),
                                      getattr(config, f"{head}_enter") - getattr(config, f"{head}_exit"))
                               for head in HEADS}
        self._spoof: deque[float] = deque(maxlen=config.window_hops)
        self._codec: deque[float] = deque(maxlen=config.window_hops)
        self.hops = 0
        self.decision = "undecided"

    def update(self, p_spoof: float, p_codec: float) -> tuple[float, float, str]:
        """Add one hop; returns (p_spoof_smooth, p_codec_smooth, decision)."""
        cfg = self.config
        self._spoof.append(p_spoof)
        self._codec.append(p_codec)
        self.hops += 1
        spoof_smooth = sum(self._spoof) / len(self._spoof)
        codec_smooth = sum(self._codec) / len(self._codec)
        if self.hops < cfg.min_hops:
            return spoof_smooth, codec_smooth, self.decision
        fake = spoof_smooth if cfg.policy == "codec_as_bonafide" else max(spoof_smooth, codec_smooth)
        spoof_enter, spoof_exit = self._thresholds("spoof")
        codec_enter, codec_exit = self._thresholds("codec")
        previous = self.decision
        if fake >= spoof_enter or (previous == "spoof" and fake >= spoof_exit):
            decision = "spoof"
        elif fake >= spoof_exit:
            decision = previous if previous in ("bonafide", "codec") else "undecided"
        elif cfg.policy == "codec_as_bonafide" and (
                codec_smooth >= codec_enter or (previous == "codec" and codec_smooth >= codec_exit)):
            decision = "codec"
        else:
            decision = "bonafide"
        self.decision = decision
        return spoof_smooth, codec_smooth, decision

    def _thresholds(self, head: str) -> tuple[float, float]:
        """(enter, exit) of `head` at the current hop."""
        enter, gap = self._enter_and_gap[head]
        early = self._early.get(head, ())
        if self.hops <= len(early):
            enter = early[self.hops - 1]
        return enter, max(0.0, enter - gap)
