"""Train the streaming detector.

    spoofwatch train --manifest corpus/medium/manifest.jsonl --policy codec_as_bonafide --out runs/medium
    spoofwatch train ... --small             # the tests' recipe: under 2 minutes
    spoofwatch train ... --config configs/train/lfcc.toml   # a recipe file holds only deltas
    spoofwatch train ... --resume            # continue from OUT/ckpt.pt

A straight script in the nanoGPT spirit: the recipe (train_config.TrainConfig), then data, model,
loop. Every crop runs through the streaming path (the chunked forward carries state
across hops exactly as hop-by-hop calls would) and the loss covers every hop, ramped over
the first `warmup_hops` so early hops learn without dominating.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from tqdm import tqdm

from streaming_models.data.labels import POLICIES, Policy, check_policy
from streaming_models.data.manifest import CorpusItem, ManifestError, read_manifest
from streaming_models.hashing import file_hash
from streaming_models.logs import log_to_stderr
from streaming_models.metrics import eer, threshold_at_false_positive_rate
from streaming_models.model import ModelConfig, Network, StreamingDetector
from streaming_models.paths import small_training_recipe
from streaming_models.runtime.settings import load
from streaming_models.train_config import TrainConfig, removed_options_used
from streaming_models.training_data import (
    Augmentation,
    Batch,
    Clip,
    augment,
    ground_truth_pairs,
    load_clips,
    sample_batch,
    sampling_weights,
)

log = structlog.get_logger(__name__)


class SetupError(ValueError):
    """The run cannot start: the message says why (a manifest without dev items, a missing --resume...)."""


# ---- schedule and loss -------------------------------------------------------------------------

def progress_of(step: int, elapsed_s: float, config: TrainConfig) -> float:
    """Fraction of the run done: steps or wall-clock budget, whichever is further along."""
    by_steps = step / config.max_steps
    by_time = elapsed_s / (60.0 * config.max_minutes) if config.max_minutes > 0 else 0.0
    return max(by_steps, by_time)


def lr_at(step: int, progress: float, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def streaming_loss(model: StreamingDetector, audio: torch.Tensor, batch: Batch, config: TrainConfig) -> torch.Tensor:
    """BCE of both heads at every hop (ramped in over `warmup_hops`), plus the pairs' ranking loss."""
    logits, _ = model(audio, model.initial_states(audio.shape[0]))  # [B, hops, 2]
    hops = logits.shape[1]
    ramp = torch.clamp((torch.arange(hops) + 1.0) / config.warmup_hops, max=1.0)  # [hops]
    weight = batch.hop_mask * ramp  # [B, hops]
    spoof_weight = weight
    if config.genuine_from_first_hop:
        spoof_weight = batch.hop_mask * torch.where(batch.spoof[:, None] > 0.5, ramp, torch.ones_like(ramp))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    spoof_logits = logits[..., 0]
    loss = bce(spoof_logits, batch.spoof[:, None].expand(-1, hops), reduction="none") * spoof_weight
    loss = loss + config.codec_weight * bce(logits[..., 1], batch.codec[:, None].expand(-1, hops), reduction="none") * weight
    total = loss.sum() / weight.sum()
    if len(batch.pair_rows):
        total = total + config.pair_weight * pair_ranking_loss(spoof_logits, weight, batch.pair_rows, config.pair_margin)
    return total


def pair_ranking_loss(spoof_logits: torch.Tensor, weight: torch.Tensor, pair_rows: np.ndarray,
                      margin: float) -> torch.Tensor:
    """softplus(margin - (spoof logit - its truth's logit)) per hop, over the hops both rows hold."""
    fake, real = torch.from_numpy(pair_rows[:, 0]), torch.from_numpy(pair_rows[:, 1])
    both = torch.minimum(weight[fake], weight[real])  # [P, hops]
    gap = spoof_logits[fake] - spoof_logits[real]
    return (torch.nn.functional.softplus(margin - gap) * both).sum() / both.sum().clamp_min(1e-8)


# ---- dev evaluation (also ensemble.py's) --------------------------------------------------------

