"""`spoofwatch demo` without its model says what is missing and how to get it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from running_daemon import REPO_ROOT


def test_demo_without_model_explains(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "clients.cli", "demo", "--model", str(missing)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert f"the model {missing} does not exist" in result.stderr
    assert "spoofwatch export" in result.stderr and "--model PATH" in result.stderr
    assert "Traceback" not in result.stderr
