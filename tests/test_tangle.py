"""The tangle, its walks and the reference, on hand-built tangles whose answers are known."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from peer.tangle.consensus import reference_transactions
from peer.tangle.dag import MissingParents, Tangle, TangleError
from peer.tangle.tip_selection import NoUsableTips, TipSelector, WalkConfig
from peer.tangle.transaction import Transaction


def tx(name: str, *parents: str) -> Transaction:
    return Transaction(id=name, parents=parents, weights=f"w-{name}", model="m", author="a", created=0)


def diamond() -> Tangle:
    """G <- A, G <- B, (A, B) <- C, B <- D."""
    tangle = Tangle(tx("G"), weight_horizon=None)
    tangle.add_many([tx("A", "G"), tx("B", "G"), tx("C", "A", "B"), tx("D", "B")])
    return tangle


def test_diamond_structure() -> None:
    tangle = diamond()
    assert tangle.tips == ["C", "D"]
    assert [tangle.height(t) for t in "GABCD"] == [0, 1, 1, 2, 2]
    assert [tangle.cumulative_weight(t) for t in "GABCD"] == [5, 2, 3, 1, 1]
    assert tangle.approvers("B") == ["C", "D"]
    assert tangle.past_cone("C") == {"C", "A", "B", "G"}
    assert tangle.past_cone("C", min_height=1) == {"C", "A", "B"}
    assert tangle.future_cone("B") == {"B", "C", "D"}
    assert tangle.depth("G") == 2
    assert [t.id for t in tangle] == list("GABCD")


def test_insertion_requires_the_whole_past() -> None:
    tangle = diamond()
    with pytest.raises(MissingParents) as error:
        tangle.add(tx("E", "C", "X"))
    assert error.value.missing == ["X"]
    assert "E" not in tangle
    assert tangle.add(tx("C", "A", "B")) is False  # a duplicate is ignored
    with pytest.raises(TangleError):
        tangle.add(tx("H"))  # a second genesis


def random_dag(rng: np.random.Generator, size: int) -> list[Transaction]:
    txs = [tx("0")]
    for i in range(1, size):
        # parents among the recent ones, like a real tangle
        low = max(0, i - 8)
        count = int(rng.integers(1, 3))
        parents = {str(int(rng.integers(low, i))) for _ in range(count)}
        txs.append(tx(str(i), *sorted(parents)))
    return txs


def test_weights_equal_future_cones_within_the_horizon() -> None:
    rng = np.random.default_rng(1)
    txs = random_dag(rng, 300)
    exact = Tangle(txs[0], weight_horizon=None)
    bounded = Tangle(txs[0], weight_horizon=12)
    for i, t in enumerate(txs[1:], start=1):
        exact.add(t)
        bounded.add(t)
        if i % 37 == 0:  # read while the tangle grows: nothing read before a change may be served after it
            assert [bounded.cumulative_weight(u.id) for u in txs[: i + 1]] == [
                _limited_weight(bounded, u.id) for u in txs[: i + 1]
            ]
    for t in txs:
        assert exact.cumulative_weight(t.id) == len(exact.future_cone(t.id))
    # within the horizon below the top, bounded weights are exact: all that a walk from a particle reads
    for t in bounded.window(12):
        assert bounded.cumulative_weight(t) == len(bounded.future_cone(t))
    assert any(bounded.cumulative_weight(t.id) < exact.cumulative_weight(t.id) for t in txs)
    # deeper, they count the approvers at most 12 heights above (what a walk back from genesis reads)
    assert [bounded.cumulative_weight(t.id) for t in txs] == [_limited_weight(bounded, t.id) for t in txs]


def _limited_weight(tangle: Tangle, tx_id: str) -> int:
    """The definition: 1 + the approvers, direct or indirect, at most weight_horizon heights above."""
    assert tangle.weight_horizon is not None
    limit = tangle.height(tx_id) + tangle.weight_horizon
    return sum(1 for t in tangle.future_cone(tx_id) if tangle.height(t) <= limit)


def test_a_chain_of_100000_transactions_never_recurses() -> None:
    tangle = Tangle(tx("0"), weight_horizon=42)
    for i in range(1, 100_000):
        tangle.add(tx(str(i), str(i - 1)))
    assert tangle.tips == ["99999"]
    assert tangle.max_height == 99_999
    assert tangle.cumulative_weight("99989") == 11
    assert len(tangle.past_cone("99999")) == 100_000  # iterative, so no RecursionError
    selector = TipSelector(tangle, WalkConfig(), np.random.default_rng(0))
    assert selector.walk() == "99999"
    ids = reference_transactions(
        tangle, selector.walk, sampling_rounds=5, top_k=1, min_height=tangle.max_height - 20
    )
    assert ids == ["99998"]


def test_weights_left_window_are_those_below_the_floor_no_window_transaction_shares() -> None:
    tangle = Tangle(tx("G"), weight_horizon=None)
    shared = Transaction(id="S", parents=("G",), weights="w-9", model="m", author="a", created=0)
    tangle.add_many([tx("1", "G"), shared, *(tx(str(n), str(n - 1)) for n in range(2, 10))])
    # heights 1..9; a window of depth 3 holds heights 6..9, whose "9" shares its weights with "S"
    floor, gone = tangle.weights_left_window(3, 0)
    assert floor == 6
    assert gone == ["w-1", "w-2", "w-3", "w-4", "w-5"]  # not the genesis's, not the shared "w-9"
    assert tangle.weights_left_window(3, floor) == (6, [])  # nothing new below the floor
    tangle.add(tx("10", "9"))
    assert tangle.weights_left_window(3, floor) == (7, ["w-6"])


def test_weighted_walk_follows_weight_with_large_alpha() -> None:
    tangle = diamond()
    selector = TipSelector(tangle, WalkConfig(alpha=100.0, entry="genesis"), np.random.default_rng(0))
    ends = Counter(selector.walk() for _ in range(200))
    # G -> B always (weight 3 against 2); B -> C or D evenly
    assert set(ends) == {"C", "D"}
    assert 60 < ends["D"] < 140


def test_uniform_walk_probabilities() -> None:
    tangle = diamond()
    selector = TipSelector(tangle, WalkConfig(alpha=0.0, entry="genesis"), np.random.default_rng(0))
    ends = Counter(selector.walk() for _ in range(4000))
    # P(C) = P(G->A) + P(G->B) P(B->C) = 0.75
    assert ends["C"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_accuracy_walk_prefers_accurate_models() -> None:
    tangle = diamond()
    accuracy = {"A": 0.9, "B": 0.1, "C": 0.5, "D": 0.95}
    config = WalkConfig(kind="accuracy", accuracy_alpha=50.0, entry="genesis")
    selector = TipSelector(tangle, config, np.random.default_rng(0), accuracy=accuracy.__getitem__)
    ends = Counter(selector.walk() for _ in range(100))
    assert ends["C"] > 95  # G -> A (0.9 beats 0.1), then A's only approver C
    with pytest.raises(ValueError, match="accuracy function"):
        TipSelector(tangle, config, np.random.default_rng(0))


def test_unusable_tips_are_walked_around() -> None:
    tangle = diamond()
    selector = TipSelector(
        tangle, WalkConfig(alpha=0.0, entry="genesis"), np.random.default_rng(0), usable=lambda t: t != "C"
    )
    ends = Counter(selector.walk() for _ in range(200))
    # C is excluded, so A (whose only approver is C) becomes an end; D stays one
    assert set(ends) == {"A", "D"}
    config = WalkConfig(entry="genesis")
    nothing = TipSelector(tangle, config, np.random.default_rng(0), usable=lambda t: False)
    with pytest.raises(NoUsableTips):
        nothing.walk()


def test_particles_start_inside_the_window() -> None:
    tangle = Tangle(tx("0"), weight_horizon=None)
    for i in range(1, 101):
        tangle.add(tx(str(i), str(i - 1)))
    selector = TipSelector(
        tangle, WalkConfig(particle_depth_min=10, particle_depth_max=20), np.random.default_rng(0)
    )
    heights = {tangle.height(selector.entry_point()) for _ in range(300)}
    assert heights == set(range(80, 91))
    young = Tangle(tx("0"))
    young.add(tx("1", "0"))
    assert TipSelector(young, WalkConfig(), np.random.default_rng(0)).entry_point() == "0"


def test_select_keeps_distinct_lowest_loss_tips() -> None:
    tangle = diamond()
    tangle.add(tx("E", "A"))
    selector = TipSelector(tangle, WalkConfig(alpha=0.0, entry="genesis"), np.random.default_rng(3))
    loss = {"C": 0.5, "D": 0.1, "E": 0.3}
    tips = selector.select(2, sample_size=12, loss=loss.__getitem__)
    assert tips == ["D", "E"]
    assert len(set(selector.select(2))) == len(selector.select(2))


def test_reference_scores_confidence_times_approved_count() -> None:
    tangle = diamond()
    samples = itertools.cycle(["C", "C", "D"])
    ranked = reference_transactions(tangle, lambda: next(samples), sampling_rounds=3, top_k=None)
    # confidence (excluding the sampled tip itself): G 1, B 1, A 2/3; approved count: G 1, A 2, B 2
    assert ranked == ["B", "A", "G"]
    assert reference_transactions(tangle, lambda: "D", sampling_rounds=4, top_k=1) == ["B"]
    with pytest.raises(ValueError, match="at least 1"):
        reference_transactions(tangle, lambda: "D", sampling_rounds=0)
    # a tip sampled more often than a byte counts (NUM_OF_SAMPLING_ROUND above 255) scores the same way
    many = itertools.cycle(["C", "C", "D"])
    assert reference_transactions(tangle, lambda: next(many), sampling_rounds=3000, top_k=None) == ranked
