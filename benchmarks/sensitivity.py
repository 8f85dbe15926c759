"""What a model's spoof score leans on: the same labelled files scored again after one change each.

    python benchmarks/sensitivity.py --model streaming_models/default_model/spoofwatch-default.onnx \
        --labels ../shared/data/dev-eval/labels.csv [--change noise-pink@40dB --change trim ...]

A change is a transform spec (`spoofwatch`'s registry: `noise-pink@40dB`, `mp3@32k`,
`bandlimit@8k`, `gain@-12dB`, ...) applied to every file at 16 kHz, or `trim` (leading and
trailing silence cut: 20 ms frames more than 40 dB below the file's loudest frame), or `gate`
(what a causal speech gate in front of the model would do: 100 ms hops are dropped when they are
below -55 dBFS or more than 40 dB below the loudest hop so far, so the model's state skips them
and the last score is the last kept hop's), or `gate-edges` (the same gate at the edges only: hops
before the first passing one are dropped, as a stream that starts scoring at the first speech
would, and the score is read at the last passing hop, as a decision held through silence would;
everything in between is fed as it is). Every file
gets the same change, spoofs and genuine alike, so a change that moves one class and not the
other shows a cue the model uses that says nothing about how the speech was made: a noise floor,
a codec's fingerprint, the silence around an utterance. Printed per change: the spoof EER on all
files and on uncoded audio only, and the mean final p_spoof of each class (genuine, genuine
through a neural codec, spoof). Scoring runs through `evaluate.stream_scores`, the daemon's path.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from streaming_models.data.manifest import ManifestError
from streaming_models.data.transforms import SAMPLE_RATE_HZ, TransformUnavailable, get_transform
from streaming_models.data.transforms.base import resample
from streaming_models.evaluate import AudioLoader, EvalItem, load_items, read_mono, stream_scores
from streaming_models.logs import log_to_stderr
from streaming_models.metrics import eer
from streaming_models.runtime.errors import SpoofwatchError
from streaming_models.runtime.onnx_backend import OnnxBackend

DEFAULT_CHANGES = ("none", "trim", "noise-pink@40dB", "noise-pink@30dB", "noise-white@40dB",
                   "mp3@32k", "bandlimit@8k", "gain@-12dB")
TRIM_FRAME_S = 0.02
TRIM_BELOW_PEAK_DB = 40.0
GATE_HOP_S = 0.1  # the model's hop
GATE_FLOOR_DBFS = -55.0


def trim_silence(audio: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing frames more than TRIM_BELOW_PEAK_DB below the loudest frame."""
    frame = max(1, int(TRIM_FRAME_S * rate))
    count = len(audio) // frame
    if count == 0:
        return audio
    energy = (audio[:count * frame].reshape(count, frame) ** 2).mean(axis=1)
    level_db = 10 * np.log10(energy + 1e-12)
    loud = np.flatnonzero(level_db > level_db.max() - TRIM_BELOW_PEAK_DB)
    return audio[loud[0] * frame:(loud[-1] + 1) * frame]


