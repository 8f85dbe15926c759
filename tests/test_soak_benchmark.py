"""benchmarks/soak.py: its plan of rolling streams, its metric helpers, and a short soak against a real daemon."""

from __future__ import annotations

import argparse
import itertools
from types import ModuleType

import pytest
from benchmark_modules import load_benchmark

from streaming_models.runtime.default_model import packaged_model_path


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    return load_benchmark("soak")


def test_plan_rolls_each_slot_back_to_back_and_keeps_a_control_stream(soak: ModuleType) -> None:
    total_ticks, call_ticks = 3000, (200, 500)
    plan = soak.plan_streams("t", 4, total_ticks, call_ticks, seed=3)
    control = plan[-1]
    assert control.slot == soak.CONTROL_SLOT and control.end_tick == total_ticks
    for slot in range(4):
        streams = [s for s in plan if s.slot == slot]
        assert len(streams) >= 6  # 3000 ticks of calls of 200-500 ticks: several generations
        for before, after in itertools.pairwise(streams):
            assert after.start_tick == before.end_tick + soak.SLOT_GAP_TICKS
        assert all(call_ticks[0] <= s.frames <= call_ticks[1] for s in streams[:-1])
        assert streams[-1].end_tick <= total_ticks
    assert len({s.stream_id for s in plan}) == len(plan)


def test_results_due_counts_full_hops_of_the_audio_sent(soak: ModuleType) -> None:
    stream = soak.PlannedStream("a", 0, start_tick=10, frames=100)  # 2 s of audio: 20 hops of 100 ms
    origin = 1000.0
    assert soak.results_due([stream], origin, origin + 0.2 + 1.0, 100.0, grace_s=0.0) == 10
    assert soak.results_due([stream], origin, origin + 60, 100.0, grace_s=2.0) == 20
    assert soak.results_due([stream], origin, origin, 100.0, grace_s=0.0) == 0


def test_metric_helpers(soak: ModuleType) -> None:
    text = ("# TYPE spoofwatch_streams_open gauge\nspoofwatch_streams_open 7.0\n"
            "# TYPE spoofwatch_event_loop_lag_seconds gauge\nspoofwatch_event_loop_lag_seconds 0.002\n"
            "# TYPE spoofwatch_event_loop_lag_max_seconds gauge\nspoofwatch_event_loop_lag_max_seconds 0.03\n"
            "# TYPE spoofwatch_event_loop_lag_histogram_seconds histogram\n"
            'spoofwatch_event_loop_lag_histogram_seconds_bucket{le="0.001"} 50.0\n'
            'spoofwatch_event_loop_lag_histogram_seconds_bucket{le="0.005"} 90.0\n'
            'spoofwatch_event_loop_lag_histogram_seconds_bucket{le="+Inf"} 100.0\n'
            "# TYPE spoofwatch_dropped counter\n"
            'spoofwatch_dropped_total{reason="buffer_overflow"} 12.0\n'
            'spoofwatch_dropped_total{reason="pub_full"} 0.0\n')
    sample = soak.parse_daemon_metrics(text)
    assert (sample.streams_open, sample.loop_lag_s, sample.loop_lag_max_s) == (7.0, 0.002, 0.03)
    assert sample.dropped == {"buffer_overflow": 12.0, "pub_full": 0.0}
    assert soak.bucket_quantile(sample.lag_buckets, 0.5) == pytest.approx(0.001)
    assert soak.bucket_quantile(sample.lag_buckets, 0.7) == pytest.approx(0.003)
    assert soak.lag_figures(sample.lag_buckets, [0.002, 0.004]) == {"p50": 1.0, "p99": 4.0, "max": 4.0}
    assert soak.slope_per_hour([0.0, 1800.0, 3600.0], [100.0, 110.0, 120.0]) == pytest.approx(20.0)
    assert soak.histogram_percentiles([0, 98, 1, 1], 0.5) == {"p50": 1.0, "p95": 1.0, "p99": 1.5, "max": 2.0}


def test_short_soak_against_a_real_daemon_loses_nothing(soak: ModuleType) -> None:
    """5 rolling streams of 2-4 s for 8 s: streams open and close during the run, and every
    result, the control stream's included, arrives."""
    args = soak.resolve(soak.build_parser().parse_args(
        ["--streams", "5", "--seconds", "8", "--call-seconds", "2,4", "--sample-s", "2",
         "--model", str(packaged_model_path())]))
    summary = soak.run_soak(args)
    assert summary.streams_planned > 6  # the slots rolled over to new streams
    assert summary.expected > 0 and summary.lost == 0 and summary.received == summary.expected
    assert summary.streams_with_loss == 0 and summary.worst_streams == {}
    assert summary.control_expected >= int(7.5 * 1000 / summary.hop_ms) and summary.control_lost == 0
    assert summary.rss_start_mb > 0 and summary.rss_end_mb > 0
    assert summary.rss_slope_mb_per_hour == summary.rss_slope_mb_per_hour  # a number, not NaN
    assert set(summary.loop_lag_ms) == {"p50", "p99", "max"} and summary.loop_lag_ms["max"] >= 0
    assert set(summary.end_to_end_ms) == {"p50", "p95", "p99", "max"} and summary.end_to_end_ms["p50"] > 0
    assert summary.daemon_cpu_percent > 0 and summary.send_errors == 0
    assert summary.daemon_dropped.get("buffer_overflow") == 0
    assert len(summary.rows) >= 3 and max(row.streams_open for row in summary.rows) >= 5
    assert isinstance(args, argparse.Namespace)
