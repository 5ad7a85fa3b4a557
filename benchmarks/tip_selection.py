"""One training round's tip selection plus reference selection, window mode against the 2020 prototype's way.

Window mode is the product code: walks from particles 10-20 heights below the tips, cumulative weights
computed once per tangle state for the heights walks read, the reference counted inside the window. Naive
mode is the prototype's: every cumulative weight recomputed from scratch from genesis each round (a
future-cone search per transaction), walks from genesis, confidence and approved counts over the whole
tangle. Both run here, in the same process, on the
same tangles; the naive mode gets a time budget per size and is reported as null past it.

    python benchmarks/tip_selection.py [--sizes 1000 10000 100000] [--naive-budget 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from peer.config import LearningSettings
from peer.tangle.consensus import reference_transactions
from peer.tangle.dag import Tangle
from peer.tangle.tip_selection import TipSelector
from peer.tangle.transaction import Transaction

PEERS_PER_ROUND = 10


class OverBudget(Exception):
    pass


def build(size: int, settings: LearningSettings, seed: int = 0) -> Tangle:
    """A tangle shaped like a lab's: PEERS_PER_ROUND transactions a round, each approving 2 recent tips."""
    rng = np.random.default_rng(seed)
    tangle = Tangle(_tx("g"), weight_horizon=settings.weight_horizon)
    previous = ["g"]
    count = 1
    while count < size:
        layer = []
        for _ in range(min(PEERS_PER_ROUND, size - count)):
            parents = sorted({previous[int(rng.integers(len(previous)))] for _ in range(2)})
            name = f"t{count}"
            tangle.add(_tx(name, *parents))
            layer.append(name)
            count += 1
        previous = layer
    return tangle


def window_round(tangle: Tangle, settings: LearningSettings, rng: np.random.Generator) -> None:
    selector = TipSelector(tangle, settings.walk_config(), rng)
    min_height = max(0, tangle.max_height - settings.particle_depth_max)
    reference_transactions(
        tangle,
        selector.walk,
        sampling_rounds=settings.num_of_sampling_round,
        top_k=settings.reference_candidates,
        min_height=min_height,
    )
    selector.select(settings.num_of_tips)


def naive_round(
    tangle: Tangle, settings: LearningSettings, rng: np.random.Generator, deadline: float
) -> None:
    """The prototype's round: ratings from scratch, walks from genesis, whole-tangle consensus."""
    ids = [t.id for t in tangle]
    weights = {}
    for tx_id in ids:
        weights[tx_id] = len(_cone(tangle.approvers, tx_id, deadline))
    alpha = settings.alpha

    def walk() -> str:
        current = tangle.genesis.id
        while approvers := tangle.approvers(current):
            w = np.array([weights[a] for a in approvers], dtype=np.float64)
            p = np.exp(alpha * (w - w.max()))
            current = approvers[int(rng.choice(len(approvers), p=p / p.sum()))]
        return current

    sampled = Counter(walk() for _ in range(settings.num_of_sampling_round))
    confidence: Counter[str] = Counter()
    for tip, times in sampled.items():
        for tx_id in _cone(lambda t: tangle.get(t).parents, tip, deadline):
            confidence[tx_id] += times
    scores = {t: c * len(_cone(lambda x: tangle.get(x).parents, t, deadline)) for t, c in confidence.items()}
    sorted(scores, key=scores.__getitem__, reverse=True)[: settings.reference_top_k]
    [walk() for _ in range(settings.num_of_tips)]


def _cone(neighbours: Callable[[str], object], start: str, deadline: float) -> set[str]:
    if time.perf_counter() > deadline:
        raise OverBudget
    seen = {start}
    stack = [start]
    while stack:
        for nxt in neighbours(stack.pop()):  # type: ignore[attr-defined]
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _tx(name: str, *parents: str) -> Transaction:
    return Transaction(id=name, parents=parents, weights=name, model="m", author="a", created=0)


def measure(fn: Callable[[], None], repeats: int) -> float:
    """Median seconds of `repeats` calls (medians resist the noise of a shared machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_interleaved(fns: list[Callable[[], None]], repeats: int) -> list[float]:
    """Median seconds of each function, called in turn (1e3, 1e5, 1e3, 1e5, ...) so that load from other
    processes falls on every size alike; one size measured after the other let a busy spell inflate the
    ratio between them (1.13 on a quiet machine, 3.17 on a busy one)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--naive-budget", type=float, default=300.0, help="seconds for one naive round")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    settings = LearningSettings()
    results = []
    tangles, builds = [], []
    for size in args.sizes:
        started = time.perf_counter()
        tangles.append(build(size, settings))
        builds.append(time.perf_counter() - started)
    rngs = [np.random.default_rng(1) for _ in tangles]
    windows = measure_interleaved(
        [lambda t=t, r=r: window_round(t, settings, r) for t, r in zip(tangles, rngs, strict=True)],
        args.repeats,
    )
    for size, tangle, rng, window, built in zip(args.sizes, tangles, rngs, windows, builds, strict=True):
        naive: float | None
        note = ""
        try:
            deadline = time.perf_counter() + args.naive_budget
            naive = measure(lambda t=tangle, r=rng, d=deadline: naive_round(t, settings, r, d), 1)
        except OverBudget:
            naive, note = None, f"naive mode timed out after {args.naive_budget:.0f} s"
        row = {
            "transactions": size,
            "window_seconds": window,
            "naive_seconds": naive,
            "speedup": None if naive is None else naive / window,
            "build_seconds": built,
        }
        if note:
            row["note"] = note
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    small, large = results[0]["window_seconds"], results[-1]["window_seconds"]
    print(
        json.dumps(
            {
                "results": results,
                "window_cost_ratio_largest_to_smallest": large / small,
                "settings": {
                    "num_of_tips": settings.num_of_tips,
                    "num_of_sampling_round": settings.num_of_sampling_round,
                    "particle_depth": [settings.particle_depth_min, settings.particle_depth_max],
                    "weight_horizon": settings.weight_horizon,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
