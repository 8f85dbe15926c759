"""The scale-out benchmarks run and print their figures (tiny sizes)."""

from __future__ import annotations

import pytest
from benchmark_modules import load_benchmark


def test_results_proxy_benchmark_delivers_every_message_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark("results_proxy")
    bench.run_rate(1000, 0.5, 200)
    out = capsys.readouterr().out
    assert out.count("500 of 500 received") == 2, out
    assert "ms CPU per 1000 messages" in out
