"""Resynthesis model configuration: frozen dataclasses with defaults, TOML files hold only deltas.

A config file names the model (`name`), what it is (`kind`: codec or vocoder), and overrides
fields of the `[codec]`/`[vocoder]`, `[loss]`, `[train]` and `[data]` tables. The resolved config
is saved inside every checkpoint, so a checkpoint rebuilds its model without the TOML file.
Files load through the project's one loader (streaming_models/runtime/settings.py).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from streaming_models.runtime.settings import ConfigError, build, load, require

ModelKind = Literal["codec", "vocoder"]
CodecArchitecture = Literal["conv", "istft"]
QuantizerUpdate = Literal["ema", "straight_through"]
CodecObjective = Literal["none", "compression", "synthesis"]
# Training speech sources by name; only bonafide training speakers are reachable from a config.
TrainingSource = Literal["librispeech-train-clean-100", "fsdd"]
TRAINING_SOURCE_DIRS: dict[str, str] = {
    "librispeech-train-clean-100": "speech/librispeech-subset/train-clean-100",
    "fsdd": "speech/fsdd",
}

SAMPLE_RATE_HZ = 16000


@dataclass(frozen=True)
class CodecConfig:
    architecture: CodecArchitecture = "conv"
    # Sized for CPU training on 2 cores: the full-rate stages dominate the cost, so they stay narrow.
    channels: int = 16  # first encoder stage; doubled after each downsampling up to max_channels
    max_channels: int = 128
    strides: tuple[int, ...] = (2, 4, 5, 8)  # product = hop in samples per latent frame
    residual_dilations: tuple[int, ...] = (1,)  # one residual unit per dilation, per stage
    latent_dim: int = 64
    codebook_size: int = 1024
    num_quantizers: int = 12
    quantizer: QuantizerUpdate = "ema"
    ema_decay: float = 0.99
    # EMA uses per step below which a code is re-seeded from the batch; a fresh code starts at 1.0,
    # so unused it survives log(threshold)/log(decay) steps (~390 at 0.02, 0.99).
    dead_code_threshold: float = 0.02
    istft_dim: int = 256  # iSTFT decoder: ConvNeXt width
    istft_layers: int = 4
    istft_n_fft_factor: int = 4  # n_fft = factor * hop (Vocos uses 4)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Encoder widths: input stage, then after each downsampling (the decoder mirrors them)."""
        return tuple(min(self.channels * 2 ** i, self.max_channels) for i in range(len(self.strides) + 1))

    @property
    def hop_samples(self) -> int:
        hop = 1
        for s in self.strides:
            hop *= s
        return hop

    @property
    def frames_per_s(self) -> float:
        return SAMPLE_RATE_HZ / self.hop_samples

    @property
    def bitrate_bps(self) -> float:
        """frames/s x stages x log2(codebook size)."""
        return self.frames_per_s * self.num_quantizers * _log2_exact(self.codebook_size)


@dataclass(frozen=True)
class VocoderConfig:
    n_mels: int = 80
    n_fft: int = 1024
    hop_samples: int = 256  # product of upsample_rates
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    channels: int = 128  # after conv_pre; halved at each upsampling
    residual_dilations: tuple[int, ...] = (1, 3, 5)
    f_max_hz: float = 8000.0


@dataclass(frozen=True)
class LossConfig:
    stft_resolutions: tuple[tuple[int, int], ...] = ((1024, 256), (512, 128), (256, 64))
    mel_n_fft: int = 1024
    mel_hop: int = 256
    mel_bins: int = 64
    stft_weight: float = 1.0
    mel_weight: float = 15.0
    commitment_weight: float = 1.0
    codebook_weight: float = 1.0  # straight-through quantizer only
    discriminator: bool = False
    disc_resolutions: tuple[int, ...] = (1024, 512, 256)
    disc_channels: int = 16
    disc_start_step: int = 0
    adversarial_weight: float = 1.0
    feature_matching_weight: float = 2.0


@dataclass(frozen=True)
class OptimizerConfig:
    batch_size: int = 8
    crop_seconds: float = 0.5
    learning_rate: float = 3e-4
    adam_betas: tuple[float, float] = (0.8, 0.99)
    grad_clip: float = 1.0
    max_steps: int = 100_000
    max_minutes: float = 60.0
    # Codecs: optionally train as a plain autoencoder for this many steps before quantizing, so the
    # EMA codebooks are seeded from trained latents. Off by default; whether it helps is for the long runs.
    quantizer_warmup_steps: int = 0
    checkpoint_every_steps: int = 250
    log_every_steps: int = 25


@dataclass(frozen=True)
class DataConfig:
    sources: tuple[TrainingSource, ...] = ("librispeech-train-clean-100", "fsdd")
    max_files_per_source: int = 0  # 0 = all; a small number makes smoke runs load fast


