"""benchmarks/paired_runs.py: two recipes compared over paired seeds."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def paired() -> ModuleType:
    return load_benchmark("paired_runs")


def test_sign_flip_p_is_exact(paired: ModuleType) -> None:
    assert paired.sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)  # all positive: 2 of 8 sign sets
    assert paired.sign_flip_p(np.array([1.0, -1.0])) == 1.0
    assert paired.sign_flip_p(np.array([5.0, 4.0, 6.0, 5.0, 7.0])) == pytest.approx(2 / 32)
    # one large gain and four small losses: the mean is positive, but by chance as often as not
    assert paired.sign_flip_p(np.array([10.0, -1.0, -1.0, -1.0, -1.0])) > 0.2


def report(spoof_eer: float, codec_eer: float) -> dict[str, Any]:
    return {"dev-eval": {"heads": {"spoof": {"overall": {"eer": spoof_eer, "min_dcf": 0.9}},
                                   "codec": {"overall": {"eer": codec_eer}}}},
            "heldout": None}


def test_compare_counts_wins_and_leaves_out_measures_a_run_lacks(paired: ModuleType) -> None:
    pairs = [(report(0.40, 0.30), report(0.30, 0.35)), (report(0.35, 0.30), report(0.33, 0.30)),
             (report(0.30, 0.30), report(0.32, 0.20))]
    rows = {row["measure"]: row for row in paired.compare(pairs)}
    assert set(rows) == {"dev-eval spoof EER", "spoof minDCF", "dev-eval codec EER"}  # no held-out reports
    spoof = rows["dev-eval spoof EER"]
    assert (spoof["better"], spoof["worse"], spoof["pairs"]) == (2, 1, 3)
    assert spoof["baseline"] == pytest.approx(0.35) and spoof["difference"] == pytest.approx(-0.1 / 3)
    assert (rows["spoof minDCF"]["better"], rows["spoof minDCF"]["worse"]) == (0, 0)  # ties are neither
    assert paired.fmt(-0.0333, "dev-eval spoof EER", True) == "-3.3 points"
    assert paired.fmt(0.9, "spoof minDCF", False) == "0.900"


def test_runs_without_a_checkpoint_are_named_and_exit_2(paired: ModuleType, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "best.pt").write_bytes(b"")
    assert paired.main(["--pair", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert f"no best.pt in: {tmp_path / 'b'}" in capsys.readouterr().err


def test_per_run_table_has_a_row_per_run_and_a_dash_where_a_measure_is_missing(
        paired: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    paired.print_per_run([Path("runs/base-s1"), Path("runs/new-s1")], [report(0.40, 0.30), report(0.30, 0.35)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4  # header, rule, two runs
    base = lines[2].split(" | ")
    assert base[0] == "| base-s1" and base[1] == "40.0 %" and base[3] == "0.900"
    assert lines[3].startswith("| new-s1 | 30.0 % |")
    assert "| - |" in lines[2]  # no held-out report: its measures are dashes
