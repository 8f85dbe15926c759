"""The one interface every inference backend implements, and `load_backend` to pick one by name.

A backend is a pure function with a model behind it: (hops, states) in, (probabilities,
states) out. It keeps no per-stream state; whoever scores (scorer.py) carries each stream's state.
Each implementation is imported only when chosen: onnxruntime and torch stay unloaded unless
asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streaming_models.runtime.model_format import ModelMetadata

# name -> "module:class"
BACKENDS: dict[str, str] = {
    "onnx": "streaming_models.runtime.onnx_backend:OnnxBackend",
    "torch": "streaming_models.runtime.torch_backend:TorchBackend",
    "triton": "streaming_models.runtime.triton_backend:TritonBackend",
}


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


def load_backend(name: str, model_path: str | Path | None, **options: Any) -> Backend:
    """Build the backend `name` for `model_path` (None: triton, which reads the model from its
    server); options go to its constructor."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = cls(model_path, **options)
    return backend


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
