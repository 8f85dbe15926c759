"""The verifier on cross-source folds: alone, and fused with the streaming detector of the same fold.

    # a verifier trained on one fold's training manifest (python -m streaming_models.verifier.train
    # --manifest runs/xs-pp/fold0-train.jsonl --out runs/vf-fold0 ...), scored on that fold's held-out
    # files and compared with the streaming models of one or more cross_source.py runs (seeds)
    python benchmarks/verifier_cross_source.py --public corpus/public/manifest.jsonl \\
        --fold 0 --verifier runs/vf-fold0 --streaming runs/xs-pp --streaming runs/xs-pp-s2

The held-out files are those of the fold's repositories (cross_source.py's assignment, read from each
streaming run's report.json, which must agree). The verifier scores each file with a window ending
every second and one at its end (streaming_models/verifier/score.py; cached in VERIFIER/heldout.npz).
The fused score at each window end is `fuse_log_odds_mean` (streaming_models/runtime/fusion.py) of the
streaming model's p_spoof at that time and the verifier's. The metrics are cross_source.py's: spoof
EER and minDCF at the clip's end, codec EER, spoofs flagged within 1 s at the threshold giving 2 % of
genuine clips flagged at any score; per family. Writes VERIFIER/cross-source.json.

`--dev-eval LABELS.csv` adds the fixed second check: dev-eval scored by the verifier, by each run's
fold model (RUN/foldK/model.onnx, through the daemon's streaming path) and fused; spoof EER, minDCF
and codec EER at the clip's end (VERIFIER/dev-eval.npz caches the verifier's scores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from cross_source import absolute, family, metrics

from streaming_models.data.manifest import CorpusItem, read_manifest
from streaming_models.evaluate import EvalItem, load_items, stream_scores
from streaming_models.metrics import eer, min_dcf
from streaming_models.runtime.fusion import fuse_log_odds_mean
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.verifier.score import score_files

STREAMING_HOP_S = 0.1


def heldout_items(public: Path, streaming_runs: list[Path], fold: int) -> list[CorpusItem]:
    fold_ofs = [json.loads((run / "report.json").read_text())["fold_of"] for run in streaming_runs]
    if any(f != fold_ofs[0] for f in fold_ofs):
        raise SystemExit("the streaming runs were not made with the same folds")
    items = absolute(public, list(read_manifest(public)))
    return [i for i in items if fold_ofs[0][i.corpus] == fold]


def verifier_scores(run: Path, files: dict[str, Path], every_s: float, cache_name: str) -> dict[str, np.ndarray]:
    """{key: [windows, 2]} for {key: audio path}, cached in RUN/CACHE_NAME."""
    cache = run / cache_name
    if cache.is_file():
        cached = np.load(cache)
        if all(key in cached.files for key in files):
            return {key: cached[key] for key in files}
    scores = score_files(run / "ckpt.pt", files, every_s)
    np.savez_compressed(cache, **scores)
    return scores


def streaming_at_window_ends(streaming: np.ndarray, windows: int, duration_s: float, every_s: float) -> np.ndarray:
    """The streaming model's [hops, 2] scores read at each verifier window's end (the last hop done by
    then); windows end every `every_s` seconds and at the clip's end (score.window_ends)."""
    ends_s = np.minimum(every_s * np.arange(1, windows + 1), duration_s)
    hop = np.clip(np.floor(ends_s / STREAMING_HOP_S + 1e-9).astype(int) - 1, 0, len(streaming) - 1)
    return streaming[hop]


def fused(streaming: np.ndarray, verifier: np.ndarray) -> np.ndarray:
    out = verifier.copy()
    out[:, 0] = fuse_log_odds_mean(streaming[:, 0], verifier[:, 0])
    out[:, 1] = fuse_log_odds_mean(streaming[:, 1], verifier[:, 1])
    return out


