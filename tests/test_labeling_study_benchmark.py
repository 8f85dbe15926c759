"""benchmarks/labeling_study.py: which run folders it scores, and what it runs for each."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_modules import load_benchmark


@pytest.fixture()
def study(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[ModuleType, list[tuple[str, ...]]]:
    """The module with `spoofwatch` replaced by a recorder, and one evaluation set that exists."""
    module = load_benchmark("labeling_study")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    monkeypatch.setattr(module, "SETS", {"dev-eval": labels, "heldout": tmp_path / "absent.csv"})
    calls: list[tuple[str, ...]] = []

    def fake_spoofwatch(*args: str) -> str:
        calls.append(args)
        return json.dumps({"label_policy": "codec_as_bonafide"})

    monkeypatch.setattr(module, "spoofwatch", fake_spoofwatch)
    return module, calls


def test_an_exported_model_without_a_checkpoint_is_scored_as_it_is(
        study: tuple[ModuleType, list[tuple[str, ...]]], tmp_path: Path) -> None:
    module, calls = study
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "model.onnx").write_bytes(b"onnx")
    reports = module.reports(shipped)
    assert [call[0] for call in calls] == ["evaluate"]  # nothing to export
    assert reports["dev-eval"] == {"label_policy": "codec_as_bonafide"} and reports["heldout"] is None


def test_a_checkpoint_newer_than_its_model_is_exported_first(
        study: tuple[ModuleType, list[tuple[str, ...]]], tmp_path: Path) -> None:
    module, calls = study
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"checkpoint")
    module.reports(run)
    assert [call[0] for call in calls] == ["export", "evaluate"]


def test_folders_with_neither_file_are_named_and_exit_2(
        study: tuple[ModuleType, list[tuple[str, ...]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module, _ = study
    assert module.main([str(tmp_path / "empty")]) == 2
    assert f"no best.pt or model.onnx in: {tmp_path / 'empty'}" in capsys.readouterr().err
