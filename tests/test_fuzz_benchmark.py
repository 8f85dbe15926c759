"""benchmarks/fuzz.py drives a live daemon through every ingress (a short seeded run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from running_daemon import REPO_ROOT

pytestmark = pytest.mark.slow


def test_a_short_fuzz_run_passes_and_reports_every_figure(tiny_model: tuple[Path, Path]) -> None:
    run = subprocess.run([sys.executable, "benchmarks/fuzz.py", "--model", str(tiny_model[0]), "--cases", "240",
                          "--batch", "80", "--seed", "3", "--warmup", "60", "--max-rss-growth", "0.25"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr[-3000:]
    assert "cases: 240 in " in out and "crashes: 0" in out and "hangs: 0" in out
    assert "control streams: 3, lost control results: 0" in out
    assert "RSS: " in out and "MiB before" in out
    for ingress in ("zmq", "twilio", "audiofork", "audiosocket", "whip", "http"):
        assert f"{ingress} " in out.split("outcomes by reason:")[1], ingress
    assert "zmq bad_json" in out.split("refused inputs counted by the daemon")[1]
    assert out.rstrip().endswith("result: PASS")
