"""Training loop for the in-house codecs and the mel vocoder (nanoGPT-style: one readable loop).

Deterministic for a given config and thread count: torch and numpy are seeded from the config, the
crop sampler draws from a numpy Generator, and both RNG states are saved in every checkpoint, so a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from tqdm import tqdm

from streaming_models.resynthesis.checkpoint import (
    build_model,
    config_of,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from streaming_models.resynthesis.codec import Codec
from streaming_models.resynthesis.config import SAMPLE_RATE_HZ, ResynthConfig
from streaming_models.resynthesis.dataset import CropSampler, load_training_audio
from streaming_models.resynthesis.discriminator import (
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from streaming_models.resynthesis.losses import MelLoss, MultiResolutionSTFTLoss
from streaming_models.resynthesis.vocoder import MelVocoder

log = structlog.get_logger(__name__)

# Train fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"max_steps", "max_minutes", "checkpoint_every_steps", "log_every_steps"}


class TrainingError(RuntimeError):
    """Training cannot start or resume; the message says why and what to do."""


@dataclass
class Trainer:
    config: ResynthConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    stft_loss: MultiResolutionSTFTLoss
    mel_loss: MelLoss
    rng: np.random.Generator
    discriminator: MultiScaleSTFTDiscriminator | None = None
    disc_optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def build_trainer(config: ResynthConfig, device: str = "cpu") -> Trainer:
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    model.train()
    tc, lc = config.train, config.loss
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.learning_rate, betas=tc.adam_betas)
    discriminator, disc_optimizer = None, None
    if lc.discriminator:
        discriminator = MultiScaleSTFTDiscriminator(lc.disc_resolutions, lc.disc_channels).to(device)
        disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=tc.learning_rate, betas=tc.adam_betas)
    return Trainer(config=config, model=model, optimizer=optimizer,
                   stft_loss=MultiResolutionSTFTLoss(lc.stft_resolutions),
                   mel_loss=MelLoss(SAMPLE_RATE_HZ, lc.mel_n_fft, lc.mel_hop, lc.mel_bins).to(device),
                   rng=np.random.default_rng(config.seed),
                   discriminator=discriminator, disc_optimizer=disc_optimizer)


def train_step(trainer: Trainer, batch: torch.Tensor) -> dict[str, float]:
    """One optimisation step on batch (batch, samples); returns the loss terms."""
    cfg = trainer.config.loss
    audio = batch.unsqueeze(1)  # (batch, 1, samples)
    terms: dict[str, torch.Tensor] = {}
    if isinstance(trainer.model, Codec):
        out = trainer.model(audio, quantize=trainer.step >= trainer.config.train.quantizer_warmup_steps)
        fake = out.audio[:, 0]
        terms["commit"] = cfg.commitment_weight * out.quantizer.commitment_loss
        if trainer.config.codec.quantizer == "straight_through":
            terms["codebook"] = cfg.codebook_weight * out.quantizer.codebook_loss
    else:
        assert isinstance(trainer.model, MelVocoder)
        fake = trainer.model.resynthesize(audio)[:, 0]
    terms["stft"] = cfg.stft_weight * trainer.stft_loss(fake, batch)
    terms["mel"] = cfg.mel_weight * trainer.mel_loss(fake, batch)

    disc_terms: dict[str, float] = {}
    if trainer.discriminator is not None and trainer.step >= cfg.disc_start_step:
        assert trainer.disc_optimizer is not None
        real_out = trainer.discriminator(batch)
        loss_d = discriminator_loss(real_out, trainer.discriminator(fake.detach()))
        trainer.disc_optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        torch.nn.utils.clip_grad_norm_(trainer.discriminator.parameters(), trainer.config.train.grad_clip)
        trainer.disc_optimizer.step()
        fake_out = trainer.discriminator(fake)
        terms["adv"] = cfg.adversarial_weight * generator_adversarial_loss(fake_out)
        terms["fm"] = cfg.feature_matching_weight * feature_matching_loss(real_out, fake_out)
        disc_terms["disc"] = float(loss_d.detach())

    loss = torch.stack(list(terms.values())).sum()
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if trainer.discriminator is not None:
        trainer.discriminator.zero_grad(set_to_none=True)  # its grads from the generator loss are unused
    torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.config.train.grad_clip)
    trainer.optimizer.step()
    trainer.step += 1
    return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}, **disc_terms}


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    state: dict[str, Any] = {
        "config": trainer.config.to_dict(),
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "step": trainer.step,
        "elapsed_s": trainer.elapsed_s,
        "history": trainer.history,
        "numpy_rng": json.dumps(trainer.rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "parameters": count_parameters(trainer.model),
    }
    if trainer.discriminator is not None and trainer.disc_optimizer is not None:
        state["discriminator"] = trainer.discriminator.state_dict()
        state["disc_optimizer"] = trainer.disc_optimizer.state_dict()
    return state


def restore_trainer(trainer: Trainer, state: dict[str, Any]) -> None:
    # Optimizer.load_state_dict moves its tensors to the parameters' device.
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.discriminator is not None and trainer.disc_optimizer is not None:
        if "discriminator" not in state:
            raise TrainingError("the checkpoint was trained without a discriminator; the config enables one")
        trainer.discriminator.load_state_dict(state["discriminator"])
        trainer.disc_optimizer.load_state_dict(state["disc_optimizer"])
    trainer.step = int(state["step"])
    trainer.elapsed_s = float(state["elapsed_s"])
    trainer.history = list(state["history"])
    trainer.rng.bit_generator.state = json.loads(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])


def _check_same_run(saved: ResynthConfig, wanted: ResynthConfig, path: Path) -> None:
    a, b = saved.to_dict(), wanted.to_dict()
    for section in ("train",):
        for key in RESUMABLE_CHANGES:
            a[section].pop(key), b[section].pop(key)
    if a != b:
        changed = sorted(k for k in a if a[k] != b[k])
        raise TrainingError(f"{path} was trained with a different config (differs in {changed}); "
                            f"use another --out or the original config")


def train(config: ResynthConfig, out_dir: Path, *, data_dir: Path, resume: bool = False,
          max_minutes: float | None = None, progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Train until max_steps or the time budget (accumulated across resumptions); return the summary.

    On a GPU the run is resumable but not bit-exact on resumption (the CUDA RNG and kernels are not
    part of the checkpoint); on CPU it is.
    """
    checkpoint_path = out_dir / "model.pt"
    if checkpoint_path.exists() and not resume:
        raise TrainingError(f"{checkpoint_path} exists: pass --resume to continue it or --out to start elsewhere")
    trainer = build_trainer(config, device)
    if resume:
        payload = load_checkpoint(checkpoint_path)
        _check_same_run(config_of(payload, checkpoint_path), config, checkpoint_path)
        restore_trainer(trainer, payload)
        log.info("resumed", checkpoint=str(checkpoint_path), step=trainer.step)
    budget_s = 60.0 * (config.train.max_minutes if max_minutes is None else max_minutes)
    sampler = CropSampler(load_training_audio(config.data, data_dir), config.crop_samples)
    log.info("training_start", name=config.name, parameters=count_parameters(trainer.model),
             training_audio_s=round(sampler.total_seconds), step=trainer.step)

    window: list[dict[str, float]] = []
    bar = tqdm(total=config.train.max_steps, initial=trainer.step, desc=config.name, disable=not progress,
               dynamic_ncols=True)
    started = time.monotonic() - trainer.elapsed_s
    while trainer.step < config.train.max_steps and trainer.elapsed_s < budget_s:
        batch = torch.from_numpy(sampler.batch(trainer.rng, config.train.batch_size)).to(device)
        window.append(train_step(trainer, batch))
        trainer.elapsed_s = time.monotonic() - started
        bar.update(1)
        if trainer.step % config.train.log_every_steps == 0:
            means = {k: round(float(np.mean([w[k] for w in window if k in w])), 4) for k in window[-1]}
            trainer.history.append({"step": trainer.step, "elapsed_s": round(trainer.elapsed_s, 1), **means})
            bar.set_postfix(means)
            log.info("train_progress", step=trainer.step, **means)
            window.clear()
        if trainer.step % config.train.checkpoint_every_steps == 0:
            save_checkpoint(checkpoint_path, trainer_state(trainer))
    bar.close()
    save_checkpoint(checkpoint_path, trainer_state(trainer))
    stopped_by = "max_steps" if trainer.step >= config.train.max_steps else "max_minutes"
    if stopped_by == "max_minutes":  # a shorter model than the config's: corpora built on it differ
        log.warning("time_budget_ended_training", step=trainer.step, max_steps=config.train.max_steps,
                    max_minutes=budget_s / 60.0)
    summary = {"name": config.name, "kind": config.kind, "family": config.family, "step": trainer.step,
               "max_steps": config.train.max_steps, "stopped_by": stopped_by,
               "elapsed_s": round(trainer.elapsed_s, 1), "parameters": count_parameters(trainer.model),
               "bitrate_bps": config.codec.bitrate_bps if config.kind == "codec" else None,
               "first": trainer.history[0] if trainer.history else None,
               "last": trainer.history[-1] if trainer.history else None,
               "checkpoint": str(checkpoint_path)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
