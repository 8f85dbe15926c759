"""Evaluate an exported model through the daemon's own streaming path.

    spoofwatch evaluate --model model.onnx --labels ../shared/data/dev-eval/labels.csv [--json]
    spoofwatch evaluate --model model.onnx --labels corpus/medium/manifest.jsonl --split dev

Each file is cut into hops by the runtime's `StreamBuffer` (the daemon's: same resampler, same
hop boundaries, final partial hop unscored) and scored by the runtime's `HopScorer` with an
`OnnxBackend`, the scorer the daemon's batcher uses; many files run at once across the batch
dimension, each row carrying its own state.

Reported per head (spoof, codec): EER and ASVspoof 5 minDCF (metrics.py) on the score at
the end of each clip; the same after 0.5, 1, 2 and 4 s of audio; breakdowns per dataset,
corpus, system and codec (EER within the group, and "pooled": the group's positives against
every negative of the set, the usual per-attack figure); and, at the operating threshold (model metadata, else 0.5), the flag
rate, the false-alarm rate and the time to detection (first hop at or above threshold; in a
model calibrated by `spoofwatch calibrate`, its early thresholds apply to the first seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import structlog
from tqdm import tqdm

from streaming_models.data.labels import POLICIES, check_policy, targets
from streaming_models.data.manifest import ManifestError, read_manifest, resolve_audio_path
from streaming_models.logs import log_to_stderr
from streaming_models.metrics import eer, eer_interval, min_dcf
from streaming_models.runtime.backend import Backend
from streaming_models.runtime.errors import SpoofwatchError
from streaming_models.runtime.model_format import HEADS
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.runtime.scorer import HopScorer

log = structlog.get_logger(__name__)

DEFAULT_THRESHOLD = 0.5  # for a head whose model carries no operating threshold
CHECKPOINTS_S = (0.5, 1.0, 2.0, 4.0)
CSV_COLUMNS = ("path", "label", "codec", "system", "corpus")


@dataclass(frozen=True)
class EvalItem:
    path: Path
    spoof: int  # target of the spoof head
    codec: int  # target of the codec head
    system: str
    codec_name: str
    corpus: str
    genuine_resynthesized: bool = False  # bona fide speech passed through a neural codec
    dataset: str = ""  # labels.csv: the path's top folder (e.g. hifigan-demo); manifest: the corpus

    def target(self, head: str | int) -> int:
        """The item's target for a head, by name ("spoof", "codec") or by column (0, 1)."""
        return self.spoof if head in ("spoof", 0) else self.codec


def read_labels_csv(path: Path, root: Path) -> list[EvalItem]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (need {','.join(CSV_COLUMNS)})")
        items = []
        for lineno, row in enumerate(reader, 2):
            if row["label"] not in ("bonafide", "spoof") or row["codec"] not in ("none", "neural", "telephony"):
                raise ValueError(f"{path}:{lineno}: label must be bonafide|spoof and codec none|neural|telephony")
            items.append(EvalItem(root / row["path"], int(row["label"] == "spoof"), int(row["codec"] == "neural"),
                                  row["system"], row["codec"], row["corpus"],
                                  row["label"] == "bonafide" and row["codec"] == "neural",
                                  Path(row["path"]).parts[0] if Path(row["path"]).parts else ""))
    return items


def read_labels_manifest(path: Path, root: Path | None, policy: str, split: str | None) -> list[EvalItem]:
    pol = check_policy(policy if policy in POLICIES else "codec_as_bonafide")
    items = []
    for item in read_manifest(path):
        if split and item.split != split:
            continue
        audio = Path(item.path) if Path(item.path).is_absolute() or root is None else root / item.path
        spoof, codec = targets(item, pol)
        items.append(EvalItem(audio if root else resolve_audio_path(path, item), spoof, codec,
                              item.generator, item.codec_family, item.corpus,
                              item.source == "bonafide" and item.codec == "neural", item.corpus))
    return items


