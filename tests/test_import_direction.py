"""One import direction: the visualizer may use the peer (its API types), never the reverse; the `tangle`
command line (learning_tangle/) is the one place that sees both."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_peer_imports_neither_the_visualizer_nor_the_command_line() -> None:
    # peer/__main__.py is an entry point (`python -m peer` runs `tangle`), imported by no module
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported(path) & {"visualizer", "learning_tangle"})
        for path in (REPO / "peer").rglob("*.py")
        if path.name != "__main__.py"
    }
    assert {p: names for p, names in offenders.items() if names} == {}


def test_importing_the_whole_peer_loads_no_visualizer() -> None:
    code = (
        "import importlib, pkgutil, sys, peer\n"
        "for m in pkgutil.walk_packages(peer.__path__, 'peer.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "tops = ('visualizer', 'learning_tangle', 'bokeh')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in tops))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
