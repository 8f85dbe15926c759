"""`spoofwatch send` and `spoofwatch tap --json` as subprocesses against a running daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from running_daemon import REPO_ROOT, RunningDaemon, daemon_process

from clients.client import DetectorClient


@pytest.fixture(scope="module")
def daemon(tiny_model: tuple[Path, Path]) -> Iterator[RunningDaemon]:
    with daemon_process(tiny_model[0]) as running:
        yield running


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    t = np.arange(int(1.2 * 16000)) / 16000
    path = tmp_path / "clip.wav"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    return path


def spoofwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "clients.cli", *args]


def test_send_with_tap_json(daemon: RunningDaemon, wav: Path) -> None:
    tap = subprocess.Popen(
        spoofwatch("tap", "cli-1", "--json", "--until-closed", "--timeout", "30",
                   "--results-endpoint", daemon.results_endpoint),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.5)  # tap's start-up and subscription
        send = subprocess.run(
            spoofwatch("send", str(wav), "--stream-id", "cli-1", "--encoding", "mulaw", "--rate", "8000",
                       "--meta", "call_id=7", "--endpoint", daemon.ingest_endpoint,
                       "--results-endpoint", daemon.results_endpoint),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        assert send.returncode == 0, send.stderr
        out, err = tap.communicate(timeout=30)
    finally:
        tap.kill()
    assert tap.returncode == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    assert messages[0]["type"] == "opened" and messages[0]["metadata"] == {"call_id": "7"}
    assert [m["seq"] for m in messages if m["type"] == "result"] == list(range(12))
    assert messages[-1]["type"] == "closed" and messages[-1]["summary"]["hops"] == 12
    summary_line = send.stdout.strip().splitlines()[-1]
    assert summary_line.startswith(f"cli-1: {messages[-1]['summary']['final_decision']} after 1.2 s (12 hops")


def test_send_json_lines(daemon: RunningDaemon, wav: Path) -> None:
    send = subprocess.run(
        spoofwatch("send", str(wav), "--json", "--endpoint", daemon.ingest_endpoint,
                   "--results-endpoint", daemon.results_endpoint),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert send.returncode == 0, send.stderr
    messages = [json.loads(line) for line in send.stdout.splitlines()]
    assert messages[-1]["type"] == "closed" and messages[-1]["summary"]["audio_s"] == pytest.approx(1.2)


def test_send_reports_unreadable_file_and_refusals(daemon: RunningDaemon, tmp_path: Path, wav: Path) -> None:
    bad = tmp_path / "not-audio.wav"
    bad.write_text("hello")
    result = subprocess.run(
        spoofwatch("send", str(bad), "--endpoint", daemon.ingest_endpoint), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert f"cannot read {bad}" in result.stderr

    with DetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client:
        taken = client.open_stream("taken", sample_rate_hz=16000)
        result = subprocess.run(
            spoofwatch("send", str(wav), "--stream-id", "taken", "--endpoint", daemon.ingest_endpoint,
                       "--results-endpoint", daemon.results_endpoint),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        taken.close()
    assert result.returncode == 1
    assert "the daemon refused: stream_exists" in result.stderr


def test_mic_without_portaudio_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from clients.commands import send

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if PortAudio were absent
    with pytest.raises(send.SendError, match="libportaudio2"):
        send.import_sounddevice()
