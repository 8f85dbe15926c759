"""benchmarks/decisions.py: the daemon's tracker replayed over a model's scores on labelled files."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from benchmark_modules import load_benchmark
from detector_checkpoint import write_exported_model
from synthetic_corpus import write_corpus

from daemon.config import DecisionConfig


@pytest.fixture(scope="module")
def decisions() -> ModuleType:
    return load_benchmark("decisions")


def test_replay_follows_the_trackers_hysteresis(decisions: ModuleType) -> None:
    config = DecisionConfig(window_hops=1, min_hops=1, spoof_enter=0.7, spoof_exit=0.4, thresholds="config")
    scores = np.array([[0.1, 0.0], [0.8, 0.0], [0.5, 0.0], [0.3, 0.0], [0.2, 0.9]])
    assert decisions.replay(config, {}, scores) == ["bonafide", "spoof", "spoof", "bonafide", "codec"]
    early = {"spoof": (0.05,)}  # an early threshold holds for the first hop only
    assert decisions.replay(config, early, scores)[:2] == ["spoof", "spoof"]


def test_rows_per_class_on_an_exported_model(decisions: ModuleType, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model = write_exported_model(tmp_path)
    manifest = write_corpus(tmp_path, per_class=3)
    capsys.readouterr()
    # Thresholds of 0 call every file spoof from the first decision on; 1.0 never does.
    always = ["--set", "decision.thresholds=config", "--set", "decision.spoof_enter=0",
              "--set", "decision.spoof_exit=0", "--set", "decision.min_hops=1"]
    assert decisions.main(["--model", str(model), "--labels", str(manifest), "--split", "dev", *always]) == 0
    rows = {line[:24].strip(): line[24:].split() for line in capsys.readouterr().out.splitlines()[3:]}
    assert set(rows) == {"spoof", "bonafide", "bonafide, neural codec"}
    assert rows["spoof"][:4] == ["6", "100.0%", "100.0%", "100.0%"]  # n, ever, at end, within 1 s
    assert rows["bonafide"][:3] == ["3", "100.0%", "100.0%"]
    never = ["--set", "decision.thresholds=config", "--set", "decision.spoof_enter=1", "--set", "decision.spoof_exit=1"]
    assert decisions.main(["--model", str(model), "--labels", str(manifest), "--split", "dev", *never]) == 0
    rows = {line[:24].strip(): line[24:].split() for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows["spoof"][1:4] == ["0.0%", "0.0%", "0.0%"] and rows["spoof"][4] == "-"


def test_bad_input_is_a_message_and_exit_2(decisions: ModuleType, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert decisions.main(["--model", str(tmp_path / "missing.onnx"), "--labels", str(tmp_path / "x.csv")]) == 2
    assert "decisions:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        decisions.main(["--model", "m.onnx", "--labels", "l.csv", "--set", "decision.min_hops"])
