from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streaming_models.runtime.backend import load_backend
from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.onnx_backend import OnnxBackend, choose_providers


def _audio(batch: int, hop: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((batch, hop))).astype(np.float32)


def test_onnx_backend_reads_metadata_and_returns_probabilities(tiny_model: tuple[Path, Path]) -> None:
    backend = load_backend("onnx", tiny_model[0], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    meta = backend.metadata
    assert (meta.model_id, meta.sample_rate_hz, meta.hop_samples) == ("tiny-gru", 16000, 1600)
    states = backend.initial_states(3)
    assert [s.shape for s in states] == [(3, 8)]
    probs, new_states = backend.run(_audio(3, 1600), states)
    assert probs.shape == (3, 2) and probs.dtype == np.float32
    assert np.all((probs > 0) & (probs < 1))
    assert not np.allclose(new_states[0], 0)  # the state moved
    probs_again, _ = backend.run(_audio(3, 1600), new_states)
    assert not np.allclose(probs, probs_again)  # and it matters


def test_torch_backend_matches_onnx(tiny_model: tuple[Path, Path]) -> None:
    pytest.importorskip("torch")
    onnx_backend = load_backend("onnx", tiny_model[0], providers=["CPUExecutionProvider"])
    torch_backend = load_backend("torch", tiny_model[1], device="cpu")
    assert torch_backend.metadata == onnx_backend.metadata
    s_onnx, s_torch = onnx_backend.initial_states(2), torch_backend.initial_states(2)
    for step in range(3):
        p_onnx, s_onnx = onnx_backend.run(_audio(2, 1600, step), s_onnx)
        p_torch, s_torch = torch_backend.run(_audio(2, 1600, step), s_torch)
        np.testing.assert_allclose(p_onnx, p_torch, atol=1e-5)


def test_wrong_shapes_fail_clearly(tiny_model: tuple[Path, Path]) -> None:
    backend = OnnxBackend(tiny_model[0], providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match=r"audio must be \[batch, 1600\]"):
        backend.run(_audio(1, 800), backend.initial_states(1))
    with pytest.raises(ValueError, match="state 'state_in'"):
        backend.run(_audio(2, 1600), backend.initial_states(1))


def test_model_without_metadata_is_rejected(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(tiny_model[0]))
    del graph.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(graph, str(bare))
    with pytest.raises(ModelFormatError, match="no 'spoofwatch'"):
        OnnxBackend(bare, providers=["CPUExecutionProvider"])


def test_missing_file_unknown_backend_and_providers() -> None:
    with pytest.raises(BackendError, match="not found"):
        OnnxBackend("/nonexistent/model.onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tensorflow", "x")
    with pytest.raises(BackendError, match="none of the providers"):
        choose_providers(["NoSuchExecutionProvider"])
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])[-1] == "CPUExecutionProvider"
