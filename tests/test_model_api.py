from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from detector_checkpoint import write_exported_model

from streaming_models.api import DEFAULT_MODEL_PATH, load_detector


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("api")
    return write_exported_model(folder, "m.onnx")


def test_score_array_and_file_agree(model_path: Path, tmp_path: Path) -> None:
    detector = load_detector(model_path)
    audio = (0.1 * np.random.default_rng(0).standard_normal(8000 * 3)).astype(np.float32)
    scores = detector.score(audio, 8000)  # 3 s at 8 kHz, resampled to the model's 16 kHz
    assert len(scores.p_spoof) == 30 and scores.times_s[-1] == pytest.approx(3.0)
    assert ((scores.p_spoof >= 0) & (scores.p_spoof <= 1)).all()
    sf.write(tmp_path / "a.wav", audio, 8000, subtype="FLOAT")
    again = detector.score_file(tmp_path / "a.wav")
    np.testing.assert_allclose(again.p_codec, scores.p_codec, atol=1e-6)


def test_each_call_is_a_fresh_stream(model_path: Path) -> None:
    detector = load_detector(model_path)
    audio = (0.1 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32)
    np.testing.assert_array_equal(detector.score(audio, 16000).p_spoof, detector.score(audio, 16000).p_spoof)


def test_stereo_is_rejected(model_path: Path) -> None:
    with pytest.raises(ValueError, match="mono"):
        load_detector(model_path).score(np.zeros((100, 2), np.float32), 16000)


def test_packaged_default_model_loads() -> None:
    if not DEFAULT_MODEL_PATH.is_file():
        pytest.skip("no default model committed yet")
    assert load_detector().metadata.hop_samples > 0
