"""Lab-like tangles built in a second from the real `peer.tangle` classes, for tests and benchmarks.

Each round every peer approves `tips` transactions drawn from the tips at the round's start, as peers of a
synchronous lab round do; no model is trained, accuracies are made up. `SyntheticApi` serves such a tangle
through the real peer HTTP API (`peer.api.app.create_app`) and can grow it while it is watched.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from peer.api.app import resolve_peer
from peer.api.schema import Health, LabPeerInfo, TransactionsDocument
from peer.api.transactions import transactions_document
from peer.tangle.dag import Tangle
from peer.tangle.transaction import CODEC_DAG_CBOR, CODEC_RAW, Transaction, cid_for


def _transaction(
    tag: str, parents: tuple[str, ...], author: str, created: float, accuracy: float
) -> Transaction:
    return Transaction(
        id=cid_for(f"tx {tag}".encode(), CODEC_DAG_CBOR),
        parents=parents,
        weights=cid_for(f"weights {tag}".encode(), CODEC_RAW),
        model="synthetic",
        author=author,
        created=created,
        metrics={"accuracy": accuracy, "loss": 1 - accuracy},
    )


class LabLikeTangle:
    def __init__(self, *, peers: int = 10, tips: int = 2, seed: int = 0, start_time: float = 0.0) -> None:
        self.peers = peers
        self.tips = tips
        self.seed = seed
        self.start_time = start_time
        self.rng = np.random.default_rng(seed)
        self.round = 0
        self.tangle = Tangle(_transaction(f"genesis {seed}", (), "genesis", 0.0, 0.1), weight_horizon=8)

    def grow(self, count: int) -> None:
        """Add `count` transactions, whole rounds of `peers` transactions except perhaps the last."""
        target = len(self.tangle) + count
        while len(self.tangle) < target:
            self.round += 1
            current = self.tangle.tips
            for peer in range(min(self.peers, target - len(self.tangle))):
                picks = self.rng.choice(len(current), size=min(self.tips, len(current)), replace=False)
                accuracy = 0.1 + 0.9 * (1 - np.exp(-self.round / 20)) + self.rng.normal(0, 0.03)
                self.tangle.add(
                    _transaction(
                        f"{self.seed}-{self.round}-{peer}",
                        tuple(current[i] for i in picks),
                        f"peer-{peer:03d}",
                        self.start_time + self.round,
                        float(np.clip(accuracy, 0.0, 1.0)),
                    )
                )


def lab_like_tangle(transactions: int, **kwargs: Any) -> Tangle:
    """About `transactions` transactions (genesis included); created = start_time + round."""
    builder = LabLikeTangle(**kwargs)
    builder.grow(transactions - 1)
    return builder.tangle


class SyntheticApi:
    """An `ApiSource` for `peer.api.app.create_app`: peers that all hold the same growing synthetic tangle."""

    def __init__(self, builder: LabLikeTangle, peers: list[str] | None = None) -> None:
        self.builder = builder
        self.names = peers or ["peer-000"]
        self.lock = threading.Lock()

    def grow(self, count: int) -> None:
        with self.lock:
            self.builder.grow(count)

    def _check(self, peer: str | None) -> str:
        return resolve_peer(peer, self.names)

    def peers(self) -> list[str]:
        return list(self.names)

    def transactions(self, peer: str | None, since: int) -> TransactionsDocument:
        name = self._check(peer)
        with self.lock:
            tangle = self.builder.tangle
            # each peer's reference: a different recent tip, so switching peers shows a change
            tips = tangle.tips
            reference = [tips[self.names.index(name) % len(tips)]]
            return transactions_document(tangle, peer=name, since=since, reference=reference)

    def peer_info(self, peer: str | None) -> LabPeerInfo:
        name = self._check(peer)
        with self.lock:
            return LabPeerInfo(
                peer=name, lab=True, transactions=len(self.builder.tangle), round=self.builder.round
            )

    def health(self) -> Health:
        return Health(ok=True)
