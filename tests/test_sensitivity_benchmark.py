"""benchmarks/sensitivity.py: the same files scored again after one change each."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf
from benchmark_modules import load_benchmark
from detector_checkpoint import write_exported_model
from synthetic_corpus import write_corpus

from streaming_models import evaluate
from streaming_models.evaluate import EvalItem
from streaming_models.runtime.onnx_backend import OnnxBackend

RATE = 16000


@pytest.fixture(scope="module")
def sensitivity() -> ModuleType:
    return load_benchmark("sensitivity")


def tone(seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def test_trim_keeps_the_sound_between_the_silences(sensitivity: ModuleType) -> None:
    quiet = np.zeros(RATE // 2, np.float32) + 1e-6
    audio = np.concatenate([quiet, tone(1.0), quiet])
    trimmed = sensitivity.trim_silence(audio, RATE)
    assert len(trimmed) == RATE  # 0.5 s is a whole number of 20 ms frames on both sides
    np.testing.assert_array_equal(trimmed, tone(1.0))


def test_gate_drops_silent_hops_knowing_only_the_past(sensitivity: ModuleType) -> None:
    hop = RATE // 10
    digital_silence = np.zeros(hop * 3, np.float32)
    murmur = np.full(hop * 2, 0.001, np.float32)  # -60 dBFS: below the floor
    hum = np.full(hop * 2, 0.003, np.float32)  # about -50 dBFS: passes until something louder came
    loud = 3 * tone(0.5)  # about -4 dBFS
    audio = np.concatenate([digital_silence, murmur, hum, loud, hum, tone(0.3)])
    gated = sensitivity.gate_silence(audio, RATE)
    # the hum before the loud tone was the loudest so far and stays; after it, it is 46 dB down
    np.testing.assert_array_equal(gated, np.concatenate([hum, loud, tone(0.3)]))
    silent = np.zeros(RATE, np.float32)
    np.testing.assert_array_equal(sensitivity.gate_silence(silent, RATE), silent)  # nothing to keep
    # at the edges only: the pause between the tones stays, the silences before and after go
    np.testing.assert_array_equal(sensitivity.gate_edges(audio, RATE), np.concatenate([hum, loud, hum, tone(0.3)]))
    np.testing.assert_array_equal(sensitivity.gate_edges(silent, RATE), silent)


def test_a_change_is_applied_at_16k_and_repeats_per_file(sensitivity: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0), RATE)
    item = EvalItem(path, 0, 0, "human", "none", "test")
    original, rate = sensitivity.loader_for("none")(item)
    assert rate == RATE
    quieter, _ = sensitivity.loader_for("gain@-6dB")(item)
    np.testing.assert_allclose(quieter, original * 10 ** (-6 / 20), atol=1e-6)
    noisy = sensitivity.loader_for("noise-white@20dB")
    first, second = noisy(item)[0], noisy(item)[0]
    np.testing.assert_array_equal(first, second)
    assert 0 < np.abs(first - original).max()


def test_the_unchanged_row_matches_evaluate(sensitivity: ModuleType, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    model = write_exported_model(tmp_path)
    manifest = write_corpus(tmp_path, per_class=3)
    capsys.readouterr()
    assert sensitivity.main(["--model", str(model), "--labels", str(manifest), "--change", "none",
                             "--change", "noise-white@10dB"]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "change" not in line}
    assert set(rows) == {"none", "noise-white@10dB"}
    backend = OnnxBackend(model, providers=("CPUExecutionProvider",))
    items = evaluate.load_items(manifest, None, backend.metadata.label_policy, None)
    report = evaluate.summarize(items, evaluate.stream_scores(backend, items, 8), 0.1, {"spoof": 0.5, "codec": 0.5})
    assert rows["none"][0].strip() == f"{100 * report['heads']['spoof']['overall']['eer']:.1f} %"


def test_an_unknown_change_is_a_message_and_exit_2(sensitivity: ModuleType, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert sensitivity.main(["--model", "m.onnx", "--labels", str(tmp_path / "l.csv"), "--change", "warp@9"]) == 2
    assert "sensitivity: unknown transform 'warp@9'" in capsys.readouterr().err


def test_files_of_one_class_are_a_message_and_exit_2(sensitivity: ModuleType, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    sf.write(tmp_path / "a.wav", tone(1.0), RATE)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,codec,system,corpus\na.wav,bonafide,none,human,test\n")
    model = write_exported_model(tmp_path)
    assert sensitivity.main(["--model", str(model), "--labels", str(labels), "--change", "none"]) == 2
    assert "needs both spoof and bona fide files" in capsys.readouterr().err
