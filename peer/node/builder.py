"""Intake: announcement -> fetch -> validate -> fetch missing ancestors -> insert once the past is there.

The 2020 prototype fetched missing parents recursively and hit RecursionError at about 3,000 transactions.
Here ancestors are resolved level by level with a worklist, fetches run with bounded concurrency, a CID
already being fetched is awaited rather than fetched twice, and nothing is inserted before its whole past.
Whatever is malformed is counted by reason and dropped; the builder never raises into the peer.

A late joiner meets every announcement with the whole past unknown, and many walks run at once over the same
ancestors: a transaction fetched and validated once is kept (bounded, until inserted) for the other walks,
so a rebuild costs one `block/get` per transaction, not one per transaction per walk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from peer.backends.base import BlockNotFound, Message, Storage
from peer.bounded import LruDict
from peer.node.announcement import decode_announcement
from peer.node.guard import TangleGuard
from peer.retry import Backoff, retry
from peer.tangle.transaction import MAX_TRANSACTION_BYTES, InvalidTransaction, Transaction, decode_transaction

log = logging.getLogger(__name__)

MAX_FETCHED = 16_384  # fetched, validated transactions whose past is still being fetched (LRU)


class TangleBuilder:
    def __init__(
        self,
        guard: TangleGuard,
        storage: Storage,
        *,
        architecture: str,
        max_concurrency: int = 8,
        attempts: int = 3,
        retry_delay: float = 0.5,
        on_insert: Callable[[Transaction], None] | None = None,
    ) -> None:
        self.guard = guard
        self.storage = storage
        self.architecture = architecture
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.on_insert = on_insert
        self.rejected: Counter[str] = Counter()
        self.received = 0
        self.unresolved = 0
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._in_flight: dict[str, asyncio.Future[Transaction]] = {}
        self._fetched: LruDict[str, Transaction] = LruDict(MAX_FETCHED)  # leave once inserted
        self.fetches = 0  # transactions fetched from storage (a rebuild: about one per transaction)

    async def on_message(self, message: Message) -> None:
        self.received += 1
        try:
            announcement = decode_announcement(message.data)
        except InvalidTransaction as error:
            self._reject(error.reason, error)
            return
        if announcement.transaction is not None:
            await self.resolve(announcement.transaction, author=message.sender)
        for tip in announcement.tips:
            await self.resolve(tip)

    async def resolve(self, cid: str, *, author: str | None = None) -> bool:
        """Bring `cid` and its whole past into the tangle; `author` is checked on first-hand announcements."""
        if cid in self.guard.tangle or self.guard.is_queued(cid):
            return True
        fetched: dict[str, Transaction] = {}
        level = [cid]
        while level:
            results = await asyncio.gather(*(self._fetch(c) for c in level), return_exceptions=True)
            next_level: list[str] = []
            for wanted, result in zip(level, results, strict=True):
                if isinstance(result, InvalidTransaction):
                    self._reject(result.reason, result)
                    return False
                if isinstance(result, BaseException):
                    self.unresolved += 1
                    log.warning("dropping %s: %s is unreachable (%s)", cid, wanted, result)
                    return False
                if wanted == cid and author is not None and result.author != author:
                    self._reject(
                        "author_mismatch", f"{cid} announced by {author} but authored by {result.author}"
                    )
                    return False
                fetched[wanted] = result
                for parent in result.parents:
                    known = parent in self.guard.tangle or self.guard.is_queued(parent)
                    if not known and parent not in fetched and parent not in next_level:
                        next_level.append(parent)
            level = next_level
        # parents first: reverse discovery order, inserting each one whose parents are in by then, and again
        # over what is left until nothing moves (one pass inserts almost all: a pass per transaction would
        # be quadratic in the thousands of transactions a late joiner inserts at once)
        waiting = list(reversed(fetched.values()))
        while waiting:
            left = []
            for tx in waiting:
                if self.guard.knows(tx.id):
                    continue
                if not all(self.guard.knows(p) for p in tx.parents):
                    left.append(tx)
                    continue
                self.guard.add(tx)
                self._fetched.pop(tx.id, None)
                if self.on_insert is not None:
                    self.on_insert(tx)
            if len(left) == len(waiting):
                self.unresolved += 1
                return False
            waiting = left
        return True

    async def _fetch(self, cid: str) -> Transaction:
        # another walk fetched it: inserted meanwhile, or waiting for its past
        done = self.guard.get(cid) or self._fetched.get(cid)
        if done is not None:
            return done
        future = self._in_flight.get(cid)
        if future is None:
            self.fetches += 1
            future = asyncio.ensure_future(self._fetch_and_keep(cid))
            self._in_flight[cid] = future
            future.add_done_callback(lambda _f: self._in_flight.pop(cid, None))
        return await asyncio.shield(future)

    async def _fetch_and_keep(self, cid: str) -> Transaction:
        tx = await self._fetch_with_retries(cid)
        if not self.guard.knows(cid):  # kept before the fetch stops being in flight: no second fetch
            self._fetched[cid] = tx
        return tx

    async def _fetch_with_retries(self, cid: str) -> Transaction:
        async def fetch() -> Transaction:
            async with self._semaphore:
                block = await self.storage.get_transaction(cid, max_bytes=MAX_TRANSACTION_BYTES)
            return self._validate(decode_transaction(cid, block))

        backoff = Backoff(self.retry_delay, self.retry_delay * 2 ** max(0, self.attempts - 2))
        return await retry(fetch, backoff=backoff, retry_on=(BlockNotFound,), attempts=self.attempts)

    def _validate(self, tx: Transaction) -> Transaction:
        if tx.model != self.architecture:
            raise InvalidTransaction(
                "unknown_model", f"{tx.id} is a {tx.model!r} model, not {self.architecture!r}"
            )
        if tx.is_genesis and tx.id != self.guard.tangle.genesis.id:
            raise InvalidTransaction("foreign_genesis", f"{tx.id} has no parents but is not our genesis")
        return tx

    def _reject(self, reason: str, detail: object) -> None:
        self.rejected[reason] += 1
        log.info("rejected (%s): %s", reason, detail)
