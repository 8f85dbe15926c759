"""streaming_models.graft: members rebuilt from an exported ensemble reproduce its head; a fused model
takes one head from a checkpoint and the other from the ONNX file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from synthetic_corpus import write_corpus

from streaming_models import ensemble, graft, train
from streaming_models.export import export_checkpoint
from streaming_models.model import load_checkpoint


@pytest.fixture(scope="module")
def split_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a checkpoint: spoof from run 1, codec from run 2; an ONNX file: spoof from run 2, codec from run 1)."""
    root = tmp_path_factory.mktemp("graft")
    corpus = write_corpus(root, per_class=8)
    steps = root / "steps.toml"
    steps.write_text("max_steps = 6\neval_interval = 3\n")
    runs = []
    for seed, extra in ((1, ""), (2, '[model]\nfeatures = "lfcc"\ntop_hz = 4000.0\n')):
        recipe = root / f"seed{seed}.toml"
        recipe.write_text(f"seed = {seed}\n{extra}")
        out = root / f"run{seed}"
        assert train.main(["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(out), "--small",
                           "--config", str(steps), "--config", str(recipe)]) == 0
        runs.append(str(out / "best.pt"))
    ours, theirs = root / "ours.pt", root / "theirs.pt"
    assert ensemble.main(["--checkpoint", runs[0], "--checkpoint", runs[1], "--out", str(ours),
                          "--head", "spoof=0", "--head", "codec=1"]) == 0
    assert ensemble.main(["--checkpoint", runs[1], "--checkpoint", runs[0], "--out", str(theirs),
                          "--head", "spoof=0", "--head", "codec=1"]) == 0
    export_checkpoint(theirs, root / "theirs.onnx")
    return ours, root / "theirs.onnx"


@pytest.mark.slow
def test_members_rebuilt_from_onnx_reproduce_its_head(split_models: tuple[Path, Path]) -> None:
    _, onnx_path = split_models
    for index, column in ((0, 0), (1, 1)):  # member 0 feeds spoof, member 1 codec
        member = graft.members_from_onnx(onnx_path, [index])[0]
        assert graft.head_difference(member, onnx_path, column, column) < graft.PARITY_TOLERANCE


@pytest.mark.slow
def test_the_fused_model_takes_each_head_from_its_source_and_exports(split_models: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    ours, onnx_path = split_models
    out = tmp_path / "fused.pt"
    assert graft.main(["--checkpoint", str(ours), "--take-head", "spoof", "--onnx", str(onnx_path),
                       "--onnx-head", "codec", "--out", str(out)]) == 0
    fused, ckpt = load_checkpoint(str(out))
    assert ckpt["head_members"] == {"spoof": [0], "codec": [1]}
    _, ours_ckpt = load_checkpoint(str(ours))
    assert ckpt["thresholds"]["spoof"] == ours_ckpt["thresholds"]["spoof"]
    assert graft.head_difference(fused, onnx_path, 1, 1) < graft.PARITY_TOLERANCE  # codec: the ONNX file's
    ours_model, _ = load_checkpoint(str(ours))
    audio = 0.1 * torch.randn(2, 4 * fused.config.hop_samples, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mine = fused(audio, fused.initial_states(2))[0][..., 0]
        assert torch.allclose(mine, ours_model(audio, ours_model.initial_states(2))[0][..., 0], atol=1e-6)
    export_checkpoint(out, tmp_path / "fused.onnx")  # its own ONNX/PyTorch parity check


def test_the_same_head_twice_is_refused(split_models: tuple[Path, Path], tmp_path: Path) -> None:
    ours, onnx_path = split_models
    with pytest.raises(SystemExit):
        graft.main(["--checkpoint", str(ours), "--take-head", "spoof", "--onnx", str(onnx_path),
                    "--onnx-head", "spoof", "--out", str(tmp_path / "x.pt")])


@pytest.mark.slow
def test_an_any_of_head_keeps_its_groups_and_offsets_when_grafted(split_models: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    ours, onnx_path = split_models
    _, ours_ckpt = load_checkpoint(str(ours))
    run1, run2 = (m["source"] for m in ours_ckpt["members"])
    third = torch.load(run1, weights_only=False)  # run 1 nudged: the exporter would share identical weights
    third["model"] = {k: v + 1e-3 if v.is_floating_point() else v for k, v in third["model"].items()}
    run3 = str(tmp_path / "run3.pt")
    torch.save(third, run3)
    either = tmp_path / "either.pt"  # spoof: run 3's member or run 2's, whichever is surer; codec: run 1's
    assert ensemble.main(["--checkpoint", run1, "--checkpoint", run2, "--checkpoint", run3, "--out", str(either),
                          "--head", "spoof=2|1", "--head", "codec=0"]) == 0
    out = tmp_path / "fused.pt"
    assert graft.main(["--checkpoint", str(either), "--take-head", "spoof", "--onnx", str(onnx_path),
                       "--onnx-head", "codec", "--out", str(out)]) == 0
    fused, ckpt = load_checkpoint(str(out))
    either_model, either_ckpt = load_checkpoint(str(either))
    assert ckpt["head_members"] == {"spoof": [0, 1], "codec": [2]}
    assert ckpt["or_groups"] == {"spoof": [[0], [1]]}  # members 2 and 1 of `either`, renumbered in their order
    assert ckpt["or_offsets"] == either_ckpt["or_offsets"]
    audio = 0.1 * torch.randn(2, 4 * fused.config.hop_samples, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mine = fused(audio, fused.initial_states(2))[0][..., 0]
        assert torch.allclose(mine, either_model(audio, either_model.initial_states(2))[0][..., 0], atol=1e-6)
    export_checkpoint(out, tmp_path / "fused.onnx")  # its own ONNX/PyTorch parity check
    # the any-of head adds no unnamed initializer, so a later graft still finds each member's weights
    codec_member = graft.members_from_onnx(tmp_path / "fused.onnx", [2])[0]
    assert graft.head_difference(codec_member, tmp_path / "fused.onnx", 1, 1) < graft.PARITY_TOLERANCE
