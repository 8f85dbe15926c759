"""The verifier's recipe files and training loop (streaming_models/verifier/config.py, train.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ct2_files import write_tiny_whisper
from synthetic_corpus import write_corpus

from streaming_models.data.manifest import read_manifest, write_manifest
from streaming_models.runtime.settings import ConfigError
from streaming_models.verifier import train
from streaming_models.verifier.config import VerifierRecipe, load_config
from streaming_models.verifier.model import load_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), per_class=10)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_whisper(tmp_path_factory.mktemp("tiny"), width=32, heads=2, layers=2)


def recipe(tmp_path: Path, weights: Path, **keys: object) -> Path:
    base = {"weights": str(weights), "window_s": 1.0, "batch_size": 8, "warmup_steps": 5, "log_interval": 50,
            "head_lr": 3e-3, "encoder_lr": 1e-3}
    lines = [f"{k} = {json.dumps(v)}" for k, v in (base | keys).items()]
    path = tmp_path / "recipe.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_shipped_recipe_loads() -> None:
    recipes = sorted((REPO / "configs" / "verifier").glob("*.toml"))
    assert recipes
    for path in recipes:
        assert isinstance(load_config(path), VerifierRecipe)


def test_recipes_refuse_unknown_keys_wrong_types_and_ranges(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    for text, message in (("windw_s = 4.0\n", r"r.toml: unknown keys \['windw_s'\]"),
                          ("batch_size = 8.0\n", "batch_size: must be an integer"),
                          ("batch_size = true\n", "batch_size: must be an integer"),
                          ("augment = 1\n", "augment: must be true or false"),
                          ("pair_fraction = 1.5\n", "pair_fraction: must be within 0..1, got 1.5"),
                          ("window_s = 0\n", r"window_s: must be within \(0, 30\] s, got 0.0"),
                          ("policy = \"maybe\"\n", "label policy must be one of")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    path.write_text("window_s = 8\nmax_minutes = 10\n")  # whole numbers are fine for float keys
    assert load_config(path).window_s == 8.0 and isinstance(load_config(path).max_minutes, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config(path).window_s = 2.0  # type: ignore[misc]


@pytest.mark.slow
def test_the_loop_learns_the_small_task_and_checkpoints(corpus: Path, weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train.main(["--config", str(recipe(tmp_path, weights, max_steps=150)), "--manifest", str(corpus),
                       "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 150 and summary["dev_clips"] == 12 and summary["pairs"] == 0
    # The synthetic spoofs carry a 2.5-3.5 kHz noise band, the codec items lose everything above
    # 4 kHz: a random tiny encoder plus the head learns both in 150 steps (chance would be 50 %).
    assert summary["dev_eer_percent"]["spoof"] < 20.0
    assert summary["dev_eer_percent"]["codec"] < 20.0
    model, ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt["train"]["steps"] == 150 and model.config.trainable_blocks == 2


def paired_corpus(corpus: Path, folder: Path) -> Path:
    """The corpus with every uncoded training spoof paired to an uncoded genuine item (its `parent`)."""
    items = list(read_manifest(corpus))
    truths = [i.item_id for i in items if i.split == "train" and i.source == "bonafide" and i.codec == "none"]
    paired, k = [], 0
    for item in items:
        if item.split == "train" and item.source == "spoof" and item.codec == "none":
            item, k = dataclasses.replace(item, parent=truths[k % len(truths)]), k + 1
        paired.append(dataclasses.replace(item, path=str(corpus.parent / item.path)))
    write_manifest(folder / "paired.jsonl", paired)
    return folder / "paired.jsonl"


def test_pair_rows_train_with_the_ranking_loss(corpus: Path, weights: Path, tmp_path: Path) -> None:
    manifest = paired_corpus(corpus, tmp_path)
    summary = train.train(load_config(recipe(tmp_path, weights, max_steps=3, pair_fraction=0.5)), manifest,
                          tmp_path / "run", torch.device("cpu"))
    assert summary["pairs"] == 10 and summary["steps"] == 3
    with pytest.raises(ValueError, match="no training spoof has its ground truth"):
        train.train(load_config(recipe(tmp_path, weights, max_steps=3, pair_fraction=0.5)), corpus,
                    tmp_path / "run2", torch.device("cpu"))


def test_the_ranking_loss_asks_each_spoof_to_outscore_its_truth() -> None:
    config = VerifierRecipe(pair_margin=1.0, pair_weight=1.0, codec_weight=0.0)
    logits = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    spoof = torch.tensor([0.0, 1.0, 0.0])
    without = train.loss_of(logits, spoof, torch.zeros(3), np.zeros((0, 2), np.int64), config)
    pairs = np.array([[1, 2]])  # row 1's spoof logit is 3 above row 2's: past the margin, little loss
    wide = train.loss_of(logits, spoof, torch.zeros(3), pairs, config) - without
    assert wide.item() == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(1.0 - 3.0))))
    reversed_pair = train.loss_of(logits, spoof, torch.zeros(3), np.array([[2, 1]]), config) - without
    assert reversed_pair.item() > wide.item() + 2.0


def test_a_subset_keeps_the_ground_truths_of_the_spoofs_it_draws(corpus: Path, tmp_path: Path) -> None:
    manifest = paired_corpus(corpus, tmp_path)
    config = VerifierRecipe(max_train_items=6)
    clips = train.load_split(manifest, "train", config, 6, np.random.default_rng(0))
    ids = {c.item.item_id for c in clips}
    assert 6 <= len(clips) <= 12
    assert all(c.item.parent in ids for c in clips if c.item.parent)


def test_a_bad_recipe_exits_with_the_reason(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("stepz = 3\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--config", str(path), "--manifest", str(corpus), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "unknown keys ['stepz']" in capsys.readouterr().err
