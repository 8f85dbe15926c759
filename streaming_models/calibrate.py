"""Early operating thresholds: one per elapsed time, each at the same false-alarm rate.

    spoofwatch calibrate --model model.onnx --labels corpus/default/manifest.jsonl --split dev

The operating threshold chosen in training holds for the score after 4 s. Early scores are
distributed differently (the network has heard less), so one threshold for every hop flags
either too few spoofs early or too many genuine files. This scores the labelled files through
the daemon's streaming path (`evaluate.stream_scores`) and, per head, picks the threshold that
flags `--fpr` of the negatives after 0.3, 0.5, 1 and 2 s of audio. The schedule goes into the
model's metadata (`threshold_<head>_by_s`: [[seconds, threshold], ...], in place or to --out),
ending with [4, the training threshold `threshold_<head>`], which holds from 4 s on. The daemon's decisions
(`decision.thresholds = "model"`) and `spoofwatch evaluate` use it. The thresholds are chosen on
per-hop scores; the daemon compares them with a moving mean, which varies less, so its false
alarms on such files are usually rarer than `--fpr` (not always: the mean also carries earlier
hops, whose thresholds differ).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streaming_models.data.manifest import ManifestError
from streaming_models.evaluate import EvalItem, load_items, score_at, stream_scores
from streaming_models.logs import log_to_stderr
from streaming_models.runtime.errors import SpoofwatchError
from streaming_models.runtime.model_format import HEADS, METADATA_KEY, ModelMetadata, Schedule
from streaming_models.runtime.onnx_backend import OnnxBackend

SCHEDULE_S = (0.3, 0.5, 1.0, 2.0)
FINAL_S = 4.0  # where training's threshold (the score after 4 s) takes over


def threshold_schedule(items: Sequence[EvalItem], scores: Sequence[np.ndarray], head: int, hop_s: float,
                       fpr: float) -> list[tuple[float, float]]:
    """[(seconds, threshold), ...]: the (1 - fpr) quantile of the negatives' score after each time."""
    negatives = [s for it, s in zip(items, scores, strict=True)
                 if len(s) and it.target(head) == 0]
    if not negatives:
        raise ValueError(f"no negatives for the {HEADS[head]} head: cannot choose its thresholds")
    schedule = []
    for seconds in SCHEDULE_S:
        at = np.array([score_at(s, seconds, hop_s)[head] for s in negatives])
        schedule.append((seconds, float(np.quantile(at, 1.0 - fpr, method="higher"))))
    return schedule


def write_metadata(model: Path, meta: ModelMetadata, out: Path) -> None:
    import onnx

    proto = onnx.load(str(model))
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = meta.to_json()
    onnx.save(proto, str(out))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spoofwatch calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="exported ONNX model")
    parser.add_argument("--labels", required=True, type=Path, help="manifest .jsonl (its dev split) or labels.csv")
    parser.add_argument("--split", default="dev", help="manifest split to calibrate on (default: dev)")
    parser.add_argument("--fpr", type=float, default=0.01, help="false-alarm rate of every threshold")
    parser.add_argument("--out", type=Path, help="write here instead of updating --model in place")
    args = parser.parse_args(argv)
    log_to_stderr()
    if not 0.0 < args.fpr < 1.0:
        parser.error("--fpr must be between 0 and 1")
    try:
        backend = OnnxBackend(args.model, providers=("CPUExecutionProvider",))
        meta = backend.metadata
        items = load_items(args.labels, None, meta.label_policy, args.split)
        scores = stream_scores(backend, items, 64)
        hop_s = meta.hop_ms / 1000.0
        schedules = {head: threshold_schedule(items, scores, col, hop_s, args.fpr) for col, head in enumerate(HEADS)}
    except (OSError, ValueError, ManifestError, SpoofwatchError) as exc:
        print(f"spoofwatch calibrate: {exc}", file=sys.stderr)
        return 2
    early: dict[str, Schedule] = {}
    for head, schedule in schedules.items():
        if head in meta.operating_thresholds:  # the last point hands over to training's operating threshold
            schedule.append((FINAL_S, meta.operating_thresholds[head]))
        early[head] = tuple(schedule)
    extra = dict(meta.extra)
    extra["threshold_schedule_from"] = {"labels": str(args.labels), "split": args.split, "fpr": args.fpr,
                                        "files": len(items)}
    calibrated = dataclasses.replace(meta, early_thresholds_by_s={**meta.early_thresholds_by_s, **early},
                                     extra=extra)
    write_metadata(args.model, calibrated, args.out or args.model)
    print(json.dumps({"model_id": meta.model_id, "out": str(args.out or args.model), **{
        f"threshold_{head}_by_s": schedule for head, schedule in early.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
