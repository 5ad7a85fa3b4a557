"""The lab's live HTTP server: every lab peer's `/api/transactions` while the experiment runs.

Rounds are synchronous, so after each round every lab peer holds the same transactions; the runner keeps
one copy of that tangle (from the blocks it carries between workers) and each peer's own reference.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from peer.api.app import resolve_peer
from peer.api.schema import LabHealth, LabHistory, LabPeerInfo, TransactionsDocument
from peer.api.transactions import transactions_document
from peer.node.announcement import decode_announcement
from peer.tangle.dag import Tangle
from peer.tangle.transaction import Transaction, decode_transaction


class LabApiSource:
    def __init__(
        self, genesis: Transaction, authors: list[str], malicious: set[str], weight_horizon: int | None
    ):
        self.tangle = Tangle(genesis, weight_horizon=weight_horizon)
        self.authors = authors
        self.malicious = malicious
        self.references: dict[str, list[str]] = {}
        self.round = 0
        self.rounds_total = 0
        self.accuracy: dict[str, float] = {}
        self.config: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []  # the runner's RoundRecords, as plain data
        self.peer_records: list[dict[str, Any]] = []  # the runner's PeerRounds, as plain data
        self._lock = threading.Lock()

    def add_round(
        self,
        round_index: int,
        blocks: dict[str, bytes],
        announcements: list[tuple[str, str, bytes]],
        references: dict[str, list[str]],
        accuracy: dict[str, float],
    ) -> None:
        txs = []
        for _topic, _sender, data in announcements:
            cid = decode_announcement(data).transaction
            if cid is not None and cid in blocks:
                txs.append(decode_transaction(cid, blocks[cid]))
        with self._lock:
            for tx in txs:  # announcements come in peer order, and a round's parents are all older
                self.tangle.add(tx)
            self.references = references
            self.accuracy = accuracy
            self.round = round_index

    def add_record(self, record: dict[str, Any], peer_records: list[dict[str, Any]]) -> None:
        with self._lock:
            self.records.append(_finite(record))
            self.peer_records.extend(_finite(r) for r in peer_records)

    def lab_history(self) -> LabHistory:
        """`/api/lab`: the experiment's settings and every round so far (the run view's strips)."""
        with self._lock:
            return LabHistory(
                config=self.config,
                malicious_peers=sorted(self.malicious),
                round=self.round,
                rounds=self.rounds_total,
                metrics=list(self.records),
                peers=list(self.peer_records),
            )

    def peers(self) -> list[str]:
        return list(self.authors)

    def _author(self, peer: str | None) -> str:
        return resolve_peer(peer, self.authors)

    def transactions(self, peer: str | None, since: int) -> TransactionsDocument:
        author = self._author(peer)
        with self._lock:
            return transactions_document(
                self.tangle,
                peer=author,
                since=since,
                reference=self.references.get(author, ()),
                malicious_authors=self.malicious,
            )

    def peer_info(self, peer: str | None) -> LabPeerInfo:
        author = self._author(peer)
        with self._lock:
            return LabPeerInfo(
                peer=author,
                lab=True,
                round=self.round,
                rounds=self.rounds_total,
                transactions=len(self.tangle),
                tips=len(self.tangle.tips),
                malicious=author in self.malicious,
                reference=self.references.get(author, []),
                reference_accuracy=self.accuracy.get(author),
            )

    def health(self) -> LabHealth:
        return LabHealth(ok=True, round=self.round)


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity (a random-weights model's loss can overflow): null instead."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
