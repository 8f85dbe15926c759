"""`spoofwatch resynth train --config configs/resynthesis/NAME.toml [--out DIR] [--max-minutes M] [--resume]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from streaming_models.paths import resynthesis_artifacts_dir
from streaming_models.resynthesis.config import apply_overrides, load_config
from streaming_models.runtime.settings import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch resynth",
                                     description="train in-house neural codecs and vocoders")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one model from a TOML config")
    train.add_argument("--config", required=True, type=Path, help="configs/resynthesis/NAME.toml")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default artifacts/resynthesis/NAME in the working directory, where "
                            "the corpus builder looks for it); holds model.pt and summary.json")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="training time budget, accumulated across resumptions (default: the config's)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/model.pt")
    # One thread by default: on a shared 2-core machine two threads per job oversubscribe the CPU and
    # ran ~3x slower per step than one.
    train.add_argument("--threads", type=int, default=int(os.environ.get("SPOOFWATCH_THREADS", "1")),
                       help="torch CPU threads (default 1 or $SPOOFWATCH_THREADS)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config field, e.g. --set train.batch_size=32 (repeatable; saved "
                            "in the checkpoint, so pass the same ones with --resume)")
    train.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = apply_overrides(load_config(args.config), args.overrides)
    except ConfigError as exc:
        print(f"spoofwatch resynth: {exc}", file=sys.stderr)
        return 2
    import torch  # heavy: only once the arguments are known to be valid

    from streaming_models.paths import shared_data_dir
    from streaming_models.resynthesis.checkpoint import CheckpointError
    from streaming_models.resynthesis.dataset import TrainingDataError
    from streaming_models.resynthesis.train import TrainingError, train

    torch.set_num_threads(max(1, args.threads))
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        print(f"spoofwatch resynth: bad --device {args.device!r}: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print("spoofwatch resynth: --device cuda, but this torch build sees no CUDA GPU", file=sys.stderr)
        return 2
    out_dir = args.out if args.out is not None else resynthesis_artifacts_dir() / config.name
    try:
        summary = train(config, out_dir, data_dir=shared_data_dir(), resume=args.resume,
                        max_minutes=args.max_minutes, progress=not args.no_progress, device=str(device))
    except (TrainingError, TrainingDataError, CheckpointError) as exc:
        print(f"spoofwatch resynth: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0
