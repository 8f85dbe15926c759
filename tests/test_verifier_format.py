"""The verifier's file contract (streaming_models/runtime/verifier_format.py), its reader and runner
(runtime/verifier_onnx.py), the metadata its export writes, and the fusion rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from streaming_models.runtime.errors import BackendError, ModelFormatError
from streaming_models.runtime.fusion import (
    fuse_log_odds_mean,
    fuse_log_odds_mean_scalar,
    fused_p_spoof,
)
from streaming_models.runtime.verifier_format import VERIFIER_METADATA_KEY, VerifierMetadata
from streaming_models.runtime.verifier_onnx import OnnxVerifier

CPU = ["CPUExecutionProvider"]


def _meta(**changes: object) -> dict[str, object]:
    raw = json.loads(VerifierMetadata("v", window_s=4.0, max_window_s=30.0).to_json())
    raw.update(changes)
    return raw


def write_graph(path: Path, *, input_name: str = "audio", output_name: str = "logits", width: int = 2,
                metadata: dict[str, object] | None = None, input_rank: int = 2) -> Path:
    """A graph that is not a verifier but may look like one: mean of the window, repeated `width` times."""
    in_shape = ["batch", "samples"][:input_rank] if input_rank <= 2 else ["batch", "channels", "samples"]
    mean = helper.make_node("ReduceMean", [input_name], ["mean"], axes=[input_rank - 1], keepdims=1)
    repeat = helper.make_node("Tile", ["mean", "reps"], [output_name])
    reps = helper.make_tensor("reps", TensorProto.INT64, [input_rank], [1] * (input_rank - 1) + [width])
    out_shape = ["batch", width] if input_rank == 2 else ["batch", "channels", width]
    graph = helper.make_graph([mean, repeat], "fake", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)], [reps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if metadata is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = VERIFIER_METADATA_KEY, json.dumps(metadata)
    onnx.save(model, str(path))
    return path


def test_the_export_writes_the_metadata_the_daemon_reads(tiny_verifier: Path) -> None:
    verifier = OnnxVerifier(tiny_verifier, providers=CPU)
    meta = verifier.metadata
    assert (meta.model_id, meta.sample_rate_hz, meta.window_s, meta.heads) == ("tiny-verifier", 16000, 1.0,
                                                                                ("spoof", "codec"))
    assert meta.max_window_s == pytest.approx(3.0)  # 150 positions x 2 mel frames x 10 ms
    assert meta.extra["encoder_dims"]["width"] == 16
    probs = verifier.run(0.1 * np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32))
    assert probs.shape == (3, 2) and probs.dtype == np.float32 and np.all((probs > 0) & (probs < 1))


def test_the_export_stores_calibrated_thresholds(tmp_path: Path) -> None:
    import torch

    from streaming_models.verifier.model import Verifier, VerifierConfig, export_onnx
    from streaming_models.verifier.whisper_encoder import EncoderDims, WhisperEncoder

    torch.manual_seed(0)
    model = Verifier(WhisperEncoder(EncoderDims(width=8, heads=2, layers=1, max_positions=100)),
                     VerifierConfig(trainable_blocks=0, pool_hidden=4))
    meta = export_onnx(model, tmp_path / "v.onnx", 8000, thresholds={"spoof": 0.8}, extra={"run": "r1"})
    read = OnnxVerifier(tmp_path / "v.onnx", providers=CPU).metadata
    assert read == meta
    assert read.operating_thresholds == {"spoof": 0.8} and read.extra["run"] == "r1" and read.window_s == 0.5


def test_metadata_round_trips_and_refuses_what_it_cannot_use() -> None:
    meta = VerifierMetadata("v", window_s=4.0, max_window_s=30.0, operating_thresholds={"spoof": 0.9})
    assert VerifierMetadata.from_json(meta.to_json()) == meta
    assert meta.samples(4.0) == 64000
    bad = [
        (_meta(format="spoofwatch"), "format"),
        (_meta(format_version=2), "format_version 2"),
        (_meta(window_s=40.0), "window_s 40.0"),
        (_meta(heads=["codec", "spoof"]), "heads"),
        (_meta(sample_rate_hz=4000), "4000"),
        (_meta(operating_thresholds={"spoof": 2.0}), "probability"),
        ({k: v for k, v in _meta().items() if k != "max_window_s"}, "max_window_s"),
    ]
    for raw, needle in bad:
        with pytest.raises(ModelFormatError, match=needle):
            VerifierMetadata.from_json(json.dumps(raw))
    with pytest.raises(ModelFormatError, match="not JSON"):
        VerifierMetadata.from_json("{")


def test_the_reader_refuses_files_that_break_the_contract(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    good = _meta()
    assert OnnxVerifier(write_graph(tmp_path / "ok.onnx", metadata=good), providers=CPU).metadata.window_s == 4.0
    cases = [
        (write_graph(tmp_path / "nometa.onnx"), f"no '{VERIFIER_METADATA_KEY}' entry"),
        (tiny_model[0], "a streaming detector"),
        (write_graph(tmp_path / "name.onnx", input_name="wave", metadata=good), "one input 'audio'"),
        (write_graph(tmp_path / "rank.onnx", input_rank=3, metadata=good), r"float32 \[batch, samples\]"),
        (write_graph(tmp_path / "out.onnx", output_name="scores", metadata=good), "lacks the output 'logits'"),
        (write_graph(tmp_path / "width.onnx", width=3, metadata=good), r"float32 \[batch, 2\]"),
    ]
    for path, needle in cases:
        with pytest.raises(ModelFormatError, match=needle):
            OnnxVerifier(path, providers=CPU)
    with pytest.raises(BackendError, match="not found"):
        OnnxVerifier(tmp_path / "absent.onnx", providers=CPU)


def test_log_odds_mean_fusion() -> None:
    assert fuse_log_odds_mean_scalar(0.5, 0.5) == pytest.approx(0.5)
    assert fuse_log_odds_mean_scalar(0.9, 0.1) == pytest.approx(0.5)  # opposite evidence cancels
    assert fuse_log_odds_mean_scalar(0.8, 0.8) == pytest.approx(0.8)
    a, b = 0.97, 0.3
    odds = math.sqrt(a / (1 - a) * b / (1 - b))  # the geometric mean of the odds
    assert fuse_log_odds_mean_scalar(a, b) == pytest.approx(odds / (1 + odds))
    assert 0.0 < fuse_log_odds_mean_scalar(1.0, 1.0) < 1.0 and fuse_log_odds_mean_scalar(1.0, 0.0) == pytest.approx(0.5)
    assert fused_p_spoof("log_odds_mean", 0.42, None) == 0.42  # no verifier score yet: the streaming score
    assert fused_p_spoof("log_odds_mean", 0.9, 0.1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="log_odds_mean"):
        fused_p_spoof("max", 0.5, 0.5)


def test_the_daemons_scalar_fusion_is_the_offline_rule() -> None:
    """The daemon's per-hop fusion equals runtime/fusion.py's, which the cross-source study uses,
    down to the clip at 0 and 1."""
    grid = [0.0, 1e-9, 1e-7, 1e-6, 2e-6, 1e-3, 0.1, 0.3, 0.5, 0.77, 0.999, 1 - 1e-6, 1 - 1e-8, 1.0]
    offline = fuse_log_odds_mean(np.array(grid)[:, None], np.array(grid)[None, :])
    daemon = np.array([[fuse_log_odds_mean_scalar(a, b) for b in grid] for a in grid])
    np.testing.assert_allclose(daemon, offline, rtol=1e-12, atol=1e-15)
