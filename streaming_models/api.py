"""Score audio with an exported model in three lines:

    from streaming_models.api import load_detector
    detector = load_detector()                     # the packaged default model
    scores = detector.score_file("call.wav")       # or detector.score(samples, 8000)
    scores.p_spoof[-1], scores.p_codec[-1]          # after the whole clip; per hop before that

The audio goes through the daemon's own path (the runtime's StreamBuffer hops, OnnxBackend and
HopScorer), so the numbers are the ones a live stream of the same audio would get. No state is hidden: each
call starts a fresh stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from streaming_models.runtime.default_model import packaged_model_path
from streaming_models.runtime.model_format import ModelMetadata
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.runtime.scorer import HopScorer

DEFAULT_MODEL_PATH = packaged_model_path()


@dataclass(frozen=True)
class Scores:
    times_s: np.ndarray  # [hops] audio seen when each score was produced
    p_spoof: np.ndarray  # [hops]
    p_codec: np.ndarray  # [hops]


class Detector:
    def __init__(self, model_path: str | Path = DEFAULT_MODEL_PATH, threads: int = 1) -> None:
        self._scorer = HopScorer(OnnxBackend(model_path, providers=("CPUExecutionProvider",),
                                             intra_op_threads=threads))

    @property
    def metadata(self) -> ModelMetadata:
        return self._scorer.metadata

    def score(self, samples: np.ndarray, sample_rate_hz: int) -> Scores:
        """Mono float32 samples at any rate -> scores after each hop (none if shorter than a hop)."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono 1-D, got shape {samples.shape}")
        [probs] = self._scorer.score_signals([(samples, sample_rate_hz)])
        times = np.arange(1, len(probs) + 1) * self.metadata.hop_ms / 1000.0
        return Scores(times, probs[:, 0], probs[:, 1])

    def score_file(self, path: str | Path) -> Scores:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return self.score(data.mean(axis=1), rate)


def load_detector(model_path: str | Path | None = None, threads: int = 1) -> Detector:
    return Detector(DEFAULT_MODEL_PATH if model_path is None else model_path, threads)
