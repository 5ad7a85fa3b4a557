"""The visualizer's copy of a tangle: cones (iterative), authors, odd input, the timeless genesis."""

from __future__ import annotations

from viz_helpers import tangle_nodes
from viz_synthetic import lab_like_tangle

from peer.api.transactions import transactions_document
from visualizer.graph import TangleGraph


def test_cones_match_the_peer_tangle() -> None:
    tangle = lab_like_tangle(500, peers=6, seed=4)
    graph = TangleGraph()
    graph.add_many(transactions_document(tangle, peer="x").nodes)
    for node in graph.nodes[::37]:
        past = {graph.nodes[i].name for i in graph.past_cone([node.index])}
        future = {graph.nodes[i].name for i in graph.future_cone([node.index])}
        assert past == tangle.past_cone(node.name)
        assert future == tangle.future_cone(node.name)


def test_cones_of_a_deep_chain_do_not_recurse() -> None:
    graph = TangleGraph()
    graph.add({"name": "g", "parents": [], "peer": "genesis", "height": 0})
    for i in range(1, 30_000):  # far deeper than Python's recursion limit
        graph.add({"name": f"n{i}", "parents": [f"n{i - 1}" if i > 1 else "g"], "peer": "a", "height": i})
    assert len(graph.past_cone([len(graph) - 1])) == 30_000
    assert len(graph.future_cone([0])) == 30_000


def test_duplicates_missing_parents_and_bad_numbers() -> None:
    graph = TangleGraph()
    assert graph.add({"name": "g", "parents": [], "peer": "genesis", "height": 0}) is not None
    assert graph.add({"name": "g", "parents": [], "peer": "genesis", "height": 0}) is None
    node = graph.add({"name": "a", "parents": ["g", "unknown"], "peer": "p", "height": 1, "accuracy": "nan"})
    assert node is not None
    assert node.parents == (0,)
    assert node.accuracy is None
    assert graph.authors == {"genesis": 0, "p": 1}
    assert graph.depth == 1


def test_a_genesis_created_at_zero_is_drawn_before_its_first_child_on_the_clock() -> None:
    graph = TangleGraph()
    graph.add({"name": "g", "parents": [], "peer": "genesis", "timeCreated": 0})
    graph.add({"name": "a", "parents": ["g"], "peer": "p", "timeCreated": 1_800_000_000.0, "height": 1})
    assert graph.genesis_moved
    assert graph.nodes[0].wall == 1_800_000_000.0 - 1
    lab = TangleGraph()  # the lab's clock counts rounds: nothing to move
    lab.add_many(tangle_nodes(20))
    assert not lab.genesis_moved
    assert lab.nodes[0].wall == 0
