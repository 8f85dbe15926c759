"""Fine-tune the second-tier verifier on a corpus manifest.

    python -m streaming_models.verifier.train --config configs/verifier/smoke.toml \\
        --manifest corpus/public/manifest.jsonl --out runs/verifier [--device cuda]

A straight loop in the nanoGPT spirit: config, data, model, loop, dev EER. Each row is a random
crop of `window_s` from a class-balanced draw (training_data.sample_batch, one "hop" = one window);
with `pair_fraction` > 0 a share of rows are (spoof, its ground truth) pairs cropped at the same
place, and a ranking loss asks the spoof's logit to exceed its truth's by `pair_margin`. Writes
OUT/ckpt.pt and OUT/summary.json (dev EER per head, each dev file scored on its first window).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from torch.nn.functional import binary_cross_entropy_with_logits as bce
from torch.nn.functional import softplus

from streaming_models.data.labels import check_policy
from streaming_models.data.manifest import read_manifest
from streaming_models.logs import log_to_stderr
from streaming_models.metrics import eer
from streaming_models.training_data import (
    Augmentation,
    Clip,
    augment,
    ground_truth_pairs,
    load_clips,
    sample_batch,
    sampling_weights,
)
from streaming_models.verifier.config import VerifierRecipe, load_config
from streaming_models.verifier.model import (
    HEADS,
    Verifier,
    VerifierConfig,
    build_verifier,
    save_checkpoint,
)
from streaming_models.verifier.whisper_encoder import SAMPLE_RATE_HZ

log = structlog.get_logger(__name__)


def load_split(manifest: Path, split: str, config: VerifierRecipe, limit: int, rng: np.random.Generator) -> list[Clip]:
    items = [item for item in read_manifest(manifest) if item.split == split]
    if limit and len(items) > limit:
        chosen = [items[i] for i in rng.choice(len(items), limit, replace=False)]
        wanted = {item.item_id for item in chosen} | {item.parent for item in chosen if item.parent}
        items = [item for item in items if item.item_id in wanted]
    return load_clips(manifest, items, check_policy(config.policy), SAMPLE_RATE_HZ, desc=split)


def lr_scale(step: int, progress: float, config: VerifierRecipe) -> float:
    """Linear warm-up, then cosine to zero over the run's progress (steps or minutes)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def loss_of(logits: torch.Tensor, spoof: torch.Tensor, codec: torch.Tensor, pair_rows: np.ndarray,
            config: VerifierRecipe) -> torch.Tensor:
    loss = bce(logits[:, 0], spoof) + config.codec_weight * bce(logits[:, 1], codec)
    if len(pair_rows):
        gap = logits[pair_rows[:, 0], 0] - logits[pair_rows[:, 1], 0]
        loss = loss + config.pair_weight * softplus(config.pair_margin - gap).mean()
    return loss


@torch.no_grad()
def score_clips(model: Verifier, clips: list[Clip], window: int, device: torch.device) -> np.ndarray:
    """[N, 2] logits of each clip's first window (zero-padded when shorter), as a stream would see it."""
    model.eval()
    out = []
    for start in range(0, len(clips), 16):
        audio = np.zeros((len(clips[start:start + 16]), window), np.float32)
        for row, clip in enumerate(clips[start:start + 16]):
            piece = clip.audio[:window]
            audio[row, : len(piece)] = piece / 32768.0
        out.append(model(torch.from_numpy(audio).to(device)).float().cpu().numpy())
    model.train()
    return np.concatenate(out)


def dev_eers(logits: np.ndarray, clips: list[Clip]) -> dict[str, float]:
    targets = {"spoof": np.array([c.spoof for c in clips]), "codec": np.array([c.codec for c in clips])}
    return {head: round(100 * eer(logits[:, i], targets[head])[0], 2) if 0 < targets[head].sum() < len(clips)
            else float("nan") for i, head in enumerate(HEADS)}


