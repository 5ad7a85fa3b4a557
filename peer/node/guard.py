"""Lets training read the tangle on a worker thread while intake keeps running on the event loop.

All mutations happen on the event loop thread. While a reader (training, reference selection) is active,
new transactions are queued instead of inserted and applied when the last reader leaves, so the reader
sees a consistent tangle and the event loop never blocks on a lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from peer.tangle.dag import Tangle
from peer.tangle.transaction import Transaction


class TangleGuard:
    def __init__(self, tangle: Tangle) -> None:
        self.tangle = tangle
        self._readers = 0
        self._queued: dict[str, Transaction] = {}

    @contextmanager
    def reading(self) -> Iterator[Tangle]:
        """Enter and leave on the event loop thread; use the yielded tangle on any thread in between."""
        self._readers += 1
        try:
            yield self.tangle
        finally:
            self._readers -= 1
            if self._readers == 0:
                self._flush()

    def add(self, tx: Transaction) -> None:
        if self._readers:
            self._queued[tx.id] = tx
        else:
            self.tangle.add(tx)

    def knows(self, tx_id: str) -> bool:
        return tx_id in self.tangle or tx_id in self._queued

    def get(self, tx_id: str) -> Transaction | None:
        """The transaction if it is in the tangle or queued for it."""
        if tx_id in self.tangle:
            return self.tangle.get(tx_id)
        return self._queued.get(tx_id)

    def is_queued(self, tx_id: str) -> bool:
        return tx_id in self._queued

    def _flush(self) -> None:
        queued, self._queued = self._queued, {}
        for tx in queued.values():  # queued in a valid insertion order already
            self.tangle.add(tx)
