"""Leave-sources-out evaluation: the detector scored on repositories (and families) it never trained on.

    # K folds by repository; each fold's model trains on the other folds (+ an optional base corpus)
    python benchmarks/cross_source.py --public corpus/public/manifest.jsonl --base corpus/noinhouse/manifest.jsonl \
        --folds 4 --work runs/xs-public --config configs/train/lfcc.toml --parallel 2
    # one fixed model scored on every fold (e.g. the shipped one, which trained on none of them)
    python benchmarks/cross_source.py --public corpus/public/manifest.jsonl --folds 4 --model MODEL.onnx --work runs/xs-shipped

Folds: repositories, largest first, each to the fold with the fewest hours so far (deterministic).
Every generator family and every neural-codec family has a hold-out fold (the fold holding most
of its hours): that fold's model trains on none of its items, from any repository, so each family
is scored at least once by a model that never saw it. The base corpus (the old, non-public one)
is added to every fold's training, less its items of the fold's held-out families: its engines are
mapped onto the public families by `BASE_GENERATOR_FAMILIES` (Piper is a VITS, the HiFi-GAN copies are
GAN-vocoded, WORLD and Griffin-Lim are DSP vocoders; Lyra copies are the `codec:lyra` family), so a
family held out is held out of the base corpus too.

Each held-out file is scored through the daemon's streaming path (`streaming_models.evaluate.stream_scores`:
the daemon's hop cutting and ONNX backend) by its fold's model. Reported, pooled over all folds,
per family and per repository: spoof EER and minDCF on the score at the clip's end, codec EER
(neural-codec resynthesis against everything else), and the streaming decision: the threshold at
which 2 % of genuine clips are flagged at any hop, and the share of spoofs flagged within 1 s at it.
Writes WORK/report.json; prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streaming_models.data.labels import check_policy, targets
from streaming_models.data.manifest import (
    CorpusItem,
    read_manifest,
    resolve_audio_path,
    write_manifest,
)
from streaming_models.evaluate import EvalItem, stream_scores
from streaming_models.metrics import eer, min_dcf
from streaming_models.runtime.onnx_backend import OnnxBackend

REPO = Path(__file__).resolve().parent.parent
FALSE_ALARM_RATE = 0.02
DECISION_WITHIN_S = 1.0
POLICY = "codec_as_bonafide"
# The base corpus's engines that belong to a public family (docs/data.md); the others (espeak-ng, flite,
# festival, Open JTalk, Kokoro, hibari) have no public counterpart and stay in every fold.
BASE_GENERATOR_FAMILIES = {"piper": "vits", "hifigan": "gan-vocoder", "hifigan-lj": "gan-vocoder",
                           "world": "dsp-vocoder", "griffinlim": "dsp-vocoder"}


def family(item: CorpusItem) -> str:
    if item.source == "spoof":
        return item.extra.get("family", BASE_GENERATOR_FAMILIES.get(item.generator, item.generator))
    return f"codec:{item.codec_family}" if item.codec == "neural" else "genuine"


def assign_folds(items: list[CorpusItem], k: int) -> tuple[dict[str, int], dict[str, int]]:
    """(repository -> fold, family -> its hold-out fold)."""
    hours: dict[str, float] = defaultdict(float)
    for item in items:
        hours[item.corpus] += item.duration_s
    load = [0.0] * k
    fold_of: dict[str, int] = {}
    for repo in sorted(hours, key=lambda r: (-hours[r], r)):
        fold = min(range(k), key=lambda f: (load[f], f))
        fold_of[repo] = fold
        load[fold] += hours[repo]
    by_family: dict[str, list[float]] = defaultdict(lambda: [0.0] * k)
    for item in items:
        if family(item) != "genuine":
            by_family[family(item)][fold_of[item.corpus]] += item.duration_s
    holdout = {fam: int(np.argmax(h)) for fam, h in sorted(by_family.items())}
    return fold_of, holdout


def absolute(manifest: Path, items: list[CorpusItem]) -> list[CorpusItem]:
    return [replace(i, path=str(resolve_audio_path(manifest, i).resolve())) for i in items]


def fold_training_set(public: list[CorpusItem], base: list[CorpusItem], fold: int, fold_of: dict[str, int],
                      holdout: dict[str, int]) -> list[CorpusItem]:
    held_families = {fam for fam, f in holdout.items() if f == fold}
    return ([i for i in base if family(i) not in held_families]
            + [i for i in public if fold_of[i.corpus] != fold and family(i) not in held_families])


def train_fold(work: Path, fold: int, manifest: Path, configs: list[Path]) -> Path:
    """Train (or resume) and export one fold's model; returns the ONNX path."""
    run = work / f"fold{fold}"
    onnx = run / "model.onnx"
    if onnx.is_file():
        return onnx
    cmd = [sys.executable, "-m", "clients.cli", "train", "--manifest", str(manifest), "--policy", POLICY,
           "--out", str(run)] + [a for c in configs for a in ("--config", str(c))]
    if (run / "ckpt.pt").is_file():
        cmd.append("--resume")
    with (work / f"fold{fold}.log").open("a") as log:
        subprocess.run(cmd, check=True, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        subprocess.run([sys.executable, "-m", "clients.cli", "export", "--checkpoint", str(run / "best.pt"),
                        "--out", str(onnx)], check=True, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return onnx


def score(model: Path, items: list[CorpusItem]) -> list[np.ndarray]:
    backend = OnnxBackend(model, providers=("CPUExecutionProvider",))
    policy = check_policy(POLICY)
    evals = [EvalItem(Path(i.path), *targets(i, policy), i.generator, i.codec_family, i.corpus) for i in items]
    return stream_scores(backend, evals, 64)


def _eer(pos: np.ndarray, neg: np.ndarray) -> float | None:
    if not pos.size or not neg.size:
        return None
    return eer(np.concatenate([pos, neg]), np.r_[np.ones(pos.size), np.zeros(neg.size)])[0]


def metrics(items: list[CorpusItem], scores: list[np.ndarray], hop_s: float) -> dict[str, Any]:
    kept = [(i, s) for i, s in zip(items, scores, strict=True) if len(s)]
    spoof = np.array([i.source == "spoof" for i, _ in kept])
    neural = np.array([i.codec == "neural" for i, _ in kept])
    final = np.array([s[-1] for _, s in kept])  # [files, 2]
    peak = np.array([s[:, 0].max() for _, s in kept])
    early_hops = max(1, round(DECISION_WITHIN_S / hop_s))
    early_peak = np.array([s[:early_hops, 0].max() for _, s in kept])
    genuine = ~spoof
    threshold = float(np.quantile(peak[genuine], 1 - FALSE_ALARM_RATE)) if genuine.any() else float("nan")

    def spoof_row(mask: np.ndarray) -> dict[str, Any]:
        pos = final[mask & spoof, 0]
        return {"n": int(mask.sum()), "spoof_eer": _eer(pos, final[genuine, 0]),
                "flagged_within_1s": float((early_peak[mask & spoof] > threshold).mean()) if pos.size else None}

    pooled: dict[str, Any] = {"files": len(kept), "spoof_eer": _eer(final[spoof, 0], final[genuine, 0]),
                              "codec_eer": _eer(final[neural, 1], final[~neural, 1]),
                              "threshold_at_2pct_false_alarms": threshold,
                              "flagged_within_1s": float((early_peak[spoof] > threshold).mean()) if spoof.any() else None}
    if spoof.any() and genuine.any():
        pooled["spoof_min_dcf"] = min_dcf(final[:, 0], spoof.astype(float))[0]
    families = sorted({family(i) for i, _ in kept if i.source == "spoof"})
    per_family = {fam: spoof_row(np.array([family(i) == fam for i, _ in kept])) for fam in families}
    codecs = sorted({family(i) for i, _ in kept if i.codec == "neural"})
    per_codec = {fam: {"n": int(m.sum()), "codec_eer": _eer(final[m, 1], final[~neural, 1])}
                 for fam in codecs if (m := np.array([family(i) == fam for i, _ in kept])).any()}
    per_repo = {}
    for repo in sorted({i.corpus for i, _ in kept}):
        m = np.array([i.corpus == repo for i, _ in kept])
        row = spoof_row(m)
        row["spoof_eer_within"] = _eer(final[m & spoof, 0], final[m & genuine, 0])
        row["codec_eer_within"] = _eer(final[m & neural, 1], final[m & ~neural, 1])
        per_repo[repo] = row
    return {"pooled": pooled, "family": per_family, "codec_family": per_codec, "repository": per_repo}


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def print_report(report: dict[str, Any]) -> None:
    p = report["pooled"]
    print(f"pooled over {p['files']} held-out files: spoof EER {_pct(p['spoof_eer'])}, minDCF "
          f"{p.get('spoof_min_dcf', float('nan')):.3f}, codec EER {_pct(p['codec_eer'])}, spoofs flagged within "
          f"1 s at 2 % false alarms {_pct(p['flagged_within_1s'])}")
    print("\nper generator family (its spoofs vs all genuine files):")
    for fam, row in report["family"].items():
        print(f"  {fam:<24} n={row['n']:<5} EER {_pct(row['spoof_eer'])}  within 1 s {_pct(row['flagged_within_1s'])}"
              f"  (fold {report['holdout'].get(fam, '-')})")
    print("\nper neural codec family (its files vs all non-codec files):")
    for fam, row in report["codec_family"].items():
        print(f"  {fam:<24} n={row['n']:<5} codec EER {_pct(row['codec_eer'])}")
    print("\nper repository (pooled / within):")
    for repo, row in report["repository"].items():
        print(f"  {repo:<52} fold {report['fold_of'][repo]} n={row['n']:<5} spoof {_pct(row['spoof_eer'])} / "
              f"{_pct(row['spoof_eer_within'])}  codec within {_pct(row['codec_eer_within'])}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public", type=Path, required=True, help="public corpus manifest (import-public)")
    parser.add_argument("--base", type=Path, help="a corpus added to every fold's training (less its held-out families)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--work", type=Path, required=True, help="folder for fold manifests, runs and report")
    parser.add_argument("--config", type=Path, action="append", default=[], help="training recipe deltas")
    parser.add_argument("--model", type=Path, help="score this one model on every fold instead of training")
    parser.add_argument("--parallel", type=int, default=2, help="folds trained at once")
    args = parser.parse_args(argv)
    public = absolute(args.public, list(read_manifest(args.public)))
    base = absolute(args.base, list(read_manifest(args.base))) if args.base else []
    fold_of, holdout = assign_folds(public, args.folds)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.model is not None:
        models = dict.fromkeys(range(args.folds), args.model)
    else:
        manifests = {}
        for fold in range(args.folds):
            manifests[fold] = args.work / f"fold{fold}-train.jsonl"
            write_manifest(manifests[fold], fold_training_set(public, base, fold, fold_of, holdout))
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            futures = {f: pool.submit(train_fold, args.work, f, manifests[f], args.config) for f in range(args.folds)}
            models = {f: fut.result() for f, fut in futures.items()}
    items: list[CorpusItem] = []
    scores: list[np.ndarray] = []
    for fold in range(args.folds):
        held = [i for i in public if fold_of[i.corpus] == fold]
        items += held
        scores += score(models[fold], held)
        print(f"fold {fold}: {len(held)} files scored by {models[fold]}", file=sys.stderr)
    hop_s = OnnxBackend(models[0], providers=("CPUExecutionProvider",)).metadata.hop_ms / 1000.0
    report = metrics(items, scores, hop_s)
    report.update(fold_of=fold_of, holdout=holdout, models={str(k): str(v) for k, v in models.items()},
                  base=str(args.base) if args.base else None, configs=[str(c) for c in args.config])
    (args.work / "report.json").write_text(json.dumps(report, indent=2))
    np.savez_compressed(args.work / "scores.npz", **{i.item_id: s for i, s in zip(items, scores, strict=True)})
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
