"""The daemon hands freed heap memory back to the system every memory.trim_interval_s
(daemon/heap_trim.py, glibc's malloc_trim)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from daemon_harness import running_daemon
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import build_config
from daemon.errors import ConfigError
from daemon.heap_trim import HeapTrimmer, load_malloc_trim, resident_bytes
from daemon.metrics import DaemonMetrics

needs_glibc = pytest.mark.skipif(load_malloc_trim() is None, reason="no malloc_trim (not glibc)")


def trimmed_bytes(metrics: DaemonMetrics) -> float:
    return next(s.value for family in text_string_to_metric_families(metrics.render().decode())
                for s in family.samples if s.name == "spoofwatch_heap_trimmed_bytes_total")


@needs_glibc
def test_a_trim_gives_back_the_free_holes_of_a_fragmented_heap() -> None:
    metrics = DaemonMetrics()
    trimmer = HeapTrimmer(60.0, metrics)
    first = trimmer.trim()  # start from a trimmed heap
    # 24 MiB of 64 KiB buffers (under glibc's mmap threshold: they come from the heap), touched;
    # every eighth kept, so the freed ones are holes below live data that glibc keeps by itself
    buffers = [b"x" * 65536 for _ in range(384)]
    kept = buffers[::8]
    del buffers
    before = resident_bytes()
    released = trimmer.trim()
    after = resident_bytes()
    assert before is not None and after is not None
    assert released >= 8 * 2**20, released  # most of the 21 MiB of holes
    assert before - after == released
    assert trimmed_bytes(metrics) == first + released
    assert len(kept) == 48


@needs_glibc
async def test_the_daemon_trims_on_its_interval(tiny_model: tuple[Path, Path]) -> None:
    async with running_daemon(tiny_model[0], memory={"trim_interval_s": 0.1}) as daemon:
        await asyncio.sleep(0.55)
        assert daemon.heap_trimmer.trims >= 3
        assert daemon.task_restarts()["heap-trim"] == 0


async def test_no_trim_task_when_off(tiny_model: tuple[Path, Path]) -> None:
    async with running_daemon(tiny_model[0], memory={"trim_interval_s": 0}) as daemon:
        await asyncio.sleep(0.2)
        assert daemon.heap_trimmer.trims == 0 and "heap-trim" not in daemon.task_restarts()


@pytest.mark.parametrize("value", [-1, 0.05, 100000])
def test_the_interval_is_validated(value: float) -> None:
    with pytest.raises(ConfigError, match="memory.trim_interval_s"):
        build_config({"memory": {"trim_interval_s": value}})
