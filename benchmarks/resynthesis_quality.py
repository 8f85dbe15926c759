"""Quality of the in-house resynthesis models on held-out speakers (LibriSpeech test-other).

Prints, per trained model: parameters, bitrate, training steps and time (from the checkpoint),
multi-resolution STFT distance (lower is better) and log-spectrogram correlation (higher is better)
against the original, and the real-time factor; plus a reference row for an 8 kHz band limit.
Writes docs/img/resynthesis_NAME.png: spectrograms of one utterance before/after.

    python benchmarks/resynthesis_quality.py [--per-speaker 2] [--models codec_comp6k ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
import torch

from streaming_models.paths import shared_data_dir
from streaming_models.resynthesis.checkpoint import CheckpointError, load_checkpoint, load_model
from streaming_models.resynthesis.codec import Codec
from streaming_models.resynthesis.dataset import read_mono_16k
from streaming_models.resynthesis.metrics import (
    log_spectrogram_correlation,
    log_spectrogram_db,
    mrstft_distance,
)
from streaming_models.resynthesis.plugins import (
    CODEC_TRANSFORMS,
    InhouseVocoderGenerator,
    ResynthesisUnavailable,
    default_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = [cls.model_name for cls in CODEC_TRANSFORMS] + [InhouseVocoderGenerator.model_name]
IMAGE_SECONDS = 3.0


def held_out_utterances(per_speaker: int) -> list[Path]:
    root = shared_data_dir() / "speech/librispeech-subset/test-other"
    if not root.is_dir():
        raise SystemExit(f"held-out speech not found at {root} (set SPOOFWATCH_SHARED_DATA)")
    files: list[Path] = []
    for speaker in sorted(p for p in root.iterdir() if p.is_dir()):
        files += sorted(speaker.rglob("*.flac"))[:per_speaker]
    return files


def resynthesizer(name: str, checkpoint: Path) -> Callable[[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    if name == InhouseVocoderGenerator.model_name:
        generator = InhouseVocoderGenerator(checkpoint)
        generator.check_available()
        return lambda audio: generator.resynthesize(audio, 16000, rng)[0]
    cls = next(c for c in CODEC_TRANSFORMS if c.model_name == name)
    transform = cls(checkpoint)
    transform.check_available()
    return lambda audio: transform.apply(audio, rng)


def codebook_usage(checkpoint: Path, utterances: list[np.ndarray]) -> dict[str, object]:
    """Per RVQ stage on the held-out set: distinct codes used and code perplexity (a collapsed codebook shows ~1)."""
    _, model = load_model(checkpoint)
    if not isinstance(model, Codec):
        return {}
    with torch.no_grad():
        codes = torch.cat([model.encode(torch.from_numpy(u)[None, None]) for u in utterances], dim=-1)
    used, perplexity = [], []
    for stage in codes:  # (1, frames)
        counts = torch.bincount(stage.flatten(), minlength=model.cfg.codebook_size).double()
        p = counts[counts > 0] / counts.sum()
        used.append(int((counts > 0).sum()))
        perplexity.append(round(float(torch.exp(-(p * p.log()).sum()))))
    return {"codes_used_per_stage": used, "code_perplexity_per_stage": perplexity}


def band_limit_8k(audio: np.ndarray) -> np.ndarray:
    narrow = soxr.resample(audio, 16000, 8000, quality="HQ")
    return soxr.resample(narrow, 8000, 16000, quality="HQ")[: audio.size].astype(np.float32)


def save_spectrograms(path: Path, title: str, before: np.ndarray, after: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(IMAGE_SECONDS * 16000)
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), sharey=True)
    for ax, audio, label in ((axes[0], before[:n], "original"), (axes[1], after[:n], title)):
        spec = log_spectrogram_db(audio)
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, audio.size / 16000, 0, 8))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("s")
    axes[0].set_ylabel("kHz")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--per-speaker", type=int, default=2, help="utterances per held-out speaker (10 speakers)")
    parser.add_argument("--artifacts", type=Path, default=None, help="folder holding NAME/model.pt")
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "docs" / "img")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object per row instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    utterances = [read_mono_16k(p) for p in held_out_utterances(args.per_speaker)]
    audio_s = sum(u.size for u in utterances) / 16000
    rows = []
    systems: list[tuple[str, Callable[[np.ndarray], np.ndarray], dict[str, object]]] = [
        ("reference: 8 kHz band limit", band_limit_8k, {})]
    for name in args.models:
        checkpoint = (args.artifacts / name / "model.pt") if args.artifacts else default_checkpoint(name)
        try:
            run = resynthesizer(name, checkpoint)
            payload = load_checkpoint(checkpoint)
        except (ResynthesisUnavailable, CheckpointError) as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        cfg = payload["config"]
        bitrate = None
        if cfg["kind"] == "codec":
            hop = int(np.prod(cfg["codec"]["strides"]))
            bitrate = 16000 / hop * cfg["codec"]["num_quantizers"] * np.log2(cfg["codec"]["codebook_size"])
        systems.append((name, run, {"parameters": payload["parameters"], "bitrate_bps": bitrate,
                                    "steps": payload["step"], "train_min": round(payload["elapsed_s"] / 60, 1),
                                    "_checkpoint": checkpoint}))
    for name, run, info in systems:
        checkpoint_path = info.pop("_checkpoint", None)
        started = time.perf_counter()
        outputs = [run(u) for u in utterances]
        seconds = time.perf_counter() - started
        dist = [mrstft_distance(u, o) for u, o in zip(utterances, outputs, strict=True)]
        corr = [log_spectrogram_correlation(u, o) for u, o in zip(utterances, outputs, strict=True)]
        rows.append({"model": name, **info, "utterances": len(utterances),
                     "mrstft_distance": round(float(np.mean(dist)), 3),
                     "logspec_corr": round(float(np.mean(corr)), 3), "rtf": round(seconds / audio_s, 3)})
        if isinstance(checkpoint_path, Path):
            rows[-1].update(codebook_usage(checkpoint_path, utterances))
            save_spectrograms(args.images / f"resynthesis_{name}.png", name, utterances[0], outputs[0])
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"held-out: {len(utterances)} utterances of LibriSpeech test-other ({audio_s:.0f} s), "
          f"{args.threads} torch thread(s)")
    header = ["model", "parameters", "bitrate_bps", "steps", "train_min", "mrstft_distance", "logspec_corr", "rtf"]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row.get(h, "")) for h in header))
    for row in rows:
        if "codes_used_per_stage" in row:
            print(f"{row['model']}: codes used per stage {row['codes_used_per_stage']}, "
                  f"perplexity {row['code_perplexity_per_stage']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
