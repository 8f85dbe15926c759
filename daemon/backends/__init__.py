"""Inference backends behind one interface (`base.Backend`), picked by name.

Each implementation is imported only when chosen: onnxruntime and torch stay unloaded
unless asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from daemon.backends.base import Backend

# name -> "module:class"
BACKENDS: dict[str, str] = {
    "onnx": "daemon.backends.onnx:OnnxBackend",
    "torch": "daemon.backends.torch:TorchBackend",
}


def load_backend(name: str, model_path: str | Path, **options: Any) -> Backend:
    """Build the backend `name` for `model_path`; options go to its constructor."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = cls(model_path, **options)
    return backend


__all__ = ["BACKENDS", "Backend", "load_backend"]
