"""The visualizer's copy of one peer's tangle: nodes in the peer's insertion order, lanes, cones.

Built from `/api/transactions` node documents (validated as `peer.api.schema.NodeDocument`). Append-only, so
a node's index never changes and streaming a batch of new nodes never touches an old row. Nothing recurses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from peer.api.schema import NodeDocument
from visualizer.layout import LaneLayout

# a genesis created at time 0 (as every peer computes it) would squash a wall-clock view of real peers
# into 1970: it is drawn just before its first child instead when that child is this much later
TIMELESS_GAP = 86_400.0
# creation times that share a column in the wall-clock view (seconds)
TIME_BUCKET = 1.0
# cumulative weights are counted over this many newest transactions
WEIGHT_WINDOW = 20_000


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
        self.missing_parents = 0  # parents named by a node that this copy never got (shown on the page)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def depth(self) -> int:
        """The largest height (nodes never get lower, so the last node's height is not always it)."""
        return max((n.height for n in self.nodes), default=0)

    def add(self, doc: NodeDocument | Mapping[str, Any]) -> Node | None:
        """Add one node document (validated here when it is a plain mapping); None if it is already here."""
        if not isinstance(doc, NodeDocument):
            doc = NodeDocument.model_validate(doc)
        if doc.name in self.index:
            return None
        # a parent this copy lacks cannot happen with a well-behaved peer: the node is drawn without that
        # edge, and the page says how many were missing
        parents = tuple(self.index[p] for p in doc.parents if p in self.index)
        self.missing_parents += len(doc.parents) - len(parents)
        height = doc.height if doc.height is not None else doc.time or 0
        created = doc.created
        lane = self.layout.place(
            [self.nodes[p].lane for p in parents], (("h", height), ("t", math.floor(created / TIME_BUCKET)))
        )
        node = Node(
            index=len(self.nodes),
            name=doc.name,
            parents=parents,
            author=doc.peer,
            height=height,
            created=created,
            accuracy=_number(doc.accuracy),
            loss=_number(doc.loss),
            malicious=doc.malicious,
            lane=lane,
            wall=created,
        )
        self.nodes.append(node)
        self.index[doc.name] = node.index
        self.children.append([])
        for p in parents:
            self.children[p].append(node.index)
        self.authors.setdefault(node.author, len(self.authors))
        self._place_timeless_genesis(node)
        return node

    def add_many(self, docs: Iterable[NodeDocument | Mapping[str, Any]]) -> list[Node]:
        return [n for n in (self.add(d) for d in docs) if n is not None]

    def cumulative_weights(self) -> list[float]:
        """Each node's cumulative weight: itself and every node that approves it, directly or not.

        One pass from the newest node back, a node's future cone being a bit set (a Python int) OR-ed from
        its children's: O(edges) big-int operations, tens of ms at 10,000 transactions. Only the newest
        WEIGHT_WINDOW nodes are counted (memory grows with its square); older ones get NaN."""
        start = max(0, len(self.nodes) - WEIGHT_WINDOW)
        cones = [0] * (len(self.nodes) - start)
        for i in range(len(self.nodes) - 1, start - 1, -1):
            cone = 1 << (i - start)
            for child in self.children[i]:
                cone |= cones[child - start]
            cones[i - start] = cone
        return [math.nan] * start + [float(c.bit_count()) for c in cones]

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
