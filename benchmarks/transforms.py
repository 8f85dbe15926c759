"""Real-time factor, residual delay and similarity of every corpus transform.

    python benchmarks/transforms.py [--seconds 20] [--only lyra,opus] [--repeats 1]
    python benchmarks/transforms.py --only inhouse   # the trained in-house codecs (artifacts/resynthesis)

Input: the two Lyra sample clips from shared data (real 16 kHz speech), concatenated and
tiled to --seconds. Per transform it prints the RTF as wall time / audio time and as CPU time
(this process + its ffmpeg/sox children, user + system) / audio time; the CPU figure is the
cost on one core and does not depend on how busy the machine is. Then the residual lag after the transform's own delay compensation
(waveform cross-correlation peak, and log-energy envelope peak for codecs that do not keep
the waveform), and the log-mel correlation with the input.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streaming_models.data.transforms import get_transform, list_transforms
from streaming_models.data.transforms.lyra import default_model_dir
from streaming_models.data.transforms.quality import (
    envelope_lag,
    estimate_lag,
    log_mel_correlation,
)
from streaming_models.data.transforms.registry import trained_transforms

RATE = 16000


def load_input(seconds: float) -> np.ndarray:
    clips = []
    for name in ("sample1_16kHz.wav", "sample2_16kHz.wav"):
        audio, rate = sf.read(default_model_dir() / name, dtype="float32")
        if rate != RATE:
            raise SystemExit(f"{name}: expected {RATE} Hz, got {rate}")
        clips.append(audio)
    joined = np.concatenate(clips)
    reps = int(np.ceil(seconds * RATE / len(joined)))
    return np.tile(joined, reps)[: int(seconds * RATE)]


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (ffmpeg, sox)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio length per call")
    parser.add_argument("--only", default="", help="comma-separated spec prefixes to run")
    parser.add_argument("--repeats", type=int, default=1, help="calls per transform (best time kept)")
    args = parser.parse_args(argv)

    audio = load_input(args.seconds)
    prefixes = [p for p in args.only.split(",") if p]
    # The in-house codecs are not in the default listing (they exist only after training): named ones run.
    trained = [s for s in trained_transforms() if prefixes and any(s.startswith(p) for p in prefixes)]
    specs = [s for s in list_transforms() if not prefixes or any(s.startswith(p) for p in prefixes)] + trained
    print(f"input: {len(audio) / RATE:.1f} s of speech; {len(specs)} transforms")
    print(f"{'transform':<18} {'kind':<9} {'RTF_wall':>8} {'RTF_cpu':>8} {'lag_smp':>8} {'env_lag':>8} "
          f"{'logmel_r':>9}")
    for spec in specs:
        transform = get_transform(spec)
        transform.check_available()
        best_wall, best_cpu = float("inf"), float("inf")
        out = audio
        for repeat in range(args.repeats):
            start_wall, start_cpu = time.perf_counter(), cpu_seconds()
            out = transform.apply(audio, np.random.default_rng(repeat))
            best_wall = min(best_wall, time.perf_counter() - start_wall)
            best_cpu = min(best_cpu, cpu_seconds() - start_cpu)
        seconds = len(audio) / RATE
        lag = estimate_lag(audio, out, max_lag=1600)
        env = envelope_lag(audio, out, max_lag=1600)
        print(f"{spec:<18} {transform.kind:<9} {best_wall / seconds:8.4f} {best_cpu / seconds:8.4f} {lag:8d} {env:8d} "
              f"{log_mel_correlation(audio, out):9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