def compare(items: list[CorpusItem], verifier: dict[str, np.ndarray], run: Path, every_s: float) -> dict[str, Any]:
    stream_npz = np.load(run / "scores.npz")
    kept = [i for i in items if len(stream_npz[i.item_id]) and len(verifier[i.item_id])]
    streaming = [stream_npz[i.item_id] for i in kept]
    at_ends = [streaming_at_window_ends(s, len(verifier[i.item_id]), i.duration_s, every_s)
               for s, i in zip(streaming, kept, strict=True)]
    return {"streaming": metrics(kept, streaming, STREAMING_HOP_S),
            "verifier": metrics(kept, [verifier[i.item_id] for i in kept], every_s),
            "fused": metrics(kept, [fused(a, verifier[i.item_id]) for a, i in zip(at_ends, kept, strict=True)], every_s)}


def final_metrics(items: list[EvalItem], finals: np.ndarray) -> dict[str, Any]:
    spoof = np.array([i.spoof for i in items])
    codec = np.array([i.codec for i in items])
    return {"files": len(items), "spoof_eer": eer(finals[:, 0], spoof)[0], "codec_eer": eer(finals[:, 1], codec)[0],
            "spoof_min_dcf": min_dcf(finals[:, 0], spoof.astype(float))[0]}


def dev_eval(labels: Path, verifier_run: Path, streaming_runs: list[Path], fold: int, every_s: float) -> dict[str, Any]:
    items = load_items(labels, None, "codec_as_bonafide", None)
    verifier = verifier_scores(verifier_run, {str(i.path): i.path for i in items}, every_s, "dev-eval.npz")
    v_final = np.array([verifier[str(i.path)][-1] for i in items])
    report: dict[str, Any] = {"verifier": final_metrics(items, v_final)}
    for run in streaming_runs:
        streaming = stream_scores(OnnxBackend(run / f"fold{fold}" / "model.onnx", providers=("CPUExecutionProvider",)),
                                  items, 64)
        s_final = np.array([s[-1] for s in streaming])
        report[str(run)] = {"streaming": final_metrics(items, s_final),
                            "fused": final_metrics(items, fused(s_final, v_final))}
    return report


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def print_comparison(run: Path, rows: dict[str, Any]) -> None:
    print(f"\nstreaming run {run}:")
    for name, report in rows.items():
        p = report["pooled"]
        print(f"  {name:<10} files {p['files']}: spoof EER {_pct(p['spoof_eer'])}  minDCF "
              f"{p.get('spoof_min_dcf', float('nan')):.3f}  codec EER {_pct(p['codec_eer'])}  "
              f"within 1 s {_pct(p['flagged_within_1s'])}")
    print("  per family (spoof EER: streaming / verifier / fused):")
    for fam in rows["streaming"]["family"]:
        cells = " / ".join(_pct(rows[name]["family"][fam]["spoof_eer"]) for name in rows)
        print(f"    {fam:<24} n={rows['streaming']['family'][fam]['n']:<5} {cells}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public", type=Path, required=True, help="the public corpus manifest the folds were cut from")
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument("--verifier", type=Path, required=True, help="verifier run folder (ckpt.pt)")
    parser.add_argument("--streaming", type=Path, action="append", required=True,
                        help="a cross_source.py work folder (report.json, scores.npz); repeat for seeds")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between verifier windows")
    parser.add_argument("--dev-eval", type=Path, help="dev-eval labels.csv: also score it (the fixed second check)")
    args = parser.parse_args(argv)
    items = heldout_items(args.public, args.streaming, args.fold)
    verifier = verifier_scores(args.verifier, {i.item_id: Path(i.path) for i in items}, args.every, "heldout.npz")
    report = {str(run): compare(items, verifier, run, args.every) for run in args.streaming}
    for run in args.streaming:
        print_comparison(run, report[str(run)])
    if args.dev_eval:
        report["dev-eval"] = dev_eval(args.dev_eval, args.verifier, args.streaming, args.fold, args.every)
        print(f"\ndev-eval: {json.dumps(report['dev-eval'], indent=1)}")
    (args.verifier / "cross-source.json").write_text(json.dumps(report, indent=2))
    print(f"families held out in fold {args.fold}: "
          f"{sorted({family(i) for i in items if family(i) != 'genuine'})}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
