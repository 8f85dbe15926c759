"""The floors (docs/architecture.md, "Floors"), checked on the source with `ast`, without importing it.

    clients                      may import daemon, streaming_models
    daemon | offline tools       daemon may import streaming_models.runtime only;
                                 streaming_models imports neither daemon nor clients
    streaming_models.runtime     imports nothing of the project outside itself

Neither the runtime nor the daemon imports torch at module level (the torch backend imports it
inside its constructor), and a subprocess checks that starting the daemon leaves torch unloaded.

Inside the daemon, ingest adapters (`daemon.ingest`) use the stream API (`daemon.stream_api`), never
its implementation, and a stream (`daemon.live_stream`) never imports the hub that opened it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME = "streaming_models.runtime"
# what implements the stream API: adapters see it only through daemon.stream_api
STREAM_IMPLEMENTATION = ("daemon.hub", "daemon.live_stream", "daemon.admission", "daemon.streams",
                         "daemon.batcher", "daemon.policy", "daemon.publisher", "daemon.app", "daemon.verifier")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute
    line: int
    top_level: bool  # runs when the module is imported (not inside a function, not TYPE_CHECKING-only)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every import statement in `source` (the text of `module`), with where it runs."""

    def visit(node: ast.AST, top_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, top_level)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, is_package, child)
                yield Import(module, target, child.lineno, top_level)
                for alias in child.names:  # `from streaming_models import daemon_thing` style
                    yield Import(module, f"{target}.{alias.name}", child.lineno, top_level)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), top_level)
            else:
                yield from visit(child, top_level)

    yield from visit(ast.parse(source), True)


def _within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def violations(imp: Import) -> list[str]:
    """The floor rules `imp` breaks, each as a sentence."""
    where = f"{imp.module}:{imp.line} imports {imp.target}"
    broken = []
    if _within(imp.module, "streaming_models"):
        if _within(imp.target, "daemon") or _within(imp.target, "clients"):
            broken.append(f"{where}: streaming_models stands below the daemon and the clients")
        if _within(imp.module, RUNTIME) and _within(imp.target, "streaming_models") \
                and not _within(imp.target, RUNTIME) and imp.target != "streaming_models":
            broken.append(f"{where}: the runtime imports nothing of the project outside itself")
    if _within(imp.module, "daemon"):
        if _within(imp.target, "streaming_models") and not _within(imp.target, RUNTIME) \
                and imp.target != "streaming_models":
            broken.append(f"{where}: the daemon imports only streaming_models.runtime")
        if _within(imp.target, "clients"):
            broken.append(f"{where}: the daemon stands below the clients")
    if _within(imp.module, "daemon.ingest") and any(_within(imp.target, m) for m in STREAM_IMPLEMENTATION):
        broken.append(f"{where}: ingest adapters use the stream API (daemon.stream_api), not its implementation")
    if _within(imp.module, "daemon.live_stream") and _within(imp.target, "daemon.hub"):
        broken.append(f"{where}: a stream's audio path never goes back to the hub")
    if (_within(imp.module, RUNTIME) or _within(imp.module, "daemon")) and imp.top_level \
            and _within(imp.target, "torch"):
        broken.append(f"{where} at module level: import torch inside the function that needs it")
    return broken


def project_modules() -> Iterator[tuple[str, bool, Path]]:
    for package in ("streaming_models", "daemon", "clients"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if is_package else parts), is_package, path


def test_every_import_respects_the_floors() -> None:
    modules = list(project_modules())
    assert any(name == f"{RUNTIME}.scorer" for name, _, _ in modules)
    assert any(name == "daemon.app" for name, _, _ in modules)
    broken = [sentence for name, is_package, path in modules
              for imp in imports_of(path.read_text(encoding="utf-8"), name, is_package)
              for sentence in violations(imp)]
    assert broken == []


@pytest.mark.parametrize("module,source", [
    ("streaming_models.evaluate", "from daemon.streams import StreamRegistry"),
    ("streaming_models.api", "import daemon.errors"),
    ("streaming_models.export", "from clients import client"),
    ("streaming_models.runtime.scorer", "from streaming_models.evaluate import stream_scores"),
    ("streaming_models.runtime.scorer", "from streaming_models import evaluate"),
    ("streaming_models.runtime.hops", "from .. import model"),
    ("daemon.app", "from streaming_models.model import StreamingDetector"),
    ("daemon.app", "from streaming_models import train"),
    ("daemon.hub", "from clients.client import DaemonReplyError"),
    ("daemon.batcher", "import torch"),
    ("daemon.batcher", "try:\n    import torch\nexcept ImportError:\n    torch = None"),
    ("daemon.batcher", "class A:\n    import torch.nn"),
    ("daemon.ingest.zmq", "from daemon.hub import DaemonHub"),
    ("daemon.ingest.twilio", "from daemon.live_stream import LiveStream"),
    ("daemon.ingest.audiosocket", "from daemon import admission"),
    ("daemon.ingest.webrtc", "from ..batcher import Batcher"),
    ("daemon.live_stream", "from daemon.hub import DaemonHub"),
    ("streaming_models.runtime.torch_backend", "from torch import jit"),
])
def test_a_broken_rule_is_caught(module: str, source: str) -> None:
    assert [s for imp in imports_of(source, module) for s in violations(imp)]


@pytest.mark.parametrize("module,source", [
    ("daemon.app", "from streaming_models.runtime.scorer import HopScorer"),
    ("daemon.app", "from streaming_models.runtime import scorer"),
    ("streaming_models.evaluate", "from streaming_models.runtime.onnx_backend import OnnxBackend"),
    ("streaming_models.runtime.torch_backend", "def load():\n    import torch"),
    ("daemon.batcher", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch"),
    ("clients.cli", "import daemon.app\nimport streaming_models.train"),
    ("daemon.ingest.zmq", "from daemon.stream_api import StreamHub, StreamHandle"),
    ("daemon.ingest.twilio", "from daemon.refusals import Refusals"),
    ("daemon.hub", "from daemon.live_stream import LiveStream"),
])
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert [s for imp in imports_of(source, module) for s in violations(imp)] == []


def test_starting_the_daemon_never_imports_torch() -> None:
    probe = ("import sys, daemon.app, daemon.__main__, streaming_models.runtime.torch_backend; "
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "False", result.stderr
