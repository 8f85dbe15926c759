"""`spoofwatch data import-public`: the public-source registry + local snapshots -> corpus/public.

    spoofwatch data import-public --registry configs/data/public --mirror mirror --out corpus/public
    spoofwatch data import-public ... --only jaywalnut310/vits-demo --dry-run   # check one entry's rules
    spoofwatch data import-public ... --only new/repo --known-corpus corpus/public --out corpus/new  # add to one
    spoofwatch data import-public --registry configs/data/public --sources-table  # the table in docs/data.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streaming_models.data.public.importer import (
    ImportOptions,
    SnapshotMismatch,
    import_public,
    read_reserved,
    write_outputs,
)
from streaming_models.data.public.mirror import MirrorError
from streaming_models.data.public.registry import load_registry, sources_table
from streaming_models.logs import log_to_stderr
from streaming_models.paths import shared_data_dir
from streaming_models.runtime.settings import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch data import-public",
                                     description="import the public demo-page repositories of a registry "
                                                 "(docs/public-data.md)")
    parser.add_argument("--registry", type=Path, required=True, help="folder of registry files (*.toml)")
    parser.add_argument("--mirror", type=Path, help="folder of git snapshots of those repositories")
    parser.add_argument("--out", type=Path, help="corpus folder to write")
    parser.add_argument("--sources-table", action="store_true",
                        help="print the registry as a markdown table (repository, commit, licence) and stop")
    parser.add_argument("--only", action="append", default=[], metavar="OWNER/NAME",
                        help="import only this repository (repeatable)")
    parser.add_argument("--shared-data", type=Path, default=None,
                        help="shared data folder (default: $SPOOFWATCH_SHARED_DATA or ../shared/data)")
    parser.add_argument("--reserved", type=Path, default=None,
                        help="md5 list of reserved files (default: SHARED/reserved-audio-md5.txt)")
    parser.add_argument("--dev-eval", type=Path, default=None,
                        help="dev-eval labels.csv whose files' copies are dropped (default: SHARED/dev-eval/labels.csv)")
    parser.add_argument("--known-corpus", action="append", default=[], type=Path, metavar="DIR",
                        help="a corpus built earlier (a folder with manifest.jsonl): copies of its items are "
                             "dropped, so a new import can add to it (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--dry-run", action="store_true", help="check the rules and count files; decode nothing")
    return parser


def main_import_public(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    log_to_stderr()
    if args.sources_table:
        try:
            print(sources_table(load_registry(args.registry, tuple(args.only))), end="")
        except ConfigError as exc:
            print(f"spoofwatch data import-public: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.mirror is None or args.out is None:
        parser.error("--mirror and --out are required (unless --sources-table)")
    shared = args.shared_data or shared_data_dir()
    reserved_path = args.reserved or shared / "reserved-audio-md5.txt"
    dev_eval = args.dev_eval or shared / "dev-eval" / "labels.csv"
    if not reserved_path.is_file():
        print(f"spoofwatch data import-public: no reserved md5 list at {reserved_path} (give --reserved)", file=sys.stderr)
        return 2
    try:
        entries = load_registry(args.registry, tuple(args.only))
        options = ImportOptions(out=args.out, reserved_md5=read_reserved(reserved_path),
                                dev_eval_labels=dev_eval if dev_eval.is_file() else None,
                                known_corpora=tuple(args.known_corpus),
                                workers=max(1, args.workers), dry_run=args.dry_run)
        items, reports = import_public(entries, args.mirror, options)
    except (ConfigError, MirrorError, SnapshotMismatch) as exc:
        print(f"spoofwatch data import-public: {exc}", file=sys.stderr)
        return 1
    for report in reports:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items())) or "none dropped"
        print(f"{report.repo} @ {report.commit[:12]}: {report.audio_files} audio files, {report.kept} kept, "
              f"{sum(report.skipped.values())} skipped, {len(report.unmatched)} unmatched; {dropped}")
        for rule, count in sorted(report.labelled.items(), key=lambda kv: int(kv[0].split()[1].rstrip(":"))):
            print(f"    {rule}: {count}")
        for reason, count in report.skipped.items():
            print(f"    skip ({reason}): {count}")
        for path in report.unmatched[:20]:
            print(f"    UNMATCHED {path}")
    if args.dry_run:
        unmatched = sum(len(r.unmatched) for r in reports)
        print(f"dry run: {len(reports)} repositories, {unmatched} unmatched audio files")
        return 1 if unmatched else 0
    summary = write_outputs(args.out, items, reports)
    public = summary["public"]
    print(f"wrote {args.out / 'manifest.jsonl'}: {summary['items']} items, {summary['hours']} h, "
          f"{public['repositories']} repositories, {public['systems']} systems")
    for key, value in public["hours_by"]["targets"].items():
        print(f"  {key}: {value:.2f} h")
    return 0
