"""Lanes: the y coordinate of each transaction, chosen once and never changed.

A new transaction goes to the free lane nearest the mean lane of its parents (the barycenter heuristic of
layered graph drawing, applied online). "Free" means no transaction already drawn in the same column uses
that lane; a transaction occupies one column per x mode (its height, and its creation time bucket), so it
overlaps nothing in either view. Old transactions never move, which is what lets the page stream.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence


class LaneLayout:
    def __init__(self) -> None:
        self._taken: defaultdict[Hashable, set[int]] = defaultdict(set)

    def place(self, parent_lanes: Sequence[int], columns: Sequence[Hashable]) -> int:
        target = sum(parent_lanes) / len(parent_lanes) if parent_lanes else 0.0
        taken = [self._taken[c] for c in columns]
        for lane in nearest_lanes(target):
            if not any(lane in t for t in taken):
                for t in taken:
                    t.add(lane)
                return lane
        raise AssertionError("unreachable: nearest_lanes is infinite")


def nearest_lanes(target: float) -> Iterator[int]:
    """All integers by distance from `target`; ties go toward lane 0, so the drawing does not drift away."""
    low = math.floor(target)
    high = low + 1
    while True:
        if target - low < high - target or (target - low == high - target and abs(low) <= abs(high)):
            yield low
            low -= 1
        else:
            yield high
            high += 1


def naive_lanes(columns: Iterable[Hashable]) -> list[int]:
    """The baseline: each transaction in the next lane of its column, in arrival order."""
    counts: defaultdict[Hashable, int] = defaultdict(int)
    lanes = []
    for column in columns:
        lanes.append(counts[column])
        counts[column] += 1
    return lanes


Segment = tuple[float, float, float, float]


def count_crossings(segments: Sequence[Segment]) -> int:
    """Pairs of straight edges that cross at a point that is not an end of both (a sweep over x)."""
    items = sorted(
        ((min(x0, x1), max(x0, x1), (x0, y0, x1, y1)) for x0, y0, x1, y1 in segments), key=lambda s: s[0]
    )
    crossings = 0
    active: list[tuple[float, float, Segment]] = []
    for left, right, seg in items:
        active = [a for a in active if a[1] > left]  # an edge ending where this starts cannot cross it
        crossings += sum(1 for a in active if _cross(a[2], seg))
        active.append((left, right, seg))
    return crossings


def _cross(a: Segment, b: Segment) -> bool:
    p1, p2, p3, p4 = (a[0], a[1]), (a[2], a[3]), (b[0], b[1]), (b[2], b[3])
    if {p1, p2} & {p3, p4}:
        return False  # edges sharing a transaction meet there; that is not a crossing
    d1, d2 = _orient(p3, p4, p1), _orient(p3, p4, p2)
    d3, d4 = _orient(p1, p2, p3), _orient(p1, p2, p4)
    return d1 * d2 < 0 and d3 * d4 < 0


def _orient(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
