"""`make corpus` trains exactly the in-house resynthesis models that are not finished.

A finished model is marked by its summary.json (written only at the end of a run); a model.pt
without it is an interrupted run, resumed rather than taken as trained. Checked with `make -n`
(print, do not run) in a scratch folder that borrows the repository's Makefile and venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_corpus_resumes_interrupted_models_and_skips_finished_ones(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "setup.py", "streaming_models", "scripts"):  # what the install stamp depends on
        (tmp_path / name).symlink_to(REPO / name)
    models = tmp_path / "artifacts" / "resynthesis"
    (models / "codec_comp6k").mkdir(parents=True)
    (models / "codec_comp6k" / "model.pt").write_bytes(b"interrupted")
    (models / "codec_istft").mkdir()
    (models / "codec_istft" / "model.pt").write_bytes(b"finished")
    (models / "codec_istft" / "summary.json").write_text("{}")
    venv = Path(sys.prefix)
    (tmp_path / ".stamp").touch()
    done = subprocess.run(["make", "-n", "-f", str(REPO / "Makefile"), "corpus", f"VENV={venv}",
                           f"STAMP={tmp_path / '.stamp'}"],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    printed = done.stdout.replace("\\\n", " ")  # join the recipe's continued lines
    trains = {line.split("configs/resynthesis/")[1].split(".toml")[0]: line
              for line in printed.splitlines() if "resynth train" in line}
    assert set(trains) == {"codec_comp6k", "codec_token1k", "vocoder_mel"}
    assert "--resume" in trains["codec_comp6k"]
    assert "--resume" not in trains["codec_token1k"] and "--resume" not in trains["vocoder_mel"]
    assert "data build --recipe configs/data/default.toml" in printed
