"""structlog for the training/evaluation command lines: console text on stderr, so stdout
carries only a command's result (e.g. `spoofwatch evaluate --json`). Called by entry points only."""

from __future__ import annotations

import sys

import structlog


class _StderrLoggerFactory:
    """Looks sys.stderr up at each call, so a replaced stderr (tests, redirection) is honoured."""

    def __call__(self, *args: object) -> structlog.PrintLogger:
        return structlog.PrintLogger(sys.stderr)


def log_to_stderr() -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=True),
                    structlog.dev.ConsoleRenderer(colors=False)],
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )
