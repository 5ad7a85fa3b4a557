"""Colours and the columns of the page's data sources, built from graph nodes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.palettes import Category20_20, Turbo256

from visualizer.graph import Node, TangleGraph

GENESIS_COLOR = "#000000"
EDGE_COLOR = "#b4b4b4"
REFERENCE_COLOR = "#d4a017"
PAST_COLOR = "#0a84ff"
FUTURE_COLOR = "#ff2d95"
OUTLINE_COLOR = "#ffffff"
# dark shades first, then the light ones: the first ten authors get the strongest colours
AUTHOR_PALETTE = list(Category20_20[0::2]) + list(Category20_20[1::2])
# half the width of a column (one height) that a band or a marker may use
HALF_COLUMN = 0.42


def author_color(order: int, author: str) -> str:
    if author == "genesis":
        return GENESIS_COLOR
    if order < len(AUTHOR_PALETTE):
        return AUTHOR_PALETTE[order]
    # beyond 20 authors: spread over Turbo by the golden ratio, so neighbours in order still differ
    return Turbo256[int((order * 0.618033988749895 % 1.0) * 255)]


def short(name: str) -> str:
    return name if len(name) <= 16 else f"{name[:8]}…{name[-6:]}"


NODE_COLUMNS = [
    "index",
    "name",
    "short",
    "author",
    "parents_txt",
    "color",
    "marker",
    "xl",
    "xt",
    "y",
    "height",
    "created",
    "accuracy",
    "loss",
    "weight",
    "malicious",
]
EDGE_COLUMNS = ["x0l", "x0t", "y0", "x1l", "x1t", "y1", "child", "parent"]
POINT_COLUMNS = ["xl", "xt", "y", "short"]
BAND_COLUMNS = [
    "ll", "rl", "lt", "rt", "bottom", "top", "color", "author", "count", "total", "span_txt",
    "authors_txt", "accuracy", "loss", "weight",
]  # fmt: skip


def node_columns(graph: TangleGraph, nodes: Sequence[Node], weights: Sequence[float] | None) -> dict:
    """Rows for a node source; numbers as numpy arrays (Bokeh sends those as binary buffers)."""
    return {
        "index": np.array([n.index for n in nodes], dtype=np.int32),
        "name": [n.name for n in nodes],
        "short": [short(n.name) for n in nodes],
        "author": [n.author for n in nodes],
        "parents_txt": [", ".join(short(graph.nodes[p].name) for p in n.parents) or "-" for n in nodes],
        "color": [author_color(graph.authors[n.author], n.author) for n in nodes],
        "marker": ["triangle" if n.malicious else "circle" for n in nodes],
        "xl": np.array([n.height for n in nodes], dtype=float),
        "xt": np.array([n.wall for n in nodes], dtype=float),
        "y": np.array([n.lane for n in nodes], dtype=float),
        "height": np.array([n.height for n in nodes], dtype=np.int32),
        "created": np.array([n.created for n in nodes], dtype=float),
        "accuracy": np.array([np.nan if n.accuracy is None else n.accuracy for n in nodes]),
        "loss": np.array([np.nan if n.loss is None else n.loss for n in nodes]),
        "weight": np.array([math.nan if weights is None else weights[n.index] for n in nodes]),
        "malicious": ["yes" if n.malicious else "no" for n in nodes],
    }


def edge_pairs(nodes: Sequence[Node]) -> list[tuple[int, int]]:
    return [(n.index, p) for n in nodes for p in n.parents]


def edge_columns(graph: TangleGraph, pairs: Sequence[tuple[int, int]]) -> dict:
    nodes = graph.nodes
    return {
        "x0l": np.array([nodes[c].height for c, _p in pairs], dtype=float),
        "x0t": np.array([nodes[c].wall for c, _p in pairs], dtype=float),
        "y0": np.array([nodes[c].lane for c, _p in pairs], dtype=float),
        "x1l": np.array([nodes[p].height for _c, p in pairs], dtype=float),
        "x1t": np.array([nodes[p].wall for _c, p in pairs], dtype=float),
        "y1": np.array([nodes[p].lane for _c, p in pairs], dtype=float),
        "child": np.array([c for c, _p in pairs], dtype=np.int32),
        "parent": np.array([p for _c, p in pairs], dtype=np.int32),
    }


def point_columns(graph: TangleGraph, indices: Sequence[int]) -> dict[str, Any]:
    """Positions (both x modes) of a few nodes: tips, references, cones."""
    nodes = [graph.nodes[i] for i in indices]
    return {
        "xl": np.array([n.height for n in nodes], dtype=float),
        "xt": np.array([n.wall for n in nodes], dtype=float),
        "y": np.array([n.lane for n in nodes], dtype=float),
        "short": [short(n.name) for n in nodes],
    }


def band_columns(
    graph: TangleGraph, count: int, width: int, weights: Sequence[float] | None
) -> dict[str, list[Any]]:
    """The first `count` nodes aggregated into bands of `width` heights: per band one segment per author,
    stacked over the band's lanes with a height in proportion to the author's share (so the overview keeps
    the author colours), each carrying the band's count, authors and mean accuracy, loss and weight."""
    groups: dict[int, list[Node]] = {}
    for node in graph.nodes[:count]:
        groups.setdefault(node.height // width, []).append(node)
    columns: dict[str, list[Any]] = {c: [] for c in BAND_COLUMNS}
    for band, members in sorted(groups.items()):
        low = min(n.lane for n in members) - HALF_COLUMN
        high = max(n.lane for n in members) + HALF_COLUMN
        wall = [n.wall for n in members]
        authors = Counter(n.author for n in members)
        ordered = sorted(authors, key=lambda a: graph.authors[a])
        authors_txt = ", ".join(f"{a} ×{authors[a]}" for a in ordered)
        first, last = band * width, band * width + width - 1
        span = f"height {first}" if width == 1 else f"heights {first}-{last}"
        means = {
            "accuracy": _mean([n.accuracy for n in members]),
            "loss": _mean([n.loss for n in members]),
            "weight": _mean([weights[n.index] for n in members] if weights is not None else []),
        }
        bottom = low
        for author in ordered:
            top = bottom + (high - low) * authors[author] / len(members)
            row = {
                "ll": first - HALF_COLUMN, "rl": last + HALF_COLUMN,
                "lt": min(wall) - HALF_COLUMN, "rt": max(wall) + HALF_COLUMN,
                "bottom": bottom, "top": top,
                "color": author_color(graph.authors[author], author), "author": author,
                "count": authors[author], "total": len(members), "span_txt": span, "authors_txt": authors_txt,
                **means,
            }  # fmt: skip
            for key, value in row.items():
                columns[key].append(value)
            bottom = top
    return columns


def _mean(values: Sequence[float | None]) -> float:
    numbers = [v for v in values if v is not None and math.isfinite(v)]
    return sum(numbers) / len(numbers) if numbers else math.nan


def auto_range(values: Sequence[float] | np.ndarray) -> tuple[float, float] | None:
    """The 2nd to 98th percentile of the finite values (honest models sit at 0.85-1.0: a fixed 0-1 scale
    would paint them all one colour); None without values."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return None
    low, high = (float(v) for v in np.percentile(array, [2, 98]))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    return low, high
