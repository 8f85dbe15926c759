"""benchmarks/ingest_cost.py --paths really switches the daemon's StreamBuffers between the
compiled and the pure-Python path, and the replay runs on both."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from benchmark_modules import load_benchmark

from streaming_models.runtime import fastpath
from streaming_models.runtime.hops import StreamBuffer


@pytest.mark.skipif(fastpath.load_extension() is None, reason="the compiled extension is not built")
def test_paths_switch_the_daemons_buffers_and_publish_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_benchmark("ingest_cost")
    monkeypatch.setenv(fastpath.FORCE_PYTHON_ENV, os.environ.get(fastpath.FORCE_PYTHON_ENV, ""))  # restored after
    rng = np.random.default_rng(0)
    payloads = [bench.encode_samples((0.1 * rng.standard_normal(160)).astype(np.float32), bench.FORMAT)
                for _ in range(5)]
    published = {}
    try:
        for compiled in (False, True):
            assert bench.choose_path(compiled) == ("compiled" if compiled else "Python")
            assert StreamBuffer(8000, 16000, 1600).compiled is compiled
            for batched in (False, True):
                _, messages, published[compiled, batched] = asyncio.run(bench.replay(4, 1.0, payloads, batched))
                assert messages == 200
    finally:
        fastpath.ingest_path.cache_clear()
    assert all(count > 0 for count in published.values()), published
