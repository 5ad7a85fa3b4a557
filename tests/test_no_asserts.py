"""No `assert` in product code: `python -O` removes them, so a check that matters at run time must be a real
one (an exception naming what is wrong)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_product_code_has_no_assert() -> None:
    found = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for package in ("peer", "visualizer", "learning_tangle")
        for path in sorted((REPO / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert found == []
