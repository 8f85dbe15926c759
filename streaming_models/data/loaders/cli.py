"""`spoofwatch data import`: a public corpus folder -> a JSONL manifest with codec-aware labels.

    spoofwatch data import --format asvspoof5 --root /data/ASVspoof5 --out manifests/asvspoof5.jsonl
    spoofwatch data import --format codecfake --root /data/CDD --out manifests/cdd.jsonl
    spoofwatch data import --format labels-csv --root ../shared/data/dev-eval --out manifests/dev-eval.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import get_args

from streaming_models.data.loaders import LOADERS, LoaderError, check_files, load_corpus, probe
from streaming_models.data.manifest import Split, write_manifest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch data import",
                                     description="import a public corpus as a manifest (absolute audio paths)")
    parser.add_argument("--format", required=True, choices=sorted(LOADERS), help="corpus layout")
    parser.add_argument("--root", type=Path, required=True, help="corpus folder")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    parser.add_argument("--split", default="test", choices=get_args(Split),
                        help="split for labels-csv rows without a split column (default test)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip listed files that are absent instead of failing")
    parser.add_argument("--no-probe", action="store_true",
                        help="do not read audio headers (duration_s stays 0)")
    return parser


def main_import(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        items = check_files(load_corpus(args.format, args.root, args.split), args.allow_missing)
        if not args.no_probe:
            items = list(probe(items))
    except LoaderError as exc:
        print(f"spoofwatch data import: {exc}", file=sys.stderr)
        return 1
    count = write_manifest(args.out, items)
    hours = sum(item.duration_s for item in items) / 3600
    by_label = Counter((item.split, item.source, item.codec) for item in items)
    print(f"wrote {args.out}: {count} items, {hours:.2f} h")
    for (split, source, codec), n in sorted(by_label.items()):
        print(f"  {split:<5} {source:<8} codec={codec:<9} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main_import(sys.argv[1:]))