@dataclass(frozen=True)
class TrainingData:
    train: list[Clip]
    dev: list[Clip]
    weights: np.ndarray  # sampling probability of each training clip (class-balanced)
    pairs: np.ndarray  # [P, 2] (spoof, ground truth) clip indices
    pair_count: int  # pairs per batch


def load_data(config: VerifierRecipe, manifest: Path, rng: np.random.Generator) -> TrainingData:
    train_clips = load_split(manifest, "train", config, config.max_train_items, rng)
    dev_clips = load_split(manifest, "dev", config, config.max_dev_items, rng)
    pairs = ground_truth_pairs(train_clips)
    pair_count = round(config.pair_fraction * config.batch_size / 2)
    if pair_count and not len(pairs):
        raise ValueError(f"pair_fraction > 0 but no training spoof has its ground truth in {manifest}")
    log.info("data", train=len(train_clips), dev=len(dev_clips), ground_truth_pairs=len(pairs))
    return TrainingData(train_clips, dev_clips, sampling_weights(train_clips), pairs, pair_count)


def make_optimizer(model: Verifier, config: VerifierRecipe) -> torch.optim.AdamW:
    encoder_params, head_params = model.trainable_parameters()
    groups = [{"params": encoder_params, "lr": config.encoder_lr, "base_lr": config.encoder_lr},
              {"params": head_params, "lr": config.head_lr, "base_lr": config.head_lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=config.weight_decay)


def run_steps(model: Verifier, data: TrainingData, config: VerifierRecipe, device: torch.device) -> int:
    """The training loop; returns the number of steps taken (the step or the time budget ends it)."""
    rng, gen = np.random.default_rng(config.seed + 1), torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    window, started, step, running = round(config.window_s * SAMPLE_RATE_HZ), time.monotonic(), 0, 0.0
    while step < config.max_steps:
        elapsed = time.monotonic() - started
        if config.max_minutes and elapsed > 60 * config.max_minutes:
            break
        progress = max(step / config.max_steps, elapsed / (60 * config.max_minutes) if config.max_minutes else 0.0)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_scale(step, progress, config)
        batch = sample_batch(data.train, data.weights, rng, config.batch_size, window, 1, 1,
                             pairs=data.pairs, pair_count=data.pair_count)
        audio = augment(batch.audio, Augmentation(), gen) if config.augment else batch.audio
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(audio.to(device)).float()
        loss = loss_of(logits, batch.spoof.to(device), batch.codec.to(device), batch.pair_rows, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
        step += 1
        if step % config.log_interval == 0:
            log.info("step", step=step, loss=round(running, 4), seconds=round(time.monotonic() - started))
    return step


def train(config: VerifierRecipe, manifest: Path, out: Path, device: torch.device) -> dict[str, Any]:
    """Fine-tune, score dev, write OUT/ckpt.pt and OUT/summary.json; returns the summary."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.num_threads)
    data = load_data(config, manifest, np.random.default_rng(config.seed))
    model = build_verifier(VerifierConfig(trainable_blocks=config.trainable_blocks), config.weights or None)
    model.to(device).train()
    started = time.monotonic()
    steps = run_steps(model, data, config, device)
    minutes = (time.monotonic() - started) / 60
    window = round(config.window_s * SAMPLE_RATE_HZ)
    summary = {"steps": steps, "train_minutes": round(minutes, 2),
               "dev_eer_percent": dev_eers(score_clips(model, data.dev, window, device), data.dev),
               "train_clips": len(data.train), "dev_clips": len(data.dev), "pairs": len(data.pairs),
               "config": asdict(config), "manifest": str(manifest), "device": str(device)}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "ckpt.pt", model.cpu(), {"train": summary})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("done", steps=steps, dev_eer_percent=summary["dev_eer_percent"])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TOML file of VerifierRecipe keys (configs/verifier/)")
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"verifier train: {exc}\n")
    summary = train(config, args.manifest, args.out, torch.device(args.device))
    print(json.dumps({"steps": summary["steps"], "dev_eer_percent": summary["dev_eer_percent"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
