"""Score detector runs on every evaluation set and print the label-study table (docs/labeling-study.md).

    python benchmarks/labeling_study.py runs/study-codec_as_bonafide runs/study-codec_as_spoof ...

For each run folder: export `best.pt` to `model.onnx` (once; a folder holding only `model.onnx`, such as
a copy of a shipped model, is scored as it is), score it with `spoofwatch evaluate`
on dev-eval, on the held-out Lyra/telephone set and on the held-out in-house codec set (each report
cached as JSON next to the model), then print one markdown table per question. Sets that are missing
are reported as such, not skipped silently. Nothing here trains.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from streaming_models.paths import shared_data_dir

REPO = Path(__file__).resolve().parent.parent
SHARED = shared_data_dir()
SETS = {
    "dev-eval": SHARED / "dev-eval" / "labels.csv",
    "heldout": REPO / "artifacts" / "heldout" / "labels.csv",
    "heldout-inhouse": REPO / "artifacts" / "heldout-inhouse" / "labels.csv",
}
INHOUSE_CODECS = ("inhouse-comp6k", "inhouse-istft", "inhouse-token1k")
DEV_EVAL_SPOOF_SETS = ("hifigan-demo", "nsf-arctic", "matcha", "freevc")
# Codec objective of the resynthesis systems in the sets (docs/labels.md): SemantiCodec and our
# 1 kbit/s token codec are "synthesis" token spaces, the rest compression codecs.
SYNTHESIS_CODEC_PREFIXES = ("SemantiCodec", "inhouse-token1k")


def spoofwatch(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "clients.cli", *args], cwd=REPO, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"spoofwatch {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def reports(run: Path) -> dict[str, dict[str, Any] | None]:
    model, checkpoint = run / "model.onnx", run / "best.pt"
    if checkpoint.exists() and (not model.exists() or model.stat().st_mtime < checkpoint.stat().st_mtime):
        spoofwatch("export", "--checkpoint", str(checkpoint), "--out", str(model))
    out: dict[str, dict[str, Any] | None] = {}
    for name, labels in SETS.items():
        cached = run / f"eval-{name}.json"
        if not labels.exists():
            out[name] = None
            continue
        if not cached.exists() or cached.stat().st_mtime < model.stat().st_mtime:
            cached.write_text(spoofwatch("evaluate", "--model", str(model), "--labels", str(labels), "--json"))
        out[name] = json.loads(cached.read_text())
    return out


def get(report: dict[str, Any] | None, *keys: str) -> float | None:
    value: Any = report
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def interval(report: dict[str, Any] | None, head: str) -> str:
    """The head's EER bootstrap interval over files (reports written before it existed: n/a)."""
    ci = ((report or {}).get("heads", {}).get(head, {}).get("overall") or {}).get("eer_ci95")
    return "n/a" if not ci else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f} %"


def called_spoof_by_objective(report: dict[str, Any] | None) -> dict[str, str]:
    """Share of codec-resynthesized genuine speech the spoof head flags, per codec objective."""
    flagged = {"compression": [0.0, 0], "synthesis": [0.0, 0]}
    systems = (report or {}).get("breakdown", {}).get("system", {})
    for name, row in systems.items():
        n = row.get("neural_codec", 0)
        if n == 0 or row.get("bonafide") != row.get("n") or row.get("spoof_flagged") is None:
            continue
        objective = "synthesis" if name.startswith(SYNTHESIS_CODEC_PREFIXES) else "compression"
        flagged[objective][0] += row["spoof_flagged"] * n
        flagged[objective][1] += n
    return {k: (pct(total / n) if n else "n/a") for k, (total, n) in flagged.items()}


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding best.pt or model.onnx")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "best.pt").is_file() and not (r / "model.onnx").is_file()]
    if missing:
        print(f"no best.pt or model.onnx in: {', '.join(missing)}", file=sys.stderr)
        return 2
    for name, labels in SETS.items():
        if not labels.exists():
            print(f"note: {name} set missing ({labels}); its columns read n/a", file=sys.stderr)
    results = {run: reports(run) for run in args.runs}

    def policy(run: Path) -> str:
        for rep in results[run].values():
            if rep is not None:
                return str(rep.get("label_policy", "?"))
        return "?"

    main_rows, spoof_rows, codec_rows, policy_rows = [], [], [], []
    for run, rep in results.items():
        dev, held, inhouse = rep["dev-eval"], rep["heldout"], rep["heldout-inhouse"]
        main_rows.append([
            run.name, policy(run),
            pct(get(dev, "heads", "spoof", "overall", "eer")),
            interval(dev, "spoof"),
            pct(get(dev, "breakdown", "codec", "none", "spoof_eer")),
            f"{get(dev, 'heads', 'spoof', 'overall', 'min_dcf') or float('nan'):.3f}",
            pct(get(dev, "heads", "codec", "overall", "eer")),
            pct(get(dev, "breakdown", "dataset", "semanticodec", "codec_eer")),
            pct(get(dev, "genuine_resynthesized", "spoof_flagged")),
            pct(get(held, "heads", "codec", "overall", "eer")),
            pct(get(held, "breakdown", "dataset", "telephone", "spoof_flagged")),
        ])
        dev_flags, inhouse_flags = called_spoof_by_objective(dev), called_spoof_by_objective(inhouse)
        policy_rows.append([run.name, policy(run), dev_flags["compression"], dev_flags["synthesis"],
                            inhouse_flags["compression"], inhouse_flags["synthesis"],
                            pct(get(held, "breakdown", "dataset", "lyra", "spoof_flagged"))])
        spoof_rows.append([run.name] + [pct(get(dev, "breakdown", "dataset", s, "spoof_eer_pooled"))
                                        for s in DEV_EVAL_SPOOF_SETS]
                          # vocoder copies vs the clean originals only: under codec_as_spoof the set's
                          # codec-resynthesized genuine items are positives, so pooling would mislead
                          + [pct(get(inhouse, "breakdown", "codec", "none", "spoof_eer"))])
        codec_rows.append([run.name] + [pct(get(inhouse, "breakdown", "system", c, "codec_eer_pooled"))
                                        for c in INHOUSE_CODECS]
                          + [pct(get(held, "heads", "codec", "overall", "eer")),
                             pct(get(dev, "breakdown", "dataset", "semanticodec", "codec_eer"))])
    print(table("Main figures (dev-eval and held-out speakers)",
                ["run", "policy", "dev-eval spoof EER", "its 95 % interval over files", "spoof EER, uncoded audio only", "minDCF", "dev-eval codec EER", "codec EER semanticodec",
                 "genuine resynthesized called spoof", "codec EER held-out Lyra", "telephone bonafide FA"],
                main_rows))
    print(table("Genuine speech through a neural codec, called spoof at the operating threshold",
                ["run", "policy", "dev-eval compression codecs", "dev-eval synthesis codecs (SemantiCodec)",
                 "held-out in-house compression", "held-out in-house token1k (synthesis)", "held-out Lyra"],
                policy_rows))
    print(table("Spoof head per never-trained spoof set (system vs all dev-eval bonafide)",
                ["run", *DEV_EVAL_SPOOF_SETS, "in-house vocoder vs its clean originals (held-out speakers)"], spoof_rows))
    print(table("Codec head per codec (held-out speakers; pooled against clean test-other)",
                ["run", *INHOUSE_CODECS, "Lyra v2", "dev-eval semanticodec (real codecs)"], codec_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
