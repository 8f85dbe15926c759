"""Train the streaming detector.

    spoofwatch train --manifest corpus/medium/manifest.jsonl --policy codec_as_bonafide --out runs/medium
    spoofwatch train ... --small             # the tests' recipe: under 2 minutes
    spoofwatch train ... --config configs/train/lfcc.toml   # a recipe file holds only deltas
    spoofwatch train ... --resume            # continue from OUT/ckpt.pt

A straight script in the nanoGPT spirit: a flat commented config, then data, model,
loop. Every crop runs through the streaming path (the chunked forward carries state
across hops exactly as hop-by-hop calls would) and the loss covers every hop, ramped over
the first `warmup_hops` so early hops learn without dominating.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from tqdm import tqdm

from streaming_models.data.labels import POLICIES, check_policy
from streaming_models.data.manifest import CorpusItem, ManifestError, read_manifest
from streaming_models.data.transforms.channel import REVERB_RT60_RANGE_S
from streaming_models.hashing import file_hash
from streaming_models.logs import log_to_stderr
from streaming_models.metrics import eer, threshold_at_false_positive_rate
from streaming_models.model import Detector, ModelConfig, StreamingDetector
from streaming_models.training_data import (
    Augmentation,
    Clip,
    augment,
    aux_labels,
    ground_truth_pairs,
    load_clips,
    random_band_mask,
    sample_batch,
    sampling_weights,
    with_lossy_spoofs,
)

log = structlog.get_logger(__name__)
REPO = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------------------------
# default config (the default recipe). configs/train/*.toml hold only what differs.
DEFAULT_CONFIG: dict[str, Any] = dict(  # noqa: C408 (keyword form reads like nanoGPT's flat config)
    seed=1337,
    num_threads=2,  # torch CPU threads, set here in the entry point only
    # data
    batch_size=32,
    crop_min_s=1.0,  # random crops of 1..6 s, each one stream from all-zero state
    crop_max_s=6.0,
    # share of crops that start at the clip's first sample, as every scored stream does (its leading
    # silence included); 0 = all crop starts uniform, as in the recipe
    clip_start_prob=0.0,
    max_train_items=0,  # 0 = all; else a seeded subset (recipes for quick runs)
    dev_max_items=400,  # dev split items scored at each evaluation (seeded subset)
    dev_seconds=4.0,  # dev score = the model's output after this much audio (or the clip's end)
    # leave-one-out studies: items of these neural codec families / generator families are dropped
    # from both splits, so neither training nor model selection ever sees them
    exclude_codec_families=[],
    exclude_generators=[],
    # a [generator_weights] table: generator family -> relative sampling weight within its class (1 where
    # unnamed); it shifts the mix of attacks without dropping any (training_data.sampling_weights)
    generator_weights={},
    # loss-adaptive sampling (a soft group DRO over generator families, Sagawa et al. 2020): every
    # adaptive_interval steps each family's weight becomes generator_weights x exp(adaptive_eta x its
    # running spoof-head loss per crop), so the families the model finds hard are drawn more. 0 = off.
    adaptive_eta=0.0, adaptive_interval=50, adaptive_decay=0.98,
    # augmentation (training only)
    gain_db_min=-18.0, gain_db_max=6.0,
    noise_prob=0.4, snr_db_min=10.0, snr_db_max=40.0,
    spoof_extra_noise_prob=0.0,  # of the spoof crops that drew no noise, this share gets it too
    # share of the uncoded spoof training clips given a Vorbis or MP3 round trip once, at load time,
    # as most genuine sources had before they reached us (training_data.with_lossy_spoofs)
    spoof_lossy_prob=0.0,
    tilt_prob=0.3,
    lowpass_prob=0.0, lowpass_min=0.42, lowpass_max=0.95,  # random band limit, cut-off / Nyquist
    eq_prob=0.0, eq_max_bands=4, eq_gain_db_min=-24.0, eq_gain_db_max=12.0,  # random equalizer
    reverb_prob=0.0, reverb_rt60_min_s=0.15, reverb_rt60_max_s=0.9,  # synthetic room, both classes
    reverb_drr_min_db=-3.0, reverb_drr_max_db=15.0,
    spoof_reverb_prob=0.0,  # of the spoof crops that drew no room, this share gets one too
    # frequency masking of the features (random_band_mask): crops masked, masks per crop, widest
    # mask as a fraction of the front end's channels; drawn from a generator of its own, so a run
    # with it sees the same crops and waveform augmentation as the same seed's run without.
    # Measured on six paired seeds, both heads worse (docs/model-card.md): off in the recipe.
    freq_mask_prob=0.0, freq_mask_count=2, freq_mask_max_fraction=0.2,
    # (spoof, ground truth) pairs from pages that pair them (training_data.ground_truth_pairs): this
    # share of each batch's rows are pairs cropped at the same place, and a ranking loss asks each
    # pair's spoof logit to exceed its truth's by pair_margin at every hop (weight pair_weight).
    # Within a pair speaker, text, page and channel are the same: only the synthesis differs.
    pair_fraction=0.0, pair_weight=1.0, pair_margin=1.0,
    # loss
    warmup_hops=5,  # loss weight ramps linearly over the first 5 hops (0.5 s)
    codec_weight=1.0,
    # with [model] spoof_head = "cosine" (one-class): the cosine each class must reach, bona fide
    # above the first, spoof below the second (OC-softmax's m0, m1)
    oc_margin_bonafide=0.9, oc_margin_spoof=0.2,
    # auxiliary heads (training only, not exported): classify each crop's "generator" family and/or
    # its "codec_family" (CorpusItem fields) from the same hop outputs, weighted by aux_weight
    aux_targets=[],
    aux_weight=0.3,
    # optimizer: AdamW, linear warmup then cosine decay
    max_steps=3000,
    max_minutes=55.0,  # wall-clock budget (0 = none): on a busy machine it ends the run and the
                       # cosine schedule follows whichever of steps or minutes is further along
    lr=3e-3, min_lr=1e-4, warmup_steps=100,
    weight_decay=1e-2, grad_clip=1.0,
    # bookkeeping
    eval_interval=250,
    operating_fpr=0.01,  # operating threshold: flags this fraction of dev negatives
    norm_fit_crops=128,  # crops used to fit the feature standardization
)
# aux_classes is not a recipe key: the auxiliary heads' classes come from the training data
DEFAULT_MODEL_ARGS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                                      if f.name != "aux_classes"}
# ----------------------------------------------------------------------------------------------


def apply_overrides(path: Path, config: dict[str, Any], model_args: dict[str, Any]) -> None:
    """Merge a TOML recipe: top-level keys override `config`, a [model] table overrides model_args."""
    raw = tomllib.loads(path.read_text())
    for key, value in raw.pop("model", {}).items():
        if key not in model_args:
            raise ValueError(f"{path}: unknown model key {key!r}")
        model_args[key] = value
    for key, value in raw.items():
        if key not in config:
            raise ValueError(f"{path}: unknown config key {key!r}")
        if isinstance(config[key], dict):
            if not (isinstance(value, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    and v > 0 for v in value.values())):
                raise ValueError(f"{path}: {key} must be a table of positive numbers (to drop a generator, "
                                 f"use exclude_generators), got {value!r}")
            config[key] = {**config[key], **value}  # later recipe files add to or change earlier ones
            continue
        if isinstance(config[key], list) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"{path}: {key} must be a list of strings, got {value!r}")
        if key.endswith(("_prob", "_fraction")) and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ValueError(f"{path}: {key} is a share, within 0..1, got {value!r}")
        if key == "freq_mask_count" and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{path}: freq_mask_count must be a whole number >= 1, got {value!r}")
        config[key] = value


def check_config(config: dict[str, Any]) -> None:
    """What no single key can check: run once after every recipe file is merged."""
    if not (config["adaptive_eta"] >= 0 and isinstance(config["adaptive_interval"], int)
            and config["adaptive_interval"] >= 1 and 0 <= config["adaptive_decay"] < 1):
        raise ValueError(f"adaptive sampling needs adaptive_eta >= 0, a whole adaptive_interval >= 1 and "
                         f"adaptive_decay within 0..1 (1 excluded); got {config['adaptive_eta']!r}, "
                         f"{config['adaptive_interval']!r}, {config['adaptive_decay']!r}")
    low, high = config["reverb_rt60_min_s"], config["reverb_rt60_max_s"]
    shortest, longest = REVERB_RT60_RANGE_S
    if not shortest <= low <= high <= longest:
        raise ValueError(f"reverberation times need {shortest:g} <= reverb_rt60_min_s <= reverb_rt60_max_s <= "
                         f"{longest:g} (seconds), got {low!r} and {high!r}")
    if not config["reverb_drr_min_db"] <= config["reverb_drr_max_db"]:
        raise ValueError(f"reverb_drr_min_db must not exceed reverb_drr_max_db, got {config['reverb_drr_min_db']!r} "
                         f"and {config['reverb_drr_max_db']!r}")
    if not -1.0 <= config["oc_margin_spoof"] < config["oc_margin_bonafide"] <= 1.0:
        raise ValueError(f"the one-class margins are cosines with oc_margin_spoof < oc_margin_bonafide, "
                         f"within -1..1; got {config['oc_margin_spoof']!r} and {config['oc_margin_bonafide']!r}")


def progress_of(step: int, elapsed_s: float, config: dict[str, Any]) -> float:
    """Fraction of the run done: steps or wall-clock budget, whichever is further along."""
    by_steps = step / config["max_steps"]
    by_time = elapsed_s / (60.0 * config["max_minutes"]) if config["max_minutes"] > 0 else 0.0
    return max(by_steps, by_time)


def lr_at(step: int, progress: float, config: dict[str, Any]) -> float:
    if step < config["warmup_steps"]:
        return config["lr"] * (step + 1) / config["warmup_steps"]
    return config["min_lr"] + 0.5 * (config["lr"] - config["min_lr"]) * (1 + math.cos(math.pi * min(1.0, progress)))


def streaming_loss(model: StreamingDetector, audio: torch.Tensor, spoof: torch.Tensor, codec: torch.Tensor,
                   hop_mask: torch.Tensor, config: dict[str, Any],
                   aux_targets: dict[str, torch.Tensor] | None = None,
                   band_mask: torch.Tensor | None = None,
                   pair_rows: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-hop loss of both heads (and of the auxiliary heads, class indices [B]), ramped in; and each
    crop's spoof-head loss [B] (detached: what loss-adaptive sampling reads)."""
    logits, aux_logits, _ = model.forward_with_aux(audio, model.initial_states(audio.shape[0]),
                                                   band_mask)  # [B, hops, 2]
    hops = logits.shape[1]
    ramp = torch.clamp((torch.arange(hops) + 1.0) / config["warmup_hops"], max=1.0)  # [hops]
    weight = hop_mask * ramp  # [B, hops]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    spoof_logits = logits[..., 0]
    if model.config.spoof_head == "cosine":
        spoof_logits = spoof_logits + one_class_shift(model.config, spoof, config)[:, None]
    loss = bce(spoof_logits, spoof[:, None].expand(-1, hops), reduction="none")
    spoof_per_crop = ((loss * weight).sum(1) / weight.sum(1).clamp_min(1e-8)).detach()
    loss = loss + config["codec_weight"] * bce(logits[..., 1], codec[:, None].expand(-1, hops), reduction="none")
    for name, target in (aux_targets or {}).items():
        ce = torch.nn.functional.cross_entropy(aux_logits[name].transpose(1, 2), target[:, None].expand(-1, hops),
                                               reduction="none")  # [B, hops]
        loss = loss + config["aux_weight"] * ce
    total = (loss * weight).sum() / weight.sum()
    if pair_rows is not None and len(pair_rows):
        total = total + config["pair_weight"] * pair_ranking_loss(spoof_logits, weight, pair_rows, config["pair_margin"])
    return total, spoof_per_crop


