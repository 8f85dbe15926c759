"""A real Triton Inference Server on loopback, from the `nvidia-pytriton` wheel, for the tests.

The wheel bundles a `tritonserver` binary and its Python backend (no ONNX Runtime backend), with
one backend stub per Python minor version. The stub embeds the interpreter it was built against,
and it must agree with the standard library of the environment it runs in: from a venv on a newer
3.11 patch release (pyenv 3.11.7) the model fails to load with `'_thread.RLock' object has no
attribute '_recursion_count'`; from a venv made with Debian's /usr/bin/python3 (3.11.2) it
serves. So the environment is its own venv, `.venv-triton` (`make triton-env`), found here by
`SPOOFWATCH_TRITON_VENV` or at the repository root; without it the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_ENV = "SPOOFWATCH_TRITON_VENV"


@dataclass(frozen=True)
class TritonDist:
    venv: Path
    server_dir: Path  # pytriton/tritonserver
    libs_dir: Path  # nvidia_pytriton.libs
    python_version: str  # the venv's major.minor

    @property
    def binary(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"


def find_triton() -> TritonDist | str:
    """The Triton environment, or why there is none (a skip reason)."""
    venv = Path(os.environ.get(VENV_ENV, REPO / ".venv-triton"))
    if not (venv / "bin" / "python").exists():
        return f"no Triton environment at {venv} (make triton-env, or set {VENV_ENV})"
    candidates = sorted(venv.glob("lib/python3.*/site-packages/pytriton/tritonserver"))
    if not candidates:
        return f"{venv} has no nvidia-pytriton (make triton-env)"
    server_dir = candidates[-1]
    site = server_dir.parents[1]
    if not (site / "onnxruntime").is_dir():
        return f"{venv} has no onnxruntime for the Python-backend model (make triton-env)"
    dist = TritonDist(venv, server_dir, site / "nvidia_pytriton.libs", server_dir.parents[2].name[len("python"):])
    if not dist.binary.is_file():
        return f"{dist.binary} is missing"
    return dist


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _backend_dir(dist: TritonDist, work: Path) -> Path:
    """Triton's backend folder with the Python backend's stub for the venv's Python (as pytriton does)."""
    backends = work / "backends"
    shutil.copytree(dist.server_dir / "backends", backends, dirs_exist_ok=True)
    stub = dist.server_dir / "python_backend_stubs" / dist.python_version / "triton_python_backend_stub"
    shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
    return backends


@dataclass
class RunningTriton:
    grpc_endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_triton(dist: TritonDist, repository: Path, work: Path, timeout_s: float = 90.0) -> Iterator[RunningTriton]:
    """tritonserver on loopback ports serving `repository`, ready (its models loaded) on entry."""
    import tritonclient.grpc as grpcclient

    backends = _backend_dir(dist, work)
    grpc_port = free_port()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(dist.libs_dir), env.get("LD_LIBRARY_PATH", "")]))
    env["PATH"] = f"{dist.venv / 'bin'}:{env['PATH']}"  # the stub finds the venv's Python through PATH
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    command = [str(dist.binary), f"--model-repository={repository}", f"--backend-directory={backends}",
               "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}", "--allow-http=false",
               "--allow-metrics=false", "--log-verbose=0", "--exit-on-error=true", "--exit-timeout-secs=5",
               "--backend-config=python,shm-default-byte-size=4194304",
               f"--cache-directory={work / 'caches'}"]
    log_path = work / "tritonserver.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = RunningTriton(f"127.0.0.1:{grpc_port}", process, log_path)
    try:
        deadline = time.monotonic() + timeout_s
        client = grpcclient.InferenceServerClient(server.grpc_endpoint)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
            with suppress(Exception):  # not listening yet
                if client.is_server_ready():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver not ready in {timeout_s} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        client.close()
        yield server
    finally:
        server.stop()
