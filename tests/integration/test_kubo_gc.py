"""kubo's own garbage collection (`ipfs daemon --enable-gc`) against the peers' pinning window: kubo collects
the weights that left every window, keeps every transaction block and every weight a walk can reach, and the
peers go on training and publishing without a failed fetch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from peer.ipfs.client import IpfsClient

from .peers import PeerProcess, peers_stopped, run, running_testnet, wait_for

pytestmark = pytest.mark.integration

# GC every second once the repo passes 90% of 1 MB: a fresh repo is well under it, ~25 MLP models above it
GC = {"Datastore.GCPeriod": "1s", "Datastore.StorageMax": "1MB"}
# walks start at most 2 heights below the tips, so the default window pins 4: old weights soon leave it
SHALLOW = {"PARTICLE_DEPTH_MIN": "1", "PARTICLE_DEPTH_MAX": "2", "TRAINING_INTERVAL": "1", "PEERS": "2"}


def _failed_cats(peer: PeerProcess) -> float:
    text = peer.get("/metrics")
    pattern = r'^learning_tangle_ipfs_request_errors_total\{[^}]*operation="cat"[^}]*\} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.M))


async def _held(api: str, cid: str) -> bool:
    async with IpfsClient(api, timeout=5) as client:
        return await client.has_block(cid)


def test_kubo_gc_collects_what_left_the_window_and_the_peers_go_on(tmp_path: Path) -> None:
    with running_testnet(tmp_path / "ipfs", 2, enable_gc=True, config=GC) as net:
        peers = [
            PeerProcess(tmp_path / f"p{i}", {**SHALLOW, "IPFS_API": net[i].api_url, "PEER_INDEX": str(i)})
            for i in range(2)
        ]
        with peers_stopped(peers):
            for peer in peers:
                peer.start().wait_ready()
            first = wait_for(
                "a first published transaction",
                lambda: next((t for t in peers[0].transactions().values() if t["peer"] != "genesis"), None),
                timeout=60,
            )
            apis = [node.api_url for node in net]
            # kubo's periodic GC, not ours: nothing here calls repo/gc
            wait_for(
                "kubo to collect the first model's weights on both nodes",
                lambda: not any(run(_held(api, first["weights"])) for api in apis),
                timeout=120,
                interval=1,
            )
            assert all(run(_held(api, first["name"])) for api in apis)  # transaction blocks stay pinned
            published = [p.info()["published"] for p in peers]
            wait_for(
                "both peers to publish three more after the GC",
                lambda: all(p.info()["published"] >= n + 3 for p, n in zip(peers, published, strict=True)),
                timeout=60,
            )
            for peer in peers:
                info = peer.info()
                assert info["lastRound"]["error"] is None, info["lastRound"]
                assert info["unusableWeights"] == {}
                assert _failed_cats(peer) == 0  # no walk reached weights that GC had removed
