"""A long-running peer stays bounded: 20,000 announced transactions through the daemon's own parts (the
`Peer` with its tangle builder, weights source, learner and pinning window) over the memory backends, with
a share of them pointing at invalid or unreachable weights, as a daemon meets them over months.

Every per-CID memo must stay within its bound while the tangle itself (which a peer keeps by design)
grows; each bound is also shown to have been reached, so the test would fail if one were unbounded."""

from __future__ import annotations

import asyncio
import os

import numpy as np

from peer.backends.base import Message
from peer.backends.memory import MemoryBroker, MemoryStorage
from peer.bounded import LruDict
from peer.config import PeerSettings
from peer.data import load_dataset, peer_data
from peer.learning.learner import MAX_RATINGS
from peer.learning.weights_source import MAX_REMEMBERED
from peer.models import create_model
from peer.models.weights import encode_weights, weights_nbytes
from peer.node.announcement import Announcement
from peer.node.peer import RECENT_PUBLISHED, Genesis, Peer, make_genesis, store_genesis
from peer.node.pinning import PinWindow
from peer.tangle.transaction import encode_transaction

TRANSACTIONS = 20_000
BATCH = 1_000
PUBLISHED_PER_BATCH = 5
OTHER = "other-peer"


def test_lru_dict_forgets_the_least_recently_used() -> None:
    memo: LruDict[str, int] = LruDict(2)
    memo["a"], memo["b"] = 1, 2
    assert memo.get("a") == 1  # a use: "b" is now the oldest
    memo["c"] = 3
    assert dict(memo) == {"a": 1, "c": 3}


async def _softmax_peer(
    plausible_margin: float | None = None,
) -> tuple[Peer, PeerSettings, MemoryStorage, Genesis]:
    """One peer on the memory backends with the smallest model: what both long runs start from."""
    settings = PeerSettings(model="softmax", storage="memory", message_broker="memory", peer_index=0)
    if plausible_margin is not None:
        settings = settings.model_copy(update={"plausible_margin": plausible_margin})
    dataset = load_dataset("digits")
    model = create_model("softmax", dataset.input_shape, dataset.num_classes)
    genesis = make_genesis(model, 0)
    storage = MemoryStorage()
    await store_genesis(storage, genesis)
    peer = Peer(
        author="this-peer",
        model=model,
        data=peer_data(dataset, 0, 10),
        settings=settings,
        storage=storage,
        broker=MemoryBroker().connect("this-peer"),
        genesis=genesis,
        clock=lambda: 0.0,
    )
    return peer, settings, storage, genesis


async def _run() -> None:
    peer, settings, storage, genesis = await _softmax_peer()
    window = PinWindow(peer.tangle, storage, settings.pin_depth)
    rng = np.random.default_rng(0)
    await peer.reference(rng)  # binds the peer to this loop, as the daemon's first round does
    # a few good models, shared by many transactions (ratings are per transaction, not per weights)
    good = [
        await storage.put_weights(encode_weights({k: v + 0.01 * i for k, v in genesis.weights.items()}))
        for i in range(8)
    ]
    tips = [genesis.transaction.id]
    for start in range(0, TRANSACTIONS, BATCH):
        batch = []
        for n in range(start, start + BATCH):
            if n % 40 < 9:  # invalid content (4,500 of them): remembered as unusable
                weights = await storage.put_weights(b"not safetensors %d" % n)
            elif n % 40 < 18:  # never stored anywhere (4,500): a failed fetch, remembered for a while
                weights = await MemoryStorage().put_weights(b"gone %d" % n)
            else:
                weights = good[n % len(good)]
            cid, block = encode_transaction(
                parents=tips[-2:], weights=weights, model=peer.model.architecture, author=OTHER, created=n
            )
            await storage.put_transaction(cid, block)
            await peer.builder.on_message(Message(OTHER, Announcement(cid, ()).encode()))
            tips.append(cid)
            batch.append(cid)
        # what walks and the reference do with what arrived: rate it, on the training thread
        await asyncio.to_thread(lambda b=batch: [peer.learner.plausible(peer.tangle, t) for t in b])
        await window.update()
        for _ in range(PUBLISHED_PER_BATCH):
            await peer.publish(genesis.weights, tips[-2:], {"accuracy": 0.1, "loss": 2.0})
            tips.append(peer.published[-1].id)
        assert len(peer.learner._ratings) <= MAX_RATINGS
        assert peer.weights.remembered <= 2 * MAX_REMEMBERED
        assert len(peer.published) <= RECENT_PUBLISHED
        assert len(window.weights) <= 3 * settings.pin_depth + 10  # a chain: about one per height
    assert len(peer.tangle) > TRANSACTIONS  # everything arrived: the tangle itself grows, by design
    # each bound was reached, not merely never approached
    assert len(peer.learner._ratings) == MAX_RATINGS
    assert peer.weights.remembered == 2 * MAX_REMEMBERED
    assert len(peer.published) == RECENT_PUBLISHED
    assert peer.published_count == PUBLISHED_PER_BATCH * TRANSACTIONS // BATCH


