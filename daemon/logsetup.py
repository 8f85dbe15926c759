"""structlog setup. Called only by the entry point (`daemon/__main__.py`); library modules
just `structlog.get_logger(__name__)`."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """JSON lines when `fmt` is json, or auto and `stream` is not a terminal; else console text."""
    out = stream if stream is not None else sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    # libraries that use stdlib logging (aiohttp, aiortc) go to the same stream
    logging.basicConfig(stream=out, level=max(logging.getLevelName(level.upper()), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
