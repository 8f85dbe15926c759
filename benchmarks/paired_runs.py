"""Compare two training recipes over paired seeds: per-measure means, differences and a sign-flip test.

    python benchmarks/paired_runs.py --pair runs/base-s1 runs/new-s1 --pair runs/base-s2 runs/new-s2 ...

Each pair is one seed trained by both recipes (same seed: same initial weights and crops). Every
run is scored as `benchmarks/labeling_study.py` scores it (exported once, reports cached beside
the model). On dev-eval one run's EER is mostly the draw of its seed (docs/model-card.md), so a
recipe is judged on the differences within pairs: printed per measure are both means, the mean
difference, how many pairs it improved, and the two-sided p-value of the exact sign-flip
(permutation) test of the mean difference. With n pairs the smallest p-value is 2 / 2^n: five
pairs cannot go below 0.0625.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
from labeling_study import DEV_EVAL_SPOOF_SETS, get, reports

# (name, set, path into the report, lower is better)
MEASURES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("dev-eval spoof EER", "dev-eval", ("heads", "spoof", "overall", "eer"), True),
    ("spoof EER, uncoded audio only", "dev-eval", ("breakdown", "codec", "none", "spoof_eer"), True),
    ("spoof minDCF", "dev-eval", ("heads", "spoof", "overall", "min_dcf"), True),
    ("dev-eval codec EER", "dev-eval", ("heads", "codec", "overall", "eer"), True),
    *((f"spoof EER, {name} vs all bona fide", "dev-eval", ("breakdown", "dataset", name, "spoof_eer_pooled"), True)
      for name in DEV_EVAL_SPOOF_SETS),
    ("codec EER within semanticodec", "dev-eval", ("breakdown", "dataset", "semanticodec", "codec_eer"), True),
    ("codec EER held-out Lyra", "heldout", ("heads", "codec", "overall", "eer"), True),
    ("telephone bona fide called spoof", "heldout", ("breakdown", "dataset", "telephone", "spoof_flagged"), True),
)


def sign_flip_p(differences: np.ndarray) -> float:
    """Two-sided exact p-value of the mean difference under random signs (paired permutation test)."""
    observed = abs(differences.mean())
    means = [abs((differences * signs).mean()) for signs in itertools.product((1.0, -1.0), repeat=len(differences))]
    return float(np.mean([m >= observed - 1e-12 for m in means]))


def compare(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per measure that every run of every pair has: means, mean difference, wins, p-value."""
    rows = []
    for name, dataset, path, lower_is_better in MEASURES:
        values = [(get(base.get(dataset), *path), get(new.get(dataset), *path)) for base, new in pairs]
        if any(b is None or n is None for b, n in values):
            continue
        base, new = np.array(values, dtype=float).T
        better = new < base if lower_is_better else new > base
        worse = int((new != base).sum() - better.sum())
        rows.append({"measure": name, "baseline": base.mean(), "treatment": new.mean(),
                     "difference": (new - base).mean(), "better": int(better.sum()), "worse": worse,
                     "pairs": len(values), "p": sign_flip_p(new - base)})
    return rows


def fmt(value: float, measure: str, signed: bool) -> str:
    """minDCF as a number; rates as percent (a difference of rates in points)."""
    sign = "+" if signed else ""
    if "minDCF" in measure:
        return f"{value:{sign}.3f}"
    return f"{100 * value:{sign}.1f}" + (" points" if signed else " %")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", nargs=2, action="append", type=Path, required=True,
                        metavar=("BASELINE_RUN", "TREATMENT_RUN"), help="repeat once per seed")
    parser.add_argument("--per-run", action="store_true", help="also print every run's value of every measure")
    args = parser.parse_args(argv)
    missing = [str(run) for pair in args.pair for run in pair if not (run / "best.pt").is_file()]
    if missing:
        print(f"paired_runs: no best.pt in: {', '.join(missing)}", file=sys.stderr)
        return 2
    pairs = [(reports(base), reports(new)) for base, new in args.pair]
    print(f"{len(pairs)} pairs: " + ", ".join(f"{b.name} -> {n.name}" for b, n in args.pair) + "\n")
    print("| measure | baseline mean | treatment mean | mean difference | pairs better / worse | sign-flip p |")
    print("|---|---|---|---|---|---|")
    for row in compare(pairs):
        cells = [fmt(row[key], row["measure"], key == "difference") for key in ("baseline", "treatment", "difference")]
        print(f"| {row['measure']} | " + " | ".join(cells)
              + f" | {row['better']} / {row['worse']} of {row['pairs']} | {row['p']:.3f} |")
    if args.per_run:
        print_per_run([run for pair in args.pair for run in pair], [r for pair in pairs for r in pair])
    return 0


def print_per_run(runs: list[Path], run_reports: list[dict[str, Any]]) -> None:
    """One row per run, one column per measure (the measures the run's reports have)."""
    print("\n| run | " + " | ".join(name for name, *_ in MEASURES) + " |")
    print("|---|" + "---|" * len(MEASURES))
    for run, report in zip(runs, run_reports, strict=True):
        cells = []
        for name, dataset, path, _ in MEASURES:
            value = get(report.get(dataset), *path)
            cells.append("-" if value is None else fmt(value, name, signed=False))
        print(f"| {run.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
