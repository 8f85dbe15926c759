from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_corpus import write_corpus

from streaming_models import train
from streaming_models.audio_io import load_audio
from streaming_models.data.manifest import read_manifest, write_manifest
from streaming_models.export import export_checkpoint, parity_max_diff
from streaming_models.model import ModelConfig, load_checkpoint


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), per_class=10)


def _steps(tmp_path: Path, steps: int, freq_mask_prob: float = 0.0) -> Path:
    path = tmp_path / f"steps{steps}-mask{freq_mask_prob}.toml"
    path.write_text(f"max_steps = {steps}\neval_interval = 4\nfreq_mask_prob = {freq_mask_prob}\n")
    return path


@pytest.mark.slow
def test_small_recipe_learns_and_checkpoints_describe_themselves(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train.main(["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(out),
                       "--small"]) == 0
    _, ckpt = load_checkpoint(str(out / "best.pt"))
    assert ckpt["policy"] == "codec_as_bonafide"
    assert ckpt["model_args"]["conv_channels"] == 32  # from configs/train/small.toml
    assert ckpt["config"]["max_steps"] == 30
    assert set(ckpt["thresholds"]) == {"spoof", "codec"}
    # The synthetic classes differ by a 6 kHz noise band and a 4 kHz band limit: easy, but only if
    # labels, crops, loss and the streaming forward are wired right.
    assert ckpt["dev_metrics"]["spoof_eer"] < 0.2
    assert ckpt["dev_metrics"]["codec_eer"] < 0.2
    assert (out / "ckpt.pt").is_file()


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(corpus: Path, tmp_path: Path) -> None:
    common = ["--manifest", str(corpus), "--policy", "by_objective", "--small"]
    assert train.main([*common, "--out", str(tmp_path / "straight"), "--config", str(_steps(tmp_path, 8))]) == 0
    resumed = tmp_path / "resumed"
    assert train.main([*common, "--out", str(resumed), "--config", str(_steps(tmp_path, 4))]) == 0
    assert train.main([*common, "--out", str(resumed), "--config", str(_steps(tmp_path, 8)), "--resume"]) == 0
    a = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=False)
    b = torch.load(resumed / "ckpt.pt", weights_only=False)
    assert a["step"] == b["step"] == 8
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_adaptive_weights_favour_the_families_with_the_higher_running_loss() -> None:
    factors = train.adaptive_generator_weights({"espeak": 0.1, "hifigan": 0.6, "human": 0.3}, 2.0, {"espeak": 0.5})
    assert factors["hifigan"] / factors["human"] == pytest.approx(math.exp(2.0 * 0.3))
    assert factors["espeak"] / factors["hifigan"] == pytest.approx(0.5 * math.exp(2.0 * -0.5))  # recipe weight kept
    assert max(factors.values()) == 1.0  # scaled from the highest loss down: no overflow
    assert train.adaptive_generator_weights({"a": 0.1, "b": 0.6}, 0.0, {}) == {"a": 1.0, "b": 1.0}


@pytest.mark.slow
def test_adaptive_sampling_changes_the_mix_and_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    two_families = corpus.parent / "two_families.jsonl"  # half the spoof items from a second generator family
    items = list(read_manifest(corpus))
    write_manifest(two_families, [dataclasses.replace(i, generator="buzz2") if i.source == "spoof" and n % 2 else i
                                  for n, i in enumerate(items)])
    adaptive = tmp_path / "adaptive.toml"
    adaptive.write_text("adaptive_eta = 50.0\nadaptive_interval = 2\n")  # strong, so 8 steps see it
    common = ["--manifest", str(two_families), "--policy", "codec_as_bonafide", "--small"]
    assert train.main([*common, "--out", str(tmp_path / "plain"), "--config", str(_steps(tmp_path, 8))]) == 0
    assert train.main([*common, "--out", str(tmp_path / "straight"), "--config", str(_steps(tmp_path, 8)),
                       "--config", str(adaptive)]) == 0
    resumed = tmp_path / "resumed"
    assert train.main([*common, "--out", str(resumed), "--config", str(_steps(tmp_path, 4)),
                       "--config", str(adaptive)]) == 0
    assert train.main([*common, "--out", str(resumed), "--config", str(_steps(tmp_path, 8)),
                       "--config", str(adaptive), "--resume"]) == 0
    plain, straight, again = (torch.load(tmp_path / run / "ckpt.pt", weights_only=False)
                              for run in ("plain", "straight", "resumed"))
    assert set(straight["family_loss"]) == {"human", "buzz", "buzz2"}
    assert straight["sampling_factors"]["buzz"] != straight["sampling_factors"]["buzz2"]
    assert plain["sampling_factors"] == {}  # off: the recipe's sampler, untouched
    assert not torch.equal(plain["model"]["head.weight"], straight["model"]["head.weight"])  # other crops drawn
    assert straight["family_loss"] == again["family_loss"]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, again["model"][name]), name


