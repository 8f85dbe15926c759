"""Hand freed heap memory back to the operating system now and then (glibc's `malloc_trim`).

glibc gives free memory back to the system on its own only from the top of a heap. Short-lived
buffers (large request bodies, long strings and deep JSON from hostile input, bursts of messages)
leave free holes under long-lived allocations, so RSS creeps up although nothing leaks. Measured
with `benchmarks/fuzz.py` (docs/performance.md, "Hostile input against a live daemon"): over
10,000 hostile cases malloc's in-use bytes and Python's objects stayed flat while the free memory
glibc kept grew, and one `malloc_trim(0)`, which also releases the free pages inside the heap,
brought RSS back to its baseline in under a millisecond.

`HeapTrimmer` calls it every `memory.trim_interval_s` on the event loop (a trim takes well under a
millisecond at this daemon's heap size; a thread of its own would bring a malloc arena of its own).
Where there is no glibc (musl, macOS) it says so once and does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon.metrics import DaemonMetrics

log = structlog.get_logger(__name__)

SLOW_TRIM_S = 0.05


def load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `int malloc_trim(size_t pad)`, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def resident_bytes() -> int | None:
    """This process's RSS from /proc (Linux), or None."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapTrimmer:
    def __init__(self, interval_s: float, metrics: DaemonMetrics,
                 malloc_trim: Callable[[int], int] | None = None) -> None:
        self.interval_s = interval_s
        self._metrics = metrics
        self._trim = malloc_trim if malloc_trim is not None else load_malloc_trim()
        self.trims = 0
        if interval_s > 0 and self._trim is None:
            log.info("heap_trim_unavailable", reason="the C library has no malloc_trim (not glibc)")

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0 and self._trim is not None

    def trim(self) -> int:
        """Trim once; the bytes of RSS it gave back (0 where RSS cannot be read)."""
        assert self._trim is not None
        before = resident_bytes()
        started = time.perf_counter()
        self._trim(0)
        took_s = time.perf_counter() - started
        after = resident_bytes()
        released = max(0, before - after) if before is not None and after is not None else 0
        self.trims += 1
        self._metrics.heap_trimmed.inc(released)
        if took_s >= SLOW_TRIM_S:
            log.warning("heap_trim_slow", took_ms=round(took_s * 1000, 1), released_bytes=released)
        else:
            log.debug("heap_trimmed", took_ms=round(took_s * 1000, 3), released_bytes=released)
        return released

    async def run(self) -> None:
        """Trim every `interval_s`; start it only when `enabled`."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.trim()
