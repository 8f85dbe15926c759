"""Corpus recipes: a TOML file that says which sources, generators, codecs and channels, and how much.

The recipe is read once into frozen dataclasses and validated here, so the builder
never meets a malformed value after hours of work. See configs/data/*.toml.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class RecipeError(ValueError):
    """The recipe file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class BonafideSpec:
    source: str  # a name from sources.source_names()
    hours: float | None = None  # stop once this much audio is selected (None: no hour limit)
    max_items: int | None = None
    # Join a speaker's consecutive short clips (digits, letters, prompts) into items of at least this
    # many seconds, with short pauses between them; 0 keeps one clip per item.
    join_to_s: float = 0.0


@dataclass(frozen=True)
class TtsSpec:
    family: str
    hours: float
    voices: tuple[str, ...] = ()  # engine voice ids to use; empty: all the engine offers
    languages: tuple[str, ...] = ()  # restrict to these text languages; empty: all the voices speak
    sentences_per_item: tuple[int, int] = (1, 2)  # inclusive range


@dataclass(frozen=True)
class CopySynthesisSpec:
    family: str
    hours: float
    parents: tuple[str, ...] = ("librispeech",)  # bonafide sources whose utterances are re-rendered


@dataclass(frozen=True)
class NeuralCodecSpec:
    transforms: tuple[str, ...] = ()  # transform specs of kind "neural", e.g. "lyra@6k"
    bonafide_fraction: float = 0.0  # share of bonafide items that also get a neural-codec copy
    spoof_fraction: float = 0.0
    # Names the group's own random stream (groups after the first); default: its transforms joined
    # by "+". Renaming a group or editing its transform list re-plans that group only.
    name: str = ""

    def stream_key(self) -> str:
        return self.name or "+".join(self.transforms)


@dataclass(frozen=True)
class ChannelSpec:
    fraction: float = 0.0  # share of every class's items that go through one of the chains
    chains: tuple[tuple[str, ...], ...] = ()


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
    raw_digest: str = ""  # digest of the recipe as written, set by parse_recipe
    # Codec groups after the first ([[neural_codec]] tables 2..n): each draws from its own random
    # stream, so adding one leaves every planned item of the first group and of the others alone.
    more_neural_codecs: tuple[NeuralCodecSpec, ...] = ()

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


