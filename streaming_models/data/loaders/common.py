"""Shared pieces of the public-corpus loaders: errors, audio probing, missing-file policy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import soundfile as sf

from streaming_models.data.manifest import CorpusItem

AUDIO_SUFFIXES = (".flac", ".wav")


class LoaderError(ValueError):
    """The corpus folder does not match the expected layout; the message says what is wrong."""


def probe(items: Iterable[CorpusItem]) -> Iterator[CorpusItem]:
    """Fill duration_s and sample_rate_hz from the audio headers (paths must be absolute)."""
    for item in items:
        try:
            info = sf.info(item.path)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise LoaderError(f"cannot read audio {item.path}: {exc}") from exc
        yield replace(item, duration_s=round(info.frames / info.samplerate, 4),
                      sample_rate_hz=int(info.samplerate))


def check_files(items: list[CorpusItem], allow_missing: bool) -> list[CorpusItem]:
    """Drop (allow_missing) or reject items whose audio file is absent."""
    present = [item for item in items if Path(item.path).is_file()]
    missing = len(items) - len(present)
    if missing and not allow_missing:
        examples = [item.path for item in items if not Path(item.path).is_file()][:3]
        raise LoaderError(f"{missing} of {len(items)} listed audio files are missing, e.g. {examples} "
                          f"(pass --allow-missing to import only the present ones)")
    return present


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
