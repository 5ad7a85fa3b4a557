"""A lab worker hosts some of the lab's peers, each a real `Peer` over in-process backends (or, with
`--backend ipfs`, over the nodes of a local IPFS testnet: see peer/lab/ipfs.py).

Rounds are synchronous, as in the papers' simulations: every active peer trains on the tangle as it was at
the start of the round, then the round's blocks and announcements reach every peer in peer order. This
keeps a run reproducible whatever the number of worker processes, since every random choice is seeded by
(seed, peer, round) alone (over IPFS, PubSub's arrival order makes runs differ slightly).

In memory, the peers of a worker share one tangle, one intake and one decoded-weights cache
(`SharedIntake`): they receive the same announcements in the same order, so each would build the same
tangle anyway. Weights leave memory once their transactions fall below every walk's window, as unpinned
weights leave an IPFS node at garbage collection.
"""

from __future__ import annotations

import asyncio
import multiprocessing.connection
from typing import Any

import numpy as np

from peer.api.schema import TransactionsDocument
from peer.api.transactions import transactions_document
from peer.backends.base import Broker, Message, Storage
from peer.backends.ipfs import IpfsBroker, IpfsStorage
from peer.backends.memory import MemoryBroker, MemoryStorage
from peer.config import LabSettings
from peer.data import load_dataset, peer_data, split_indices
from peer.ipfs.client import IpfsClient
from peer.lab.results import Announced, PeerEvaluation, TrainResult
from peer.learning.weights_source import WeightsSource
from peer.metrics import PeerInstruments, PeerMetrics, snapshot
from peer.node.announcement import Announcement, decode_announcement
from peer.node.builder import TangleBuilder
from peer.node.guard import TangleGuard
from peer.node.peer import Peer, SharedIntake, make_genesis, max_weights_bytes, store_genesis
from peer.tangle.dag import Tangle
from peer.tangle.transaction import MAX_TRANSACTION_BYTES, Transaction

TRAIN, EVALUATE = 0, 1
SHARED_CACHE_BYTES_PER_PEER = 64 * 1024 * 1024  # what each peer's own cache may hold (Peer's default)
SHARED_CACHE_BYTES_MAX = 1024 * 1024 * 1024


def peer_rng(seed: int, peer: int, round_index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, peer, round_index, purpose])


def author_name(index: int) -> str:
    return f"lab-peer-{index:03d}"


