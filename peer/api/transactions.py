"""`/api/transactions`: the original project's shape (genesis plus nodes with name, parents, peer, time,
timeCreated), with more fields for the visualizer. `since` lets a poller fetch only what is new: nodes come
in insertion order, which never changes for a given peer, so an index is a stable cursor.
"""

from __future__ import annotations

from collections.abc import Collection

from peer.api.schema import NodeDocument, TransactionsDocument
from peer.tangle.dag import Tangle


def transactions_document(
    tangle: Tangle,
    *,
    peer: str,
    since: int = 0,
    reference: Collection[str] = (),
    malicious_authors: Collection[str] = (),
) -> TransactionsDocument:
    nodes = [
        NodeDocument(
            name=tx.id,
            parents=list(tx.parents),
            peer=tx.author,
            time=tangle.height(tx.id),
            timeCreated=tx.created,
            weights=tx.weights,
            height=tangle.height(tx.id),
            accuracy=tx.metrics.get("accuracy"),
            loss=tx.metrics.get("loss"),
            malicious=tx.author in malicious_authors,
            tag=tx.tag,
        )
        for index, tx in enumerate(tangle)
        if index >= since
    ]
    return TransactionsDocument(
        peer=peer,
        genesis=tangle.genesis.id,
        count=len(tangle),
        since=since,
        nodes=nodes,
        tips=tangle.tips,
        reference=list(reference),
        depth=tangle.max_height,
    )
