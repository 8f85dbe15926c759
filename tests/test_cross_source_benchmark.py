"""benchmarks/cross_source.py: folds by repository, families held out whole, streaming scores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf
from benchmark_modules import load_benchmark

from streaming_models.data.manifest import CorpusItem, read_manifest, write_manifest


@pytest.fixture(scope="module")
def xs() -> ModuleType:
    return load_benchmark("cross_source")


def _item(repo: str, name: str, source: str = "bonafide", fam: str = "", codec: str = "none",
          seconds: float = 2.0) -> CorpusItem:
    extra = {"family": fam} if fam else {}
    return CorpusItem(path=f"audio/{repo.replace('/', '_')}_{name}.flac", source=source,  # type: ignore[arg-type]
                      generator=fam or "human", codec=codec, codec_family="encodec" if codec == "neural" else "none",  # type: ignore[arg-type]
                      codec_objective="compression" if codec == "neural" else "none", duration_s=seconds,
                      corpus=repo, item_id=f"{repo}:{name}", extra=extra)


def _corpus() -> list[CorpusItem]:
    return [
        _item("a/big", "g1", seconds=9), _item("a/big", "s1", "spoof", "vits", seconds=9),
        _item("a/big", "s2", "spoof", "gan-vocoder", seconds=9),
        _item("b/mid", "g1", seconds=6), _item("b/mid", "s1", "spoof", "gan-vocoder", seconds=6),
        _item("b/mid", "c1", codec="neural", seconds=6),
        _item("c/small", "g1", seconds=3), _item("c/small", "s1", "spoof", "vc", seconds=3),
    ]


def test_folds_balance_hours_and_every_family_has_a_holdout_fold(xs: ModuleType) -> None:
    items = _corpus()
    fold_of, holdout = xs.assign_folds(items, 2)
    assert fold_of == {"a/big": 0, "b/mid": 1, "c/small": 1}
    assert set(holdout) == {"vits", "gan-vocoder", "vc", "codec:encodec"}
    assert holdout["gan-vocoder"] == 0  # 9 s of it in fold 0 against 6 s in fold 1
    for fold in (0, 1):
        train = xs.fold_training_set(items, [], fold, fold_of, holdout)
        assert all(fold_of[i.corpus] != fold for i in train)  # its own repositories never train
        held = {fam for fam, f in holdout.items() if f == fold}
        assert not {xs.family(i) for i in train} & held  # its held-out families, from any repository, neither
    base = [_item("base/x", "b1")]
    assert xs.fold_training_set(items, base, 0, fold_of, holdout)[:1] == base


def test_base_corpus_engines_of_a_held_out_family_leave_its_fold(xs: ModuleType) -> None:
    items = _corpus()
    fold_of, holdout = xs.assign_folds(items, 2)
    piper = replace(_item("base/x", "piper1", "spoof"), generator="piper")  # a VITS, without a family label
    espeak = replace(_item("base/x", "espeak1", "spoof"), generator="espeak")  # no public counterpart
    genuine = _item("base/x", "g1")
    assert xs.family(piper) == "vits"
    vits_fold = holdout["vits"]
    assert xs.fold_training_set(items, [piper, espeak, genuine], vits_fold, fold_of, holdout)[:2] == [espeak, genuine]
    assert xs.fold_training_set(items, [piper, espeak, genuine], 1 - vits_fold, fold_of, holdout)[:3] == \
        [piper, espeak, genuine]


def test_metrics_on_known_scores(xs: ModuleType) -> None:
    items = [_item("r/a", f"g{i}") for i in range(50)] + [_item("r/a", f"s{i}", "spoof", "vits") for i in range(10)] \
        + [_item("r/b", f"t{i}", "spoof", "vc") for i in range(10)]
    hops = 20
    scores = []
    for item in items:
        s = np.zeros((hops, 2), np.float32)
        if item.generator == "vits":
            s[:, 0] = 0.9  # caught from the first hop
        elif item.generator == "vc":
            s[:, 0] = np.r_[np.full(15, 0.1), np.full(5, 0.95)]  # caught late (1.5 s), high at the end
        else:
            s[:, 0] = 0.2 + 0.001 * int(item.item_id.split(":g")[1])
        scores.append(s)
    report = xs.metrics(items, scores, hop_s=0.1)
    assert report["pooled"]["spoof_eer"] == 0.0
    assert report["family"]["vits"]["flagged_within_1s"] == 1.0
    assert report["family"]["vc"]["flagged_within_1s"] == 0.0
    assert report["pooled"]["flagged_within_1s"] == 0.5
    assert report["repository"]["r/b"]["spoof_eer_within"] is None  # no genuine file in r/b
    assert report["pooled"]["codec_eer"] is None  # no neural-codec file


def test_score_only_run_scores_every_file_once(xs: ModuleType, tiny_model: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    items = _corpus()
    rng = np.random.default_rng(0)
    for item in items:
        path = tmp_path / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(int(item.duration_s * 16000))).astype(np.float32), 16000)
    write_manifest(tmp_path / "manifest.jsonl", items)
    work = tmp_path / "xs"
    assert xs.main(["--public", str(tmp_path / "manifest.jsonl"), "--folds", "2", "--model", str(tiny_model[0]),
                    "--work", str(work)]) == 0
    report = json.loads((work / "report.json").read_text())
    assert report["pooled"]["files"] == len(items)
    assert set(report["repository"]) == {"a/big", "b/mid", "c/small"}
    assert set(np.load(work / "scores.npz").files) == {i.item_id for i in items}
    assert list(read_manifest(tmp_path / "manifest.jsonl")) == items
