from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_corpus import write_corpus

from streaming_models import train
from streaming_models.data.manifest import read_manifest, write_manifest
from streaming_models.model import ModelConfig, load_checkpoint
from streaming_models.runtime.settings import ConfigError, load
from streaming_models.train_config import TrainConfig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), per_class=10)


def _steps(tmp_path: Path, steps: int) -> Path:
    path = tmp_path / f"steps{steps}.toml"
    path.write_text(f"max_steps = {steps}\neval_interval = 4\n")
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
    assert f"{bad}: unknown keys ['learning_rate']" in capsys.readouterr().err
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


def test_a_specialist_keeps_every_genuine_item_and_only_its_generators_spoofs(corpus: Path) -> None:
    items = [dataclasses.replace(item, generator="espeak") if item.source == "spoof" and k % 2 else item
             for k, item in enumerate(read_manifest(corpus))]
    kept = train.only_spoofs_of(items, ["espeak"])
    assert [i for i in kept if i.source == "bonafide"] == [i for i in items if i.source == "bonafide"]
    assert {i.generator for i in kept if i.source == "spoof"} == {"espeak"}
    assert len(kept) == sum(1 for i in items if i.source == "bonafide" or i.generator == "espeak")
    assert train.only_spoofs_of(items, []) == items
    with pytest.raises(ValueError, match="only_spoof_generators names \\['human'\\]"):  # genuine is no generator here
        train.only_spoofs_of(items, ["human"])


def test_generator_weight_tables_merge_across_recipe_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("[generator_weights]\nespeak = 0.25\nflite = 0.25\n")
    second.write_text("[generator_weights]\nflite = 0.5\n")
    assert load(TrainConfig, [first, second]).generator_weights == {"espeak": 0.25, "flite": 0.5}
    assert TrainConfig().generator_weights == {}  # the defaults are never written to


def test_a_model_table_sets_the_network_and_later_files_win(tmp_path: Path) -> None:
    repo = Path(train.__file__).resolve().parent.parent / "configs" / "train"
    config = load(TrainConfig, [repo / "small.toml", repo / "lfcc.toml", repo / "lowband.toml", repo / "seed2.toml"])
    assert config.model == ModelConfig(features="lfcc", top_hz=4000.0, conv_channels=32, gru_hidden=48)
    assert (config.seed, config.max_steps, config.num_threads) == (2, 30, TrainConfig().num_threads)


def test_every_committed_recipe_loads() -> None:
    recipes = sorted((Path(train.__file__).resolve().parent.parent / "configs" / "train").glob("*.toml"))
    assert len(recipes) > 10
    for recipe in recipes:
        load(TrainConfig, [recipe])


@pytest.mark.parametrize("text,needle", [
    ('exclude_codec_families = "lyra"\n', "exclude_codec_families: must be a list of strings"),
    ("noise_prob = 40\n", "noise_prob: is a share, within 0..1, got 40"),  # a percentage where a share belongs
    ("pair_fraction = -0.1\n", "pair_fraction: is a share, within 0..1"),
    ("batch_size = 0\n", "batch_size: must be >= 1, got 0"),
    ("max_steps = 2.5\n", "max_steps: must be an integer, got 2.5"),
    ("crop_min_s = 8.0\n", "crop_min_s: must be > 0 and <= crop_max_s"),
    ("[generator_weights]\nespeak = 0\n", "generator_weights: must be positive (to drop a generator, use exclude_generators)"),
    ("[model]\nfeatures = \"mfcc\"\n", "model: feature kind must be one of"),
    ("[model]\ngru_units = 10\n", "model: unknown keys ['gru_units']"),
    ("freq_mask_prob = 0.5\n", "unknown keys ['freq_mask_prob']"),  # an option removed in issue #24
    ('[model]\nspoof_head = "cosine"\n', "model: unknown keys ['spoof_head']"),
])
def test_a_bad_value_is_refused_naming_the_file_and_the_key(corpus: Path, tmp_path: Path, text: str, needle: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    args = ["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(tmp_path / "x"), "--small"]
    assert train.main([*args, "--config", str(bad)]) == 2
    assert f"spoofwatch train: {bad}: {needle}" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        load(TrainConfig, [bad])


def test_a_misspelt_generator_weight_is_refused_before_any_audio_loads(corpus: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[generator_weights]\nnosuch-tts = 0.5\n")  # a misspelt family would weight nothing
    args = ["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--out", str(tmp_path / "x")]
    assert train.main([*args, "--config", str(bad)]) == 2
    assert "generator_weights names ['nosuch-tts'], which no training item has" in capsys.readouterr().err


@pytest.mark.slow
def test_resuming_a_run_of_a_removed_option_is_refused(corpus: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--manifest", str(corpus), "--policy", "codec_as_bonafide", "--small", "--out", str(tmp_path / "run")]
    assert train.main([*common, "--config", str(_steps(tmp_path, 4))]) == 0
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)
    ckpt["config"].update(freq_mask_prob=0.0, adaptive_eta=0.0, aux_targets=[])  # as written before issue #24
    torch.save(ckpt, tmp_path / "run" / "ckpt.pt")
    assert train.main([*common, "--config", str(_steps(tmp_path, 8)), "--resume"]) == 0  # off: resumes
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)
    ckpt["config"]["freq_mask_prob"] = 0.5
    torch.save(ckpt, tmp_path / "run" / "ckpt.pt")
    assert train.main([*common, "--config", str(_steps(tmp_path, 12)), "--resume"]) == 2
    assert "trained with ['freq_mask_prob'], removed in issue #24" in capsys.readouterr().err


def test_pair_ranking_loss_asks_the_spoof_to_outscore_its_truth_on_shared_hops_only() -> None:
    from streaming_models.train import pair_ranking_loss

    logits = torch.tensor([[5.0, 5.0, -9.0], [0.0, 0.0, 9.0]])  # row 0: a spoof, row 1: its ground truth
    weight = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the truth's last hop is past its end
    pairs = np.array([[0, 1]])
    separated = pair_ranking_loss(logits, weight, pairs, margin=1.0)
    assert float(separated) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-4.0))))
    swapped = pair_ranking_loss(logits, weight, pairs[:, ::-1].copy(), margin=1.0)
    assert float(swapped) > 5.0


