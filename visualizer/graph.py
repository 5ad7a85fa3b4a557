"""The visualizer's copy of one peer's tangle: nodes in the peer's insertion order, lanes, cones.

Built from `/api/transactions` node documents. Append-only, so a node's index in here is its row in the
page's data source, and streaming a batch of new nodes never touches an old row. Nothing recurses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from visualizer.layout import LaneLayout

# a genesis created at time 0 (as every peer computes it) would squash a wall-clock view of real peers
# into 1970: it is drawn just before its first child instead when that child is this much later
TIMELESS_GAP = 86_400.0
# creation times that share a column in the wall-clock view (seconds)
TIME_BUCKET = 1.0


@dataclass(slots=True)
class Node:
    index: int
    name: str
    parents: tuple[int, ...]  # indices of the parents this copy holds
    author: str
    height: int
    created: float
    accuracy: float | None
    loss: float | None
    malicious: bool
    lane: int
    wall: float  # x in the wall-clock view


class TangleGraph:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.index: dict[str, int] = {}
        self.children: list[list[int]] = []
        self.layout = LaneLayout()
        self.authors: dict[str, int] = {}  # author -> order of first appearance (stable colours)
        self.genesis_moved = False  # set when the genesis' wall-clock x changed after it was added

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def depth(self) -> int:
        """The largest height (nodes never get lower, so the last node's height is not always it)."""
        return max((n.height for n in self.nodes), default=0)

    def add(self, doc: Mapping[str, Any]) -> Node | None:
        """Add one node document; None if it is already here."""
        name = str(doc["name"])
        if name in self.index:
            return None
        # a parent this copy lacks cannot happen with a well-behaved peer; draw the node without that edge
        parents = tuple(self.index[p] for p in doc.get("parents", ()) if p in self.index)
        height = int(doc.get("height", doc.get("time", 0)))
        created = float(doc.get("timeCreated") or 0.0)
        lane = self.layout.place(
            [self.nodes[p].lane for p in parents], (("h", height), ("t", math.floor(created / TIME_BUCKET)))
        )
        node = Node(
            index=len(self.nodes),
            name=name,
            parents=parents,
            author=str(doc.get("peer", "")),
            height=height,
            created=created,
            accuracy=_number(doc.get("accuracy")),
            loss=_number(doc.get("loss")),
            malicious=bool(doc.get("malicious", False)),
            lane=lane,
            wall=created,
        )
        self.nodes.append(node)
        self.index[name] = node.index
        self.children.append([])
        for p in parents:
            self.children[p].append(node.index)
        self.authors.setdefault(node.author, len(self.authors))
        self._place_timeless_genesis(node)
        return node

    def add_many(self, docs: Iterable[Mapping[str, Any]]) -> list[Node]:
        return [n for n in (self.add(d) for d in docs) if n is not None]

    def past_cone(self, starts: Iterable[int]) -> set[int]:
        """The start nodes and everything they approve, directly or not."""
        return self._cone(starts, lambda i: self.nodes[i].parents)

    def future_cone(self, starts: Iterable[int]) -> set[int]:
        """The start nodes and everything that approves them."""
        return self._cone(starts, self.children.__getitem__)

    def indices(self, names: Iterable[str]) -> list[int]:
        return [self.index[n] for n in names if n in self.index]

    @staticmethod
    def _cone(starts: Iterable[int], neighbours: Any) -> set[int]:
        cone = set(starts)
        stack = list(cone)
        while stack:
            for nxt in neighbours(stack.pop()):
                if nxt not in cone:
                    cone.add(nxt)
                    stack.append(nxt)
        return cone

    def _place_timeless_genesis(self, node: Node) -> None:
        if len(node.parents) != 1 or self.children[node.parents[0]] != [node.index]:
            return
        parent = self.nodes[node.parents[0]]
        if not parent.parents and node.created - parent.created > TIMELESS_GAP:
            parent.wall = node.created - TIME_BUCKET
            self.genesis_moved = True


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