@torch.no_grad()
def evaluate_dev(model: Network, clips: list[Clip], dev_seconds: float, operating_fpr: float
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Dev EER per head from the output after `dev_seconds` (or the clip's end), and the thresholds
    that flag `operating_fpr` of each head's negatives. Leaves the model in train mode."""
    scores = dev_scores(model, clips, dev_seconds)
    model.train()
    metrics, thresholds = {}, {}
    for col, head in enumerate(model.config.heads):
        labels = head_labels(clips, head)
        if 0 < labels.sum() < len(labels):
            metrics[f"{head}_eer"] = eer(scores[:, col], labels)[0]
        if (labels == 0).any():
            fpr_threshold = threshold_at_false_positive_rate(scores[labels == 0, col], operating_fpr)
            thresholds[head] = max(0.5, min(fpr_threshold, 0.999))
    return metrics, thresholds


def head_labels(clips: list[Clip], head: str) -> np.ndarray:
    return np.array([clip.spoof if head == "spoof" else clip.codec for clip in clips])


def window_means(probs: torch.Tensor, window: int) -> torch.Tensor:
    """Causal mean over the last `window` hops (fewer at the start) of [B, hops, heads]: the daemon's
    DecisionTracker window. A window of 1 returns `probs` unchanged."""
    if window <= 1:
        return probs
    total = probs.clone()
    for shift in range(1, min(window, probs.shape[1])):
        total[:, shift:] += probs[:, :-shift]
    counts = torch.clamp(torch.arange(1, probs.shape[1] + 1), max=window).to(probs.dtype)
    return total / counts[None, :, None]


@torch.no_grad()
def dev_scores(model: Network, clips: list[Clip], dev_seconds: float, peak: bool = False,
               smooth_hops: int = 1, min_hops: int = 1) -> np.ndarray:
    """Each clip's probabilities [clips, heads] after `dev_seconds` (or at its end), or with `peak` the
    largest over its hops until then (what a stream flagged at any hop sees); model left in eval mode.
    The peak is of the causal mean of the last `smooth_hops` probabilities (1: each hop's own), from hop
    `min_hops` on: with the daemon's settings, what its decision window sees (daemon/policy.py)."""
    model.eval()
    hop = model.config.hop_samples
    max_hops = max(1, int(dev_seconds * model.config.sample_rate_hz) // hop)
    scores = np.zeros((len(clips), 2))
    for lo in range(0, len(clips), 64):
        group = clips[lo:lo + 64]
        audio = np.zeros((len(group), max_hops * hop), np.float32)
        last = np.zeros(len(group), np.int64)
        for row, clip in enumerate(group):
            pcm = clip.audio[: max_hops * hop]
            audio[row, :len(pcm)] = pcm / 32768.0
            last[row] = max(1, len(pcm) // hop) - 1  # causal: padding after the end changes nothing before
        logits, _ = model(torch.from_numpy(audio), model.initial_states(len(group)))
        if peak:
            probs = window_means(torch.sigmoid(logits), smooth_hops)  # [B, hops, heads]
            hops_idx = torch.arange(max_hops)[None, :]
            early = hops_idx < min(min_hops, max_hops) - 1  # [1, hops]: before the daemon may call
            after_end = hops_idx > torch.from_numpy(last)[:, None]  # [B, hops]
            scores[lo:lo + len(group)] = probs.masked_fill((early | after_end)[..., None], 0.0).amax(1).numpy()
        else:
            scores[lo:lo + len(group)] = torch.sigmoid(logits[torch.arange(len(group)), torch.from_numpy(last)]).numpy()
    return scores


# ---- data ---------------------------------------------------------------------------------------

def seeded_subset(items: list[Any], n: int, seed: int) -> list[Any]:
    if n <= 0 or n >= len(items):
        return items
    keep = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    return [items[i] for i in sorted(keep)]


def excluding(items: list[CorpusItem], codec_families: Iterable[str], generators: Iterable[str]) -> list[CorpusItem]:
    dropped_families, dropped_generators = set(codec_families), set(generators)
    unknown = sorted((dropped_families - {i.codec_family for i in items})
                     | (dropped_generators - {i.generator for i in items}))
    if unknown:  # a misspelt name would otherwise exclude nothing, silently
        raise SetupError(f"exclude_codec_families / exclude_generators name {unknown}, which no item of "
                         f"the manifest has")
    kept = [i for i in items if i.codec_family not in dropped_families and i.generator not in dropped_generators]
    if len(kept) < len(items):
        log.info("excluded", items=len(items) - len(kept), codec_families=sorted(dropped_families),
                 generators=sorted(dropped_generators))
    return kept


def only_spoofs_of(items: list[CorpusItem], generators: Iterable[str]) -> list[CorpusItem]:
    """Every bona fide item and the spoofs of these generators only: the corpus of a specialist member
    (an empty list keeps everything)."""
    wanted = set(generators)
    if not wanted:
        return items
    unknown = sorted(wanted - {i.generator for i in items if i.source == "spoof"})
    if unknown:
        raise SetupError(f"only_spoof_generators names {unknown}, which no spoof of the manifest has")
    kept = [i for i in items if i.source != "spoof" or i.generator in wanted]
    log.info("only_spoof_generators", generators=sorted(wanted), dropped_spoofs=len(items) - len(kept))
    return kept


@dataclass(frozen=True)
class Job:
    """What the run trains and where it writes: fixed from start to end."""

    config: TrainConfig
    policy: Policy
    manifest: Path
    out: Path
    corpus_hash: str


@dataclass(frozen=True)
class TrainingData:
    train: list[Clip]
    dev: list[Clip]
    weights: np.ndarray  # each training clip's sampling probability
    pairs: np.ndarray  # [P, 2] (spoof, ground truth) clip indices
    pair_count: int  # pairs per batch
    min_hops: int  # shortest crop, in hops
    max_hops: int  # longest crop, in hops


def split_items(job: Job, items: list[CorpusItem]) -> tuple[list[CorpusItem], list[CorpusItem]]:
    """The train and dev items the recipe keeps, checked before any audio loads (a misspelt name
    then fails in a second, not after a minute)."""
    config = job.config
    items = only_spoofs_of(excluding(items, config.exclude_codec_families, config.exclude_generators),
                           config.only_spoof_generators)
    train = seeded_subset([i for i in items if i.split == "train"], config.max_train_items, config.seed)
    dev = seeded_subset([i for i in items if i.split == "dev"], config.dev_max_items, config.seed)
    if not train or not dev:
        raise SetupError(f"{job.manifest} needs items in both the train and dev splits "
                         f"(has {len(train)} train, {len(dev)} dev)")
    unknown = sorted(set(config.generator_weights) - {i.generator for i in train})
    if unknown:  # a misspelt or excluded name would otherwise weight nothing, silently
        raise SetupError(f"generator_weights names {unknown}, which no training item has")
    if config.generator_weights:
        log.info("generator_weights", **config.generator_weights)
    return train, dev


def load_data(job: Job, items: list[CorpusItem]) -> TrainingData:
    config, sr, hop = job.config, job.config.model.sample_rate_hz, job.config.model.hop_samples
    train_items, dev_items = split_items(job, items)
    train = load_clips(job.manifest, train_items, job.policy, sr, "loading train")
    dev = load_clips(job.manifest, dev_items, job.policy, sr, "loading dev")
    pairs = ground_truth_pairs(train)
    pair_count = round(config.pair_fraction * config.batch_size / 2)
    if pair_count and not len(pairs):
        raise SetupError(f"pair_fraction > 0 but no training spoof has its ground truth in {job.manifest}")
    min_hops = max(1, round(config.crop_min_s * sr / hop))
    max_hops = max(min_hops, round(config.crop_max_s * sr / hop))
    log.info("data", train=len(train), dev=len(dev), ground_truth_pairs=len(pairs),
             train_hours=round(sum(len(c.audio) for c in train) / sr / 3600, 2))
    return TrainingData(train, dev, sampling_weights(train, config.generator_weights), pairs, pair_count,
                        min_hops, max_hops)


# ---- the run: model, optimizer, random streams, progress; all of it checkpointed ----------------

@dataclass
class Run:
    model: StreamingDetector
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator  # draws the crops
    aug_gen: torch.Generator  # draws the augmentation
    step: int = 0
    best: float = math.inf  # best mean dev EER so far
    thresholds: dict[str, float] = field(default_factory=dict)  # the best checkpoint's
    dev_metrics: dict[str, float] = field(default_factory=dict)  # the latest evaluation's
    elapsed_before: float = 0.0  # seconds trained before this process (--resume)
    started: float = field(default_factory=time.time)

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started


def new_run(job: Job, rng: np.random.Generator) -> Run:
    model = StreamingDetector(job.config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=job.config.lr, weight_decay=job.config.weight_decay)
    return Run(model, optimizer, rng, torch.Generator().manual_seed(job.config.seed))


def start(job: Job, data: TrainingData, rng: np.random.Generator) -> Run:
    """A fresh run, its features standardized with statistics of (un-augmented) training crops."""
    run = new_run(job, rng)
    fit = sample_batch(data.train, data.weights, np.random.default_rng(job.config.seed + 1),
                       job.config.norm_fit_crops, job.config.model.hop_samples, data.min_hops, data.min_hops)
    run.model.frontend.fit_normalization(fit.audio)
    return run


def resume(job: Job, rng: np.random.Generator) -> Run:
    """The run OUT/ckpt.pt holds, with every random stream where it stopped."""
    path = job.out / "ckpt.pt"
    if not path.is_file():
        raise SetupError(f"--resume but {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ModelConfig.from_dict(ckpt["model_args"]) != job.config.model or ckpt["policy"] != job.policy:
        raise SetupError("--resume with a different model config or policy")
    if used := removed_options_used(ckpt.get("config", {})):
        raise SetupError(f"{path} was trained with {used}, removed in issue #24 (commit 873a065 has them)")
    run = new_run(job, rng)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.step, run.best, run.elapsed_before = ckpt["step"], ckpt["best"], ckpt["elapsed_s"]
    run.thresholds, run.dev_metrics = ckpt["thresholds"], ckpt["dev_metrics"]
    run.rng.bit_generator.state = ckpt["numpy_rng"]
    torch.set_rng_state(ckpt["torch_rng"])
    run.aug_gen.set_state(ckpt["aug_rng"])
    return run


def save(job: Job, run: Run, path: Path) -> None:
    torch.save({"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                "model_args": job.config.model.to_dict(), "config": job.config.recipe(), "policy": job.policy,
                "manifest": str(job.manifest), "corpus_hash": job.corpus_hash,
                "step": run.step, "elapsed_s": run.elapsed(), "best": run.best, "thresholds": run.thresholds,
                "dev_metrics": run.dev_metrics, "numpy_rng": run.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "aug_rng": run.aug_gen.get_state()}, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


# ---- the loop -----------------------------------------------------------------------------------

def train_step(run: Run, data: TrainingData, config: TrainConfig, aug: Augmentation, progress: float) -> float:
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(run.step, progress, config)
    batch = sample_batch(data.train, data.weights, run.rng, config.batch_size, config.model.hop_samples,
                         data.min_hops, data.max_hops, data.pairs, data.pair_count)
    loss = streaming_loss(run.model, augment(batch.audio, aug, run.aug_gen), batch, config)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.optimizer.step()
    run.step += 1
    return loss.item()


def evaluate_and_save(job: Job, data: TrainingData, run: Run, running_loss: float) -> None:
    """Score the dev split; write ckpt.pt, and best.pt (with its thresholds) when the mean EER is no worse."""
    run.dev_metrics, thresholds = evaluate_dev(run.model, data.dev, job.config.dev_seconds, job.config.operating_fpr)
    score = float(np.mean(list(run.dev_metrics.values()))) if run.dev_metrics else -run.step
    log.info("eval", step=run.step, loss=round(running_loss, 4), minutes=round(run.elapsed() / 60, 1),
             **{k: round(v, 4) for k, v in run.dev_metrics.items()})
    if score <= run.best:
        run.best, run.thresholds = score, thresholds
        save(job, run, job.out / "best.pt")
    save(job, run, job.out / "ckpt.pt")


def train_loop(job: Job, data: TrainingData, run: Run) -> None:
    config = job.config
    aug = Augmentation((config.gain_db_min, config.gain_db_max), config.noise_prob,
                       (config.snr_db_min, config.snr_db_max), config.tilt_prob)
    run.model.train()
    running: float | None = None
    bar = tqdm(total=config.max_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True)
    run.started = time.time()
    while (progress := progress_of(run.step, run.elapsed(), config)) < 1.0:
        loss = train_step(run, data, config, aug, progress)
        running = loss if running is None else 0.95 * running + 0.05 * loss
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", **{k: f"{100 * v:.1f}%" for k, v in run.dev_metrics.items()})
        done = progress_of(run.step, run.elapsed(), config) >= 1.0
        if run.step % config.eval_interval == 0 or done:
            evaluate_and_save(job, data, run, running)
    bar.close()


# ---- entry point --------------------------------------------------------------------------------

def set_up(args: argparse.Namespace) -> tuple[Job, TrainingData, Run]:
    config = load(TrainConfig, ([small_training_recipe()] if args.small else []) + args.config)
    items = list(read_manifest(args.manifest))
    job = Job(config, check_policy(args.policy), args.manifest, args.out, file_hash(args.manifest))
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data(job, items)
    run = resume(job, rng) if args.resume else start(job, data, rng)
    log.info("model", parameters=run.model.num_parameters(), features=config.model.features, policy=job.policy)
    return job, data, run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spoofwatch train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, type=Path, help="corpus manifest (JSONL)")
    parser.add_argument("--policy", required=True, choices=POLICIES, help="label policy (docs/labels.md)")
    parser.add_argument("--out", required=True, type=Path, help="run folder: checkpoints and log")
    parser.add_argument("--small", action="store_true", help="configs/train/small.toml in the working directory: < 2 min")
    parser.add_argument("--config", type=Path, action="append", default=[], help="recipe TOML (deltas)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        job, data, run = set_up(args)
    except (OSError, ValueError, ManifestError, SetupError) as exc:
        print(f"spoofwatch train: {exc}", file=sys.stderr)
        return 2
    train_loop(job, data, run)
    print(f"done: step {run.step}, best dev mean EER {run.best:.4f}, checkpoints in {job.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
