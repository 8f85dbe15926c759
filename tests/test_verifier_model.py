"""The verifier model (streaming_models/verifier/model.py) on a tiny Whisper-shaped encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ct2_files import write_tiny_whisper

from streaming_models.verifier.model import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    Verifier,
    VerifierConfig,
    build_verifier,
    export_onnx,
    load_checkpoint,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_whisper(tmp_path_factory.mktemp("tiny"), width=32, heads=2, layers=3)


def test_only_the_top_blocks_and_the_head_learn(weights: Path) -> None:
    model = build_verifier(VerifierConfig(trainable_blocks=1), weights)
    logits = model(0.1 * torch.randn(3, 16000))
    assert logits.shape == (3, 2)
    logits.sum().backward()
    encoder_params, head_params = model.trainable_parameters()
    trained = {id(p) for p in encoder_params}
    assert trained == {id(p) for p in (*model.encoder.blocks[2].parameters(), *model.encoder.final_norm.parameters())}
    for name, param in model.encoder.named_parameters():
        assert (param.grad is not None) == (id(param) in trained), name
    assert head_params and all(p.grad is not None for p in head_params)
    assert model.front_end.basis.grad is None  # buffers, not parameters


def test_a_frozen_encoder_trains_the_head_alone(weights: Path) -> None:
    model = build_verifier(VerifierConfig(trainable_blocks=0), weights)
    encoder_params, head_params = model.trainable_parameters()
    assert encoder_params == [] and head_params
    with pytest.raises(ValueError, match="trainable_blocks must be within 0..3"):
        build_verifier(VerifierConfig(trainable_blocks=4), weights)


def test_checkpoint_round_trip_needs_no_weights_file(weights: Path, tmp_path: Path) -> None:
    model = build_verifier(VerifierConfig(trainable_blocks=2, pool_hidden=16), weights).eval()
    with torch.no_grad():
        model.layer_mix.add_(torch.arange(4.0))  # not the initial values
    save_checkpoint(tmp_path / "ckpt.pt", model, {"train": {"steps": 3}})
    loaded, ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["train"] == {"steps": 3} and loaded.config == model.config
    audio = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        assert torch.equal(loaded(audio), model(audio))


def test_onnx_export_matches_torch_at_any_batch_and_window(weights: Path, tmp_path: Path) -> None:
    model: Verifier = build_verifier(VerifierConfig(), weights).eval()
    path = tmp_path / "verifier.onnx"
    export_onnx(model, path, window_samples=16000)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [AUDIO_INPUT]
    assert [o.name for o in session.get_outputs()] == [LOGITS_OUTPUT]
    rng = np.random.default_rng(0)
    for batch, samples in ((1, 16000), (5, 16000), (3, 40000), (2, 9600)):
        audio = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(audio)).numpy()
        (got,) = session.run(None, {AUDIO_INPUT: audio})
        assert got.shape == (batch, 2)
        assert np.abs(got - expected).max() < 1e-4
