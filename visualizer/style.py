"""Colours and the columns of the page's data sources, built from graph nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.palettes import Category20_20, Turbo256, Viridis256

from visualizer.graph import Node, TangleGraph

GENESIS_COLOR = "#000000"
NO_ACCURACY_COLOR = "#c8c8c8"
EDGE_COLOR = "#b4b4b4"
REFERENCE_COLOR = "#d4a017"
PAST_COLOR = "#0a84ff"
FUTURE_COLOR = "#ff2d95"
OUTLINE_COLOR = "#ffffff"
# dark shades first, then the light ones: the first ten authors get the strongest colours
AUTHOR_PALETTE = list(Category20_20[0::2]) + list(Category20_20[1::2])
NODE_WIDTH, REF_NODE_WIDTH = 0.6, 2.0
EDGE_WIDTH, REF_EDGE_WIDTH = 0.7, 1.6


def author_color(order: int, author: str) -> str:
    if author == "genesis":
        return GENESIS_COLOR
    if order < len(AUTHOR_PALETTE):
        return AUTHOR_PALETTE[order]
    # beyond 20 authors: spread over Turbo by the golden ratio, so neighbours in order still differ
    return Turbo256[int((order * 0.618033988749895 % 1.0) * 255)]


def accuracy_color(accuracy: float | None) -> str:
    if accuracy is None:
        return NO_ACCURACY_COLOR
    return Viridis256[min(255, max(0, int(accuracy * 255)))]


def short(name: str) -> str:
    return name if len(name) <= 16 else f"{name[:8]}…{name[-6:]}"


NODE_COLUMNS = [
    "index",
    "name",
    "short",
    "author",
    "parents_txt",
    "color",
    "acc_color",
    "marker",
    "outline",
    "width",
    "xl",
    "xt",
    "y",
    "height",
    "created",
    "accuracy",
    "loss",
    "malicious",
]
EDGE_COLUMNS = ["x0l", "x0t", "y0", "x1l", "x1t", "y1", "color", "width", "child", "parent"]


def node_columns(graph: TangleGraph, nodes: Sequence[Node], reference_cone: set[int]) -> dict[str, Any]:
    """Rows for the node source; numbers as numpy arrays (Bokeh sends those as binary buffers)."""
    in_cone = [n.index in reference_cone for n in nodes]
    return {
        "index": np.array([n.index for n in nodes], dtype=np.int32),
        "name": [n.name for n in nodes],
        "short": [short(n.name) for n in nodes],
        "author": [n.author for n in nodes],
        "parents_txt": [", ".join(short(graph.nodes[p].name) for p in n.parents) or "-" for n in nodes],
        "color": [author_color(graph.authors[n.author], n.author) for n in nodes],
        "acc_color": [accuracy_color(n.accuracy) for n in nodes],
        "marker": ["triangle" if n.malicious else "circle" for n in nodes],
        "outline": [REFERENCE_COLOR if c else OUTLINE_COLOR for c in in_cone],
        "width": np.array([REF_NODE_WIDTH if c else NODE_WIDTH for c in in_cone]),
        "xl": np.array([n.height for n in nodes], dtype=float),
        "xt": np.array([n.wall for n in nodes], dtype=float),
        "y": np.array([n.lane for n in nodes], dtype=float),
        "height": np.array([n.height for n in nodes], dtype=np.int32),
        "created": np.array([n.created for n in nodes], dtype=float),
        "accuracy": np.array([np.nan if n.accuracy is None else n.accuracy for n in nodes]),
        "loss": np.array([np.nan if n.loss is None else n.loss for n in nodes]),
        "malicious": ["yes" if n.malicious else "no" for n in nodes],
    }


def edge_pairs(nodes: Sequence[Node]) -> list[tuple[int, int]]:
    return [(n.index, p) for n in nodes for p in n.parents]


def edge_columns(graph: TangleGraph, pairs: Sequence[tuple[int, int]], reference_cone: set[int]) -> dict:
    nodes = graph.nodes
    # an edge child -> parent lies in the reference's past cone when its child does
    in_cone = [c in reference_cone for c, _p in pairs]
    return {
        "x0l": np.array([nodes[c].height for c, _p in pairs], dtype=float),
        "x0t": np.array([nodes[c].wall for c, _p in pairs], dtype=float),
        "y0": np.array([nodes[c].lane for c, _p in pairs], dtype=float),
        "x1l": np.array([nodes[p].height for _c, p in pairs], dtype=float),
        "x1t": np.array([nodes[p].wall for _c, p in pairs], dtype=float),
        "y1": np.array([nodes[p].lane for _c, p in pairs], dtype=float),
        "color": [REFERENCE_COLOR if c else EDGE_COLOR for c in in_cone],
        "width": np.array([REF_EDGE_WIDTH if c else EDGE_WIDTH for c in in_cone]),
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
