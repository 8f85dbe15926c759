"""Errors the daemon raises on purpose. Each message says what is wrong and, where useful, how to fix it."""

from __future__ import annotations

# The project's one config error (every config file loads through runtime/settings.py): an invalid
# setting, `key` its dotted name (`zmq.pub_hwm`), `reason` why.
from streaming_models.runtime.settings import ConfigError


class DaemonError(Exception):
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


class BackendError(DaemonError):
    """The inference backend could not be loaded or failed to run."""


class StreamClosedError(DaemonError):
    """Audio pushed to, or a hop submitted for, a stream that is already closed."""


__all__ = ["BackendError", "ConfigError", "DaemonError", "ModelNotFoundError", "StreamClosedError"]