def gated_hops(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The whole 100 ms hops [hops, samples] and which of them a causal level gate calls speech.

    A hop passes when it is above GATE_FLOOR_DBFS and within TRIM_BELOW_PEAK_DB of the loudest hop
    so far, which is all a live stream can know. None when no hop passes (or none is whole)."""
    hop = max(1, int(GATE_HOP_S * rate))
    count = len(audio) // hop
    blocks = audio[:count * hop].reshape(count, hop)
    level_db = 10 * np.log10((blocks.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    keep = (level_db > GATE_FLOOR_DBFS) & (level_db > np.maximum.accumulate(level_db) - TRIM_BELOW_PEAK_DB)
    return (blocks, keep) if keep.any() else None


def gate_silence(audio: np.ndarray, rate: int) -> np.ndarray:
    """Keep the hops the gate passes; the dropped ones are as if never fed. A file with no passing
    hop is left as it is; the last partial hop is dropped."""
    gated = gated_hops(audio, rate)
    if gated is None:
        return audio
    blocks, keep = gated
    return blocks[keep].reshape(-1)


def gate_edges(audio: np.ndarray, rate: int) -> np.ndarray:
    """`gate_silence` at the edges only: from the first hop the gate passes to the last, whole."""
    gated = gated_hops(audio, rate)
    if gated is None:
        return audio
    blocks, keep = gated
    passed = np.flatnonzero(keep)
    return blocks[passed[0]:passed[-1] + 1].reshape(-1)


# Changes that cut the audio (module doc) rather than transform it.
CUTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "trim": trim_silence, "gate": gate_silence, "gate-edges": gate_edges}


def loader_for(change: str) -> AudioLoader:
    """A loader that reads an item and applies `change` (see the module doc) at 16 kHz."""
    if change == "none":
        return read_mono
    alter: Callable[[np.ndarray, int], np.ndarray]
    if change in CUTS:
        cut = CUTS[change]

        def alter(audio: np.ndarray, seed: int) -> np.ndarray:
            return cut(audio, SAMPLE_RATE_HZ)
    else:
        transform = get_transform(change)
        transform.check_available()

        def alter(audio: np.ndarray, seed: int) -> np.ndarray:
            return transform.apply(audio, np.random.default_rng(seed))

    def load(item: EvalItem) -> tuple[np.ndarray, int]:
        audio, rate = read_mono(item)
        # Seeded by the path, so every model sees the same noise on the same file.
        seed = zlib.crc32(str(item.path).encode())
        return alter(resample(audio, rate, SAMPLE_RATE_HZ), seed), SAMPLE_RATE_HZ

    return load


def class_of(item: EvalItem) -> str:
    if item.spoof:
        return "spoof"
    return "genuine, neural codec" if item.genuine_resynthesized else "genuine"


def summarize(items: Sequence[EvalItem], finals: np.ndarray) -> dict[str, float]:
    labels = np.array([item.spoof for item in items])
    uncoded = np.array([not item.genuine_resynthesized for item in items])
    row = {"spoof EER": eer(finals, labels)[0]}
    if uncoded.sum() < len(items) and labels[uncoded].min() == 0:
        row["EER, uncoded audio"] = eer(finals[uncoded], labels[uncoded])[0]
    for name in ("genuine", "genuine, neural codec", "spoof"):
        chosen = np.array([class_of(item) == name for item in items])
        if chosen.any():
            row[f"mean p_spoof, {name}"] = float(finals[chosen].mean())
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True, help="labels.csv or a manifest .jsonl")
    parser.add_argument("--split", help="manifest split (default: all)")
    parser.add_argument("--change", action="append", metavar="SPEC",
                        help=f"repeatable; default: {' '.join(DEFAULT_CHANGES)}")
    args = parser.parse_args(argv)
    log_to_stderr()
    changes = args.change or list(DEFAULT_CHANGES)
    try:
        loaders = {change: loader_for(change) for change in changes}
        backend = OnnxBackend(args.model, providers=("CPUExecutionProvider",))
        items = load_items(args.labels, None, backend.metadata.label_policy, args.split)
        if len({item.spoof for item in items}) < 2:
            raise ValueError(f"{args.labels}: an EER needs both spoof and bona fide files; these are all one class")
    except (ValueError, TransformUnavailable, SpoofwatchError, ManifestError, OSError) as exc:
        print(f"sensitivity: {exc}", file=sys.stderr)
        return 2
    print(f"model {backend.metadata.model_id}  labels {args.labels}  files {len(items)}")
    rows = {}
    for change, load in loaders.items():
        scores = stream_scores(backend, items, 64, load)
        scored = [(item, s[-1, 0]) for item, s in zip(items, scores, strict=True) if len(s)]
        rows[change] = summarize([item for item, _ in scored], np.array([final for _, final in scored]))
    columns = list(next(iter(rows.values())))
    print("| change | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for change, row in rows.items():
        cells = [f"{100 * row[c]:.1f} %" if "EER" in c else f"{row[c]:.3f}" for c in columns]
        print(f"| {change} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