@dataclass(frozen=True)
class ResynthConfig:
    name: str
    kind: ModelKind
    family: str  # generator / codec family written to the manifest, e.g. "inhouse-comp6k"
    codec_objective: CodecObjective = "none"
    seed: int = 0
    codec: CodecConfig = field(default_factory=CodecConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        _check_literal("kind", self.kind, ModelKind)
        _check_literal("codec_objective", self.codec_objective, CodecObjective)
        _check_literal("codec.architecture", self.codec.architecture, CodecArchitecture)
        _check_literal("codec.quantizer", self.codec.quantizer, QuantizerUpdate)
        for source in self.data.sources:
            _check_literal("data.sources", source, TrainingSource)
        require("name", bool(self.name), "must be non-empty")
        require("family", bool(self.family), "must be non-empty")
        require("codec_objective", self.kind != "codec" or self.codec_objective != "none",
                "a codec needs codec_objective 'compression' or 'synthesis'")
        require("codec_objective", self.kind != "vocoder" or self.codec_objective == "none",
                "a vocoder is a spoof generator, not a codec: codec_objective must be 'none'")
        _log2_exact(self.codec.codebook_size)
        positive = {"codec.num_quantizers": self.codec.num_quantizers, "codec.channels": self.codec.channels,
                    "codec.latent_dim": self.codec.latent_dim, "train.batch_size": self.train.batch_size,
                    "train.crop_seconds": self.train.crop_seconds, "train.max_steps": self.train.max_steps,
                    "vocoder.channels": self.vocoder.channels}
        for key, value in positive.items():
            require(key, value > 0, f"must be > 0, got {value}")
        hop = 1
        for rate in self.vocoder.upsample_rates:
            hop *= rate
        require("vocoder.upsample_rates", hop == self.vocoder.hop_samples,
                f"multiply to {hop}, not hop_samples {self.vocoder.hop_samples}")
        require("vocoder.channels", not self.vocoder.channels % (2 ** len(self.vocoder.upsample_rates)),
                "must stay divisible when halved at each upsampling")

    @property
    def crop_samples(self) -> int:
        # Crops are whole latent/mel frames so encoder and decoder lengths line up.
        hop = self.codec.hop_samples if self.kind == "codec" else self.vocoder.hop_samples
        return max(1, round(self.train.crop_seconds * SAMPLE_RATE_HZ / hop)) * hop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log2_exact(n: int) -> int:
    require("codec.codebook_size", n >= 2 and not n & (n - 1), f"must be a power of two >= 2, got {n}")
    return n.bit_length() - 1


def _check_literal(key: str, value: object, literal: object) -> None:
    """Also for configs built in code (with_overrides), which no loader has checked."""
    allowed = get_args(literal)
    require(key, value in allowed, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


SECTIONS: dict[str, type] = {"codec": CodecConfig, "vocoder": VocoderConfig, "loss": LossConfig,
                             "train": OptimizerConfig, "data": DataConfig}


def config_from_dict(raw: dict[str, Any], where: str = "config") -> ResynthConfig:
    """A config from its table form (a parsed file, or the dict a checkpoint saved)."""
    return build(ResynthConfig, raw, source=where)


def load_config(path: str | Path) -> ResynthConfig:
    return load(ResynthConfig, [path])


def parse_override(text: str) -> tuple[str, str, Any]:
    """"train.batch_size=32" -> ("train", "batch_size", 32); the value is TOML ("[1, 2]", "true", '"x"')."""
    key, sep, value = text.partition("=")
    section, dot, field_name = key.strip().partition(".")
    if not sep or not dot or section not in SECTIONS:
        raise ConfigError("--set", f"{text!r} must look like SECTION.KEY=VALUE with SECTION in {sorted(SECTIONS)}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--set", f"{text!r}: the value is not TOML ({exc}); quote strings: KEY='\"text\"'") from exc
    return section, field_name, parsed


def apply_overrides(config: ResynthConfig, overrides: list[str]) -> ResynthConfig:
    """Command-line `--set SECTION.KEY=VALUE` overrides, validated like the TOML file."""
    raw = config.to_dict()
    for text in overrides:
        section, field_name, value = parse_override(text)
        raw[section][field_name] = value
    return config_from_dict(raw, where="config with --set overrides")


def with_overrides(config: ResynthConfig, **sections: dict[str, Any]) -> ResynthConfig:
    """A copy with some section fields replaced, e.g. with_overrides(c, train={"max_steps": 5})."""
    values: dict[str, Any] = {}
    for key, changes in sections.items():
        values[key] = replace(getattr(config, key), **{k: _as_tuple(v) for k, v in changes.items()})
    return replace(config, **values)
