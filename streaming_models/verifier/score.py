"""Score audio with a trained verifier as a live stream would see it.

A stream is scored by a window ending every `every_s` seconds (1 s, 2 s, ...) and one more ending
at the clip's end. Each window holds the last `window_s` seconds; the first ones hold less and are
zero-padded at the end to `window_s`, as training pads clips shorter than a window. Scoring runs the
exported ONNX graph (the one the daemon would run), one core, windows of a clip in one batch.

    python -m streaming_models.verifier.score --checkpoint runs/v/ckpt.pt --manifest M.jsonl \\
        --out scores.npz [--ids ids.txt] [--every 1.0]

writes `{item_id: [windows, 2]}` probabilities (spoof, codec) to OUT.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from streaming_models.audio_io import load_audio
from streaming_models.data.manifest import read_manifest, resolve_audio_path
from streaming_models.verifier.model import AUDIO_INPUT, export_onnx, load_checkpoint
from streaming_models.verifier.whisper_encoder import SAMPLE_RATE_HZ


def window_ends(samples: int, every: int) -> list[int]:
    """Sample index each window ends at: every `every` samples, and at the clip's end."""
    ends = list(range(every, samples + 1, every))
    if not ends or ends[-1] != samples:
        ends.append(samples)
    return ends


def windows(audio: np.ndarray, window: int, ends: Iterable[int]) -> np.ndarray:
    """[W, window]: the last `window` samples before each end, zero-padded at the end when shorter."""
    ends = list(ends)
    out = np.zeros((len(ends), window), np.float32)
    for row, end in enumerate(ends):
        piece = audio[max(0, end - window):end]
        out[row, : len(piece)] = piece
    return out


def one_core_session(path: Path) -> ort.InferenceSession:
    """One intra-op and one inter-op thread, sequential: the cost on one core (also benchmarks/verifier_speed.py)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class WindowScorer:
    """Probabilities [W, 2] of a 16 kHz clip's windows, from an exported verifier."""

    def __init__(self, session: ort.InferenceSession, window_s: float, every_s: float, max_batch: int = 32) -> None:
        self.session = session
        self.window = round(window_s * SAMPLE_RATE_HZ)
        self.every = round(every_s * SAMPLE_RATE_HZ)
        self.max_batch = max_batch

    def score(self, audio: np.ndarray) -> np.ndarray:
        batch = windows(audio.astype(np.float32), self.window, window_ends(len(audio), self.every))
        logits = np.concatenate([self.session.run(None, {AUDIO_INPUT: batch[i:i + self.max_batch]})[0]
                                 for i in range(0, len(batch), self.max_batch)])
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def scorer_from_checkpoint(checkpoint: Path, every_s: float, onnx_dir: Path) -> WindowScorer:
    """Export the checkpoint's verifier to ONNX in `onnx_dir` and score with it."""
    model, ckpt = load_checkpoint(checkpoint)
    window_s = float(ckpt["train"]["config"]["window_s"])
    path = onnx_dir / "verifier.onnx"
    export_onnx(model, path, round(window_s * SAMPLE_RATE_HZ))
    return WindowScorer(one_core_session(path), window_s, every_s)


def score_files(checkpoint: Path, files: dict[str, Path], every_s: float) -> dict[str, np.ndarray]:
    """{key: [windows, 2] probabilities} of each {key: audio file}, by the checkpoint's verifier."""
    with tempfile.TemporaryDirectory() as tmp:
        scorer = scorer_from_checkpoint(checkpoint, every_s, Path(tmp))
        return {key: scorer.score(load_audio(path, SAMPLE_RATE_HZ)) for key, path in tqdm(files.items(), unit="file")}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="OUT/ckpt.pt of verifier.train")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--ids", type=Path, help="file of item ids to score, one per line (default: all)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between window ends")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    items = list(read_manifest(args.manifest))
    if args.ids:
        wanted = set(args.ids.read_text().split("\n")) - {""}
        items = [i for i in items if i.item_id in wanted]
    scores = score_files(args.checkpoint, {i.item_id: resolve_audio_path(args.manifest, i) for i in items}, args.every)
    np.savez_compressed(args.out, **scores)
    print(f"{len(scores)} files scored -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
