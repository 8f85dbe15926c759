"""Self-describing checkpoints: the resolved config travels with the weights and rebuilds the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from streaming_models.resynthesis.codec import Codec
from streaming_models.resynthesis.config import ResynthConfig, config_from_dict
from streaming_models.resynthesis.vocoder import MelVocoder
from streaming_models.runtime.settings import ConfigError

CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not a resynthesis checkpoint; the message names the file."""


def build_model(config: ResynthConfig) -> torch.nn.Module:
    return Codec(config.codec) if config.kind == "codec" else MelVocoder(config.vocoder)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    tmp.replace(path)  # a crash mid-save never leaves a truncated model.pt


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a resynthesis checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def config_of(payload: dict[str, Any], path: Path) -> ResynthConfig:
    try:
        return config_from_dict(payload["config"], where=f"{path} (saved config)")
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path}: saved config unusable: {exc}") from exc


def load_model(path: Path) -> tuple[ResynthConfig, torch.nn.Module]:
    """The model in eval mode, rebuilt from the config stored in the checkpoint."""
    payload = load_checkpoint(path)
    config = config_of(payload, path)
    model = build_model(config)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the saved config: {exc}") from exc
    model.eval()
    return config, model
