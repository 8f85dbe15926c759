"""What the daemon's decisions would be on labelled files: its DecisionTracker replayed over the
model's per-hop scores.

    python benchmarks/decisions.py --model streaming_models/default_model/spoofwatch-default.onnx \
        --labels ../shared/data/dev-eval/labels.csv [--config configs/default.toml] \
        [--set decision.thresholds=config ...]

`spoofwatch evaluate` measures the model's scores; this measures the product: the daemon's
smoothing, hysteresis and thresholds (resolved the way the daemon resolves them at start) applied
to the same streaming scores. Printed per class: how many files were ever called `spoof`, were
`spoof` at their end, were called `spoof` within the first second, the median time to the first
`spoof` call, and (genuine speech through a neural codec) how many ended as `codec`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from daemon.config import DecisionConfig, load_config
from daemon.policy import DecisionTracker, early_thresholds, resolve_thresholds
from streaming_models.data.manifest import ManifestError
from streaming_models.evaluate import EvalItem, load_items, stream_scores
from streaming_models.logs import log_to_stderr
from streaming_models.runtime.errors import SpoofwatchError
from streaming_models.runtime.onnx_backend import OnnxBackend


def class_of(item: EvalItem) -> str:
    if item.spoof:
        return "spoof"
    return "bonafide, neural codec" if item.genuine_resynthesized else "bonafide"


def replay(config: DecisionConfig, early: dict[str, tuple[float, ...]], scores: np.ndarray) -> list[str]:
    tracker = DecisionTracker(config, early)
    return [tracker.update(float(p[0]), float(p[1]))[2] for p in scores]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True, help="labels.csv or a manifest .jsonl")
    parser.add_argument("--split", help="manifest split (default: all)")
    parser.add_argument("--config", type=Path, help="daemon TOML (default: the built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a daemon setting, as `spoofwatch serve --section.key VALUE`")
    args = parser.parse_args(argv)
    log_to_stderr()
    bad = [item for item in args.set if "=" not in item]
    if bad:
        parser.error(f"--set takes SECTION.KEY=VALUE, got {bad[0]!r}")
    try:
        config = load_config(args.config, environ={}, flags=dict(item.split("=", 1) for item in args.set)).decision
        backend = OnnxBackend(args.model, providers=("CPUExecutionProvider",))
        meta = backend.metadata
        items = load_items(args.labels, None, meta.label_policy, args.split)
        scores = stream_scores(backend, items, 64)
    except (OSError, ValueError, ManifestError, SpoofwatchError) as exc:
        print(f"decisions: {exc}", file=sys.stderr)
        return 2
    early = early_thresholds(config, meta)
    decision, missing = resolve_thresholds(config, meta)
    hop_s = meta.hop_ms / 1000.0

    print(f"model {meta.model_id}  labels {args.labels}")
    print(f"decision: thresholds={config.thresholds}{' (model has none: configured values)' if missing else ''}  "
          f"spoof enter/exit {decision.spoof_enter:.3f}/{decision.spoof_exit:.3f}  codec enter/exit "
          f"{decision.codec_enter:.3f}/{decision.codec_exit:.3f}  window {decision.window_hops} hops  "
          f"min {decision.min_hops} hops  policy {decision.policy}  early thresholds "
          f"{ {head: len(by_hop) for head, by_hop in early.items()} or 'none'}")
    print(f"{'class':24} {'n':>5} {'ever spoof':>10} {'spoof at end':>12} {'spoof <= 1 s':>12} "
          f"{'median to spoof':>15} {'codec at end':>12}")
    rows: dict[str, list[list[str]]] = {}
    for item, s in zip(items, scores, strict=True):
        if len(s):
            rows.setdefault(class_of(item), []).append(replay(decision, early, s))
    first_second = max(1, round(1.0 / hop_s))
    for name in ("spoof", "bonafide", "bonafide, neural codec"):
        runs = rows.get(name, [])
        if not runs:
            continue
        firsts = [r.index("spoof") for r in runs if "spoof" in r]
        median = f"{(np.median(firsts) + 1) * hop_s:.1f} s" if firsts else "-"
        print(f"{name:24} {len(runs):5d} {100 * len(firsts) / len(runs):9.1f}% "
              f"{100 * np.mean([r[-1] == 'spoof' for r in runs]):11.1f}% "
              f"{100 * np.mean([f < first_second for f in firsts] + [False] * (len(runs) - len(firsts))):11.1f}% "
              f"{median:>15} {100 * np.mean([r[-1] == 'codec' for r in runs]):11.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
