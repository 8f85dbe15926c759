"""Errors the daemon raises on purpose. Each message says what is wrong and, where useful, how to fix it.

The model's own failures (`ModelFormatError`, `BackendError`) are the runtime's
(streaming_models/runtime/errors.py); everything here derives from the same `SpoofwatchError`.
"""

from __future__ import annotations

from streaming_models.runtime.errors import SpoofwatchError


class DaemonError(SpoofwatchError):
    """Base of every deliberate daemon failure."""


class ConfigError(DaemonError):
    """An invalid setting. `key` is the dotted name (`zmq.pub_hwm`), `reason` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid config {key}: {reason}")
        self.key = key
        self.reason = reason


class ModelNotFoundError(DaemonError):
    """The configured model file does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"model file not found: {path}. The daemon needs an exported detector: train and export "
            "one (`spoofwatch train`, then `spoofwatch export`), or point the config key model.path "
            "(flag --model.path, env SPOOFWATCH__MODEL__PATH) at an exported .onnx file."
        )
        self.path = path
