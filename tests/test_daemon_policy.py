from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from daemon.config import DecisionConfig
from daemon.policy import DecisionTracker, early_thresholds, resolve_thresholds
from streaming_models.runtime.model_format import ModelMetadata, StateSpec

BASE = DecisionConfig(window_hops=1, min_hops=2, spoof_enter=0.7, spoof_exit=0.4, codec_enter=0.7, codec_exit=0.4)


def _model(extra: dict[str, Any]) -> ModelMetadata:
    """A model whose stored metadata has `extra`, read the way a model file is read."""
    raw = json.loads(ModelMetadata("m", 16000, 1600, (StateSpec("a", "b", (1,)),)).to_json())
    raw["extra"] = extra
    return ModelMetadata.from_json(json.dumps(raw))


def _run(config: DecisionConfig, scores: Sequence[tuple[float, float]]) -> list[str]:
    tracker = DecisionTracker(config)
    return [tracker.update(s, c)[2] for s, c in scores]


def test_undecided_until_min_hops() -> None:
    assert _run(BASE, [(0.9, 0.0), (0.9, 0.0), (0.9, 0.0)]) == ["undecided", "spoof", "spoof"]


def test_spoof_hysteresis() -> None:
    scores = [(0.1, 0), (0.1, 0), (0.8, 0), (0.5, 0), (0.41, 0), (0.39, 0), (0.6, 0), (0.71, 0)]
    assert _run(BASE, scores) == [
        "undecided", "bonafide", "spoof", "spoof", "spoof", "bonafide", "bonafide", "spoof"]


def test_leaving_spoof_into_the_ambiguous_zone_is_undecided() -> None:
    config = replace(BASE, spoof_exit=0.5)
    assert _run(config, [(0.9, 0), (0.9, 0), (0.45, 0)])[-1] == "bonafide"
    assert _run(config, [(0.55, 0), (0.55, 0)])[-1] == "undecided"


def test_codec_as_bonafide_reports_codec_with_hysteresis() -> None:
    scores = [(0.1, 0.9), (0.1, 0.9), (0.1, 0.5), (0.1, 0.3), (0.1, 0.5)]
    assert _run(BASE, scores) == ["undecided", "codec", "codec", "bonafide", "bonafide"]


def test_codec_as_spoof_counts_codec_as_spoof() -> None:
    config = replace(BASE, policy="codec_as_spoof")
    assert _run(config, [(0.1, 0.9), (0.1, 0.9), (0.1, 0.2)]) == ["undecided", "spoof", "bonafide"]


def test_smoothing_is_a_moving_average_over_the_window() -> None:
    tracker = DecisionTracker(replace(BASE, window_hops=3))
    values = [tracker.update(p, 1 - p)[:2] for p in (0.0, 0.3, 0.6, 0.9)]
    assert values[-1] == pytest.approx((0.6, 0.4))
    assert values[1] == pytest.approx((0.15, 0.85))


def test_smoothing_delays_the_decision() -> None:
    config = replace(BASE, window_hops=4, min_hops=1)
    decisions = _run(config, [(0.0, 0)] * 4 + [(1.0, 0)] * 4)
    assert decisions[4] == "bonafide"  # one loud hop among three quiet ones: mean 0.25
    assert decisions[6] == "spoof"  # mean 0.75


def test_model_thresholds_replace_the_enter_values_and_keep_the_exit_gap() -> None:
    config = replace(BASE, spoof_exit=0.5, codec_exit=0.3)  # gaps 0.2 and 0.4
    resolved, missing = resolve_thresholds(config, _model({"threshold_spoof": "0.95", "threshold_codec": 0.25}))
    assert missing == []
    assert resolved.thresholds == "config"
    assert (resolved.spoof_enter, resolved.codec_enter) == (0.95, 0.25)
    assert resolved.spoof_exit == pytest.approx(0.75)
    assert resolved.codec_exit == 0.0  # 0.25 - 0.4 is clipped to the probability range
    assert resolved.window_hops == config.window_hops and resolved.policy == config.policy


def test_a_model_without_thresholds_keeps_the_configured_values() -> None:
    resolved, missing = resolve_thresholds(BASE, _model({"threshold_spoof": "not a number"}))
    assert missing == ["spoof", "codec"]
    assert (resolved.spoof_enter, resolved.spoof_exit, resolved.codec_enter) == (0.7, 0.4, 0.7)


def test_configured_thresholds_are_used_as_they_are() -> None:
    config = replace(BASE, thresholds="config")
    assert resolve_thresholds(config, _model({"threshold_spoof": 0.95, "threshold_codec": 0.9})) == (config, [])


def test_early_thresholds_apply_to_the_first_hops_then_the_configured_ones() -> None:
    config = replace(BASE, min_hops=1, spoof_enter=0.9, spoof_exit=0.6)  # gap 0.3
    scores = [(0.55, 0), (0.35, 0), (0.55, 0), (0.55, 0)]
    assert _run(config, scores) == ["bonafide"] * 4
    tracker = DecisionTracker(config, {"spoof": (0.5, 0.5, 0.5)})
    decisions = [tracker.update(s, c)[2] for s, c in scores]
    # hop 1 enters at 0.5; hop 2 stays (0.35 >= 0.5 - 0.3); hop 3 still early; hop 4 leaves (0.55 < 0.6)
    assert decisions == ["spoof", "spoof", "spoof", "bonafide"]


def test_early_thresholds_come_from_the_model_only_when_thresholds_are_the_models() -> None:
    meta = _model({"threshold_spoof_by_s": [[0.2, 0.5], [0.3, 0.8]]})
    assert early_thresholds(BASE, meta) == {"spoof": (0.5, 0.5, 0.8)}
    assert early_thresholds(replace(BASE, thresholds="config"), meta) == {}
