"""Any folder with a labels.csv -> manifest items.

Header row required. Columns: `path,label` plus optional `codec,system,corpus,codec_family,
codec_objective,speaker,split,language` (as in ../shared/data/dev-eval/labels.csv, which has
path,label,codec,system,corpus). `path` is relative to the CSV's folder; `label` is bonafide or
spoof; `codec` is none, telephony or neural (default none); `system` is the generator for spoofs
and, for neural-codec rows, the codec name the family and objective are derived from.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import get_args

from streaming_models.data.loaders.codecs import codec_family, codec_objective
from streaming_models.data.loaders.common import LoaderError
from streaming_models.data.manifest import Codec, CodecObjective, CorpusItem, Source, Split

REQUIRED = ("path", "label")
OPTIONAL = ("codec", "system", "corpus", "codec_family", "codec_objective", "speaker", "split", "language")


def load_labels_csv(root: Path, default_split: Split = "test") -> list[CorpusItem]:
    root = Path(root).resolve()
    csv_path = root / "labels.csv" if root.is_dir() else root
    if not csv_path.is_file():
        raise LoaderError(f"no labels.csv at {csv_path}")
    with csv_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise LoaderError(f"{csv_path}: header must start with path,label (optional {','.join(OPTIONAL)}); "
                              f"missing {missing}, got {header}")
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise LoaderError(f"{csv_path}: unknown columns {unknown}; known: {REQUIRED + OPTIONAL}")
        return [_item(row, csv_path, lineno, default_split) for lineno, row in enumerate(reader, 2)]


def _item(raw: dict[str, str | None], csv_path: Path, lineno: int, default_split: Split) -> CorpusItem:
    row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
    where = f"{csv_path}:{lineno}"
    if not row.get("path"):
        raise LoaderError(f"{where}: empty path")
    label = _choice(row, "label", get_args(Source), None, where)
    codec = _choice(row, "codec", get_args(Codec), "none", where)
    split = _choice(row, "split", get_args(Split), default_split, where)
    system = row.get("system") or ""
    if codec == "neural":
        family = row.get("codec_family") or codec_family(system)
        objective = _choice(row, "codec_objective", get_args(CodecObjective), codec_objective(family), where)
        channel: tuple[str, ...] = (system,) if system else ()
    elif codec == "telephony":
        family = row.get("codec_family") or (system.lower() or "unknown")
        objective = _choice(row, "codec_objective", get_args(CodecObjective), "compression", where)
        channel = (system,) if system else ()
    else:
        family, objective, channel = "none", "none", ()
    generator = "human" if label == "bonafide" else (system or "unknown")
    path = Path(row["path"])
    corpus = row.get("corpus") or csv_path.parent.name
    return CorpusItem(
        path=str(path if path.is_absolute() else csv_path.parent / path), source=label,  # type: ignore[arg-type]
        generator=generator, codec=codec, codec_family=family, codec_objective=objective,  # type: ignore[arg-type]
        channel=channel, speaker=row.get("speaker") or "unknown", language=row.get("language") or "unknown",
        split=split, corpus=corpus, item_id=f"{corpus}:{row['path']}",  # type: ignore[arg-type]
        extra={"system": system} if system else {},
    )


def _choice(row: dict[str, str], column: str, allowed: tuple[str, ...], default: str | None, where: str) -> str:
    value = row.get(column) or default
    if value not in allowed:
        raise LoaderError(f"{where}: {column} must be one of {allowed}, got {row.get(column)!r}")
    return value
