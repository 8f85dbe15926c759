"""The training recipe: one frozen dataclass whose fields are the keys of configs/train/*.toml.

Its defaults are the default recipe; a recipe file holds only what differs, and `spoofwatch train
--config a.toml --config b.toml` merges the files left to right (streaming_models/runtime/settings.py:
an unknown key or a bad value stops the run, naming the file and the key). The network is the
`[model]` table (model.ModelConfig). docs/model-card.md records what each choice measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from streaming_models.model import ModelConfig
from streaming_models.runtime.settings import require

SHARES = ("noise_prob", "tilt_prob", "pair_fraction")
AT_LEAST_ONE = ("num_threads", "batch_size", "warmup_hops", "max_steps", "eval_interval", "norm_fit_crops")
AT_LEAST_ZERO = ("max_train_items", "dev_max_items", "warmup_steps", "max_minutes", "min_lr", "weight_decay")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1337  # seeds the initial weights, the crops, the augmentation and the item subsets
    num_threads: int = 2  # torch CPU threads, set by train.py's entry point only
    # data
    batch_size: int = 32  # crops per step
    crop_min_s: float = 1.0  # shortest random crop; each crop is one stream from all-zero state
    crop_max_s: float = 6.0  # longest random crop (one length per batch)
    max_train_items: int = 0  # train on a seeded subset of this many items (0 = all)
    dev_max_items: int = 400  # dev items scored at each evaluation, a seeded subset (0 = all)
    dev_seconds: float = 4.0  # a dev clip's score is the output after this much audio (or at its end)
    exclude_codec_families: tuple[str, ...] = ()  # neural codec families dropped from both splits
    exclude_generators: tuple[str, ...] = ()  # generator families dropped from both splits
    only_spoof_generators: tuple[str, ...] = ()  # when set, the spoofs of every other generator are dropped from both splits (a specialist member)
    generator_weights: dict[str, float] = field(default_factory=dict)  # family -> sampling weight within its class (1 if unnamed)
    pair_fraction: float = 0.0  # share of each batch given to (spoof, its ground truth) pairs cropped alike
    pair_weight: float = 1.0  # weight of the pairs' ranking loss
    pair_margin: float = 1.0  # by how much each pair's spoof logit should exceed its truth's, at every hop
    # augmentation (training crops only, both classes alike)
    gain_db_min: float = -18.0  # lowest random gain, dB
    gain_db_max: float = 6.0  # highest random gain, dB
    noise_prob: float = 0.4  # share of crops given coloured noise
    snr_db_min: float = 10.0  # lowest signal-to-noise ratio of that noise, dB
    snr_db_max: float = 40.0  # highest, dB
    tilt_prob: float = 0.3  # share of crops given a random first-order spectral tilt
    # loss
    warmup_hops: int = 5  # a crop's per-hop loss weight ramps up linearly over its first hops (0.5 s)
    genuine_from_first_hop: bool = False  # the ramp spares only spoof crops' spoof loss: genuine crops must
    # score 'not spoof' from their first hop, so a member stays quiet until it has heard enough
    codec_weight: float = 1.0  # weight of the codec head's loss, the spoof head's being 1
    # optimizer: AdamW, linear warmup then cosine decay
    max_steps: int = 3000  # step budget
    max_minutes: float = 55.0  # wall-clock budget (0 = none); the schedule follows whichever is further along
    lr: float = 3e-3  # peak learning rate
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_steps: int = 100  # steps of linear learning-rate warmup
    weight_decay: float = 1e-2  # AdamW weight decay
    grad_clip: float = 1.0  # gradient norm clip
    # bookkeeping
    eval_interval: int = 250  # steps between dev evaluations (each writes ckpt.pt, and best.pt if better)
    operating_fpr: float = 0.01  # the operating threshold flags this share of dev negatives
    norm_fit_crops: int = 128  # training crops that fit the feature standardization
    model: ModelConfig = field(default_factory=ModelConfig)  # the network: the [model] table

    def __post_init__(self) -> None:
        for name in SHARES:
            value = getattr(self, name)
            require(name, 0.0 <= value <= 1.0, f"is a share, within 0..1, got {value!r}")
        for name in AT_LEAST_ONE:
            require(name, getattr(self, name) >= 1, f"must be >= 1, got {getattr(self, name)!r}")
        for name in AT_LEAST_ZERO:
            require(name, getattr(self, name) >= 0, f"must be >= 0, got {getattr(self, name)!r}")
        require("operating_fpr", 0.0 < self.operating_fpr < 1.0, f"must be within 0..1, got {self.operating_fpr!r}")
        require("crop_min_s", 0.0 < self.crop_min_s <= self.crop_max_s,
                f"must be > 0 and <= crop_max_s, got {self.crop_min_s!r} and {self.crop_max_s!r}")
        require("gain_db_min", self.gain_db_min <= self.gain_db_max, "must not exceed gain_db_max")
        require("snr_db_min", self.snr_db_min <= self.snr_db_max, "must not exceed snr_db_max")
        require("lr", self.lr > 0 and self.lr >= self.min_lr, f"must be > 0 and >= min_lr, got {self.lr!r}")
        require("generator_weights", all(w > 0 for w in self.generator_weights.values()),
                f"must be positive (to drop a generator, use exclude_generators), got {self.generator_weights!r}")

    def recipe(self) -> dict[str, Any]:
        """The training keys as a checkpoint stores them ("config"; the network is "model_args")."""
        return {k: v for k, v in asdict(self).items() if k != "model"}


# Training options removed in issue #24 (docs/model-card.md keeps their studies; commit 873a065 has
# the code), each with its value when off. A checkpoint written before then stores them all.
REMOVED_OPTIONS_OFF: dict[str, Any] = {
    "clip_start_prob": 0.0, "adaptive_eta": 0.0, "spoof_extra_noise_prob": 0.0, "spoof_lossy_prob": 0.0,
    "lowpass_prob": 0.0, "eq_prob": 0.0, "reverb_prob": 0.0, "spoof_reverb_prob": 0.0, "freq_mask_prob": 0.0,
    "aux_targets": [],
}


def removed_options_used(stored: Mapping[str, Any]) -> list[str]:
    """The removed options a stored training config ("config" of a checkpoint) had on."""
    return sorted(key for key, off in REMOVED_OPTIONS_OFF.items() if key in stored and stored[key] != off)
