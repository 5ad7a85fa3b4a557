"""The reference ("consensus") model: what the tangle currently agrees on.

As in Schmid et al. 2020: sample tips `sampling_rounds` times; a transaction's confidence is the share of
sampled tips that approve it, directly or indirectly (a tip does not confirm itself); its score is
confidence times the number of transactions it approves. This module ranks; the learner averages the best
(see `Learner.reference`). Counting is limited to the walk window (heights >= min_height), so a round
costs the same however long the tangle is.

How wide the tangle is still matters: with 1,000 peers a round adds 1,000 transactions and a past cone
inside the window holds up to window x width of them. The cones of the window are therefore kept once per
tangle state as bitsets (one Python int per transaction, built parents-first), shared by every walker of
that tangle (the lab's peers share one tangle per process), and confidence is summed with numpy.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from peer.tangle.dag import Tangle


@dataclass(frozen=True)
class ConeIndex:
    """Past cones of the transactions at heights >= min_height, restricted to those heights."""

    ids: list[str]  # lowest first, parents before children
    position: dict[str, int]
    cones: list[int]  # bit i set: ids[i] is in the cone
    sizes: np.ndarray  # cone sizes, the transaction itself included
    heights: np.ndarray
    id_rank: np.ndarray  # rank of each id in sorted order: the last tie-break


_cache: weakref.WeakKeyDictionary[Tangle, tuple[tuple[int, int], ConeIndex]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def cone_index(tangle: Tangle, min_height: int) -> ConeIndex:
    """The window's cones for the tangle as it is now (cached until it grows: nothing is ever removed)."""
    key = (len(tangle), min_height)
    with _lock:
        cached = _cache.get(tangle)
        if cached is not None and cached[0] == key:
            return cached[1]
        ids = [t for h in range(min_height, tangle.max_height + 1) for t in tangle.at_height(h)]
        position = {t: i for i, t in enumerate(ids)}
        cones: list[int] = []
        for i, tx_id in enumerate(ids):
            cone = 1 << i
            for parent in tangle.get(tx_id).parents:
                j = position.get(parent)
                if j is not None:
                    cone |= cones[j]
            cones.append(cone)
        rank = np.empty(len(ids), dtype=np.int64)
        rank[np.argsort(np.asarray(ids, dtype=object), kind="stable")] = np.arange(len(ids))
        index = ConeIndex(
            ids=ids,
            position=position,
            cones=cones,
            sizes=np.fromiter((c.bit_count() for c in cones), dtype=np.float64, count=len(ids)),
            heights=np.fromiter((tangle.height(t) for t in ids), dtype=np.int64, count=len(ids)),
            id_rank=rank,
        )
        _cache[tangle] = (key, index)
        return index


def _bits(value: int, count: int) -> np.ndarray:
    raw = np.frombuffer(value.to_bytes((count + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, count=count, bitorder="little")


def reference_transactions(
    tangle: Tangle,
    walk: Callable[[], str],
    *,
    sampling_rounds: int,
    top_k: int | None = 1,
    min_height: int = 0,
) -> list[str]:
    """The `top_k` best-scored transactions, best first (all of them, ranked, with top_k=None)."""
    if sampling_rounds < 1 or (top_k is not None and top_k < 1):
        raise ValueError("sampling_rounds and top_k must be at least 1")
    sampled = Counter(walk() for _ in range(sampling_rounds))
    index = cone_index(tangle, min_height)
    count = len(index.ids)
    confidence = np.zeros(count, dtype=np.float64)
    for tip, times in sampled.items():
        i = index.position.get(tip)
        if i is not None:  # a tip below the window confirms nothing inside it
            confidence += float(times) * _bits(index.cones[i] & ~(1 << i), count)  # times may pass 255
    counted = np.flatnonzero(confidence)
    # approved counts only matter for transactions some sampled tip approves
    scores = (confidence[counted] / sampling_rounds) * index.sizes[counted]
    # ties fall to the newer transaction (larger height), then the id, so every peer picks the same one
    order = np.lexsort((index.id_rank[counted], -index.heights[counted], -scores))
    if top_k is not None:
        order = order[:top_k]
    return [index.ids[i] for i in counted[order]]