def _fraction(value: object, where: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise RecipeError(f"{where} must be a number in [0, 1], got {value!r}")
    return float(value)


def _positive(value: object, where: str) -> float:
    if not isinstance(value, (int, float)) or float(value) <= 0:
        raise RecipeError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecipeError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise RecipeError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")


def _codec_groups(value: object, where: str) -> tuple[NeuralCodecSpec, ...]:
    """`[neural_codec]` (one group) or `[[neural_codec]]` (several); never an empty tuple."""
    tables = value if isinstance(value, list) else [value]
    if not tables or not all(isinstance(t, dict) for t in tables):
        raise RecipeError(f"{where}: neural_codec must be a table or an array of tables")
    groups: list[NeuralCodecSpec] = []
    for i, table in enumerate(tables):
        at = f"{where}: neural_codec" + (f"[{i}]" if isinstance(value, list) else "")
        _check_keys(table, {"name", "transforms", "bonafide_fraction", "spoof_fraction"}, at)
        name = table.get("name", "")
        if not isinstance(name, str):
            raise RecipeError(f"{at}.name must be a string, got {name!r}")
        group = NeuralCodecSpec(
            _strings(table.get("transforms", []), f"{at}.transforms"),
            _fraction(table.get("bonafide_fraction", 0.0), f"{at}.bonafide_fraction"),
            _fraction(table.get("spoof_fraction", 0.0), f"{at}.spoof_fraction"),
            name,
        )
        if (group.bonafide_fraction or group.spoof_fraction) and not group.transforms:
            raise RecipeError(f"{at}: fractions are set but transforms is empty")
        groups.append(group)
    keys = [g.stream_key() for g in groups[1:]]
    if len(set(keys)) != len(keys):
        raise RecipeError(f"{where}: two neural_codec groups share the name (or transform list) {keys}; "
                          f"give each a distinct `name`")
    specs = [t for g in groups for t in g.transforms]
    if len(set(specs)) != len(specs):
        raise RecipeError(f"{where}: a transform is listed in two neural_codec groups: an item could get "
                          f"two copies with the same id")
    return tuple(groups)


def parse_recipe(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    _check_keys(raw, {"name", "seed", "bonafide", "tts", "copy_synthesis", "neural_codec", "channel",
                      "dev_fraction", "max_item_s", "level_dbfs"}, where)
    seed = raw.get("seed")
    if not isinstance(seed, int):
        raise RecipeError(f"{where}: seed must be an integer")
    bonafide = []
    for i, entry in enumerate(raw.get("bonafide", [])):
        at = f"{where}: bonafide[{i}]"
        _check_keys(entry, {"source", "hours", "max_items", "join_to_s"}, at)
        if "source" not in entry:
            raise RecipeError(f"{at}: source is required")
        hours = _positive(entry["hours"], f"{at}.hours") if "hours" in entry else None
        max_items = int(_positive(entry["max_items"], f"{at}.max_items")) if "max_items" in entry else None
        join_to_s = _positive(entry["join_to_s"], f"{at}.join_to_s") if "join_to_s" in entry else 0.0
        bonafide.append(BonafideSpec(str(entry["source"]), hours, max_items, join_to_s))
    if not bonafide:
        raise RecipeError(f"{where}: at least one [[bonafide]] source is required")
    tts = []
    for i, entry in enumerate(raw.get("tts", [])):
        at = f"{where}: tts[{i}]"
        _check_keys(entry, {"family", "hours", "voices", "languages", "sentences_per_item"}, at)
        span = entry.get("sentences_per_item", [1, 2])
        if not (isinstance(span, list) and len(span) == 2 and 1 <= span[0] <= span[1]):
            raise RecipeError(f"{at}.sentences_per_item must be [low, high] with 1 <= low <= high")
        tts.append(TtsSpec(str(entry["family"]), _positive(entry.get("hours"), f"{at}.hours"),
                           _strings(entry.get("voices", []), f"{at}.voices"),
                           _strings(entry.get("languages", []), f"{at}.languages"), (int(span[0]), int(span[1]))))
    copies = []
    for i, entry in enumerate(raw.get("copy_synthesis", [])):
        at = f"{where}: copy_synthesis[{i}]"
        _check_keys(entry, {"family", "hours", "parents"}, at)
        copies.append(CopySynthesisSpec(str(entry["family"]), _positive(entry.get("hours"), f"{at}.hours"),
                                        _strings(entry.get("parents", ["librispeech"]), f"{at}.parents")))
    groups = _codec_groups(raw.get("neural_codec", {}), where)
    ch_raw = raw.get("channel", {})
    _check_keys(ch_raw, {"fraction", "chains"}, f"{where}: channel")
    chains = tuple(_strings(c, f"{where}: channel.chains[{i}]") for i, c in enumerate(ch_raw.get("chains", [])))
    channel = ChannelSpec(_fraction(ch_raw.get("fraction", 0.0), f"{where}: channel.fraction"), chains)
    if channel.fraction and not channel.chains:
        raise RecipeError(f"{where}: channel.fraction is set but channel.chains is empty")
    level = raw.get("level_dbfs", [-32.0, -18.0])
    if not (isinstance(level, list) and len(level) == 2 and level[0] <= level[1] < 0):
        raise RecipeError(f"{where}: level_dbfs must be [low, high] dBFS with low <= high < 0")
    return Recipe(
        name=str(raw.get("name", "unnamed")),
        seed=seed,
        bonafide=tuple(bonafide),
        tts=tuple(tts),
        copy_synthesis=tuple(copies),
        neural_codec=groups[0],
        more_neural_codecs=groups[1:],
        channel=channel,
        dev_fraction=_fraction(raw.get("dev_fraction", 0.15), f"{where}: dev_fraction"),
        max_item_s=_positive(raw.get("max_item_s", 20.0), f"{where}: max_item_s"),
        level_dbfs=(float(level[0]), float(level[1])),
        raw_digest=hashlib.sha256(json.dumps(raw, sort_keys=True).encode("utf-8")).hexdigest()[:16],
    )


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecipeError(f"recipe not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    return parse_recipe(raw, str(path))
