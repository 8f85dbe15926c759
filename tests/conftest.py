"""Shared test fixtures. Data under ../shared/data is read through SPOOFWATCH_SHARED_DATA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    return Path(os.environ.get("SPOOFWATCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"shared data not found at {path} (set SPOOFWATCH_SHARED_DATA)")
    return path


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """WebRTC tests gather only 127.0.0.1 ICE candidates (aioice skips loopback by default)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture(scope="session")
def tiny_model() -> tuple[Path, Path]:
    """A tiny real streaming detector (ONNX + TorchScript twin), built with torch once and
    cached under .cache/ keyed by the builder's source (daemon tests; see tests/tiny_models.py)."""
    import hashlib

    from tiny_models import build_tiny_model, tiny_metadata

    source = (Path(__file__).parent / "tiny_models.py").read_bytes()
    key = hashlib.sha256(source).hexdigest()[:16]
    directory = REPO_ROOT / ".cache" / "test-models" / key
    meta = tiny_metadata()
    onnx_path, script_path = directory / f"{meta.model_id}.onnx", directory / f"{meta.model_id}.pt"
    if not (onnx_path.is_file() and script_path.is_file()):
        build_tiny_model(directory, meta)
    return onnx_path, script_path


@pytest.fixture(scope="session")
def tiny_verifier() -> Path:
    """A tiny real second-tier verifier (ONNX with its metadata, 1 s trained window, at most 3 s),
    built with torch once and cached under .cache/ keyed by the source of the builder and the export."""
    import hashlib

    from tiny_verifier import build_tiny_verifier

    sources = [Path(__file__).parent / "tiny_verifier.py",
               *(REPO_ROOT / "streaming_models" / "verifier" / name for name in ("model.py", "whisper_encoder.py")),
               REPO_ROOT / "streaming_models" / "runtime" / "verifier_format.py"]
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    path = REPO_ROOT / ".cache" / "test-models" / key / "tiny-verifier.onnx"
    if not path.is_file():
        build_tiny_verifier(path)
    return path


@pytest.fixture(scope="session")
def espeak_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic (spoof) utterance made with espeak-ng at run time (~9 s, 22.05 kHz wav)."""
    import shutil
    import subprocess

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    text = ("Hello, this is your bank calling. We noticed an unusual payment on your account. "
            "Please confirm your card number so that we can stop it.")
    wav = tmp_path_factory.mktemp("espeak") / "spoof.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, timeout=60)
    return wav
