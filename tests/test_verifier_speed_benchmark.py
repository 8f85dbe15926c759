"""benchmarks/verifier_speed.py on a tiny verifier: the arithmetic and one short run."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_modules import load_benchmark
from ct2_files import write_tiny_whisper

from streaming_models.verifier.model import VerifierConfig, build_verifier, save_checkpoint


def test_one_window_per_second_costs_one_call_per_stream() -> None:
    bench = load_benchmark("verifier_speed")
    assert bench.ms_per_audio_second(40.0, batch=1, every_s=1.0) == 40.0
    assert bench.ms_per_audio_second(40.0, batch=8, every_s=1.0) == 5.0  # eight streams share a call
    assert bench.ms_per_audio_second(40.0, batch=1, every_s=2.0) == 20.0  # scored half as often


def test_a_short_run_prints_a_row_per_window_and_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark("verifier_speed")
    model = build_verifier(VerifierConfig(), write_tiny_whisper(tmp_path / "tiny", width=32, heads=2, layers=2))
    save_checkpoint(tmp_path / "ckpt.pt", model, {})
    assert bench.main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--windows", "1,2", "--batches", "1,2",
                       "--seconds", "0.05", "--torch"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