def pair_ranking_loss(spoof_logits: torch.Tensor, weight: torch.Tensor, pair_rows: np.ndarray,
                      margin: float) -> torch.Tensor:
    """softplus(margin - (spoof logit - its truth's logit)) per hop, over the hops both rows hold."""
    fake, real = torch.from_numpy(pair_rows[:, 0]), torch.from_numpy(pair_rows[:, 1])
    both = torch.minimum(weight[fake], weight[real])  # [P, hops]
    gap = spoof_logits[fake] - spoof_logits[real]
    return (torch.nn.functional.softplus(margin - gap) * both).sum() / both.sum().clamp_min(1e-8)


def adaptive_generator_weights(running_loss: dict[str, float], eta: float,
                               base: dict[str, float]) -> dict[str, float]:
    """Each generator family's sampling weight: its recipe weight x exp(eta x its running spoof loss).
    Only ratios within a class matter (training_data.sampling_weights normalizes per class), so the
    exponent is taken from the highest loss down: it cannot overflow."""
    highest = max(running_loss.values(), default=0.0)
    return {g: base.get(g, 1.0) * math.exp(eta * (loss - highest)) for g, loss in running_loss.items()}


def one_class_shift(model_cfg: ModelConfig, spoof: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """What to add to a cosine head's logit l = s * (mid - cos) so that BCE becomes OC-softmax's
    loss: log(1 + exp(s * (m0 - cos))) for bona fide (target 0), log(1 + exp(s * (cos - m1))) for
    spoof (target 1). Per row [B]."""
    s, mid = model_cfg.cosine_scale, model_cfg.cosine_mid
    bonafide_shift = s * (config["oc_margin_bonafide"] - mid)
    spoof_shift = -s * (mid - config["oc_margin_spoof"])
    return torch.where(spoof > 0.5, spoof_shift, bonafide_shift)


@torch.no_grad()
def evaluate_dev(model: Detector, clips: list[Clip], config: dict[str, Any]
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Dev EER per head from the output after `dev_seconds` (or the clip's end); and thresholds."""
    model.eval()
    hop = model.config.hop_samples
    max_hops = max(1, int(config["dev_seconds"] * model.config.sample_rate_hz) // hop)
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
        scores[lo:lo + len(group)] = torch.sigmoid(logits[torch.arange(len(group)), torch.from_numpy(last)]).numpy()
    model.train()
    metrics, thresholds = {}, {}
    for col, head in enumerate(model.config.heads):
        labels = np.array([clip.spoof if head == "spoof" else clip.codec for clip in clips])
        if 0 < labels.sum() < len(labels):
            metrics[f"{head}_eer"] = eer(scores[:, col], labels)[0]
        if (labels == 0).any():
            fpr_threshold = threshold_at_false_positive_rate(scores[labels == 0, col], config["operating_fpr"])
            thresholds[head] = max(0.5, min(fpr_threshold, 0.999))
    return metrics, thresholds


def seeded_subset(items: list[Any], n: int, seed: int) -> list[Any]:
    if n <= 0 or n >= len(items):
        return items
    keep = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    return [items[i] for i in sorted(keep)]


def excluding(items: list[CorpusItem], codec_families: list[str], generators: list[str]) -> list[CorpusItem]:
    dropped_families, dropped_generators = set(codec_families), set(generators)
    unknown = sorted((dropped_families - {i.codec_family for i in items})
                     | (dropped_generators - {i.generator for i in items}))
    if unknown:  # a misspelt name would otherwise exclude nothing, silently
        raise ValueError(f"exclude_codec_families / exclude_generators name {unknown}, which no item of "
                         f"the manifest has")
    kept = [i for i in items if i.codec_family not in dropped_families and i.generator not in dropped_generators]
    if len(kept) < len(items):
        log.info("excluded", items=len(items) - len(kept), codec_families=sorted(dropped_families),
                 generators=sorted(dropped_generators))
    return kept


def weighted_generators(items: list[CorpusItem], generator_weights: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(generator_weights) - {i.generator for i in items})
    if unknown:  # a misspelt or excluded name would otherwise weight nothing, silently
        raise ValueError(f"generator_weights names {unknown}, which no training item has")
    if generator_weights:
        log.info("generator_weights", **generator_weights)
    return generator_weights


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spoofwatch train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, type=Path, help="corpus manifest (JSONL)")
    parser.add_argument("--policy", required=True, choices=POLICIES, help="label policy (docs/labels.md)")
    parser.add_argument("--out", required=True, type=Path, help="run folder: checkpoints and log")
    parser.add_argument("--small", action="store_true", help="configs/train/small.toml: < 2 min")
    parser.add_argument("--config", type=Path, action="append", default=[], help="recipe TOML (deltas)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    args = parser.parse_args(argv)
    log_to_stderr()
    policy = check_policy(args.policy)
    config, model_args = dict(DEFAULT_CONFIG), dict(DEFAULT_MODEL_ARGS)
    recipes = ([REPO / "configs" / "train" / "small.toml"] if args.small else []) + args.config
    try:
        for recipe in recipes:
            apply_overrides(recipe, config, model_args)
        check_config(config)
        model_cfg = ModelConfig(**model_args)
        items = list(read_manifest(args.manifest))
    except (OSError, ValueError, ManifestError, tomllib.TOMLDecodeError) as exc:
        print(f"spoofwatch train: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(config["num_threads"])
    torch.manual_seed(config["seed"])
    rng = np.random.default_rng(config["seed"])
    args.out.mkdir(parents=True, exist_ok=True)

    # ---- data ----
    try:
        items = excluding(items, config["exclude_codec_families"], config["exclude_generators"])
    except ValueError as exc:
        print(f"spoofwatch train: {exc}", file=sys.stderr)
        return 2
    train_items = seeded_subset([i for i in items if i.split == "train"], config["max_train_items"], config["seed"])
    dev_items = seeded_subset([i for i in items if i.split == "dev"], config["dev_max_items"], config["seed"])
    if not train_items or not dev_items:
        print(f"spoofwatch train: {args.manifest} needs items in both the train and dev splits "
              f"(has {len(train_items)} train, {len(dev_items)} dev)", file=sys.stderr)
        return 2
    try:  # checked before the clips load, so a misspelt family fails in a second, not after a minute
        sampling_factors = weighted_generators(train_items, config["generator_weights"])
    except ValueError as exc:
        print(f"spoofwatch train: {exc}", file=sys.stderr)
        return 2
    sr = model_cfg.sample_rate_hz
    train = load_clips(args.manifest, train_items, policy, sr, "loading train")
    if config["spoof_lossy_prob"] > 0:
        train = with_lossy_spoofs(train, config["spoof_lossy_prob"], sr, np.random.default_rng(config["seed"] + 3))
    dev = load_clips(args.manifest, dev_items, policy, sr, "loading dev")
    weights = sampling_weights(train, sampling_factors)
    pairs = ground_truth_pairs(train)
    pair_count = round(config["pair_fraction"] * config["batch_size"] / 2)
    if pair_count and not len(pairs):
        print(f"spoofwatch train: pair_fraction > 0 but no training spoof has its ground truth in {args.manifest}",
              file=sys.stderr)
        return 2
    try:  # an unknown target, or one with a single class in the training data
        aux = {target: aux_labels(train, target) for target in config["aux_targets"]}
        aux_classes = {target: classes for target, (classes, _) in aux.items()}
        model_cfg = dataclasses.replace(model_cfg, aux_classes=aux_classes)
    except ValueError as exc:
        print(f"spoofwatch train: {exc}", file=sys.stderr)
        return 2
    hop = model_cfg.hop_samples
    min_hops = max(1, round(config["crop_min_s"] * sr / hop))
    max_hops = max(min_hops, round(config["crop_max_s"] * sr / hop))
    aug = Augmentation((config["gain_db_min"], config["gain_db_max"]), config["noise_prob"],
                       (config["snr_db_min"], config["snr_db_max"]), config["tilt_prob"],
                       config["lowpass_prob"], (config["lowpass_min"], config["lowpass_max"]),
                       eq_prob=config["eq_prob"], eq_max_bands=config["eq_max_bands"],
                       eq_gain_db=(config["eq_gain_db_min"], config["eq_gain_db_max"]),
                       reverb_prob=config["reverb_prob"],
                       reverb_rt60_s=(config["reverb_rt60_min_s"], config["reverb_rt60_max_s"]),
                       reverb_drr_db=(config["reverb_drr_min_db"], config["reverb_drr_max_db"]),
                       spoof_reverb_prob=config["spoof_reverb_prob"],
                       spoof_extra_noise_prob=config["spoof_extra_noise_prob"])
    aug_gen = torch.Generator().manual_seed(config["seed"])
    mask_gen = torch.Generator().manual_seed(config["seed"] + 2)
    family_loss: dict[str, float] = {}  # running spoof-head loss per generator family (adaptive sampling)
    log.info("data", train=len(train), dev=len(dev), ground_truth_pairs=len(pairs), train_hours=round(sum(len(c.audio) for c in train) / sr / 3600, 2))

    # ---- model, optimizer, resume ----
    model = StreamingDetector(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    step, best, thresholds, dev_metrics, elapsed_before = 0, math.inf, {}, {}, 0.0
    ckpt_path = args.out / "ckpt.pt"
    if args.resume:
        if not ckpt_path.is_file():
            print(f"spoofwatch train: --resume but {ckpt_path} does not exist", file=sys.stderr)
            return 2
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["model_args"] != model_cfg.to_dict() or ckpt["policy"] != policy:
            print("spoofwatch train: --resume with a different model config or policy", file=sys.stderr)
            return 2
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, best, elapsed_before = ckpt["step"], ckpt["best"], ckpt["elapsed_s"]
        thresholds, dev_metrics = ckpt["thresholds"], ckpt["dev_metrics"]
        if "family_loss" in ckpt:  # absent from checkpoints older than loss-adaptive sampling
            family_loss, sampling_factors = ckpt["family_loss"], ckpt["sampling_factors"]
            weights = sampling_weights(train, sampling_factors)
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        aug_gen.set_state(ckpt["aug_rng"])
        if "mask_rng" in ckpt:  # absent from checkpoints older than frequency masking
            mask_gen.set_state(ckpt["mask_rng"])
    else:  # standardize features with statistics of (un-augmented) training crops
        fit = sample_batch(train, weights, np.random.default_rng(config["seed"] + 1), config["norm_fit_crops"],
                           hop, min_hops, min_hops)
        model.frontend.fit_normalization(fit.audio)
    log.info("model", parameters=model.num_parameters(), features=model_cfg.features, policy=policy)

    def save(path: Path) -> None:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "model_args": model_cfg.to_dict(), "config": dict(config), "policy": policy,
                    "manifest": str(args.manifest), "corpus_hash": file_hash(args.manifest),
                    "step": step, "elapsed_s": elapsed_before + time.time() - t0, "best": best, "thresholds": thresholds, "dev_metrics": dev_metrics,
                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "aug_rng": aug_gen.get_state(), "mask_rng": mask_gen.get_state(),
                    "family_loss": family_loss, "sampling_factors": sampling_factors}, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    # ---- loop ----
    model.train()
    running = None
    bar = tqdm(total=config["max_steps"], initial=step, desc="train", unit="step", dynamic_ncols=True)
    t0 = time.time()
    while (progress := progress_of(step, elapsed_before + time.time() - t0, config)) < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, progress, config)
        batch = sample_batch(train, weights, rng, config["batch_size"], hop, min_hops, max_hops,
                             config["clip_start_prob"], pairs, pair_count)
        audio = augment(batch.audio, aug, aug_gen, batch.spoof)
        aux_targets = {target: torch.from_numpy(index[batch.clip_indices]) for target, (_, index) in aux.items()}
        band_mask = (random_band_mask(len(audio), model.frontend.bands, config["freq_mask_prob"],
                                      config["freq_mask_count"], config["freq_mask_max_fraction"], mask_gen)
                     if config["freq_mask_prob"] > 0 else None)
        loss, spoof_per_crop = streaming_loss(model, audio, batch.spoof, batch.codec, batch.hop_mask, config,
                                              aux_targets, band_mask, batch.pair_rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
        optimizer.step()
        step += 1
        if config["adaptive_eta"] > 0:
            for idx, crop_loss in zip(batch.clip_indices, spoof_per_crop.tolist(), strict=True):
                family = train[idx].item.generator
                previous = family_loss.get(family, crop_loss)
                family_loss[family] = config["adaptive_decay"] * previous + (1 - config["adaptive_decay"]) * crop_loss
            if step % config["adaptive_interval"] == 0:
                sampling_factors = adaptive_generator_weights(family_loss, config["adaptive_eta"],
                                                              config["generator_weights"])
                weights = sampling_weights(train, sampling_factors)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", **{k: f"{100 * v:.1f}%" for k, v in dev_metrics.items()})
        done = progress_of(step, elapsed_before + time.time() - t0, config) >= 1.0
        if step % config["eval_interval"] == 0 or done:
            dev_metrics, new_thresholds = evaluate_dev(model, dev, config)
            score = float(np.mean(list(dev_metrics.values()))) if dev_metrics else -step
            log.info("eval", step=step, loss=round(running, 4),
                     minutes=round((elapsed_before + time.time() - t0) / 60, 1),
                     **{k: round(v, 4) for k, v in dev_metrics.items()})
            if score <= best:
                best, thresholds = score, new_thresholds
                save(args.out / "best.pt")
            save(ckpt_path)
    bar.close()
    print(f"done: step {step}, best dev mean EER {best:.4f}, checkpoints in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
