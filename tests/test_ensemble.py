"""Ensembles: the fused model streams like its members, fuses their logits, and exports to one file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from synthetic_corpus import write_corpus

from streaming_models import ensemble, train
from streaming_models.api import Detector
from streaming_models.data.manifest import read_manifest
from streaming_models.export import export_checkpoint
from streaming_models.metrics import threshold_at_false_positive_rate
from streaming_models.model import DetectorEnsemble, ModelConfig, StreamingDetector, load_checkpoint
from streaming_models.runtime.model_format import METADATA_KEY, ModelMetadata
from streaming_models.training_data import load_clips


def _member(seed: int, **kwargs: object) -> StreamingDetector:
    torch.manual_seed(seed)
    model = StreamingDetector(ModelConfig(conv_channels=16, gru_hidden=24, **kwargs))  # type: ignore[arg-type]
    with torch.no_grad():
        model.frontend.fit_normalization(0.1 * torch.randn(2, 160 + 8000))
    return model.eval()


@pytest.mark.parametrize("second", [{"features": "lfcc"},
                                    {"features": "lfcc", "top_hz": 4000.0}])
def test_ensemble_mean_of_members_and_streams_hop_by_hop(second: dict[str, object]) -> None:
    members = [_member(1), _member(2, **second)]
    fused = DetectorEnsemble(members).eval()
    hop = fused.config.hop_samples
    audio = 0.1 * torch.randn(2, 6 * hop, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole, _ = fused(audio, fused.initial_states(2))
        expected = torch.stack([m(audio, m.initial_states(2))[0] for m in members]).mean(0)
        assert torch.allclose(whole, expected, atol=1e-6)
        states, per_hop = fused.initial_states(2), []
        for i in range(6):
            logits, states = fused(audio[:, i * hop:(i + 1) * hop], states)
            per_hop.append(logits)
    assert (torch.cat(per_hop, 1) - whole).abs().max() <= 1e-4
    # one STFT (the same window) serves both members, so one audio context does too
    assert list(fused.state_shapes())[:2] == ["audio_ctx", "m0_conv0_ctx"] and "m1_gru_h" in fused.state_shapes()
    assert "m1_audio_ctx" not in fused.state_shapes()


def test_members_with_different_stfts_keep_their_own() -> None:
    members = [_member(1, features="lfcc"), _member(2, features="lfcc", window_samples=480)]
    fused = DetectorEnsemble(members).eval()
    assert not fused.shared_stft
    assert fused.state_shapes()["m0_audio_ctx"] == (160,) and fused.state_shapes()["m1_audio_ctx"] == (320,)
    hop = fused.config.hop_samples
    audio = 0.1 * torch.randn(2, 4 * hop, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        whole, _ = fused(audio, fused.initial_states(2))
        expected = torch.stack([m(audio, m.initial_states(2))[0] for m in members]).mean(0)
        states, per_hop = fused.initial_states(2), []
        for i in range(4):
            logits, states = fused(audio[:, i * hop:(i + 1) * hop], states)
            per_hop.append(logits)
    assert torch.allclose(whole, expected, atol=1e-6)
    assert (torch.cat(per_hop, 1) - whole).abs().max() <= 1e-4


def test_a_low_band_member_reads_the_shared_spectrum_as_its_own() -> None:
    low = _member(2, features="lfcc", top_hz=4000.0)
    full = _member(1, features="lfcc")
    fused = DetectorEnsemble([low, full]).eval()  # the widest member need not come first
    assert fused.shared_stft and fused.widest == 1
    audio = 0.1 * torch.randn(3, 2 * 1600 + 160, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        shared = low.frontend.from_spectrum(full.frontend.spectrum(audio), full.frontend.bins)
        assert torch.allclose(shared, low.frontend(audio), atol=1e-5)
        with pytest.raises(ValueError, match="needs"):
            full.frontend.from_spectrum(low.frontend.spectrum(audio), low.frontend.bins)


def test_each_head_can_come_from_its_own_members() -> None:
    members = [_member(1), _member(2, features="lfcc", top_hz=4000.0), _member(3)]
    fused = DetectorEnsemble(members, {"spoof": (1,), "codec": (0, 2)}).eval()
    hop = fused.config.hop_samples
    audio = 0.1 * torch.randn(2, 5 * hop, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole, _ = fused(audio, fused.initial_states(2))
        own = [m(audio, m.initial_states(2))[0] for m in members]
        states, per_hop = fused.initial_states(2), []
        for i in range(5):
            logits, states = fused(audio[:, i * hop:(i + 1) * hop], states)
            per_hop.append(logits)
    assert torch.allclose(whole[..., 0], own[1][..., 0], atol=1e-6)
    assert torch.allclose(whole[..., 1], (own[0][..., 1] + own[2][..., 1]) / 2, atol=1e-6)
    assert (torch.cat(per_hop, 1) - whole).abs().max() <= 1e-4
    assert fused.head_members == {"spoof": (1,), "codec": (0, 2)}


def test_any_of_groups_take_the_larger_calibrated_logit_hop_by_hop() -> None:
    members = [_member(1), _member(2), _member(3)]
    fused = DetectorEnsemble(members, or_groups={"spoof": ((0, 1), (2,))}, or_offsets={"spoof": (0.3, -0.2)}).eval()
    assert fused.head_members == {"spoof": (0, 1, 2), "codec": (0, 1, 2)}
    hop = fused.config.hop_samples
    audio = 0.1 * torch.randn(2, 5 * hop, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        whole, _ = fused(audio, fused.initial_states(2))
        own = [m(audio, m.initial_states(2))[0] for m in members]
        states, per_hop = fused.initial_states(2), []
        for i in range(5):
            logits, states = fused(audio[:, i * hop:(i + 1) * hop], states)
            per_hop.append(logits)
    group = (own[0][..., 0] + own[1][..., 0]) / 2 - 0.3
    specialist = own[2][..., 0] + 0.2
    assert torch.allclose(whole[..., 0], torch.maximum(group, specialist), atol=1e-6)
    for offsets, winner in (((-10.0, 10.0), group + 0.3 + 10.0), ((10.0, -10.0), specialist - 0.2 + 10.0)):
        either = DetectorEnsemble(members, or_groups={"spoof": ((0, 1), (2,))}, or_offsets={"spoof": offsets}).eval()
        with torch.no_grad():
            assert torch.allclose(either(audio, either.initial_states(2))[0][..., 0], winner, atol=1e-5)
    assert torch.allclose(whole[..., 1], sum(o[..., 1] for o in own) / 3, atol=1e-6)  # codec stays the mean
    assert (torch.cat(per_hop, 1) - whole).abs().max() <= 1e-4


@pytest.mark.parametrize("groups,offsets,needle", [
    ({"spoof": ((0, 1),)}, {}, "two or more"),
    ({"spoof": ((0,), ())}, {}, "two or more"),
    ({"spoof": ((0, 1), (1,))}, {}, "one group only"),
    ({"spoof": ((0,), (1,))}, {"spoof": (0.0,)}, "2 groups but 1 offsets"),
    ({"speaker": ((0,), (1,))}, {}, "unknown head"),
    ({"spoof": ((0,), (1,))}, {"codec": (0.0, 0.0)}, "without or_groups"),
])
def test_an_any_of_fusion_that_cannot_work_is_refused(groups: dict[str, tuple[tuple[int, ...], ...]],
                                                      offsets: dict[str, tuple[float, ...]], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        DetectorEnsemble([_member(1), _member(2)], or_groups=groups, or_offsets=offsets)
    with pytest.raises(ValueError, match="not its or_groups' members"):
        DetectorEnsemble([_member(1), _member(2)], {"spoof": (0,)}, or_groups={"spoof": ((0,), (1,))})


def test_head_choices_parse_groups() -> None:
    assert ensemble.parse_head_choices(["spoof=0,1|2", "codec=3"]) == {"spoof": ((0, 1), (2,)), "codec": ((3,),)}
    with pytest.raises(ValueError, match="NAME=INDEX"):
        ensemble.parse_head_choices(["spoof=0||1"])


@pytest.mark.parametrize("choice,needle", [
    ({"speaker": (0,)}, "unknown head"),
    ({"spoof": (2,)}, "0..1"),
    ({"spoof": ()}, "0..1"),
    ({"spoof": (0, 0)}, "distinct"),
    ({"spoof": (0,), "codec": (0,)}, "feed no head"),
])
def test_a_head_choice_that_cannot_work_is_refused(choice: dict[str, tuple[int, ...]], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        DetectorEnsemble([_member(1), _member(2)], choice)


def test_members_must_agree_on_the_hop() -> None:
    with pytest.raises(ValueError, match="disagree"):
        DetectorEnsemble([_member(1), _member(2, hop_samples=3200)])
    with pytest.raises(ValueError, match="at least two"):
        DetectorEnsemble([_member(1)])


def test_only_what_every_member_left_out_stays_out_of_the_dev_split() -> None:
    def ckpt(families: list[str], generators: list[str]) -> dict[str, object]:
        return {"config": {"exclude_codec_families": families, "exclude_generators": generators}}

    # a recipe without the rule-based synthesizers fused with one that has them: the ensemble knows them
    assert ensemble.shared_exclusions([ckpt([], []), ckpt([], ["espeak", "flite"])]) == ([], [])
    # a leave-one-out study stays one when all members left the same family out
    assert ensemble.shared_exclusions([ckpt(["lyra"], ["espeak", "flite"]), ckpt(["lyra"], ["flite"])]) == (
        ["lyra"], ["flite"])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("ensemble")
    corpus = write_corpus(root, per_class=8)
    steps = root / "steps.toml"
    steps.write_text("max_steps = 6\neval_interval = 3\n")
    runs = []
    for seed in (1, 2):
        seed_file = root / f"seed{seed}.toml"
        seed_file.write_text(f"seed = {seed}\n")
        out = root / f"run{seed}"
        assert train.main(["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(out), "--small",
                           "--config", str(steps), "--config", str(seed_file)]) == 0
        runs.append(out / "best.pt")
    return corpus, runs[0], runs[1]


@pytest.mark.slow
def test_fused_checkpoint_exports_to_one_onnx_file(two_runs: tuple[Path, Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, first, second = two_runs
    out = tmp_path / "fused.pt"
    assert ensemble.main(["--checkpoint", str(first), "--checkpoint", str(second), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["dev_metrics"]) == {str(first), str(second), "ensemble"}
    model, ckpt = load_checkpoint(str(out))
    assert isinstance(model, DetectorEnsemble) and len(model.members) == 2
    assert set(ckpt["thresholds"]) == {"spoof", "codec"} and ckpt["dev_items"] > 0
    onnx_path = tmp_path / "fused.onnx"
    meta = export_checkpoint(out, onnx_path)  # raises if ONNX and PyTorch differ by more than 1e-4
    assert meta.model_id.startswith(f"spoofwatch-{ckpt['members'][0]['model_args']['features']}x2-")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    stored = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    # the members share one STFT, hence one audio context
    assert len(stored.states) == 2 * len(StreamingDetector(ModelConfig(**ckpt["members"][0]["model_args"]))
                                         .state_shapes()) - 1
    assert stored.operating_thresholds["spoof"] == pytest.approx(ckpt["thresholds"]["spoof"])
    scores = Detector(onnx_path).score(0.1 * np.sin(np.arange(16000, dtype=np.float32) * 0.05), 16000)
    assert scores.p_spoof.shape == (10,) and np.all((scores.p_spoof >= 0) & (scores.p_spoof <= 1))


@pytest.mark.slow
def test_members_of_different_policies_or_corpora_are_refused(two_runs: tuple[Path, Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    corpus, first, second = two_runs
    other = torch.load(second, weights_only=False)
    other["policy"] = "by_objective"
    torch.save(other, tmp_path / "other_policy.pt")
    args = ["--checkpoint", str(first), "--out", str(tmp_path / "x.pt")]
    assert ensemble.main([*args, "--checkpoint", str(tmp_path / "other_policy.pt")]) == 2
    assert "label policy" in capsys.readouterr().err
    changed = tmp_path / "changed.jsonl"
    changed.write_text(corpus.read_text() + "\n")
    assert ensemble.main([*args, "--checkpoint", str(second), "--manifest", str(changed)]) == 2
    assert "not the corpus the members trained on" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_a_head_taken_from_one_member_survives_checkpoint_and_export(
        two_runs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, first, second = two_runs
    out = tmp_path / "split.pt"
    assert ensemble.main(["--checkpoint", str(first), "--checkpoint", str(second), "--out", str(out),
                          "--head", "spoof=0", "--head", "codec=1"]) == 0
    capsys.readouterr()
    model, ckpt = load_checkpoint(str(out))
    assert isinstance(model, DetectorEnsemble) and ckpt["head_members"] == {"spoof": [0], "codec": [1]}
    audio = 0.1 * torch.randn(1, 4 * model.config.hop_samples, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fused, _ = model(audio, model.initial_states(1))
        spoof_member, codec_member = (load_checkpoint(str(p))[0] for p in (first, second))
        assert torch.allclose(fused[..., 0], spoof_member(audio, spoof_member.initial_states(1))[0][..., 0], atol=1e-6)
        assert torch.allclose(fused[..., 1], codec_member(audio, codec_member.initial_states(1))[0][..., 1], atol=1e-6)
    meta = export_checkpoint(out, tmp_path / "split.onnx")  # raises if ONNX and PyTorch differ by more than 1e-4
    assert meta.extra["head_members"] == {"spoof": [0], "codec": [1]}


@pytest.mark.slow
def test_an_any_of_head_is_calibrated_per_group_on_the_dev_split_and_exports(
        two_runs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus, first, second = two_runs
    out = tmp_path / "or.pt"
    assert ensemble.main(["--checkpoint", str(first), "--checkpoint", str(second), "--out", str(out),
                          "--head", "spoof=0|1"]) == 0
    capsys.readouterr()
    model, ckpt = load_checkpoint(str(out))
    assert isinstance(model, DetectorEnsemble) and ckpt["or_groups"] == {"spoof": [[0], [1]]}
    # each group's offset: the logit of the peak score flagging operating_fpr of the dev negatives, by that member alone
    config = ckpt["config"]
    dev_items = [i for i in read_manifest(corpus) if i.split == "dev"]
    dev = load_clips(corpus, dev_items, ckpt["policy"], model.config.sample_rate_hz, "dev")
    negatives = train.head_labels(dev, "spoof") == 0
    for member_path, offset in zip((first, second), ckpt["or_offsets"]["spoof"], strict=True):
        member, _ = load_checkpoint(str(member_path))
        probs = train.dev_scores(member, dev, config["dev_seconds"], peak=True)[:, 0]
        threshold = threshold_at_false_positive_rate(probs[negatives], config["operating_fpr"])
        assert offset == pytest.approx(float(np.log(threshold / (1 - threshold))), abs=1e-5)
    assert model.or_offsets["spoof"] == pytest.approx(tuple(ckpt["or_offsets"]["spoof"]))
    meta = export_checkpoint(out, tmp_path / "or.onnx")  # raises if ONNX and PyTorch differ by more than 1e-4
    assert meta.extra["or_groups"] == {"spoof": [[0], [1]]}
    assert meta.extra["or_offsets"]["spoof"] == pytest.approx(ckpt["or_offsets"]["spoof"])


@pytest.mark.slow
@pytest.mark.parametrize("heads,needle", [
    (["spoof"], "NAME=INDEX"),
    (["spoof=x"], "NAME=INDEX"),
    (["spoof=0", "spoof=1"], "given once"),
    (["spoof=0", "codec=0"], "feed no head"),
])
def test_bad_head_choices_exit_with_a_message(two_runs: tuple[Path, Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], heads: list[str], needle: str) -> None:
    _, first, second = two_runs
    out = tmp_path / "x.pt"
    args = ["--checkpoint", str(first), "--checkpoint", str(second), "--out", str(out)]
    assert ensemble.main([*args, *(f"--head={h}" for h in heads)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()
