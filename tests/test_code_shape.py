"""Training and the model read top to bottom (issue #24): no function in them runs past 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("module", ["streaming_models/train.py", "streaming_models/model.py"])
def test_no_function_is_longer_than_60_lines(module: str) -> None:
    tree = ast.parse((REPO / module).read_text(encoding="utf-8"))
    lengths = {f"{node.name} (line {node.lineno})": (node.end_lineno or node.lineno) - node.lineno + 1
               for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert len(lengths) >= 5, lengths  # the walk does see the module's functions
    too_long = {name: count for name, count in lengths.items() if count > MAX_FUNCTION_LINES}
    assert not too_long, f"{module}: split these functions: {too_long}"
