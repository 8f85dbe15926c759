"""Package data comes from the package (importlib.resources); a project's own files from the
working directory, never from wherever the source checkout happens to be."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.app import resolve_model_path
from daemon.console import static_file
from daemon.errors import ModelNotFoundError
from streaming_models.paths import resynthesis_artifacts_dir, shared_data_dir
from streaming_models.runtime.default_model import DEFAULT_MODEL, find_model, packaged_model_path

MAX_MODEL_BYTES = 5 * 1024 * 1024  # the default model lives in git


def test_the_default_model_ships_with_the_package_and_stays_small() -> None:
    model = packaged_model_path()
    assert model.is_file()
    assert model.stat().st_size <= MAX_MODEL_BYTES
    assert Path(*model.parts[-3:]) == Path(DEFAULT_MODEL)


def test_the_default_model_is_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(DEFAULT_MODEL) == packaged_model_path()
    assert find_model(DEFAULT_MODEL) == packaged_model_path()


def test_a_model_in_the_working_directory_comes_first(tmp_path: Path) -> None:
    own = tmp_path / DEFAULT_MODEL
    own.parent.mkdir(parents=True)
    own.write_bytes(b"not really a model")
    assert resolve_model_path(DEFAULT_MODEL, cwd=tmp_path) == own


def test_other_relative_paths_are_not_looked_up_in_the_checkout(tmp_path: Path) -> None:
    checkout_file = "configs/default.toml"
    assert Path(checkout_file).is_file()  # pytest runs in the checkout
    with pytest.raises(ModelNotFoundError, match=f"looked in {tmp_path}"):
        resolve_model_path(checkout_file, cwd=tmp_path)
    with pytest.raises(ModelNotFoundError):
        resolve_model_path(str(tmp_path / "absent.onnx"))


def test_the_console_page_is_package_data() -> None:
    assert b"console.js" in static_file("index.html")
    assert static_file("console.js")


def test_project_folders_are_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPOOFWATCH_SHARED_DATA", raising=False)
    assert resynthesis_artifacts_dir() == tmp_path / "artifacts" / "resynthesis"
    assert shared_data_dir() == tmp_path.parent / "shared" / "data"
    monkeypatch.setenv("SPOOFWATCH_SHARED_DATA", str(tmp_path / "elsewhere"))
    assert shared_data_dir() == tmp_path / "elsewhere"


def test_outside_a_checkout_the_project_files_are_reported_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from streaming_models.data.cli import main as data_main
    from streaming_models.resynthesis.plugins import ResynthesisUnavailable, make_codec_transform

    monkeypatch.chdir(tmp_path)
    assert data_main(["check", "--small"]) == 2
    assert "run from the spoofwatch checkout, or give --recipe FILE" in capsys.readouterr().err
    with pytest.raises(ResynthesisUnavailable, match="configs/resynthesis"):
        make_codec_transform("codec_comp6k")


def test_a_missing_packaged_model_says_where_it_should_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streaming_models.runtime import default_model

    monkeypatch.setattr(default_model, "FILE_NAME", "absent.onnx")
    with pytest.raises(ModelNotFoundError, match=f"looked in {tmp_path} and at .*default_model/absent.onnx"):
        resolve_model_path(DEFAULT_MODEL, cwd=tmp_path)
