"""Corpus recipes: a TOML file that says which sources, generators, codecs and channels, and how much.

The recipe is read once into frozen dataclasses by the project's config loader
(streaming_models/runtime/settings.py) and validated here, so the builder never meets a malformed
value after hours of work. See configs/data/*.toml.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from streaming_models.runtime.settings import INTERNAL, ConfigError, build, read_toml, require


def _require_share(key: str, value: float) -> None:
    require(key, 0.0 <= value <= 1.0, f"must be a number in [0, 1], got {value!r}")


def _require_positive(key: str, value: float | None) -> None:
    require(key, value is None or value > 0, f"must be a positive number, got {value!r}")


@dataclass(frozen=True)
class BonafideSpec:
    source: str  # a name from sources.source_names()
    hours: float | None = None  # stop once this much audio is selected (None: no hour limit)
    max_items: int | None = None
    # Join a speaker's consecutive short clips (digits, letters, prompts) into items of at least this
    # many seconds, with short pauses between them; 0 keeps one clip per item.
    join_to_s: float = 0.0

    def __post_init__(self) -> None:
        _require_positive("hours", self.hours)
        _require_positive("max_items", self.max_items)
        require("join_to_s", self.join_to_s >= 0, f"must be >= 0, got {self.join_to_s!r}")


@dataclass(frozen=True)
class TtsSpec:
    family: str
    hours: float
    voices: tuple[str, ...] = ()  # engine voice ids to use; empty: all the engine offers
    languages: tuple[str, ...] = ()  # restrict to these text languages; empty: all the voices speak
    sentences_per_item: tuple[int, int] = (1, 2)  # inclusive range

    def __post_init__(self) -> None:
        _require_positive("hours", self.hours)
        low, high = self.sentences_per_item
        require("sentences_per_item", 1 <= low <= high, "must be [low, high] with 1 <= low <= high")


@dataclass(frozen=True)
class CopySynthesisSpec:
    family: str
    hours: float
    parents: tuple[str, ...] = ("librispeech",)  # bonafide sources whose utterances are re-rendered

    def __post_init__(self) -> None:
        _require_positive("hours", self.hours)


@dataclass(frozen=True)
class NeuralCodecSpec:
    transforms: tuple[str, ...] = ()  # transform specs of kind "neural", e.g. "lyra@6k"
    bonafide_fraction: float = 0.0  # share of bonafide items that also get a neural-codec copy
    spoof_fraction: float = 0.0
    # Names the group's own random stream (groups after the first); default: its transforms joined
    # by "+". Renaming a group or editing its transform list re-plans that group only.
    name: str = ""

    def __post_init__(self) -> None:
        _require_share("bonafide_fraction", self.bonafide_fraction)
        _require_share("spoof_fraction", self.spoof_fraction)
        require("transforms", bool(self.transforms) or not (self.bonafide_fraction or self.spoof_fraction),
                "fractions are set but transforms is empty")

    def stream_key(self) -> str:
        return self.name or "+".join(self.transforms)


@dataclass(frozen=True)
class ChannelSpec:
    fraction: float = 0.0  # share of every class's items that go through one of the chains
    chains: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        _require_share("fraction", self.fraction)
        require("fraction", bool(self.chains) or not self.fraction, "is set but channel.chains is empty")


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: int
    bonafide: tuple[BonafideSpec, ...]
    tts: tuple[TtsSpec, ...] = ()
    copy_synthesis: tuple[CopySynthesisSpec, ...] = ()
    neural_codec: NeuralCodecSpec = field(default_factory=NeuralCodecSpec)  # the first codec group
    channel: ChannelSpec = field(default_factory=ChannelSpec)
    dev_fraction: float = 0.15  # share of speakers (and TTS voices) held out as dev
    max_item_s: float = 20.0  # longer source utterances are cut to this
    level_dbfs: tuple[float, float] = (-32.0, -18.0)  # every item's RMS is drawn from this range
    raw_digest: str = field(default="", metadata=INTERNAL)  # digest of the recipe as written (parse_recipe)
    # Codec groups after the first ([[neural_codec]] tables 2..n): each draws from its own random
    # stream, so adding one leaves every planned item of the first group and of the others alone.
    more_neural_codecs: tuple[NeuralCodecSpec, ...] = field(default=(), metadata=INTERNAL)

    def __post_init__(self) -> None:
        require("bonafide", bool(self.bonafide), "at least one [[bonafide]] source is required")
        _require_share("dev_fraction", self.dev_fraction)
        _require_positive("max_item_s", self.max_item_s)
        low, high = self.level_dbfs
        require("level_dbfs", low <= high < 0, "must be [low, high] dBFS with low <= high < 0")

    def fingerprint(self) -> str:
        """Identifies the recipe as written, so that a new optional key in a later version keeps it."""
        if self.raw_digest:
            return self.raw_digest
        blob = json.dumps(asdict(self), sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def families(self) -> list[str]:
        return sorted({t.family for t in self.tts} | {c.family for c in self.copy_synthesis})

    def codec_groups(self) -> tuple[NeuralCodecSpec, ...]:
        return (self.neural_codec, *self.more_neural_codecs)

    def neural_specs(self) -> list[str]:
        """Every neural-codec transform of every group, in recipe order."""
        return list(dict.fromkeys(t for group in self.codec_groups() for t in group.transforms))

    def transform_specs(self) -> list[str]:
        specs = set(self.neural_specs())
        for chain in self.channel.chains:
            specs.update(chain)
        return sorted(specs)


def _codec_groups(value: object, where: str) -> tuple[NeuralCodecSpec, ...]:
    """`[neural_codec]` (one group) or `[[neural_codec]]` (several); never an empty tuple."""
    tables = value if isinstance(value, list) else [value]
    if not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("neural_codec", "must be a table or an array of tables", where)
    groups = tuple(build(NeuralCodecSpec, table, "neural_codec" + (f"[{i}]" if isinstance(value, list) else ""),
                         where) for i, table in enumerate(tables))
    keys = [g.stream_key() for g in groups[1:]]
    if len(set(keys)) != len(keys):
        raise ConfigError("neural_codec", f"two groups share the name (or transform list) {keys}; give each a "
                          f"distinct `name`", where)
    specs = [t for g in groups for t in g.transforms]
    if len(set(specs)) != len(specs):
        raise ConfigError("neural_codec", "a transform is listed in two neural_codec groups: an item could get "
                          "two copies with the same id", where)
    return groups


def parse_recipe(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    groups = _codec_groups(raw.get("neural_codec", {}), where)
    tables = {key: value for key, value in raw.items() if key != "neural_codec"}
    recipe = build(Recipe, {"name": "unnamed", **tables}, source=where)
    return replace(recipe, neural_codec=groups[0], more_neural_codecs=groups[1:],
                   raw_digest=hashlib.sha256(json.dumps(raw, sort_keys=True).encode("utf-8")).hexdigest()[:16])


def load_recipe(path: str | Path) -> Recipe:
    if not Path(path).is_file():
        raise ConfigError("", "recipe not found", str(path))
    return parse_recipe(read_toml(path), str(path))