def load_items(labels: Path, root: Path | None, policy: str, split: str | None) -> list[EvalItem]:
    """The labelled files of a labels.csv or a manifest (its `split`), all present on disk.

    Raises ValueError naming the problem: no items, or audio files that are not there.
    """
    if labels.suffix == ".csv":
        items = read_labels_csv(labels, root or labels.parent)
    else:
        items = read_labels_manifest(labels, root, policy, split)
    if not items:
        raise ValueError(f"{labels}: no items{f' in split {split!r}' if split else ''}")
    missing = [str(it.path) for it in items if not it.path.is_file()]
    if missing:
        raise ValueError(f"{len(missing)} audio files not found, e.g. {missing[0]} (use --root)")
    return items


AudioLoader = Callable[[EvalItem], tuple[np.ndarray, int]]


def read_mono(item: EvalItem) -> tuple[np.ndarray, int]:
    """An item's audio as float32 mono at its own sample rate (channels averaged)."""
    audio, rate = sf.read(str(item.path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def stream_scores(backend: Backend, items: Sequence[EvalItem], batch_size: int,
                  load: AudioLoader = read_mono) -> list[np.ndarray]:
    """Per file: probabilities [hops, 2] after each hop, scored `batch_size` files at a time.

    `load` gives an item's mono audio and its rate; benchmarks pass one that alters the audio first.
    """
    scorer = HopScorer(backend)
    results: list[np.ndarray] = []
    for lo in tqdm(range(0, len(items), batch_size), desc="scoring", unit="batch", leave=False):
        results += scorer.score_signals(load(item) for item in items[lo:lo + batch_size])
    return results


def score_at(scores: np.ndarray, seconds: float | None, hop_s: float) -> np.ndarray:
    """The score after `seconds` of audio (None: the clip's end); short clips give their last hop."""
    if seconds is None:
        return scores[-1]
    return scores[min(len(scores), max(1, round(seconds / hop_s))) - 1]


def detection_summary(items: Sequence[EvalItem], scores: Sequence[np.ndarray], head: int, threshold: float,
                      hop_s: float, early: Sequence[float] = ()) -> dict[str, Any]:
    """Flag rates and time to detection at `threshold`, for positives and negatives of one head.

    `early[h]` replaces the threshold at hop h + 1 (the model's early thresholds, `spoofwatch calibrate`).
    """
    out: dict[str, Any] = {"threshold": threshold, "early_threshold_hops": len(early)}

    def per_hop(n: int) -> np.ndarray:
        thresholds = np.full(n, threshold)
        thresholds[: min(n, len(early))] = early[:n]
        return thresholds

    for name, want in (("positive", 1), ("negative", 0)):
        rows = [s[:, head] for it, s in zip(items, scores, strict=True)
                if it.target(head) == want]
        if not rows:
            continue
        first = [int(np.argmax(hit)) if (hit := r >= per_hop(len(r))).any() else -1 for r in rows]
        times = np.array([(f + 1) * hop_s for f in first if f >= 0])
        out[name] = {
            "n": len(rows),
            "flagged_at_end": float(np.mean([r[-1] >= threshold for r in rows])),
            "flagged_any_hop": float(np.mean([f >= 0 for f in first])),
            "flagged_within_1s": float(np.mean([0 <= f and (f + 1) * hop_s <= 1.0 + 1e-9 for f in first])),
            "median_time_to_flag_s": float(np.median(times)) if times.size else None,
        }
    return out


def head_metrics(labels: np.ndarray, finals: np.ndarray, interval: bool = False) -> dict[str, Any] | None:
    """EER, minDCF and count; with `interval`, the EER's 95 % bootstrap interval over files too."""
    if not 0 < labels.sum() < len(labels):
        return None
    out: dict[str, Any] = {"eer": eer(finals, labels)[0], "min_dcf": min_dcf(finals, labels)[0], "n": len(labels)}
    if interval:
        out["eer_ci95"] = list(eer_interval(finals, labels))
    return out


def summarize(items: Sequence[EvalItem], scores: Sequence[np.ndarray], hop_s: float,
              thresholds: dict[str, float], early: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
    kept = [(it, s) for it, s in zip(items, scores, strict=True) if len(s)]
    items = [it for it, _ in kept]
    scores = [s for _, s in kept]
    report: dict[str, Any] = {"files": len(items), "heads": {}, "breakdown": {}}
    for col, head in enumerate(HEADS):
        labels = np.array([it.target(head) for it in items])
        finals = np.array([score_at(s, None, hop_s)[col] for s in scores])
        entry: dict[str, Any] = {"overall": head_metrics(labels, finals, interval=True), "after_s": {}}
        for t in CHECKPOINTS_S:
            entry["after_s"][str(t)] = head_metrics(labels, np.array([score_at(s, t, hop_s)[col] for s in scores]))
        entry["detection"] = detection_summary(items, scores, col, thresholds[head], hop_s, (early or {}).get(head, ()))
        report["heads"][head] = entry
    resynth = [i for i, it in enumerate(items) if it.genuine_resynthesized]
    if resynth:  # what the label-policy study compares: is codec-resynthesized genuine speech called spoof?
        p_spoof = np.array([scores[i][-1, 0] for i in resynth])
        report["genuine_resynthesized"] = {"n": len(resynth), "p_spoof_mean": float(p_spoof.mean()),
                                           "spoof_flagged": float((p_spoof >= thresholds["spoof"]).mean())}
    finals_all = np.array([s[-1] for s in scores])  # [files, 2]
    targets_all = np.array([[it.spoof, it.codec] for it in items])  # [files, 2]
    for key in ("dataset", "corpus", "system", "codec_name"):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            groups[getattr(it, key)].append(i)
        table = {}
        for name, idx in sorted(groups.items()):
            row: dict[str, Any] = {"n": len(idx), "bonafide": sum(1 - items[i].spoof for i in idx),
                                   "neural_codec": sum(items[i].codec for i in idx)}
            for col, head in enumerate(HEADS):
                labels = np.array([items[i].target(head) for i in idx])
                finals = np.array([scores[i][-1, col] for i in idx])
                row[f"p_{head}_mean"] = float(finals.mean())
                row[f"{head}_flagged"] = float((finals >= thresholds[head]).mean())
                metrics = head_metrics(labels, finals)
                row[f"{head}_eer"] = metrics["eer"] if metrics else None
                # ASVspoof-style per-attack figure: this group's positives against every negative of the set.
                pos = finals[labels == 1]
                neg = finals_all[targets_all[:, col] == 0, col]
                row[f"{head}_eer_pooled"] = (eer(np.concatenate([pos, neg]), np.r_[np.ones(pos.size), np.zeros(neg.size)])[0]
                                             if pos.size and neg.size else None)
            table[name] = row
        report["breakdown"][key.removesuffix("_name")] = table
    return report


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def format_report(report: dict[str, Any]) -> str:
    lines = [(f"model {report['model_id']}  ({report['labels']}, {report['files']} files scored, "
              f"hop {report['hop_ms']:.0f} ms)"), ""]
    lines.append(f"{'head':6} {'EER':>7} {'95% interval':>13} {'minDCF':>7} | EER after "
                 + " ".join(f"{t:>5}s" for t in CHECKPOINTS_S))
    for head, entry in report["heads"].items():
        o = entry["overall"]
        after = " ".join(_pct(m["eer"] if m else None) for m in entry["after_s"].values())
        dcf = f"{o['min_dcf']:.3f}" if o else "-"
        ci = f"{100 * o['eer_ci95'][0]:.1f}-{100 * o['eer_ci95'][1]:.1f}%" if o else "-"
        lines.append(f"{head:6} {_pct(o['eer'] if o else None):>7} {ci:>13} {dcf:>7} | {'':9} {after}")
    lines.append("")
    for head, entry in report["heads"].items():
        d = entry["detection"]
        for name in ("positive", "negative"):
            if name in d:
                s = d[name]
                med = "-" if s["median_time_to_flag_s"] is None else f"{s['median_time_to_flag_s']:.1f}s"
                schedule = f" (early: {d['early_threshold_hops']} hops)" if d.get("early_threshold_hops") else ""
                lines.append(f"{head} threshold {d['threshold']:.3f}{schedule} {name:8}: n={s['n']:4d}  flagged at end "
                             f"{_pct(s['flagged_at_end'])}  any hop {_pct(s['flagged_any_hop'])}  within 1 s "
                             f"{_pct(s['flagged_within_1s'])}  median time to flag {med}")
    if "genuine_resynthesized" in report:
        g = report["genuine_resynthesized"]
        lines += ["", (f"codec-resynthesized genuine speech: n={g['n']}  mean p_spoof {g['p_spoof_mean']:.3f}  "
                      f"called spoof {_pct(g['spoof_flagged'])}")]
    for key, table in report["breakdown"].items():
        lines += ["", (f"by {key}: {'n':>5} {'bona':>5} {'codec':>5}  {'p_spoof':>7} {'flag':>6} {'EER':>6} "
                       f"{'EERpool':>7}  {'p_codec':>7} {'flag':>6} {'EER':>6} {'EERpool':>7}")]
        for name, r in table.items():
            lines.append(f"  {name[:28]:28} {r['n']:5d} {r['bonafide']:5d} {r['neural_codec']:5d}  "
                         f"{r['p_spoof_mean']:7.3f} {_pct(r['spoof_flagged'])} {_pct(r['spoof_eer'])} "
                         f"{_pct(r['spoof_eer_pooled']):>7}  {r['p_codec_mean']:7.3f} {_pct(r['codec_flagged'])} "
                         f"{_pct(r['codec_eer'])} {_pct(r['codec_eer_pooled']):>7}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spoofwatch evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="exported ONNX model")
    parser.add_argument("--labels", required=True, type=Path,
                        help="labels.csv (path,label,codec,system,corpus) or a manifest .jsonl")
    parser.add_argument("--root", type=Path, help="audio root (default: the labels file's folder)")
    parser.add_argument("--split", choices=("train", "dev", "test"), help="manifest split to score (default: all)")
    parser.add_argument("--batch", type=int, default=64, help="files scored at once across the batch")
    parser.add_argument("--threshold-spoof", type=float, help="operating threshold (default: model metadata)")
    parser.add_argument("--threshold-codec", type=float, help="operating threshold (default: model metadata)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    log_to_stderr()
    try:
        backend = OnnxBackend(args.model, providers=("CPUExecutionProvider",))
        meta = backend.metadata
        items = load_items(args.labels, args.root, meta.label_policy, args.split)
        scores = stream_scores(backend, items, max(1, args.batch))
    except (OSError, ValueError, ManifestError, SpoofwatchError) as exc:
        print(f"spoofwatch evaluate: {exc}", file=sys.stderr)
        return 2
    given = {"spoof": args.threshold_spoof, "codec": args.threshold_codec}
    thresholds = {head: meta.operating_thresholds.get(head, DEFAULT_THRESHOLD) if (value := given[head]) is None
                  else value for head in HEADS}
    early = {head: meta.enter_thresholds_by_hop(head) for head in HEADS if given[head] is None}
    report = summarize(items, scores, meta.hop_ms / 1000.0, thresholds, early)
    report.update(model_id=meta.model_id, labels=str(args.labels), hop_ms=meta.hop_ms,
                  label_policy=meta.label_policy,
                  unscored_shorter_than_one_hop=sum(1 for s in scores if not len(s)))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
