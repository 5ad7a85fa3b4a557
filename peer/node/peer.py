"""A peer: its tangle, intake from the broker, training off the event loop, publishing.

The daemon and the lab both drive this class; only the backends (memory or IPFS) and the clock differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from peer.backends.base import Broker, Storage
from peer.config import LearningSettings
from peer.data.dataset import PeerData
from peer.ipld import unixfs_file_cid
from peer.learning.genesis import GENESIS_AUTHOR, genesis_weights, topic_for
from peer.learning.learner import Learner, Reference, RoundOutcome
from peer.learning.weights_source import WeightsSource, WeightsUnavailable
from peer.metrics import PeerInstruments
from peer.models.base import Model, Weights
from peer.models.weights import encode_weights, weights_nbytes
from peer.node.announcement import Announcement
from peer.node.builder import TangleBuilder
from peer.node.guard import TangleGuard
from peer.tangle.dag import Tangle
from peer.tangle.transaction import Transaction, decode_transaction, encode_transaction

FETCH_TIMEOUT = 60.0
RECENT_PUBLISHED = 64  # this peer's own latest transactions kept at hand (all of them are in the tangle)


@dataclass(frozen=True)
class Genesis:
    transaction: Transaction
    block: bytes
    weights: Weights
    weights_bytes: bytes


def make_genesis(model: Model, seed: int) -> Genesis:
    """The same bytes, and so the same CID, on every peer for the same (architecture, seed)."""
    weights = genesis_weights(model, seed)
    data = encode_weights(weights)
    cid, block = encode_transaction(
        parents=[],
        weights=unixfs_file_cid(data),  # what `ipfs add` names it, so any backend stores it under this id
        model=model.architecture,
        author=GENESIS_AUTHOR,
        created=0,
    )
    return Genesis(decode_transaction(cid, block), block, weights, data)


def max_weights_bytes(genesis: Genesis) -> int:
    """The largest weights payload a peer accepts: twice the genesis model's, plus room for the header."""
    return 2 * weights_nbytes(genesis.weights) + 64 * 1024


async def store_genesis(storage: Storage, genesis: Genesis) -> None:
    weights_cid = await storage.put_weights(genesis.weights_bytes)
    if weights_cid != genesis.transaction.weights:
        raise RuntimeError(
            f"storage gave the genesis weights CID {weights_cid}, expected {genesis.transaction.weights}"
        )
    await storage.put_transaction(genesis.transaction.id, genesis.block)


@dataclass
class SharedIntake:
    """One tangle, one intake and one weights cache for peers that are known to receive the same
    announcements in the same order (the lab's synchronous rounds in one worker process).

    Such peers would each build an identical tangle and decode identical weights; sharing them makes the
    cost follow the work (one insertion and one decoding per transaction, not one per peer). A peer's own
    transaction then enters the tangle with the round's delivery, like everyone else's, instead of at
    publication; no peer trains twice in a round, so what each peer knows when it trains is unchanged.
    """

    guard: TangleGuard
    builder: TangleBuilder
    weights: WeightsSource
    max_weights_bytes: int