@pytest.mark.slow
def test_frequency_masking_reaches_the_model_and_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    common = ["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--small"]
    assert train.main([*common, "--out", str(tmp_path / "plain"), "--config", str(_steps(tmp_path, 6))]) == 0
    assert train.main([*common, "--out", str(tmp_path / "masked"), "--config", str(_steps(tmp_path, 6, 1.0))]) == 0
    resumed = tmp_path / "resumed"
    assert train.main([*common, "--out", str(resumed), "--config", str(_steps(tmp_path, 3, 1.0))]) == 0
    assert train.main([*common, "--out", str(resumed), "--config", str(_steps(tmp_path, 6, 1.0)), "--resume"]) == 0
    plain, masked, again = (torch.load(tmp_path / run / "ckpt.pt", weights_only=False)["model"]
                            for run in ("plain", "masked", "resumed"))
    assert not torch.equal(plain["head.weight"], masked["head.weight"])  # the masks changed what it learned
    for name, tensor in masked.items():  # and their generator's state is checkpointed
        assert torch.equal(tensor, again[name]), name


def test_bad_inputs_exit_with_a_message(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_dev = tmp_path / "no_dev.jsonl"
    write_manifest(no_dev, [i for i in read_manifest(corpus) if i.split == "train"])
    (tmp_path / "a.wav").write_bytes(b"")
    args = ["--policy", "codec_as_bonafide", "--out", str(tmp_path / "x")]
    assert train.main(["--manifest", str(no_dev), *args]) == 2
    assert "dev" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 1.0\n")
    assert train.main(["--manifest", str(corpus), *args, "--config", str(bad)]) == 2
    assert "unknown config key 'learning_rate'" in capsys.readouterr().err
    assert train.main(["--manifest", str(corpus), *args, "--resume"]) == 2
    assert "ckpt.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--manifest", str(corpus), "--policy", "nonsense", "--out", str(tmp_path)])


def test_leave_one_out_drops_a_codec_family_and_a_generator_from_both_splits(corpus: Path) -> None:
    items = list(read_manifest(corpus))
    family = next(i.codec_family for i in items if i.codec == "neural")
    generator = next(i.generator for i in items if i.source == "spoof")
    kept = train.excluding(items, [family], [generator])
    assert kept and all(i.codec_family != family and i.generator != generator for i in kept)
    assert {i.split for i in kept} == {i.split for i in items}
    assert len(kept) == sum(1 for i in items if i.codec_family != family and i.generator != generator)
    assert train.excluding(items, [], []) == items
    with pytest.raises(ValueError, match="inhouse-nosuch"):
        train.excluding(items, ["inhouse-nosuch"], [])


def test_generator_weight_tables_merge_across_recipe_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("[generator_weights]\nespeak = 0.25\nflite = 0.25\n")
    second.write_text("[generator_weights]\nflite = 0.5\n")
    config, model_args = dict(train.DEFAULT_CONFIG), dict(train.DEFAULT_MODEL_ARGS)
    train.apply_overrides(first, config, model_args)
    train.apply_overrides(second, config, model_args)
    assert config["generator_weights"] == {"espeak": 0.25, "flite": 0.5}
    assert train.DEFAULT_CONFIG["generator_weights"] == {}  # the defaults are never written to


