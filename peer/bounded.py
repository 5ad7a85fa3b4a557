"""A dict with a size limit that forgets its least recently used entries: the one bound used by every
per-CID memo of a long-running peer (ratings, unusable and unreachable weights, block sizes), so that a
daemon that has seen millions of transactions holds no more than a recent window of them."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruDict(OrderedDict[K, V]):
    """`d[k] = v` makes k the most recent and evicts the oldest entries beyond `maxsize`; `get` counts as a
    use (`d[k]` does not, so that copying and iterating never reorder). Not thread-safe by itself: callers
    that share one across threads hold a lock."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        super().__init__()
        self.maxsize = maxsize

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        if key in self:
            self.move_to_end(key)
            return super().__getitem__(key)
        return default

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)
