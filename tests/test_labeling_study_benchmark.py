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


def run_folder(parent: Path, name: str, file: str) -> Path:
    """A run folder holding one (placeholder) file: `model.onnx` or `best.pt`."""
    folder = parent / name
    folder.mkdir()
    (folder / file).write_bytes(b"placeholder")
    return folder


def test_an_exported_model_without_a_checkpoint_is_scored_as_it_is(
        study: tuple[ModuleType, list[tuple[str, ...]]], tmp_path: Path) -> None:
    module, calls = study
    reports = module.reports(run_folder(tmp_path, "shipped", "model.onnx"))
    assert [call[0] for call in calls] == ["evaluate"]  # nothing to export
    assert reports["dev-eval"] == {"label_policy": "codec_as_bonafide"} and reports["heldout"] is None


def test_a_checkpoint_newer_than_its_model_is_exported_first(
        study: tuple[ModuleType, list[tuple[str, ...]]], tmp_path: Path) -> None:
    module, calls = study
    module.reports(run_folder(tmp_path, "run", "best.pt"))
    assert [call[0] for call in calls] == ["export", "evaluate"]


def test_folders_with_neither_file_are_named_and_exit_2(
        study: tuple[ModuleType, list[tuple[str, ...]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module, _ = study
    assert module.main([str(tmp_path / "empty")]) == 2
    assert f"no best.pt or model.onnx in: {tmp_path / 'empty'}" in capsys.readouterr().err
