"""Start the real daemon (`python -m daemon`) as a subprocess on free loopback ports, for client/CLI tests."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clients.local_daemon import (
    DaemonNotReady,
    daemon_command,
    free_port,
    stop_process,
    wait_for_pong,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["REPO_ROOT", "RunningDaemon", "daemon_process", "free_port"]


@dataclass(frozen=True)
class RunningDaemon:
    ingest_endpoint: str
    results_endpoint: str
    whip_url: str | None
    process: subprocess.Popen[bytes]
    http_url: str = ""  # the HTTP listener (/metrics, /healthz, /readyz; WHIP when enabled)


@contextlib.contextmanager
def daemon_process(model_path: Path, *, webrtc: bool = False, extra: tuple[str, ...] = (),
                   ingest: str | None = None, results: str | None = None,
                   http_port: int | None = None) -> Iterator[RunningDaemon]:
    """Endpoints and the HTTP port default to free ones; pass a previous daemon's to restart it."""
    ingest = ingest or f"tcp://127.0.0.1:{free_port()}"
    results = results or f"tcp://127.0.0.1:{free_port()}"
    whip_port = http_port or free_port()
    command = daemon_command(model_path, ingest, results, "--webrtc.enabled", "true" if webrtc else "false",
                             "--webrtc.port", str(whip_port), *extra)
    with tempfile.TemporaryFile() as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for_pong(ingest, process)
            except DaemonNotReady as exc:
                log_file.seek(0)
                output = log_file.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}; daemon output:\n{output}") from None
            whip_url = f"http://127.0.0.1:{whip_port}/whip" if webrtc else None
            yield RunningDaemon(ingest, results, whip_url, process, f"http://127.0.0.1:{whip_port}")
        finally:
            stop_process(process)
