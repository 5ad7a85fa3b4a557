"""The reference ("consensus") model: what the tangle currently agrees on.

As in Schmid et al. 2020: sample tips `sampling_rounds` times; a transaction's confidence is the share of
sampled tips that approve it, directly or indirectly (a tip does not confirm itself); its score is
confidence times the number of transactions it approves. This module ranks; the learner averages the best
(see `Learner.reference`). Counting is limited to the walk window (heights >= min_height), so a round
costs the same however long the tangle is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from peer.tangle.dag import Tangle


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
    confidence: Counter[str] = Counter()
    for tip, times in sampled.items():
        for tx_id in tangle.past_cone(tip, min_height=min_height):
            if tx_id != tip:
                confidence[tx_id] += times
    # approved counts only matter for transactions some sampled tip approves
    scores = {
        tx_id: (count / sampling_rounds) * len(tangle.past_cone(tx_id, min_height=min_height))
        for tx_id, count in confidence.items()
    }
    # ties fall to the newer transaction (larger height), then the id, so every peer picks the same one
    ranked = sorted(scores, key=lambda t: (-scores[t], -tangle.height(t), t))
    return ranked if top_k is None else ranked[:top_k]
