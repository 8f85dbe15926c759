"""Early operating thresholds: chosen per elapsed time on labelled files, written into the model,
read back per hop, and used by `evaluate`'s time to detection."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from detector_checkpoint import write_exported_model

from streaming_models import calibrate, evaluate
from streaming_models.evaluate import EvalItem
from streaming_models.runtime.model_format import ModelMetadata, StateSpec
from streaming_models.runtime.onnx_backend import OnnxBackend


def _item(spoof: int) -> EvalItem:
    return EvalItem(Path("x.wav"), spoof, 0, "s", "none", "c")


def test_each_threshold_flags_the_asked_share_of_negatives_at_its_time() -> None:
    rng = np.random.default_rng(0)
    hops = 25  # 2.5 s at 100 ms
    negatives = [np.stack([rng.uniform(0, 0.5 + 0.02 * np.arange(hops)), np.zeros(hops)], 1) for _ in range(200)]
    positives = [np.ones((hops, 2))] * 20  # positives never move a threshold
    items = [_item(0)] * 200 + [_item(1)] * 20
    schedule = calibrate.threshold_schedule(items, negatives + positives, 0, 0.1, fpr=0.05)
    assert [s for s, _ in schedule] == list(calibrate.SCHEDULE_S)
    for seconds, threshold in schedule:
        at = np.array([n[round(seconds / 0.1) - 1, 0] for n in negatives])
        assert np.mean(at >= threshold) == pytest.approx(0.05, abs=0.006)
    assert schedule[0][1] < schedule[-1][1]  # these negatives' scores rise with time, so do the thresholds


def test_schedule_expands_to_one_threshold_per_hop() -> None:
    raw = json.loads(ModelMetadata("m", 16000, 1600, (StateSpec("a", "b", (1,)),)).to_json())
    raw["extra"] = {"threshold_spoof_by_s": [[1.0, 0.7], [0.3, 0.5], [0.5, 0.6]],
                    "threshold_codec_by_s": [[0.5, 1.5]]}
    meta = ModelMetadata.from_json(json.dumps(raw))  # as stored in a model file
    by_hop = meta.enter_thresholds_by_hop("spoof")
    assert by_hop == (0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7)  # hops 1-10: 0.1 .. 1.0 s
    assert meta.enter_thresholds_by_hop("codec") == ()  # not a probability: no schedule


def test_calibrate_writes_the_schedule_and_evaluate_uses_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from synthetic_corpus import write_corpus

    model = write_exported_model(tmp_path)
    assert calibrate.main(["--model", str(model), "--labels", str(tmp_path / "none.jsonl")]) == 2
    manifest = write_corpus(tmp_path, per_class=3)
    calibrated = tmp_path / "calibrated.onnx"
    capsys.readouterr()
    assert calibrate.main(["--model", str(model), "--labels", str(manifest), "--out", str(calibrated)]) == 0
    printed = json.loads(capsys.readouterr().out)
    before, after = (OnnxBackend(p, providers=["CPUExecutionProvider"]).metadata for p in (model, calibrated))
    assert after.model_id == before.model_id
    schedule = after.early_thresholds_by_s["spoof"]
    assert [list(point) for point in schedule] == printed["threshold_spoof_by_s"]
    assert schedule[-1] == (calibrate.FINAL_S, before.operating_thresholds["spoof"])  # hands over to training's
    assert len(after.enter_thresholds_by_hop("spoof")) == round(calibrate.FINAL_S * 1000 / after.hop_ms)
    assert "spoof" not in before.early_thresholds_by_s  # --out leaves the input alone

    # Early thresholds of 0 flag every file at its first hop: evaluate must use them.
    zeros = tmp_path / "zeros.onnx"
    shutil.copy(calibrated, zeros)
    early = dict(after.early_thresholds_by_s, spoof=((0.1, 0.0), (0.2, 1.0)))
    calibrate.write_metadata(zeros, dataclasses.replace(after, early_thresholds_by_s=early), zeros)
    assert evaluate.main(["--model", str(zeros), "--labels", str(manifest), "--split", "dev", "--json"]) == 0
    detection = json.loads(capsys.readouterr().out)["heads"]["spoof"]["detection"]
    assert detection["early_threshold_hops"] == 2
    assert detection["negative"]["flagged_within_1s"] == 1.0 and detection["negative"]["median_time_to_flag_s"] == 0.1