def test_a_long_running_peer_stays_bounded() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    asyncio.run(_run())


class _CatOnly:
    """Stands in for the kubo RPC client (cat, files/stat): the size memo is under test, not the node."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def cat(self, cid: str, *, max_bytes: int) -> bytes:
        return self.files[cid]

    async def file_size(self, cid: str) -> int:  # the size check before any fetch (issue 14)
        return len(self.files[cid])


def test_ipfs_storage_remembers_a_bounded_number_of_sizes() -> None:
    from peer.backends.ipfs import MAX_SIZES, IpfsStorage
    from peer.ipld import unixfs_file_cid

    files = {unixfs_file_cid(data): data for data in (b"weights %d" % n for n in range(MAX_SIZES + 500))}
    storage = IpfsStorage(_CatOnly(files))  # type: ignore[arg-type]

    async def fetch_all() -> None:
        for cid in files:
            await storage.get_weights(cid, max_bytes=1024)

    asyncio.run(fetch_all())
    assert len(storage.sizes) == MAX_SIZES


async def _window_run(forget: bool) -> tuple[int, int, int, bool]:
    """A chain of 120 transactions with distinct weights, each rated as it arrives (as walks do).
    Returns the weights cached and the ratings held at the end, the window's size in transactions,
    and whether every weights of the window is still cached."""
    # near-genesis weights: the plausibility margin would keep the usable top (and the window) at the genesis
    peer, settings, storage, genesis = await _softmax_peer(plausible_margin=0.0)
    await peer.reference(np.random.default_rng(0))
    tip = genesis.transaction.id
    for n in range(120):
        weights = await storage.put_weights(
            encode_weights({k: v + 0.001 * n for k, v in genesis.weights.items()})
        )
        tip, block = encode_transaction(
            parents=[tip], weights=weights, model=peer.model.architecture, author=OTHER, created=n
        )
        await storage.put_transaction(tip, block)
        await peer.builder.on_message(Message(OTHER, Announcement(tip, ()).encode()))
        await asyncio.to_thread(peer.learner.top, peer.tangle)  # rates the new tip, moves the usable top
        if forget:
            peer.forget_below_window()  # what the daemon does before every round
    depth = settings.walk_config().window_depth
    assert depth is not None
    window = peer.tangle.window(depth)
    kept = all(peer.weights.holds(peer.tangle.get(t).weights) for t in window)
    cached = peer.weights.cached_bytes // weights_nbytes(genesis.weights)
    return cached, len(peer.learner._ratings), len(window), kept


def test_a_peer_forgets_decoded_weights_and_ratings_below_the_window() -> None:
    """A daemon's memory follows the walk window, not the tangle's age (a kubo soak showed the decoded
    weights cache filling towards its 64 MiB bound: peer RSS +64% over 47 minutes)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cached, ratings, window, kept = asyncio.run(_window_run(forget=True))
    assert kept  # everything a walk can still read stays decoded
    assert cached <= window + 1  # the window and the genesis
    assert ratings <= window + 1
    # the same run without forgetting holds every model it ever rated
    cached, ratings, window, kept = asyncio.run(_window_run(forget=False))
    assert kept
    assert min(cached, ratings) >= 120  # all 120 (and the genesis model)
