"""The corpus manifest: one JSON line per audio file, with codec-aware labels.

Written by the corpus builder and by the public-corpus loaders; read by training
and evaluation. Paths are relative to the manifest's folder unless absolute.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal, get_args

Source = Literal["bonafide", "spoof"]
Codec = Literal["none", "telephony", "neural"]
CodecObjective = Literal["none", "compression", "synthesis"]
Split = Literal["train", "dev", "test"]


class ManifestError(ValueError):
    """A manifest line is malformed; the message names the line and the field."""


@dataclass(frozen=True)
class CorpusItem:
    path: str
    source: Source
    generator: str  # "human" for bonafide, else the synthesis system / family ("kokoro", "hifigan", ...)
    codec: Codec = "none"
    codec_family: str = "none"  # "lyra", "encodec", "g711", "opus", ...
    codec_objective: CodecObjective = "none"
    channel: tuple[str, ...] = ()  # applied chain, in order, e.g. ("lyra@6k", "gsm", "noise@20dB")
    speaker: str = "unknown"
    language: str = "unknown"
    split: Split = "train"
    parent: str | None = None  # id of the utterance this one was resynthesized from
    duration_s: float = 0.0
    sample_rate_hz: int = 16000
    corpus: str = "unknown"
    item_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, literal in (("source", Source), ("codec", Codec), ("codec_objective", CodecObjective),
                              ("split", Split)):
            value = getattr(self, name)
            if value not in get_args(literal):
                raise ManifestError(f"{name} must be one of {get_args(literal)}, got {value!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> CorpusItem:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ManifestError(f"unknown fields {sorted(unknown)}")
        data = dict(raw)
        if "channel" in data and data["channel"] is not None:
            data["channel"] = tuple(data["channel"])  # type: ignore[arg-type]
        try:
            return cls(**data)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ManifestError(str(exc)) from exc


def read_manifest(path: str | Path) -> Iterator[CorpusItem]:
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield CorpusItem.from_dict(json.loads(line))
            except (json.JSONDecodeError, ManifestError) as exc:
                raise ManifestError(f"{path}:{lineno}: {exc}") from exc


def write_manifest(path: str | Path, items: Iterable[CorpusItem]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(item.to_json() + "\n")
            count += 1
    tmp.replace(path)
    return count


def resolve_audio_path(manifest_path: str | Path, item: CorpusItem) -> Path:
    p = Path(item.path)
    return p if p.is_absolute() else Path(manifest_path).parent / p
