"""Score audio with an exported model in three lines:

    from streaming_models.api import load_detector
    detector = load_detector()                     # the packaged default model
    scores = detector.score_file("call.wav")       # or detector.score(samples, 8000)
    scores.p_spoof[-1], scores.p_codec[-1]          # after the whole clip; per hop before that

The audio goes through the daemon's own path (StreamBuffer hops, OnnxBackend), so the
numbers are the ones a live stream of the same audio would get. No state is hidden: each
call starts a fresh stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from daemon.backends.onnx import OnnxBackend
from daemon.streams import iter_file_hops
from streaming_models.default_model import packaged_model_path
from streaming_models.model_format import ModelMetadata

DEFAULT_MODEL_PATH = packaged_model_path()


@dataclass(frozen=True)
class Scores:
    times_s: np.ndarray  # [hops] audio seen when each score was produced
    p_spoof: np.ndarray  # [hops]
    p_codec: np.ndarray  # [hops]


class Detector:
    def __init__(self, model_path: str | Path = DEFAULT_MODEL_PATH, threads: int = 1) -> None:
        self._backend = OnnxBackend(model_path, providers=("CPUExecutionProvider",), intra_op_threads=threads)

    @property
    def metadata(self) -> ModelMetadata:
        return self._backend.metadata

    def score(self, samples: np.ndarray, sample_rate_hz: int) -> Scores:
        """Mono float32 samples at any rate -> scores after each hop (none if shorter than a hop)."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono 1-D, got shape {samples.shape}")
        meta = self.metadata
        hops = list(iter_file_hops(samples, sample_rate_hz, meta.sample_rate_hz, meta.hop_samples))
        states = self._backend.initial_states(1)
        probs = np.zeros((len(hops), 2), np.float32)
        for i, hop in enumerate(hops):
            out, states = self._backend.run(hop[None, :], states)
            probs[i] = out[0]
        times = np.arange(1, len(hops) + 1) * meta.hop_ms / 1000.0
        return Scores(times, probs[:, 0], probs[:, 1])

    def score_file(self, path: str | Path) -> Scores:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return self.score(data.mean(axis=1), rate)


def load_detector(model_path: str | Path | None = None, threads: int = 1) -> Detector:
    return Detector(DEFAULT_MODEL_PATH if model_path is None else model_path, threads)
