"""benchmarks/espeak_flags.py: espeak-ng clips rendered and scored, flags counted against the threshold."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from benchmark_modules import load_benchmark


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian package) is not installed")
def test_prints_every_clip_and_the_flag_count(tiny_model: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark("espeak_flags")
    genuine = bench.render(tmp_path)[0]  # any readable file stands in for a genuine one here
    assert bench.main(["--model", str(tiny_model[0]), "--genuine", str(genuine)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(rows) == 1 + 3 * len(bench.VOICES) + 1
    flagged = sum(line.endswith("FLAGGED") for line in rows if line.strip().startswith("spoof"))
    assert f"espeak-ng files flagged: {flagged} of 13" in out
