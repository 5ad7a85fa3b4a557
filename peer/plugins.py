"""Extensions other packages register (Python entry points), so that `peer` never imports them.

- `learning_tangle.commands`: more `tangle` subcommands (a pydantic-settings model with `cli_cmd`), by name;
  the visualizer registers `viz` and `report`.
- `learning_tangle.lab_outputs`: functions `(folder: Path) -> Path | None` that add a file to a lab's output
  folder after the lab wrote its own; the visualizer registers `report.html`.

An extension that cannot be imported (an optional dependency missing) is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

COMMANDS = "learning_tangle.commands"
LAB_OUTPUTS = "learning_tangle.lab_outputs"

LabOutputWriter = Callable[[Path], Path | None]


def _load(group: str) -> dict[str, Any]:
    loaded = {}
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        try:
            loaded[point.name] = point.load()
        except ImportError:
            continue
    return loaded


def commands() -> dict[str, type]:
    return _load(COMMANDS)


def lab_output_writers() -> dict[str, LabOutputWriter]:
    return _load(LAB_OUTPUTS)
