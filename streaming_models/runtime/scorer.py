"""The one hop-by-hop batched scorer: several streams' next hops through a backend in one call.

A backend is stateless (`run(audio [B, hop], states) -> (probabilities [B, 2], states)`); each
stream's recurrent state is carried here, between its hops. Two ways in, one loop of work:

- `score_hops`: the next hop of any B streams, each with its own state (None for a new stream):
  the states are stacked into the batch, the backend runs, and each row's new state is cut back
  out. The daemon's batcher calls it for whichever streams have a hop waiting.
- `score_streams`: every hop of a fixed group of streams in lockstep, the batch's states kept
  stacked from hop to hop. Offline scoring (evaluate, calibrate, the public `Detector`) calls it;
  `cut_hops` gives it the hops a live stream of the same audio would get.

Both go through `score_batch`, the single call of the backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from streaming_models.runtime.backend import Backend
from streaming_models.runtime.hops import iter_file_hops
from streaming_models.runtime.model_format import ModelMetadata

Hop = npt.NDArray[np.float32]  # [hop_samples] at the model rate
StreamState = list[npt.NDArray[np.float32]]  # one stream's recurrent state: one array [1, *shape] per StateSpec


class HopScorer:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.metadata: ModelMetadata = backend.metadata
        self._fresh = backend.initial_states(1)  # never written: concatenation copies

    def score_batch(self, audio: npt.NDArray[np.float32],
                    states: list[npt.NDArray[np.float32]]) -> tuple[npt.NDArray[np.float32],
                                                                    list[npt.NDArray[np.float32]]]:
        """One hop per row with the batch's stacked states ([B, *shape] each); returns probabilities
        [B, 2] (spoof, codec) and the new stacked states."""
        probs, new_states = self.backend.run(audio, states)
        if probs.shape != (len(audio), 2):
            raise RuntimeError(f"backend returned probabilities of shape {probs.shape}, expected {(len(audio), 2)}")
        return probs, new_states

    def score_hops(self, audio: npt.NDArray[np.float32],
                   states: Sequence[StreamState | None]) -> tuple[npt.NDArray[np.float32], list[StreamState]]:
        """The next hop of each of B streams: audio [B, hop_samples] and each stream's state (None:
        the stream's first hop). Returns probabilities [B, 2] and each stream's new state."""
        per_stream = [state if state is not None else self._fresh for state in states]
        stacked = [np.concatenate([state[k] for state in per_stream]) for k in range(len(self._fresh))]
        probs, new_states = self.score_batch(audio, stacked)
        return probs, [[state[row:row + 1].copy() for state in new_states] for row in range(len(states))]

    def cut_hops(self, samples: npt.NDArray[np.float32], sample_rate_hz: int) -> list[Hop]:
        """A whole mono signal at any rate as the model's hops, cut as a live stream's are."""
        meta = self.metadata
        return list(iter_file_hops(samples, sample_rate_hz, meta.sample_rate_hz, meta.hop_samples))

    def score_streams(self, hops: Sequence[Sequence[Hop]]) -> list[npt.NDArray[np.float32]]:
        """Every hop of each stream, all streams as one batch from fresh states; per stream its
        probabilities [hops, 2] after each hop. Rows whose stream has ended run on silence until the
        longest one ends; their outputs are dropped."""
        meta = self.metadata
        outs = [np.zeros((len(h), 2), np.float32) for h in hops]
        states = self.backend.initial_states(len(hops))
        silence = np.zeros(meta.hop_samples, np.float32)
        for t in range(max((len(h) for h in hops), default=0)):
            batch = np.stack([h[t] if t < len(h) else silence for h in hops])
            probs, states = self.score_batch(batch, states)
            for row, h in enumerate(hops):
                if t < len(h):
                    outs[row][t] = probs[row]
        return outs

    def score_signals(self, signals: Iterable[tuple[npt.NDArray[np.float32], int]]) -> list[npt.NDArray[np.float32]]:
        """(mono samples, sample rate) per stream -> per stream its probabilities [hops, 2]."""
        return self.score_streams([self.cut_hops(samples, rate) for samples, rate in signals])
