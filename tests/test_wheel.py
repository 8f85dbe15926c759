"""The built wheel works outside the checkout: installed (not editable) into a fresh venv, run from
another folder, it shows `spoofwatch demo --help` and scores audio with the packaged default model.

Nothing is downloaded: the wheel is built without build isolation or an index, and the venv sees
this environment's dependencies through a .pth file. A .pth file's lines only add folders to
sys.path (the .pth files inside them are not run), so this environment's editable install of the
checkout stays out; the script checks that every package is imported from the new venv.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("daemon", "streaming_models", "clients")
SOURCES = ("pyproject.toml", "setup.py", "README.md", *PACKAGES)

SCORE = textwrap.dedent("""
    import sys
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    import clients, daemon, streaming_models
    from daemon.app import resolve_model_path
    from daemon.console import static_file
    from streaming_models.api import DEFAULT_MODEL_PATH, load_detector
    from streaming_models.runtime.default_model import DEFAULT_MODEL

    venv = Path(sys.prefix).resolve()
    for package in (clients, daemon, streaming_models):
        assert venv in Path(package.__file__).resolve().parents, f"{package.__name__} from {package.__file__}"
    assert venv in DEFAULT_MODEL_PATH.resolve().parents, DEFAULT_MODEL_PATH
    assert resolve_model_path(DEFAULT_MODEL) == DEFAULT_MODEL_PATH
    assert b"console.js" in static_file("index.html")
    from streaming_models.runtime.fastpath import load_extension
    extension = load_extension()  # the compiled ingest path, where the wheel has it
    assert extension is None or venv in Path(extension.__file__).resolve().parents, extension

    rate = 16000
    t = np.arange(2 * rate) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    sf.write("probe.wav", (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * noise).astype(np.float32), rate)
    scores = load_detector().score_file("probe.wav")
    assert len(scores.p_spoof) >= 10, len(scores.p_spoof)
    assert np.all((scores.p_spoof >= 0) & (scores.p_spoof <= 1) & (scores.p_codec >= 0) & (scores.p_codec <= 1))
    print(f"scored {len(scores.p_spoof)} hops: p_spoof {scores.p_spoof[-1]:.3f}")
""")


def run(command: list[str | Path], cwd: Path, env: dict[str, str], timeout_s: float = 60) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_installed_wheel_serves_demo_help_and_scores_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    # build from a copy, so the build's own folders (build/, *.egg-info) never land in the checkout
    source = tmp_path / "source"
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp_path / "dist", source], tmp_path, env)
    [wheel] = (tmp_path / "dist").glob("spoofwatch-*.whl")
    if shutil.which("cc") and (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        with zipfile.ZipFile(wheel) as archive:  # the compiled ingest path (setup.py) is in the wheel
            assert any(name.startswith("streaming_models/runtime/_fastpath.") and name.endswith(".so")
                       for name in archive.namelist()), archive.namelist()

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        tmp_path, env)
    [venv_site] = (venv / "lib").glob("python3*/site-packages")
    (venv_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "--model" in run([venv / "bin" / "spoofwatch", "demo", "--help"], elsewhere, env)
    assert "scored" in run([python, "-c", SCORE], elsewhere, env)