def test_a_list_written_as_a_string_or_a_share_or_count_out_of_range_is_refused(corpus: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('exclude_codec_families = "lyra"\n')
    args = ["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(tmp_path / "x")]
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "exclude_codec_families must be a list of strings" in capsys.readouterr().err
    bad.write_text("spoof_extra_noise_prob = 67\n")  # a percentage where a probability belongs
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "spoof_extra_noise_prob is a share, within 0..1, got 67" in capsys.readouterr().err
    bad.write_text("freq_mask_max_fraction = 20\n")
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "freq_mask_max_fraction is a share, within 0..1, got 20" in capsys.readouterr().err
    bad.write_text("freq_mask_count = 0\n")
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "freq_mask_count must be a whole number >= 1, got 0" in capsys.readouterr().err
    bad.write_text("[generator_weights]\nespeak = 0\n")
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "generator_weights must be a table of positive numbers (to drop a generator, use exclude_generators)" \
        in capsys.readouterr().err
    bad.write_text("[generator_weights]\nnosuch-tts = 0.5\n")  # a misspelt family would weight nothing
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "generator_weights names ['nosuch-tts'], which no training item has" in capsys.readouterr().err
    bad.write_text("adaptive_decay = 1.0\n")  # the running losses would never move
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "adaptive_decay within 0..1 (1 excluded)" in capsys.readouterr().err
    bad.write_text("oc_margin_bonafide = 0.1\noc_margin_spoof = 0.2\n")  # swapped: the loss would invert
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "oc_margin_spoof < oc_margin_bonafide" in capsys.readouterr().err
    bad.write_text("reverb_rt60_min_s = 0.8\nreverb_rt60_max_s = 0.3\n")
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "reverb_rt60_min_s <= reverb_rt60_max_s" in capsys.readouterr().err
    bad.write_text("reverb_drr_min_db = 10.0\nreverb_drr_max_db = 0.0\n")
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "reverb_drr_min_db must not exceed reverb_drr_max_db" in capsys.readouterr().err


@pytest.mark.slow
def test_auxiliary_heads_learn_their_families_and_stay_out_of_the_export(corpus: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "aux.toml"
    recipe.write_text('aux_targets = ["generator", "codec_family"]\naux_weight = 1.0\n')
    out = tmp_path / "run"
    assert train.main(["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(out),
                       "--small", "--config", str(recipe)]) == 0
    model, ckpt = load_checkpoint(str(out / "best.pt"))
    assert ckpt["model_args"]["aux_classes"] == {"generator": ("buzz", "human"), "codec_family": ("lowpass", "none")}
    # In the synthetic corpus the families coincide with the main targets, so a head the loss
    # reaches learns them: read each dev clip's last hop.
    dev = [i for i in read_manifest(corpus) if i.split == "dev"]
    right = {"generator": 0, "codec_family": 0}
    for item in dev:
        audio = torch.from_numpy(load_audio(corpus.parent / item.path, 16000))
        hops = len(audio) // model.config.hop_samples
        with torch.no_grad():
            _, aux, _ = model.forward_with_aux(audio[None, : hops * model.config.hop_samples],
                                               model.initial_states(1))
        for target, classes in ckpt["model_args"]["aux_classes"].items():
            right[target] += classes[int(aux[target][0, -1].argmax())] == getattr(item, target)
    assert all(count / len(dev) > 0.8 for count in right.values()), right
    meta = export_checkpoint(out / "best.pt", tmp_path / "model.onnx")
    assert meta.extra["parameters"] == model.num_parameters()
    assert parity_max_diff(model, tmp_path / "model.onnx") <= 1e-4


def test_an_unknown_auxiliary_target_is_refused(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    recipe = tmp_path / "aux.toml"
    recipe.write_text('aux_targets = ["speaker"]\n')
    assert train.main(["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(tmp_path / "x"),
                       "--small", "--config", str(recipe)]) == 2
    assert "auxiliary target must be one of" in capsys.readouterr().err
    single = corpus.parent / "uncoded-only.jsonl"  # beside the audio; codec_family has one class
    write_manifest(single, [i for i in read_manifest(corpus) if i.codec == "none"])
    recipe.write_text('aux_targets = ["codec_family"]\n')
    assert train.main(["--manifest", str(single), "--policy", "codec_as_bonafide", "--out", str(tmp_path / "y"),
                       "--small", "--config", str(recipe)]) == 2
    assert "needs at least two classes" in capsys.readouterr().err


def test_the_one_class_loss_is_oc_softmax() -> None:
    """BCE on the shifted cosine logit equals log(1 + exp(20 (0.9 - cos))) for bona fide rows and
    log(1 + exp(20 (cos - 0.2))) for spoofed ones (Zhang et al. 2021, alpha 20, m0 0.9, m1 0.2)."""
    cfg = ModelConfig(features="lfcc", spoof_head="cosine")
    cos = torch.tensor([0.95, 0.5, -0.3, 0.1])
    spoof = torch.tensor([0.0, 0.0, 1.0, 1.0])
    logit = cfg.cosine_scale * (cfg.cosine_mid - cos)
    shifted = logit + train.one_class_shift(cfg, spoof, dict(train.DEFAULT_CONFIG))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(shifted, spoof, reduction="none")
    expected = torch.nn.functional.softplus(torch.where(spoof > 0.5, 20 * (cos - 0.2), 20 * (0.9 - cos)))
    assert torch.allclose(bce, expected, atol=1e-5)


@pytest.mark.slow
def test_a_one_class_spoof_head_learns_the_small_task(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "oc"
    assert train.main(["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(out), "--small",
                       "--config", str(train.REPO / "configs" / "train" / "one-class.toml")]) == 0
    model, ckpt = load_checkpoint(str(out / "best.pt"))
    assert ckpt["model_args"]["spoof_head"] == "cosine" and hasattr(model, "spoof_direction")
    assert ckpt["dev_metrics"]["spoof_eer"] < 0.2 and ckpt["dev_metrics"]["codec_eer"] < 0.2


def test_pair_ranking_loss_asks_the_spoof_to_outscore_its_truth_on_shared_hops_only() -> None:
    from streaming_models.train import pair_ranking_loss

    logits = torch.tensor([[5.0, 5.0, -9.0], [0.0, 0.0, 9.0]])  # row 0: a spoof, row 1: its ground truth
    weight = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the truth's last hop is past its end
    pairs = np.array([[0, 1]])
    separated = pair_ranking_loss(logits, weight, pairs, margin=1.0)
    assert float(separated) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-4.0))))
    swapped = pair_ranking_loss(logits, weight, pairs[:, ::-1].copy(), margin=1.0)
    assert float(swapped) > 5.0