class LabWorker:
    def __init__(self, settings: LabSettings, peer_indices: list[int]) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        dataset = load_dataset(settings.dataset, settings.dataset_path)
        self.model = settings.create_model(dataset.input_shape, dataset.num_classes)
        # with --model tflite and --tflite-fraction below 1 the other peers train the same layout in numpy
        numpy_model = (
            settings.create_model(dataset.input_shape, dataset.num_classes, tflite=False)
            if settings.model == "tflite"
            else self.model
        )
        self.genesis = make_genesis(self.model, settings.seed)
        self.storage = MemoryStorage()
        self.broker = MemoryBroker()
        self.shared: SharedIntake | None = None
        if settings.backend == "memory":
            self.loop.run_until_complete(store_genesis(self.storage, self.genesis))
            self.shared = self._shared_intake(len(peer_indices))
        self._floor = 0  # weights of transactions below this height have left memory
        malicious = set(settings.malicious_peers)
        # split once for every peer here (each split is a pass over the whole dataset)
        shards = split_indices(
            dataset, settings.peers, settings.partition, settings.dirichlet_alpha, settings.seed
        )
        self.metrics = PeerMetrics()  # this worker's peers; the runner serves all workers' snapshots
        self.peers: dict[int, Peer] = {}
        self.clients: dict[int, IpfsClient] = {}
        self.authors: dict[int, str] = {}
        for index in peer_indices:
            name = author_name(index)
            instruments = self.metrics.peer(name)
            storage, broker, author = self._backends(index, instruments)
            self.authors[index] = author
            self.peers[index] = Peer(
                author=author,
                model=self.model if settings.on_tflite(index) else numpy_model,
                data=peer_data(
                    dataset,
                    index,
                    settings.peers,
                    scheme=settings.partition,
                    alpha=settings.dirichlet_alpha,
                    seed=settings.seed,
                    test_fraction=settings.test_fraction,
                    shards=shards,
                ),
                settings=settings,
                storage=storage,
                broker=broker,
                genesis=self.genesis,
                clock=lambda: float(self._round),
                malicious=index in malicious,
                tag="lab",
                metrics=instruments,
                shared=self.shared,
            )
        self._intake = []
        if settings.backend == "ipfs":
            # intake runs whenever this worker's loop runs (during every call from the runner)
            self._intake = [self.loop.create_task(peer.run_intake()) for peer in self.peers.values()]
            self.loop.run_until_complete(asyncio.sleep(1.0))  # subscriptions up before round 1
        self._round = 0
        self._references: dict[int, list[str]] = {}

    def _shared_intake(self, hosted: int) -> SharedIntake:
        tangle = Tangle(self.genesis.transaction, weight_horizon=self.settings.weight_horizon)
        guard = TangleGuard(tangle)
        builder = TangleBuilder(
            guard, self.storage, architecture=self.model.architecture, on_insert=self._inserted
        )
        limit = max_weights_bytes(self.genesis)
        storage = self.storage
        weights = WeightsSource(
            lambda cid: storage.read(cid, max_bytes=limit),
            self.model.weight_spec(),
            max_bytes=limit,
            cache_bytes=min(SHARED_CACHE_BYTES_PER_PEER * hosted, SHARED_CACHE_BYTES_MAX),
        )
        return SharedIntake(guard, builder, weights, limit)

    def _inserted(self, tx: Transaction) -> None:
        """Per-peer intake metrics, kept only when someone scrapes them (a call per peer per transaction)."""
        if self.settings.metrics_port is None:
            return
        for peer in self.peers.values():
            if peer.author != tx.author:
                peer.metrics.inserted(tx)

    def _evict(self) -> None:
        """Weights below every walk's window (walks start at most `window_depth` below the highest tip, and
        the reference counts no deeper) leave the store and the cache; so do the peers' ratings of them."""
        if self.shared is None:
            return  # over IPFS each peer has its own intake and the nodes' GC frees weights
        depth = self.settings.walk_config().window_depth
        tangle = self.shared.guard.tangle
        if depth is None:
            return
        floor, gone = tangle.weights_left_window(depth, self._floor)
        if floor == self._floor:
            return
        self.storage.drop(gone)
        self.shared.weights.forget(gone)
        for peer in self.peers.values():
            peer.learner.forget_ratings(tangle, floor)
        self._floor = floor

    def _backends(self, index: int, instruments: PeerInstruments) -> tuple[Storage, Broker, str]:
        """Memory: the worker's shared store, a broker client named after the peer. IPFS: the node of the
        peer (peers share nodes round-robin), whose libp2p peer id is then the peer's author."""
        if self.settings.backend == "memory":
            return self.storage, self.broker.connect(author_name(index)), author_name(index)
        apis = self.settings.ipfs_apis
        node = index % len(apis)
        client = self.clients.get(node)
        if client is None:
            client = self.clients[node] = IpfsClient(apis[node], timeout=60)
            self.loop.run_until_complete(store_genesis(IpfsStorage(client), self.genesis))
        author = self.loop.run_until_complete(client.id()).peer_id
        return IpfsStorage(client, instruments), IpfsBroker(client, instruments), author

    def train(
        self, round_index: int, active: list[int]
    ) -> tuple[list[TrainResult], dict[str, bytes], list[Announced]]:
        """Train the active peers hosted here; returns results, new blocks and announcements."""
        self._round = round_index
        results: list[TrainResult] = []
        for index in active:
            peer = self.peers[index]
            attacking = peer.learner.malicious and round_index >= self.settings.poison_from
            rng = peer_rng(self.settings.seed, index, round_index, TRAIN)
            outcome = self.loop.run_until_complete(peer.train_once(rng, attacking=attacking))
            published = peer.published[-1].id if outcome.publish else None
            accuracy = outcome.metrics.accuracy if outcome.metrics else None
            results.append(TrainResult(index, published, accuracy, outcome.reason))
        if self.settings.backend == "ipfs":
            return results, *self.loop.run_until_complete(self._published(results))
        announcements = [(topic, m.sender, m.data) for topic, m in self.broker.drain_outbox()]
        return results, self.storage.drain_new(), announcements

    async def _published(self, results: list[TrainResult]) -> tuple[dict[str, bytes], list[Announced]]:
        """Over IPFS the announcements went out for real; the runner still learns the round's transaction
        blocks (not weights) for its live API, in the shape the memory backend gives them."""
        blocks: dict[str, bytes] = {}
        announcements: list[Announced] = []
        for result in results:
            if result.published is not None:
                peer = self.peers[result.peer]
                blocks[result.published] = await peer.storage.get_transaction(
                    result.published, max_bytes=MAX_TRANSACTION_BYTES
                )
                data = Announcement(result.published, ()).encode()
                announcements.append((peer.topic, peer.author, data))
        return blocks, announcements

    def deliver(self, blocks: dict[str, bytes], announcements: list[Announced]) -> None:
        """Everything published this round, by every worker, reaches every peer here in the same order.

        Over IPFS the announcements travel over PubSub, which is asynchronous; the round ends once every peer
        here holds every transaction of the round, fetching (through its node) what PubSub has not brought
        yet, so that rounds stay synchronous."""
        if self.settings.backend == "ipfs":

            async def sync() -> None:
                for _topic, _sender, data in announcements:
                    cid = decode_announcement(data).transaction
                    for peer in self.peers.values():
                        if cid is not None and not peer.guard.knows(cid):
                            await peer.builder.resolve(cid)

            self.loop.run_until_complete(sync())
            return
        for cid, data in blocks.items():
            self.storage.add_replica(cid, data)
        self.storage.drain_new()
        if self.shared is None:
            raise RuntimeError("memory-backend lab worker without its shared intake")
        builder = self.shared.builder

        async def feed() -> None:
            # the peers here share one intake: each announcement is taken in once for all of them
            for _topic, sender, data in announcements:
                await builder.on_message(Message(sender=sender, data=data))

        self.loop.run_until_complete(feed())
        self._evict()

    def evaluate(self, round_index: int, peers: list[int] | None = None) -> dict[int, PeerEvaluation]:
        """Each peer's reference model on its own test set (the peers given, or every peer hosted here)."""
        out = {}
        for index in self.peers if peers is None else peers:
            peer = self.peers[index]
            rng = peer_rng(self.settings.seed, index, round_index, EVALUATE)
            ref = self.loop.run_until_complete(peer.reference(rng))
            self._references[index] = ref.transactions
            out[index] = PeerEvaluation(
                accuracy=ref.metrics.accuracy,
                loss=ref.metrics.loss,
                confusion=ref.confusion,
                transactions=len(peer.tangle),
                tips=len(peer.tangle.tips),
                reference=ref.transactions,
                rejected=dict(peer.builder.rejected),
                unresolved=peer.builder.unresolved,
                weights_hits=peer.weights.hits,
                weights_misses=peer.weights.misses,
            )
        return out

    def export(self, index: int, since: int = 0) -> TransactionsDocument:
        """The peer's tangle as its `/api/transactions` would serve it."""
        peer = self.peers[index]
        malicious = {author_name(i) for i in self.settings.malicious_peers}
        return transactions_document(
            peer.tangle,
            peer=peer.author,
            since=since,
            reference=self._references.get(index, ()),
            malicious_authors=malicious,
        )

    def metrics_snapshot(self) -> list:
        """Every metric of the peers hosted here, as plain data for the runner's /metrics."""
        return snapshot(self.metrics.registry)

    def close(self) -> None:
        for task in self._intake:
            task.cancel()

        async def shut() -> None:
            await asyncio.gather(*self._intake, return_exceptions=True)
            for client in self.clients.values():
                await client.aclose()

        self.loop.run_until_complete(shut())
        self.loop.close()


def serve(
    connection: multiprocessing.connection.Connection, settings_json: str, peer_indices: list[int]
) -> None:
    """Entry point of a worker process: answer calls until told to stop. An error while starting (a
    dataset that cannot be read, say) is sent as one line, and the process ends: the runner stops the lab."""
    try:
        worker = LabWorker(LabSettings.model_validate_json(settings_json), peer_indices)
    except Exception as error:
        connection.send(("error", f"{type(error).__name__}: {error}"))
        connection.close()
        return

    def answer(message: tuple[str, Any]) -> bool:
        try:
            connection.send(message)
        except OSError:  # the runner is gone (interrupted, or it died): nobody to answer
            return False
        return True

    answer(("ready", None))
    while True:
        try:
            method, args = connection.recv()
        except (EOFError, OSError):  # the runner is gone: nothing left to answer
            worker.close()
            return
        if method == "close":
            worker.close()
            answer(("ok", None))
            return
        try:
            message: tuple[str, Any] = ("ok", getattr(worker, method)(*args))
        except Exception as error:  # report to the runner rather than dying silently
            message = ("error", f"{type(error).__name__}: {error}")
        if not answer(message):
            worker.close()
            return
