"""The one interface every inference backend implements.

A backend is a pure function with a model behind it: (hops, states) in, (probabilities,
states) out. It keeps no per-stream state; the batcher carries each stream's state.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streaming_models.model_format import ModelMetadata


class Backend(Protocol):
    metadata: ModelMetadata

    def initial_states(self, batch: int) -> list[np.ndarray]:
        """All-zero states for `batch` new streams, one array per `metadata.states` entry,
        float32 [batch, *shape]."""
        ...

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Score one hop per row.

        audio: float32 [B, hop_samples] at `metadata.sample_rate_hz`.
        states: as from `initial_states(B)` or a previous `run`.
        Returns PROBABILITIES float32 [B, 2] (sigmoid of the logits; columns spoof, codec)
        and the new states, same shapes as the inputs.
        """
        ...


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 out."""
    logits = logits.astype(np.float32, copy=False)
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * logits)), dtype=np.float32)


def zero_states(metadata: ModelMetadata, batch: int) -> list[np.ndarray]:
    return [np.zeros((batch, *spec.shape), dtype=np.float32) for spec in metadata.states]


def check_inputs(metadata: ModelMetadata, audio: np.ndarray, states: list[np.ndarray]) -> None:
    """Fail with a clear message before the runtime fails with an obscure one."""
    if audio.ndim != 2 or audio.shape[1] != metadata.hop_samples:
        raise ValueError(f"audio must be [batch, {metadata.hop_samples}], got {list(audio.shape)}")
    if len(states) != len(metadata.states):
        raise ValueError(f"expected {len(metadata.states)} state arrays, got {len(states)}")
    for spec, state in zip(metadata.states, states, strict=True):
        if state.shape != (audio.shape[0], *spec.shape):
            raise ValueError(
                f"state {spec.input_name!r} must be {[audio.shape[0], *spec.shape]}, got {list(state.shape)}"
            )
