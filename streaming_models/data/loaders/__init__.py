"""Public-corpus loaders: each turns a corpus folder into manifest items (CorpusItem).

    load_corpus("asvspoof5", Path("/data/ASVspoof5"))
    load_corpus("codecfake", Path("/data/CodecDeepfakeDetection"))
    load_corpus("labels-csv", Path("/data/my-clips"))   # folder with labels.csv

Paths in the returned items are absolute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from streaming_models.data.loaders.asvspoof5 import load_asvspoof5
from streaming_models.data.loaders.codecfake import load_codecfake
from streaming_models.data.loaders.common import LoaderError, check_files, probe
from streaming_models.data.loaders.labels_csv import load_labels_csv
from streaming_models.data.manifest import CorpusItem, Split

LOADERS: Mapping[str, Callable[[Path], list[CorpusItem]]] = MappingProxyType({
    "asvspoof5": load_asvspoof5,
    "codecfake": load_codecfake,
    "labels-csv": load_labels_csv,
})

__all__ = ["LOADERS", "LoaderError", "check_files", "load_corpus", "probe"]


def load_corpus(corpus_format: str, root: Path, default_split: Split = "test") -> list[CorpusItem]:
    """default_split applies to labels-csv rows without a split column (the others carry splits)."""
    if corpus_format not in LOADERS:
        raise LoaderError(f"unknown corpus format {corpus_format!r}; known: {', '.join(LOADERS)}")
    if corpus_format == "labels-csv":
        return load_labels_csv(Path(root), default_split)
    return LOADERS[corpus_format](Path(root))
