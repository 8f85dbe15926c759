"""Errors the daemon raises on purpose. Each message says what is wrong and, where useful, how to fix it.

The model's own failures (`ModelFormatError`, `BackendError`) are the runtime's
(streaming_models/runtime/errors.py); everything here derives from the same `SpoofwatchError`.
"""

from __future__ import annotations

from streaming_models.runtime.errors import SpoofwatchError

# The project's one config error (every config file loads through runtime/settings.py): an invalid
# setting, `key` its dotted name (`zmq.pub_hwm`), `reason` why.
from streaming_models.runtime.settings import ConfigError


class DaemonError(SpoofwatchError):
    """Base of every deliberate daemon failure."""


class ModelNotFoundError(DaemonError):
    """The configured model file does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"model file not found: {path}. The daemon needs an exported detector: train and export "
            "one (`spoofwatch train`, then `spoofwatch export`), or point the config key model.path "
            "(flag --model.path, env SPOOFWATCH__MODEL__PATH) at an exported .onnx file."
        )
        self.path = path


__all__ = ["ConfigError", "DaemonError", "ModelNotFoundError"]