class Peer:
    def __init__(
        self,
        *,
        author: str,
        model: Model,
        data: PeerData,
        settings: LearningSettings,
        storage: Storage,
        broker: Broker,
        genesis: Genesis,
        clock: Callable[[], float],
        malicious: bool = False,
        tag: str = "",
        cache_bytes: int = 64 * 1024 * 1024,
        metrics: PeerInstruments | None = None,
        shared: SharedIntake | None = None,
    ) -> None:
        self.author = author
        self.metrics = metrics if metrics is not None else PeerInstruments.detached(author)
        self.model = model
        self.settings = settings
        self.storage = storage
        self.broker = broker
        self.genesis = genesis
        self.clock = clock
        self.tag = tag
        self.topic = topic_for(genesis.transaction.id)
        self.shared = shared
        if shared is not None:
            self.guard = shared.guard
            self.tangle = shared.guard.tangle
            self.builder = shared.builder
            self.max_weights_bytes = shared.max_weights_bytes
            self.weights = shared.weights
        else:
            self.tangle = Tangle(genesis.transaction, weight_horizon=settings.weight_horizon)
            self.guard = TangleGuard(self.tangle)
            self.builder = TangleBuilder(
                self.guard, storage, architecture=model.architecture, on_insert=self.metrics.inserted
            )
            self.max_weights_bytes = max_weights_bytes(genesis)
            self.weights = WeightsSource(
                self._fetch_weights_blocking,
                model.weight_spec(),
                max_bytes=self.max_weights_bytes,
                cache_bytes=cache_bytes,
            )
        self.weights.put(genesis.transaction.weights, genesis.weights)
        self.learner = Learner(model, data, settings, self.weights, malicious=malicious, metrics=self.metrics)
        self.metrics.attach(self, model=model.architecture, malicious=malicious)
        self.published: deque[Transaction] = deque(maxlen=RECENT_PUBLISHED)
        self.published_count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._window_floor = 0  # decoded weights and ratings below this height have left memory
        # signs each transaction's unsigned block with the author's key (the daemon: its kubo node's key)
        self.signer: Callable[[bytes], Awaitable[bytes]] | None = None

    # --- intake ------------------------------------------------------------------------------------------
    async def run_intake(self) -> None:
        """Consume the topic until cancelled; malformed messages are counted and dropped by the builder."""
        async for message in self.broker.subscribe(self.topic):
            await self.builder.on_message(message)

    def forget_below_window(self) -> int:
        """Decoded weights and ratings of transactions below every walk's window leave memory (walks start
        at most `window_depth` below the highest tip, the reference counts no deeper), so a long-running
        peer's memory follows the window, not the tangle's age. Call between rounds, on the event loop.
        Returns how many weights were dropped from the cache's reach."""
        depth = self.settings.walk_config().window_depth
        if depth is None or self.shared is not None:  # genesis walks read everything; the lab evicts itself
            return 0
        # from the learner's highest usable height, as the walks: a cheap chain piled on top must not make
        # honest peers drop (and fetch and rate again) what their walks still read
        floor, gone = self.tangle.weights_left_window(depth, self._window_floor, top=self.learner.last_top)
        if floor == self._window_floor:
            return 0
        self.weights.forget(gone)
        self.learner.forget_ratings(self.tangle, floor)
        self._window_floor = floor
        return len(gone)

    # --- training ----------------------------------------------------------------------------------------
    async def reference(self, rng: np.random.Generator) -> Reference:
        self._loop = asyncio.get_running_loop()
        with self.guard.reading() as tangle:
            reference = await asyncio.to_thread(self.learner.reference, tangle, rng)
        self.metrics.observe_reference(reference)
        return reference

    async def train_once(self, rng: np.random.Generator, *, attacking: bool = False) -> RoundOutcome:
        """One training round off the event loop; publishes the new model when the learner says so."""
        self._loop = asyncio.get_running_loop()
        with self.guard.reading() as tangle, self.metrics.training_round():
            outcome = await asyncio.to_thread(self.learner.train_round, tangle, rng, attacking=attacking)
        self.metrics.trained(outcome)
        if outcome.publish and outcome.weights is not None and outcome.metrics is not None:
            metrics = {"accuracy": outcome.metrics.accuracy, "loss": outcome.metrics.loss}
            await self.publish(outcome.weights, outcome.tips, metrics)
        return outcome

    async def publish(self, weights: Weights, parents: list[str], metrics: dict[str, float]) -> Transaction:
        data = await asyncio.to_thread(encode_weights, weights)
        weights_cid = await self.storage.put_weights(data)
        for array in weights.values():  # shared from now on, like decoded weights: read-only
            array.flags.writeable = False
        self.weights.put(weights_cid, weights)
        make = functools.partial(
            encode_transaction,
            parents=parents,
            weights=weights_cid,
            model=self.model.architecture,
            author=self.author,
            created=self.clock(),
            tag=self.tag,
            metrics=metrics,
        )
        cid, block = make()
        if self.signer is not None:  # the unsigned block is what the author signs
            cid, block = make(signature=await self.signer(block))
        await self.storage.put_transaction(cid, block)
        tx = decode_transaction(cid, block, verify=False)
        if self.shared is None:  # a shared tangle gets it with the round's delivery, in peer order
            self.guard.add(tx)
        self.published.append(tx)
        self.published_count += 1
        self.metrics.published(tx, len(data))
        # publish last: once announced, others may fetch it, so it must be stored first
        await self.broker.publish(self.topic, Announcement(cid, tuple(self.tangle.tips[-8:])).encode())
        return tx

    async def usable_weights(self, weights_id: str) -> bool:
        """Whether weights may be pinned: fetched within the size limit (the declared size is checked
        before any content is read), checked against their CID and decoded; what fails is remembered as
        unusable, so it is neither fetched nor pinned again (the pinning window's `vet`)."""
        if self.weights.holds(weights_id):
            return True
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self.weights.get, weights_id)
        except WeightsUnavailable:
            return False
        return True

    def _fetch_weights_blocking(self, weights_id: str) -> bytes:
        """Called on the training thread: the fetch itself runs on the event loop."""
        if self._loop is None:
            raise RuntimeError("no event loop to fetch weights on")
        future = asyncio.run_coroutine_threadsafe(
            self.storage.get_weights(weights_id, max_bytes=self.max_weights_bytes), self._loop
        )
        try:
            return future.result(FETCH_TIMEOUT)
        finally:
            with contextlib.suppress(Exception):
                future.cancel()
