"""benchmarks/verifier_cross_source.py: the verifier and the fused score on a cross-source fold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf
from benchmark_modules import load_benchmark
from ct2_files import write_tiny_whisper
from test_cross_source_benchmark import _corpus

from streaming_models.data.manifest import write_manifest
from streaming_models.runtime.fusion import fuse_log_odds_mean
from streaming_models.verifier.model import VerifierConfig, build_verifier, save_checkpoint


@pytest.fixture(scope="module")
def vxs() -> ModuleType:
    return load_benchmark("verifier_cross_source")


def test_streaming_scores_are_read_at_each_window_end(vxs: ModuleType) -> None:
    streaming = np.stack([np.arange(25.0), -np.arange(25.0)], axis=1)  # 2.5 s of 100 ms hops
    at = vxs.streaming_at_window_ends(streaming, windows=3, duration_s=2.5, every_s=1.0)
    np.testing.assert_array_equal(at[:, 0], [9, 19, 24])  # the hops ending at 1 s, 2 s and 2.5 s


def test_fold_scored_alone_and_fused(vxs: ModuleType, tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    xs = load_benchmark("cross_source")
    items = _corpus()
    rng = np.random.default_rng(0)
    for item in items:
        path = tmp_path / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(int(item.duration_s * 16000))).astype(np.float32), 16000)
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, items)
    streaming_run = tmp_path / "xs"
    assert xs.main(["--public", str(manifest), "--folds", "2", "--model", str(tiny_model[0]),
                    "--work", str(streaming_run)]) == 0
    verifier_run = tmp_path / "vf"
    verifier_run.mkdir()
    weights = write_tiny_whisper(tmp_path / "tiny", width=32, heads=2, layers=2)
    model = build_verifier(VerifierConfig(trainable_blocks=1, pool_hidden=8), weights)
    save_checkpoint(verifier_run / "ckpt.pt", model, {"train": {"config": {"window_s": 2.0}}})

    (streaming_run / "fold1").mkdir()
    shutil.copy(tiny_model[0], streaming_run / "fold1" / "model.onnx")  # the fold's model, for dev-eval
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,codec,system,corpus\n" + "".join(
        f"{i.path},{i.source},{i.codec},{i.generator},x\n" for i in items))
    assert vxs.main(["--public", str(manifest), "--fold", "1", "--verifier", str(verifier_run),
                     "--streaming", str(streaming_run), "--dev-eval", str(labels)]) == 0
    whole = json.loads((verifier_run / "cross-source.json").read_text())
    report = whole[str(streaming_run)]
    dev = whole["dev-eval"]
    assert dev["verifier"]["files"] == dev[str(streaming_run)]["fused"]["files"] == len(items)
    assert set(np.load(verifier_run / "dev-eval.npz").files) == {str(tmp_path / i.path) for i in items}
    held = [i for i in items if i.corpus in ("b/mid", "c/small")]  # fold 1 of the 2-fold split
    assert {name: r["pooled"]["files"] for name, r in report.items()} == dict.fromkeys(
        ("streaming", "verifier", "fused"), len(held))
    cached = np.load(verifier_run / "heldout.npz")
    assert set(cached.files) == {i.item_id for i in held}
    assert len(cached["b/mid:g1"]) == 6  # a 6 s file: windows ending at 1..6 s
    # the fused final score of a file is the rule applied to the two final scores
    stream_final = np.load(streaming_run / "scores.npz")["c/small:g1"][-1, 0]
    verifier_final = cached["c/small:g1"][-1, 0]
    expected = float(fuse_log_odds_mean(stream_final, verifier_final))
    fused = vxs.fused(vxs.streaming_at_window_ends(np.load(streaming_run / "scores.npz")["c/small:g1"], 3, 3.0, 1.0),
                      cached["c/small:g1"])
    assert fused[-1, 0] == pytest.approx(expected)
