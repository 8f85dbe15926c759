"""Which per-message audio path `StreamBuffer` runs: the compiled one or the pure-Python one.

The compiled path is the C extension `_fastpath` (`_fastpath.c`, built at install time by
setup.py): one call per message does the low-delay FIR upsampling (or none, when the rates
match) and keeps the hop buffer, where the Python path chains numpy calls. Both give the same
hops (tests/test_fastpath.py). The Python path runs when the extension was not built (no C
compiler at install time), for soxr's streaming resampler (rates that are no integer multiple),
and everywhere when `SPOOFWATCH_PURE_PYTHON_INGEST=1` forces it (to compare the two).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import structlog

log = structlog.get_logger(__name__)

FORCE_PYTHON_ENV = "SPOOFWATCH_PURE_PYTHON_INGEST"


@dataclass(frozen=True)
class IngestPath:
    compiled: bool
    reason: str


def load_extension() -> ModuleType | None:
    """The compiled module, or None where it was not built."""
    try:
        from streaming_models.runtime import _fastpath  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _fastpath


def forced_python() -> bool:
    return os.environ.get(FORCE_PYTHON_ENV, "").strip().lower() not in ("", "0", "false", "no")


@cache
def ingest_path() -> IngestPath:
    """The process's choice, made and logged once (the environment is read then)."""
    if forced_python():
        path = IngestPath(False, f"{FORCE_PYTHON_ENV} is set")
    elif (extension := load_extension()) is None:
        path = IngestPath(False, "the compiled extension streaming_models.runtime._fastpath is not built "
                                 "(no C compiler at install time?); reinstall with gcc to get it")
    else:
        path = IngestPath(True, f"streaming_models.runtime._fastpath, {extension.KERNEL} FIR kernel")
    log.info("ingest_path", path="compiled" if path.compiled else "python", reason=path.reason)
    return path