class _HopIndexLogits(torch.nn.Module):
    """Logit of hop h is PATTERN[h] for every stream and head: a model whose every hop is known."""

    PATTERN = (0.0, 3.0, 1.0, 5.0)

    def __init__(self) -> None:
        super().__init__()
        self.config = ModelConfig()

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        return []

    def forward(self, audio: torch.Tensor, states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hops = audio.shape[1] // self.config.hop_samples
        per_hop = torch.tensor(self.PATTERN[:hops])
        return per_hop[None, :, None].expand(audio.shape[0], hops, 2).clone(), []


def test_dev_scores_read_the_last_hop_or_the_peak_until_the_clip_ends() -> None:
    hop = ModelConfig().hop_samples
    clips = [train.Clip(None, np.zeros(n * hop, np.int16), 0, 0) for n in (1, 3, 4, 9)]  # type: ignore[arg-type]
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))
    last = train.dev_scores(_HopIndexLogits(), clips, dev_seconds=0.4)[:, 0]
    peak = train.dev_scores(_HopIndexLogits(), clips, dev_seconds=0.4, peak=True)[:, 0]
    assert last == pytest.approx(sigmoid(np.array([0.0, 1.0, 5.0, 5.0])))  # a 9-hop clip is read at 0.4 s
    assert peak == pytest.approx(sigmoid(np.array([0.0, 3.0, 5.0, 5.0])))  # the 3-hop clip peaks at hop 2


def test_genuine_from_first_hop_lifts_the_ramp_for_genuine_crops_only() -> None:
    hop = ModelConfig().hop_samples
    model = _HopIndexLogits()  # the same logits for every crop: 0, 3, 1, 5 over four hops
    audio = torch.zeros(2, 4 * hop)
    mask = torch.ones(2, 4)
    genuine = train.Batch(audio, torch.zeros(2), torch.zeros(2), mask)
    spoof = train.Batch(audio, torch.ones(2), torch.zeros(2), mask)
    ramped = TrainConfig(warmup_hops=4)
    quiet = dataclasses.replace(ramped, genuine_from_first_hop=True)
    # a spoof crop's loss is untouched; a genuine crop's early hops now weigh as much as its last
    assert float(train.streaming_loss(model, audio, spoof, quiet)) == pytest.approx(  # type: ignore[arg-type]
        float(train.streaming_loss(model, audio, spoof, ramped)))  # type: ignore[arg-type]
    bce = torch.nn.functional.softplus(torch.tensor(_HopIndexLogits.PATTERN))  # -log(1 - sigmoid(x)) per hop
    ramp = torch.tensor([0.25, 0.5, 0.75, 1.0])
    codec_part = (bce * ramp).sum() / ramp.sum()  # the codec head keeps its ramp
    expected = bce.sum() / ramp.sum() + codec_part
    assert float(train.streaming_loss(model, audio, genuine, quiet)) == pytest.approx(float(expected))  # type: ignore[arg-type]
    assert float(train.streaming_loss(model, audio, genuine, ramped)) == pytest.approx(float(2 * codec_part))  # type: ignore[arg-type]


def test_a_smoothed_peak_reads_the_daemons_decision_window() -> None:
    hop = ModelConfig().hop_samples
    clips = [train.Clip(None, np.zeros(4 * hop, np.int16), 0, 0)]  # type: ignore[arg-type]
    p = 1.0 / (1.0 + np.exp(-np.array(_HopIndexLogits.PATTERN)))  # per-hop probabilities 0, 3, 1, 5 as logits
    window2 = train.dev_scores(_HopIndexLogits(), clips, dev_seconds=0.4, peak=True, smooth_hops=2)[0, 0]
    assert window2 == pytest.approx(max(p[0], (p[0] + p[1]) / 2, (p[1] + p[2]) / 2, (p[2] + p[3]) / 2))
    late = train.dev_scores(_HopIndexLogits(), clips, dev_seconds=0.4, peak=True, smooth_hops=3, min_hops=4)[0, 0]
    assert late == pytest.approx((p[1] + p[2] + p[3]) / 3)  # only the fourth hop may call
    raw = train.dev_scores(_HopIndexLogits(), clips, dev_seconds=0.4, peak=True)[0, 0]
    assert raw == pytest.approx(p[3]) and window2 < raw
