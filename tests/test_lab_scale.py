"""The lab at scale: one tangle and one weights store per worker, weights out of every window evicted, the
shared-bitset reference ranking equal to its definition (past cones counted one by one), and only the round's
active peers evaluated (every peer in the last round) without changing the run."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest

from peer.backends.base import BlockNotFound
from peer.config import LabSettings, parse
from peer.lab.runner import LabResult, run_lab
from peer.lab.worker import LabWorker
from peer.tangle.consensus import reference_transactions
from peer.tangle.dag import Tangle
from peer.tangle.transaction import Transaction


def tx(name: str, *parents: str) -> Transaction:
    return Transaction(id=name, parents=parents, weights=f"w-{name}", model="m", author="a", created=0)


def ranked_by_definition(tangle: Tangle, tips: list[str], min_height: int) -> list[str]:
    """Schmid et al.'s score straight from past cones, as the reference ranking is defined."""
    confidence: Counter[str] = Counter()
    for tip, times in Counter(tips).items():
        for tx_id in tangle.past_cone(tip, min_height=min_height) - {tip}:
            confidence[tx_id] += times
    scores = {
        t: (c / len(tips)) * len(tangle.past_cone(t, min_height=min_height)) for t, c in confidence.items()
    }
    return sorted(scores, key=lambda t: (-scores[t], -tangle.height(t), t))


def test_reference_ranking_equals_its_definition_on_wide_tangles() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        tangle = Tangle(tx("g"), weight_horizon=None)
        width, serial = int(rng.integers(1, 40)), 0
        for _round in range(int(rng.integers(1, 25))):
            tips = tangle.tips
            new = []
            for _peer in range(width):
                parents = rng.choice(tips, size=min(len(tips), int(rng.integers(1, 4))), replace=False)
                new.append(tx(f"t{serial}", *sorted(parents)))
                serial += 1
            tangle.add_many(new)
        everything = [t.id for t in tangle]
        for min_height in (0, max(0, tangle.max_height - 5)):
            sampled = [str(t) for t in rng.choice(everything, size=35)]
            walk = iter(sampled).__next__
            ranked = reference_transactions(
                tangle, walk, sampling_rounds=35, top_k=None, min_height=min_height
            )
            assert ranked == ranked_by_definition(tangle, sampled, min_height)


def test_one_store_per_worker_and_weights_leave_it_with_every_window() -> None:
    depth = 3  # walks start at most 3 heights below the highest tip
    settings = parse(
        LabSettings, env=False, peers=3, rounds=8, workers=1, model="softmax", baseline="none",
        particle_depth_min=1, particle_depth_max=depth, progress=False,
    )  # fmt: skip
    worker = LabWorker(settings, [0, 1, 2])
    try:
        for round_index in range(1, 9):
            _results, blocks, announcements = worker.train(round_index, [0, 1, 2])
            worker.deliver(blocks, announcements)
            worker.evaluate(round_index)
        assert worker.shared is not None
        tangle = worker.shared.guard.tangle
        assert all(peer.tangle is tangle for peer in worker.peers.values())
        assert all(peer.weights is worker.shared.weights for peer in worker.peers.values())
        floor = tangle.max_height - depth
        assert floor > 1, "the tangle grew past the window"
        window = {tangle.get(t).weights for t in tangle.window(depth)} | {tangle.genesis.weights}
        below = {tangle.get(t).weights for h in range(1, floor) for t in tangle.at_height(h)} - window
        assert below, "some weights fell out of every window"
        limit = worker.shared.max_weights_bytes
        for weights_id in below:
            with pytest.raises(BlockNotFound):
                worker.storage.read(weights_id, max_bytes=limit)
            assert not worker.shared.weights.holds(weights_id)
        for weights_id in window:
            assert worker.storage.read(weights_id, max_bytes=limit)
        # the transactions themselves stay (a late joiner rebuilds the tangle from them)
        assert all(worker.storage.read(t.id, max_bytes=10_000) for t in tangle)
    finally:
        worker.close()


def test_only_active_peers_are_evaluated_until_the_last_round_and_the_run_is_the_same() -> None:
    def run(evaluate_peers: str) -> LabResult:
        settings = parse(
            LabSettings, env=False, peers=6, rounds=4, workers=1, model="softmax", baseline="none",
            active_quota=0.5, evaluate_peers=evaluate_peers, progress=False,
        )  # fmt: skip
        return run_lab(settings)

    active, every = run("active"), run("all")
    evaluated = {r: {p.peer for p in active.peer_rounds if p.round == r} for r in range(1, 5)}
    assert all(len(evaluated[r]) == active.rounds[r - 1].active for r in range(1, 4))
    assert any(len(evaluated[r]) < 6 for r in range(1, 4)), "some round had inactive peers"
    assert len(evaluated[4]) == 6
    assert all(len([p for p in every.peer_rounds if p.round == r]) == 6 for r in range(1, 5))
    # evaluating fewer peers changes what is measured, not what is learned
    assert active.tangle == every.tangle
    assert asdict(active.rounds[-1]) == asdict(every.rounds[-1])
    mine = {(p.round, p.peer): p for p in active.peer_rounds}
    assert all(mine.get((p.round, p.peer), p) == p for p in every.peer_rounds)
