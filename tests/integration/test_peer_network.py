"""`tangle peer` processes on a real kubo testnet: convergence, a late joiner, SIGKILL and restart, a
publisher's node going away, SIGTERM.

One testnet of four nodes and three peers serves the whole module (each start costs about 20 s on two
cores). Every test starts on the whole network: what an earlier test stopped (a node, a peer) is started again
before the next one, and what a test claims is measured against the state it began with, so the tests pass in
any order and alone.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.ipfs.testnet import IpfsTestnet

from .peers import PeerProcess, peers_stopped, run, running_testnet, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Network:
    def __init__(self, net: IpfsTestnet, directory: Path) -> None:
        self.net = net
        self.directory = directory
        self.peers: list[PeerProcess] = []
        self.first_accuracy: list[float] = []  # the first reference accuracies, when the network started

    def peer(self, index: int, node: int, **env: str) -> PeerProcess:
        peer = PeerProcess(
            self.directory / f"peer-{index}",
            {"IPFS_API": self.net[node].api_url, "PEER_INDEX": str(index), **env},
            name=f"peer-{index}",
        )
        self.peers.append(peer)
        return peer

    def restore(self) -> None:
        """Every node and every peer running again (a test may have stopped some), each peer ready."""
        for index in range(len(self.net.nodes)):
            run(self.net.start(index))  # a no-op for a running node
        for peer in self.peers:
            if not peer.alive():
                peer.start()
        for peer in self.peers:
            peer.wait_ready()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    directory = tmp_path_factory.mktemp("peer-network")
    with running_testnet(directory / "ipfs", 4) as net:
        network = Network(net, directory)
        with peers_stopped(network.peers):
            for i in range(3):
                network.peer(i, i).start()
            for peer in network.peers:
                peer.wait_ready()
            network.first_accuracy = wait_for(
                "a first reference accuracy", lambda: _reference_accuracies(network.peers), timeout=60
            )
            yield network


@pytest.fixture(autouse=True)
def _whole_network(network: Network) -> None:
    network.restore()


def _ids(peer: PeerProcess) -> set[str]:
    return set(peer.transactions())


def _published(peer: PeerProcess) -> int:
    return int(peer.info()["published"])


def _reference_accuracies(peers: list[PeerProcess]) -> list[float] | None:
    """Every peer's reference accuracy once each has published (None before)."""
    return [p.info()["referenceAccuracy"] for p in peers] if all(_published(p) for p in peers) else None


def _all_contain(peers: list[PeerProcess], wanted: set[str]) -> bool:
    return all(wanted <= _ids(p) for p in peers)


def test_three_peers_converge_and_reference_accuracy_rises(network: Network) -> None:
    peers = network.peers[:3]
    reconnects = [p.info()["pubsub"]["reconnects"] for p in peers]
    published = [_published(p) for p in peers]
    wait_for(
        "six published transactions per peer",
        lambda: all(_published(p) >= max(6, n + 3) for p, n in zip(peers, published, strict=True)),
        timeout=120,
    )
    # every transaction any peer has reaches every other peer (training goes on meanwhile)
    union = set().union(*(_ids(p) for p in peers))
    wait_for("the three tangles to converge", lambda: _all_contain(peers, union), timeout=30)
    for peer in peers:
        nodes = peer.transactions()
        authors = {n["peer"] for n in nodes.values()} - {"genesis"}
        # the author is the node's libp2p peer id (a late peer's node too, when that test ran before)
        assert {network.net[i].peer_id for i in range(3)} <= authors, authors
        assert authors <= {node.peer_id for node in network.net.nodes}, authors
    for peer, before in zip(peers, reconnects, strict=True):
        info = peer.info()
        assert info["rejected"] == {}
        assert info["unresolved"] == 0
        assert info["pubsub"] == {"connected": True, "reconnects": before}
    first, later = network.first_accuracy, [p.info()["referenceAccuracy"] for p in peers]
    assert min(later) > 0.5, later
    assert sum(later) / 3 > sum(first) / 3 + 0.3, (first, later)


