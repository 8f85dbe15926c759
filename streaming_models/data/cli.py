"""`spoofwatch data ...`: build the codec-aware corpus, or only check that a recipe can be built.

    spoofwatch data build --recipe configs/data/default.toml --out corpus/default
    spoofwatch data build --small --out corpus/small
    spoofwatch data build --recipe configs/data/default.toml --out corpus/default --update-recipe
    spoofwatch data build --recipe configs/data/default.toml --out corpus/default --seed-from corpus/noinhouse
    spoofwatch data check --recipe configs/data/default.toml
    spoofwatch data import --format asvspoof5|codecfake|labels-csv --root DIR --out manifest.jsonl
    spoofwatch data import-public --registry configs/data/public --mirror DIR --out corpus/public
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streaming_models.data.builder import BuildError, BuildOptions, CorpusBuilder
from streaming_models.data.recipe import load_recipe
from streaming_models.paths import debian_speech_cache_dir, engine_cache_dir, small_corpus_recipe
from streaming_models.runtime.settings import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch data", description="build the codec-aware training corpus",
                                     epilog="also: 'spoofwatch data import --help' (a public corpus folder) and "
                                            "'spoofwatch data import-public --help' (demo-page repositories)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("build", "build (or resume) a corpus"), ("check", "check sources and engines only"),
                        ("status", "progress of a build; writes the manifest of what is done so far")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--recipe", type=Path, help="recipe TOML (configs/data/*.toml)")
        p.add_argument("--small", action="store_true",
                       help="use configs/data/small.toml in the working directory (the checkout)")
        p.add_argument("--shared-data", type=Path, default=None,
                       help="shared data folder (default: $SPOOFWATCH_SHARED_DATA or ../shared/data)")
        p.add_argument("--debian-cache", type=Path, default=debian_speech_cache_dir(),
                       help="where fetched Debian speech packages are kept (default .cache/debian-speech in the "
                            "working directory)")
        p.add_argument("--engine-cache", type=Path, default=engine_cache_dir(),
                       help="where engines unpack their model files (default .cache/engines in the working directory)")
        if name in ("build", "status"):
            p.add_argument("--out", type=Path, required=True, help="output folder (resumes if it exists)")
        if name == "build":
            p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
            p.add_argument("--update-recipe", action="store_true",
                           help="--out holds a build of an earlier version of this recipe: reuse every job "
                                "planned the same, render only what is new")
            p.add_argument("--seed-from", type=Path, default=None, metavar="DIR",
                           help="start the new --out from the audio and records of the build in DIR (any "
                                "recipe): every job planned the same is reused, only the rest renders")
    return parser


def main(argv: list[str]) -> int:
    if argv[:1] == ["import-public"]:  # demo-page repositories (streaming_models/data/public)
        from streaming_models.data.public.cli import main_import_public

        return main_import_public(argv[1:])
    if argv[:1] == ["import"]:  # public-corpus import lives with the loaders (streaming_models/data/loaders)
        from streaming_models.data.loaders.cli import main_import

        return main_import(argv[1:])
    args = _parser().parse_args(argv)
    small = small_corpus_recipe()
    if args.small and args.recipe is not None and args.recipe.resolve() != small.resolve():
        print("spoofwatch data: give --small or --recipe, not both", file=sys.stderr)
        return 2
    if args.small and not small.is_file():
        print(f"spoofwatch data: --small reads configs/data/small.toml in the working directory, and there "
              f"is none in {small.parents[2]}: run from the spoofwatch checkout, or give --recipe FILE",
              file=sys.stderr)
        return 2
    recipe_path = small if args.small else args.recipe
    if recipe_path is None:
        print("spoofwatch data: --recipe FILE or --small is required", file=sys.stderr)
        return 2
    if args.command == "build" and args.workers < 1:
        print("spoofwatch data: --workers must be >= 1", file=sys.stderr)
        return 2
    try:
        recipe = load_recipe(recipe_path)
        options = BuildOptions(
            out_dir=args.out if args.command in ("build", "status") else Path("."),
            workers=args.workers if args.command == "build" else 1,
            cache_dir=args.engine_cache, debian_cache_dir=args.debian_cache, shared_dir=args.shared_data,
            progress=not getattr(args, "no_progress", True),
            update_recipe=getattr(args, "update_recipe", False),
            seed_from=getattr(args, "seed_from", None),
        )
        builder = CorpusBuilder(recipe, options)
        if args.command == "status":
            done, planned, manifest = builder.status()
            print(f"{done}/{planned} jobs done; wrote {manifest} and summary.partial.json")
            return 0
        if args.command == "check":
            pools, voices = builder.preflight()
            jobs = builder.plan(pools, voices)
            hours = sum(j.planned_s for j in jobs) / 3600
            print(f"recipe {recipe.name}: sources, engines and transforms available; "
                  f"{len(jobs)} jobs, about {hours:.2f} h of base audio before codec copies")
            return 0
        report = builder.build()
    except (ConfigError, BuildError) as exc:
        print(f"spoofwatch data: {exc}", file=sys.stderr)
        return 1
    for job_id, error in sorted(report.failures.items()):
        print(f"FAILED {job_id}: {error}", file=sys.stderr)
    if not report.complete:
        print(f"spoofwatch data: incomplete ({len(report.failures)} failed jobs); rerun the same command "
              f"to retry them", file=sys.stderr)
        return 1
    print(f"wrote {report.manifest} ({report.summary['items']} items, {report.summary['hours']} h) in "
          f"{report.seconds:.0f} s; {report.skipped_jobs} jobs reused from an earlier run")
    return 0
