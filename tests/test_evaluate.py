from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from detector_checkpoint import write_exported_model
from synthetic_corpus import voice

from streaming_models import evaluate
from streaming_models.runtime.onnx_backend import OnnxBackend


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    return write_exported_model(folder)


@pytest.fixture(scope="module")
def labels_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev-eval style labels.csv: two corpora, mixed sample rates and lengths."""
    root = tmp_path_factory.mktemp("deveval")
    rng = np.random.default_rng(1)
    rows = ["path,label,codec,system,corpus"]
    for k in range(12):
        spoof, codec = k % 2 == 1, k % 3 == 0
        rate = 22050 if k % 4 == 0 else 16000
        audio = voice(rng, 0.6 + 0.35 * k, spoof, codec)
        if rate != 16000:
            audio = np.interp(np.arange(int(len(audio) * rate / 16000)) * 16000 / rate,
                              np.arange(len(audio)), audio).astype(np.float32)
        (root / f"c{k % 2}").mkdir(exist_ok=True)
        sf.write(root / f"c{k % 2}" / f"{k}.wav", audio, rate)
        rows.append(f"c{k % 2}/{k}.wav,{'spoof' if spoof else 'bonafide'},{'neural' if codec else 'none'},"
                    f"{'sys' + str(k % 3) if spoof else 'human'},corpus{k // 6}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_json_report_has_every_part(model_path: Path, labels_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--model", str(model_path), "--labels", str(labels_csv), "--json", "--batch", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 12
    assert report["hop_ms"] == 100.0
    for head in ("spoof", "codec"):
        entry = report["heads"][head]
        assert 0.0 <= entry["overall"]["eer"] <= 1.0 and entry["overall"]["min_dcf"] >= 0.0
        low, high = entry["overall"]["eer_ci95"]
        assert low <= entry["overall"]["eer"] <= high
        assert set(entry["after_s"]) == {"0.5", "1.0", "2.0", "4.0"}
        assert entry["detection"]["threshold"] == (0.6 if head == "spoof" else 0.7)  # from the metadata
        assert entry["detection"]["positive"]["n"] + entry["detection"]["negative"]["n"] == 12
    assert set(report["breakdown"]["corpus"]) == {"corpus0", "corpus1"}
    assert report["breakdown"]["system"]["human"]["n"] == 6
    assert set(report["breakdown"]["dataset"]) == {"c0", "c1"}  # the paths' top folders
    assert report["breakdown"]["system"]["human"]["spoof_eer_pooled"] is None  # no positives
    assert 0.0 <= report["breakdown"]["system"]["sys1"]["spoof_eer_pooled"] <= 1.0
    assert report["breakdown"]["codec"]["neural"]["neural_codec"] == 4
    assert report["genuine_resynthesized"]["n"] == 2  # k = 0, 6: bonafide and neural


def test_text_report_and_threshold_override(model_path: Path, labels_csv: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--model", str(model_path), "--labels", str(labels_csv),
                          "--threshold-spoof", "0.25"]) == 0
    text = capsys.readouterr().out
    assert "spoof threshold 0.250" in text and "by corpus" in text and "EER after" in text


def test_batching_across_files_does_not_change_scores(model_path: Path, labels_csv: Path) -> None:
    backend = OnnxBackend(model_path, providers=("CPUExecutionProvider",))
    items = evaluate.read_labels_csv(labels_csv, labels_csv.parent)
    one = evaluate.stream_scores(backend, items, batch_size=1)
    many = evaluate.stream_scores(backend, items, batch_size=7)
    for a, b in zip(one, many, strict=True):
        assert a.shape == b.shape and len(a) >= 5  # >= 0.5 s of audio: 5 hops or more
        assert np.abs(a - b).max() <= 1e-5


def test_manifest_labels_use_the_models_policy(model_path: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from synthetic_corpus import write_corpus

    manifest = write_corpus(tmp_path, per_class=3)
    assert evaluate.main(["--model", str(model_path), "--labels", str(manifest), "--split", "dev", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label_policy"] == "by_objective"
    assert report["files"] == 12  # 3 dev items of each (source, codec) pair


@pytest.mark.parametrize("content,needle", [
    ("path,label\nx.wav,spoof\n", "missing columns"),
    ("path,label,codec,system,corpus\nnope.wav,spoof,none,s,c\n", "not found"),
    ("path,label,codec,system,corpus\nnope.wav,fake,none,s,c\n", "label must be"),
])
def test_bad_labels_exit_with_a_message(model_path: Path, tmp_path: Path, content: str, needle: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "labels.csv").write_text(content)
    assert evaluate.main(["--model", str(model_path), "--labels", str(tmp_path / "labels.csv")]) == 2
    assert needle in capsys.readouterr().err
