"""Intake: announcement -> fetch -> validate -> fetch missing ancestors -> insert once the past is there.

The 2020 prototype fetched missing parents recursively and hit RecursionError at about 3,000 transactions.
Here ancestors are resolved level by level with a worklist, fetches run with bounded concurrency, a CID
already being fetched is awaited rather than fetched twice, and nothing is inserted before its whole past.
Whatever is malformed is counted by reason and dropped; the builder never raises into the peer.

A late joiner meets every announcement with the whole past unknown, and many walks run at once over the same
ancestors: a transaction fetched and validated once is kept (bounded, until inserted) for the other walks,
so a rebuild costs one `block/get` per transaction, not one per transaction per walk.

Against hostile senders (docs/peer.md, "Defences against hostile peers: network intake"): a CID costs at
most `attempts` x `fetch_timeout` in all; one that missed that deadline is not fetched again for 10 s,
doubling with every further miss up to 5 minutes (one that failed validation: never); the tips of an
announcement resolve side by side; first-hand transactions and tips new to this peer take tokens from the
sender's bucket, recent transactions from their author's; `created` must not lie ahead of this peer's clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from peer.backends.base import BlockNotFound, Message, Storage
from peer.bounded import LruDict
from peer.node.announcement import decode_announcement
from peer.node.guard import TangleGuard
from peer.retry import Backoff, retry
from peer.tangle.transaction import (
    MAX_TRANSACTION_BYTES,
    InvalidTransaction,
    Transaction,
    decode_transaction,
    signed_payload,
)

log = logging.getLogger(__name__)

MAX_FETCHED = 16_384  # fetched, validated transactions whose past is still being fetched (LRU)
REMEMBERED_CIDS = 16_384  # unreachable and invalid CIDs remembered (each bounded: LRU)
UNREACHABLE_TTL = (10.0, 300.0)  # a CID that missed its deadline waits 10 s, doubling per miss up to 5 min
MAX_CLOCK_SKEW = 300.0  # seconds a transaction's `created` may lie ahead of the receiver's clock
MIN_CREATED = 1_577_836_800.0  # 2020-01-01: no transaction of this project is older (the genesis is 0)
TIMEOUTS_WINDOW = 60.0  # seconds over which fetch timeouts are counted for /healthz
LIVE_WINDOW = 600.0  # transactions created this recently count against their author's rate


@dataclass
class RateLimit:
    """A token bucket per PubSub sender: `burst` new transactions at once, then `per_second`."""

    per_second: float = 2.0
    burst: float = 64.0
    senders: int = 4096  # buckets kept (LRU): a forgotten sender starts with a full bucket
    clock: Callable[[], float] = time.monotonic
    _buckets: LruDict[str, tuple[float, float]] = field(init=False)

    def __post_init__(self) -> None:
        self._buckets = LruDict(self.senders)

    def take(self, sender: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(sender) or (self.burst, now)
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if tokens < 1.0:
            self._buckets[sender] = (tokens, now)
            return False
        self._buckets[sender] = (tokens - 1.0, now)
        return True


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
        fetch_timeout: float | None = None,
        unreachable_ttl: tuple[float, float] = UNREACHABLE_TTL,
        clock: Callable[[], float] | None = None,
        rate_limit: RateLimit | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`fetch_timeout`: seconds one attempt may take (a CID's deadline is `attempts` x that); `clock`:
        the wall clock `created` is checked against (None: not checked, the lab's logical clock);
        `rate_limit`: per-sender bucket for new transactions (None: unlimited, the lab's own peers)."""
        self.guard = guard
        self.storage = storage
        self.architecture = architecture
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.on_insert = on_insert
        self.rejected: Counter[str] = Counter()
        self.received = 0
        self.unresolved = 0
        self.fetch_timeout = fetch_timeout
        self.unreachable_ttl = unreachable_ttl
        self.clock = clock
        self.rate_limit = rate_limit
        self.monotonic = monotonic
        # (author, signature, payload) -> valid?; None: signatures are not required (the lab's own peers)
        self.verify_signature: Callable[[str, bytes, bytes], Awaitable[bool]] | None = None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._in_flight: dict[str, asyncio.Future[Transaction]] = {}
        self._fetched: LruDict[str, Transaction] = LruDict(MAX_FETCHED)  # leave once inserted
        self.fetches = 0  # transactions fetched from storage (a rebuild: about one per transaction)
        # CID -> (monotonic time it may be fetched again, misses so far)
        self._unreachable: LruDict[str, tuple[float, int]] = LruDict(REMEMBERED_CIDS)
        self._invalid: LruDict[str, InvalidTransaction] = LruDict(REMEMBERED_CIDS)
        self._verified: LruDict[str, bool] = LruDict(REMEMBERED_CIDS)  # ids whose signature checked out
        self.skipped_unreachable = 0  # announcements of a CID remembered as unreachable: cost nothing
        self._timeouts: deque[float] = deque()  # monotonic times of fetch timeouts (the last minute)

    def open_network(
        self,
        *,
        fetch_timeout: float | None,
        clock: Callable[[], float],
        max_concurrency: int,
        verify_signature: Callable[[str, bytes, bytes], Awaitable[bool]] | None,
    ) -> None:
        """The daemon's settings: senders are strangers (a per-sender rate, `created` against `clock`, one
        deadline per CID, every transaction signed by its author); the lab's own peers keep the defaults."""
        self.verify_signature = verify_signature
        self.fetch_timeout = fetch_timeout
        self.clock = clock
        self.rate_limit = RateLimit()
        self._semaphore = asyncio.Semaphore(max_concurrency)

    def recent_timeouts(self) -> int:
        """Fetches that hit `fetch_timeout` in the last TIMEOUTS_WINDOW seconds (/healthz)."""
        horizon = self.monotonic() - TIMEOUTS_WINDOW
        while self._timeouts and self._timeouts[0] < horizon:
            self._timeouts.popleft()
        return len(self._timeouts)

    async def on_message(self, message: Message) -> None:
        self.received += 1
        try:
            announcement = decode_announcement(message.data)
        except InvalidTransaction as error:
            self._reject(error.reason, error)
            return
        wanted: list[tuple[str, str | None]] = []
        if announcement.transaction is not None:
            wanted.append((announcement.transaction, message.sender))
        wanted += [(tip, None) for tip in announcement.tips if tip != announcement.transaction]
        admitted = []
        for cid, author in wanted:
            if self.guard.knows(cid) or cid in self._in_flight or self._remembered_unreachable(cid):
                continue  # nothing new to fetch: costs the sender nothing
            if self.rate_limit is not None and not self.rate_limit.take(message.sender):
                self._reject("rate_limited", f"{cid} from {message.sender}: over its rate")
                continue
            admitted.append(self.resolve(cid, author=author))
        # side by side: one slow CID does not hold up the others of the announcement
        await asyncio.gather(*admitted)

    async def resolve(self, cid: str, *, author: str | None = None) -> bool:
        """Bring `cid` and its whole past into the tangle; `author` is checked on first-hand announcements."""
        if cid in self.guard.tangle or self.guard.is_queued(cid):
            return True
        if self._remembered_unreachable(cid):
            return False
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
                        if self._remembered_unreachable(parent):
                            return False
                        next_level.append(parent)
            if self.verify_signature is not None:
                checks = [self._signature_error(fetched[c]) for c in level]
                for error in await asyncio.gather(*checks):
                    if error is not None:
                        self._reject(error.reason, error)
                        return False
            if level == [cid] and not self._within_author_rates([fetched[cid]]):
                return False  # the named transaction only: its past may be a late joiner's catch-up
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

    def _within_author_rates(self, txs: list[Transaction]) -> bool:
        """A named transaction created within LIVE_WINDOW also takes a token from its author's bucket,
        whoever names it: an honest peer relaying a flooder's transactions in its tips does not carry the
        flood past the limit. Older ones and ancestors (a late joiner catching up) are not throttled."""
        if self.rate_limit is None or self.clock is None:
            return True
        recent = self.clock() - LIVE_WINDOW
        for tx in txs:
            if tx.created >= recent and not self.rate_limit.take(f"author:{tx.author}"):
                self._reject("rate_limited", f"{tx.id}: its author {tx.author} is over its rate")
                return False
        return True

    async def _signature_error(self, tx: Transaction) -> InvalidTransaction | None:
        """None when `tx` carries its author's signature (or is our genesis); the rejection otherwise,
        remembered: a block's signature never becomes valid."""
        if tx.id == self.guard.tangle.genesis.id or self.verify_signature is None or tx.id in self._verified:
            return None
        error = self._invalid.get(tx.id)
        if error is None:
            try:
                valid = bool(tx.signature) and await self.verify_signature(
                    tx.author, tx.signature, signed_payload(tx)
                )
            except Exception as failure:  # kubo refuses an author that is no peer id: not its key either
                log.info("signature of %s not verifiable: %s", tx.id, failure)
                valid = False
            if valid:
                self._verified[tx.id] = True  # else every walk through it asks kubo again
                return None
            what = "signed by another key" if tx.signature else "unsigned"
            error = InvalidTransaction("bad_signature", f"{tx.id} claims author {tx.author} but is {what}")
            self._invalid[tx.id] = error
        return error

    def _remembered_unreachable(self, cid: str) -> bool:
        entry = self._unreachable.get(cid)
        if entry is None or self.monotonic() >= entry[0]:
            return False  # an expired entry stays: its miss count sets the next wait
        self.skipped_unreachable += 1
        return True

    async def _fetch_with_retries(self, cid: str) -> Transaction:
        known_invalid = self._invalid.get(cid)
        if known_invalid is not None:  # content never changes: the same verdict, without another fetch
            raise known_invalid

        async def fetch() -> Transaction:
            block = await self.storage.get_transaction(cid, max_bytes=MAX_TRANSACTION_BYTES)
            return self._validate(decode_transaction(cid, block))

        backoff = Backoff(self.retry_delay, self.retry_delay * 2 ** max(0, self.attempts - 2))
        try:
            # one deadline for the CID however many tries fit in it (the cost docs/peer.md states); waiting
            # for a fetch slot is not part of it, so CIDs that hang cannot time out the ones queued behind
            deadline = None if self.fetch_timeout is None else self.attempts * self.fetch_timeout
            async with self._semaphore, asyncio.timeout(deadline):
                return await retry(fetch, backoff=backoff, retry_on=(BlockNotFound,), attempts=self.attempts)
        except InvalidTransaction as error:
            if error.reason != "bad_time":  # a transaction from the future may become acceptable
                self._invalid[cid] = error
            raise
        except (BlockNotFound, TimeoutError):
            misses = (self._unreachable.get(cid) or (0.0, 0))[1] + 1
            first, longest = self.unreachable_ttl
            self._unreachable[cid] = (self.monotonic() + min(longest, first * 2 ** (misses - 1)), misses)
            self._timeouts.append(self.monotonic())
            raise

    def _validate(self, tx: Transaction) -> Transaction:
        if tx.model != self.architecture:
            raise InvalidTransaction(
                "unknown_model", f"{tx.id} is a {tx.model!r} model, not {self.architecture!r}"
            )
        if tx.is_genesis and tx.id != self.guard.tangle.genesis.id:
            raise InvalidTransaction("foreign_genesis", f"{tx.id} has no parents but is not our genesis")
        if self.clock is not None and not tx.is_genesis:
            now = self.clock()
            if not MIN_CREATED <= tx.created <= now + MAX_CLOCK_SKEW:
                raise InvalidTransaction(
                    "bad_time", f"{tx.id} created at {tx.created:.0f}, this peer's clock says {now:.0f}"
                )
        return tx

    def _reject(self, reason: str, detail: object) -> None:
        self.rejected[reason] += 1
        log.info("rejected (%s): %s", reason, detail)
