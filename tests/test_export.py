from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from detector_checkpoint import write_checkpoint

from streaming_models import export
from streaming_models.model import load_checkpoint
from streaming_models.runtime.model_format import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    METADATA_KEY,
    ModelMetadata,
)
from streaming_models.runtime.onnx_backend import OnnxBackend


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("export")
    ckpt = write_checkpoint(folder / "ckpt.pt")
    out = folder / "model.onnx"
    assert export.main(["--checkpoint", str(ckpt), "--out", str(out)]) == 0
    return ckpt, out


def test_file_follows_the_model_format_contract(exported: tuple[Path, Path]) -> None:
    _, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    meta = ModelMetadata.from_json(props[METADATA_KEY])
    assert (meta.sample_rate_hz, meta.hop_samples, meta.heads) == (16000, 1600, ("spoof", "codec"))
    assert meta.label_policy == "by_objective"
    assert meta.corpus_hash == "0123456789abcdef"
    assert meta.operating_thresholds["spoof"] == 0.6
    assert json.loads(props[METADATA_KEY])["extra"]["threshold_spoof"] == 0.6  # stored where it always was
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert inputs[AUDIO_INPUT][1] == 1600 and outputs[LOGITS_OUTPUT][1] == 2
    for spec in meta.states:
        assert inputs[spec.input_name][1:] == list(spec.shape)
        assert outputs[spec.output_name][1:] == list(spec.shape)
    assert path.stat().st_size < 5_000_000


def test_onnx_matches_torch_over_a_stream_at_several_batch_sizes(exported: tuple[Path, Path]) -> None:
    ckpt, path = exported
    model, _ = load_checkpoint(str(ckpt))
    backend = OnnxBackend(path, providers=("CPUExecutionProvider",))
    for batch in (1, 5):
        audio = np.random.default_rng(batch).standard_normal((batch, 10 * 1600)).astype(np.float32) * 0.1
        states, torch_states = backend.initial_states(batch), model.initial_states(batch)
        for i in range(10):
            hop = np.ascontiguousarray(audio[:, i * 1600:(i + 1) * 1600])
            probs, states = backend.run(hop, states)
            with torch.no_grad():
                logits, torch_states = model(torch.from_numpy(hop), torch_states)
            assert np.abs(probs - torch.sigmoid(logits[:, 0]).numpy()).max() <= 1e-4
        for mine, theirs in zip(states, torch_states, strict=True):
            assert np.abs(mine - theirs.numpy()).max() <= 1e-4


def test_parity_check_catches_a_wrong_graph(exported: tuple[Path, Path]) -> None:
    ckpt, path = exported
    model, _ = load_checkpoint(str(ckpt))
    with torch.no_grad():
        model.head.bias += 1.0  # the file no longer matches this model
    assert export.parity_max_diff(model, path) > 0.5


@pytest.mark.parametrize("features", ["logpow", "lfcc"])
def test_a_low_band_model_exports_with_parity(features: str, tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", features=features, top_hz=4000.0)
    meta = export.export_checkpoint(ckpt, tmp_path / "model.onnx")  # raises if parity fails
    assert meta.extra["model_args"]["top_hz"] == 4000.0
    assert export.parity_max_diff(load_checkpoint(str(ckpt))[0], tmp_path / "model.onnx") <= 1e-4


def test_a_checkpoint_written_before_issue_24_exports_while_its_removed_options_were_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = torch.load(write_checkpoint(tmp_path / "ckpt.pt", features="lfcc"), weights_only=False)
    ckpt["model_args"].update(spoof_head="linear", cosine_scale=20.0, cosine_mid=0.55, aux_classes={}, cmn_frames=0)
    ckpt["config"] = {"max_steps": 30, "freq_mask_prob": 0.0, "spoof_reverb_prob": 0.0}  # as train.py stored it
    torch.save(ckpt, tmp_path / "old.pt")
    meta = export.export_checkpoint(tmp_path / "old.pt", tmp_path / "model.onnx")  # raises if parity fails
    assert "spoof_head" not in meta.extra["model_args"] and meta.extra["model_args"]["features"] == "lfcc"
    ckpt["model_args"]["cmn_frames"] = 25  # a model that used a removed option: refused, saying which
    torch.save(ckpt, tmp_path / "cmn.pt")
    assert export.main(["--checkpoint", str(tmp_path / "cmn.pt"), "--out", str(tmp_path / "cmn.onnx")]) == 1
    assert "uses cmn_frames = 25, an option removed in issue #24" in capsys.readouterr().err


def test_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        export.main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.onnx")])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert export.main(["--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "m.onnx")]) == 1


def test_metadata_json_is_plain(exported: tuple[Path, Path]) -> None:
    _, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    raw = json.loads(props[METADATA_KEY])
    assert raw["extra"]["features"] == "logpow"
    assert raw["states"][0]["input_name"] == "audio_ctx_in"


def test_torchscript_runs_in_the_daemon_torch_backend(exported: tuple[Path, Path], tmp_path: Path) -> None:
    from streaming_models.runtime.torch_backend import TorchBackend

    ckpt, onnx_path = exported
    meta = export.export_checkpoint(ckpt, tmp_path / "m.onnx", torchscript=tmp_path / "m.pt")
    torch_backend = TorchBackend(tmp_path / "m.pt", device="cpu")
    onnx_backend = OnnxBackend(onnx_path, providers=("CPUExecutionProvider",))
    assert torch_backend.metadata.to_json() == meta.to_json()
    audio = np.random.default_rng(3).standard_normal((4, 1600)).astype(np.float32) * 0.1
    a, sa = torch_backend.run(audio, torch_backend.initial_states(4))
    b, sb = onnx_backend.run(audio, onnx_backend.initial_states(4))
    assert np.abs(a - b).max() <= 1e-4
    assert all(np.abs(x - y).max() <= 1e-4 for x, y in zip(sa, sb, strict=True))