def test_a_late_peer_rebuilds_the_whole_tangle(network: Network) -> None:
    before = _ids(network.peers[0])
    late = network.peer(3, 3).start()
    late.wait_ready()
    # nothing is replayed to it: it learns the tips from the periodic re-announcements and walks back
    wait_for("the late peer to hold the whole tangle", lambda: before <= _ids(late), timeout=60)
    assert late.info()["unresolved"] == 0
    wait_for("the late peer to publish", lambda: _published(late) >= 1, timeout=60)


def test_sigkill_and_restart_catches_up_while_the_others_train(network: Network) -> None:
    victim, others = network.peers[1], [network.peers[0], network.peers[2]]
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    published = [_published(p) for p in others]
    wait_for(
        "the others to keep publishing",
        lambda: all(_published(p) > n + 1 for p, n in zip(others, published, strict=True)),
        timeout=60,
    )
    victim.start()  # same node, same HTTP port, an empty tangle in memory
    victim.wait_ready()
    snapshot = _ids(others[0])
    # it walks the whole tangle back from announced tips: minutes on a loaded machine, not seconds
    wait_for("the restarted peer to catch up", lambda: snapshot <= _ids(victim), timeout=180)
    wait_for("the restarted peer to publish again", lambda: _published(victim) >= 1, timeout=60)


def test_peers_keep_publishing_when_a_publishers_node_stops(network: Network) -> None:
    publisher = network.peers[2]
    others = [p for p in network.peers if p is not publisher]  # with the late peer, if its test ran before
    reconnects = publisher.info()["pubsub"]["reconnects"]
    authored = {tx for tx, node in publisher.transactions().items() if node["peer"] == network.net[2].peer_id}
    wait_for("the publisher's transactions everywhere", lambda: _all_contain(others, authored), timeout=90)
    # GC on every node but the publisher's: the pinning window must keep what walks reach
    run(_collect_garbage(network.net, [0, 1, 3]))
    run(network.net.stop(2))  # the publisher's node goes away; the peer process stays
    published = [_published(p) for p in others]
    wait_for(
        "the others to publish without the stopped node",
        lambda: all(_published(p) >= n + 3 for p, n in zip(others, published, strict=True)),
        timeout=90,
    )
    for peer in others:
        info = peer.info()
        assert info["pinnedWeights"] > 0
        assert info["lastRound"]["error"] is None, info["lastRound"]
    # the orphaned peer says so, keeps trying, and resubscribes once its node is back
    health = wait_for(
        "the orphan's /healthz to fail",
        lambda: (h := publisher.get("/healthz"))["ok"] is False and h,
        timeout=30,
    )
    assert health["pubsub"]["connected"] is False
    assert health["pubsub"]["lastError"]
    run(network.net.start(2))
    health = wait_for(
        "the orphan to resubscribe", lambda: (h := publisher.get("/healthz"))["ok"] and h, timeout=60
    )
    assert health["pubsub"]["reconnects"] > reconnects
    assert publisher.alive()
    metrics = publisher.get("/metrics")
    assert "learning_tangle_pubsub_reconnects_total" in metrics


async def _collect_garbage(net: IpfsTestnet, nodes: list[int]) -> None:
    for index in nodes:
        async with net[index].client() as client:
            await client.repo_gc()


def test_sigterm_loses_no_published_transaction(network: Network) -> None:
    leaving, staying = network.peers[0], network.peers[1]
    wait_for("a first publication", lambda: leaving.info()["published"] > 0, timeout=60)
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(60) == 0
    out = leaving.output()
    assert "stopped:" in out
    published = [
        line.split("published ")[1].split()[0] for line in out.splitlines() if "published baf" in line
    ]
    assert published
    wait_for("its last transaction at the other peers", lambda: published[-1] in _ids(staying), timeout=30)
