"""Random telephone/conferencing channel chains, sampled from a seeded rng.

Step order follows the signal path: acoustic noise at the talker -> RNNoise suppression
(conferencing clients) -> band-limiting (narrowband front end) -> codec -> playout gain.
Every step is optional with its own probability; the returned names are the `channel` label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streaming_models.data.transforms.base import AudioTransform, check_audio
from streaming_models.data.transforms.channel import NOISE_COLOURS
from streaming_models.data.transforms.registry import get_transform

DEFAULT_CODECS: tuple[str, ...] = (
    "g711-mulaw", "g711-alaw", "gsm", "g722", "g726@16k", "g726@24k", "g726@32k", "g726@40k",
    "amr-nb@4.75k", "amr-nb@7.4k", "amr-nb@12.2k",
    "opus@6k", "opus@8k", "opus@12k", "opus@16k", "opus@24k",
    "mp3@16k", "mp3@32k", "codec2@3200", "codec2@1300",
)


@dataclass(frozen=True)
class ChainConfig:
    p_noise: float = 0.35
    snr_db_range: tuple[float, float] = (5.0, 30.0)
    noise_colours: tuple[str, ...] = NOISE_COLOURS
    p_rnnoise: float = 0.15
    p_bandlimit: float = 0.25
    p_codec: float = 0.85
    codecs: tuple[str, ...] = DEFAULT_CODECS  # a family is drawn uniformly, then one of its specs
    p_gain: float = 0.3
    gain_db_range: tuple[float, float] = (-12.0, 6.0)
    nonempty: bool = True  # an empty draw becomes a codec-only chain

    def __post_init__(self) -> None:
        for name in ("p_noise", "p_rnnoise", "p_bandlimit", "p_codec", "p_gain"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        for name in ("snr_db_range", "gain_db_range"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (low, high), got {(low, high)}")
        if not self.codecs and (self.p_codec > 0 or self.nonempty):
            raise ValueError("codecs is empty but p_codec > 0 or nonempty is set")
        for spec in self.codecs:
            get_transform(spec)  # unknown specs fail at configuration time
        for colour in self.noise_colours:
            if colour not in NOISE_COLOURS:
                raise ValueError(f"noise colour must be one of {NOISE_COLOURS}, got {colour!r}")


@dataclass
class ChannelChain:
    """Samples and applies chains; built transforms are kept per instance for reuse."""

    config: ChainConfig = field(default_factory=ChainConfig)
    _built: dict[str, AudioTransform] = field(default_factory=dict, repr=False)

    def sample(self, rng: np.random.Generator) -> tuple[str, ...]:
        cfg = self.config
        steps: list[str] = []
        if rng.random() < cfg.p_noise:
            colour = cfg.noise_colours[int(rng.integers(len(cfg.noise_colours)))]
            snr = round(float(rng.uniform(*cfg.snr_db_range)))
            steps.append(f"noise-{colour}@{snr}dB")
        if rng.random() < cfg.p_rnnoise:
            steps.append("rnnoise")
        if rng.random() < cfg.p_bandlimit:
            steps.append("bandlimit@8k")
        if rng.random() < cfg.p_codec:
            steps.append(self._draw_codec(rng))
        if rng.random() < cfg.p_gain:
            gain = round(float(rng.uniform(*cfg.gain_db_range)))
            if gain != 0:
                steps.append(f"gain@{gain}dB")
        if cfg.nonempty and not steps:
            steps.append(self._draw_codec(rng))
        return tuple(steps)

    def _draw_codec(self, rng: np.random.Generator) -> str:
        families = sorted({_family(spec) for spec in self.config.codecs})
        family = families[int(rng.integers(len(families)))]
        members = [spec for spec in self.config.codecs if _family(spec) == family]
        return members[int(rng.integers(len(members)))]

    def transform(self, spec: str) -> AudioTransform:
        if spec not in self._built:
            self._built[spec] = get_transform(spec)
        return self._built[spec]

    def check_available(self) -> None:
        """Fail early (TransformUnavailable) if any engine the config may draw is missing."""
        for spec in (*self.config.codecs, "rnnoise" if self.config.p_rnnoise > 0 else None):
            if spec is not None:
                self.transform(spec).check_available()

    def apply_chain(self, audio: np.ndarray, steps: Sequence[str],
                    rng: np.random.Generator) -> np.ndarray:
        out = check_audio(audio)
        for spec in steps:
            out = self.transform(spec).apply(out, rng)
        return out

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        steps = self.sample(rng)
        return self.apply_chain(audio, steps, rng), steps


def _family(spec: str) -> str:
    return spec.split("@", 1)[0]
