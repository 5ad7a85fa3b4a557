"""A late joiner on real kubo rebuilds a tangle of a few hundred transactions, and its tangle equals the
others' (every id, so the count too).

Three `tangle peer` processes publish quickly (the fake model, small, every 0.2 s) until an observer peer
(which never trains) holds TARGET transactions; then they stop, and the tangle stands still. A fresh node
and peer join: nothing is replayed to them, they learn the observer's tips from its periodic
re-announcements and walk back to the genesis through `block/get` on their own kubo node (bitswap from the
others), every block verified by hash. A kubo soak found walks that each fetched the whole past again;
`tests/test_peer_node.py` counts the fetches, this test shows the rebuild on the real network.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from .peers import PeerProcess, peers_stopped, running_testnet, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

TARGET = 250
PEERS = 5  # three producers, the observer, the late joiner
QUICK = {
    "MODEL": "fake",
    "FAKE_PARAMS": "2000",
    "TRAINING_INTERVAL": "0.2",
    "PUBLISH_RULE": "always",
    "PEERS": str(PEERS),
    "LOGGING_LEVEL": "warning",
}
STILL = {**QUICK, "TRAINING_INTERVAL": "3600"}  # never trains within the test: its tangle only receives


def _ids(peer: PeerProcess) -> set[str]:
    return set(peer.transactions())


def test_a_late_joiner_rebuilds_hundreds_of_transactions_and_equals_the_others(tmp_path: Path) -> None:
    with running_testnet(tmp_path / "ipfs", PEERS) as net:
        peers: list[PeerProcess] = []

        def peer(index: int, env: dict[str, str]) -> PeerProcess:
            process = PeerProcess(
                tmp_path / f"peer-{index}",
                {"IPFS_API": net[index].api_url, "PEER_INDEX": str(index), **env},
                name=f"peer-{index}",
            )
            peers.append(process)
            return process.start()

        with peers_stopped(peers):
            observer = peer(3, STILL)
            producers = [peer(i, QUICK) for i in range(3)]
            for process in [observer, *producers]:
                process.wait_ready()
            wait_for(f"{TARGET} transactions", lambda: len(_ids(observer)) >= TARGET, timeout=600, interval=2)
            produced = _ids(producers[0])
            for process in producers:  # SIGTERM: a last round publishes, the tips are announced once more
                process.stop()
            wait_for("the observer to hold what was produced", lambda: produced <= _ids(observer), timeout=60)
            seen: list[set[str]] = [set()]

            def standing_still() -> set[str] | None:
                now = _ids(observer)
                same = now == seen[0]
                seen[0] = now
                return now if same else None

            tangle = wait_for("the tangle to stand still", standing_still, timeout=60, interval=3)
            assert len(tangle) > TARGET

            started = time.monotonic()
            late = peer(4, STILL)
            late.wait_ready()
            # nothing is replayed: it learns the tips from the observer's re-announcements and walks back
            wait_for(
                "the late joiner's tangle to equal the observer's",
                lambda: _ids(late) == tangle,
                timeout=300,
                interval=1,
            )
            log.info("late joiner rebuilt %d transactions in %.1f s", len(tangle), time.monotonic() - started)
            info = late.info()
            assert info["transactions"] == len(tangle) == observer.info()["transactions"]
            assert info["unresolved"] == 0
            assert info["rejected"] == {}
            assert _ids(observer) == tangle  # and the observer still holds exactly that
