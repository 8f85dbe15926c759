"""The project's base exception and the runtime's own failures. Each message says what is wrong."""

from __future__ import annotations


class SpoofwatchError(Exception):
    """Base of every deliberate spoofwatch failure (the daemon's `DaemonError` derives from it)."""


class ModelFormatError(SpoofwatchError, ValueError):
    """The model file does not follow the contract (model_format.py); the message says how."""


class BackendError(SpoofwatchError):
    """The inference backend could not be loaded or failed to run."""
