"""The daemon's parts without processes or IPFS: configuration, the pinning window, intake against a lying
store, the weights cache's memory of failed fetches."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from peer.backends.base import BlockNotFound, Message
from peer.backends.memory import MemoryStorage
from peer.config import ConfigError, PeerSettings, parse
from peer.ipld import cid_for
from peer.learning.weights_source import WeightsSource, WeightsUnavailable
from peer.node.announcement import Announcement
from peer.node.builder import TangleBuilder
from peer.node.guard import TangleGuard
from peer.node.pinning import PinWindow
from peer.tangle.dag import Tangle
from peer.tangle.transaction import decode_transaction, encode_transaction


def _genesis() -> tuple[str, bytes]:
    return encode_transaction(parents=[], weights=cid_for(b"w0"), model="m", author="genesis", created=0)


def _child(parent: str, n: int) -> tuple[str, bytes]:
    return encode_transaction(parents=[parent], weights=cid_for(b"w%d" % n), model="m", author="a", created=n)


# --- configuration --------------------------------------------------------------------------------
def test_original_variables_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MODEL": "femnist",
        "TIMEOUT": "none",
        "TRAINING_INTERVAL": "7",
        "NUM_OF_TIPS": "3",
        "NUM_OF_SAMPLING_ROUND": "5",
        "ACTIVE_QUOTA": "0.5",
        "LOGGING_LEVEL": "WARN",
        "IPFS_REPROVIDER_INTERVAL": "12h",
        "PEER_INDEX": "2",
    }.items():
        monkeypatch.setenv(name, value)
    s = parse(PeerSettings, env=True)
    assert (s.model, s.timeout, s.training_interval, s.num_of_tips) == ("cnn", None, 7.0, 3)
    assert (s.num_of_sampling_round, s.active_quota, s.log_level) == (5, 0.5, "WARNING")
    assert s.kubo_config()["Provide.DHT.Interval"] == "12h"
    assert s.http_host == "127.0.0.1"  # never on every interface unless asked
    assert s.http_port == 8000


def test_bad_values_name_variable_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINING_INTERVAL", "soon")
    monkeypatch.setenv("CONNECTION_PRUNING_HIGH", "0")
    with pytest.raises(ConfigError) as info:
        parse(PeerSettings, env=True)
    assert "TRAINING_INTERVAL (--training-interval)" in str(info.value)
    assert "CONNECTION_PRUNING_HIGH (--connection-pruning-high)" in str(info.value)


def test_peer_index_comes_from_the_statefulset_ordinal_never_an_address() -> None:
    s = PeerSettings(peers=10)
    assert s.resolved_peer_index("peer-7") == 7
    with pytest.raises(ConfigError, match="PEER_INDEX"):
        s.resolved_peer_index("10.42.0.17")
    with pytest.raises(ConfigError, match="PEER_INDEX"):
        s.resolved_peer_index("peer-12")  # beyond PEERS
    assert PeerSettings(peer_index=3, peers=10).resolved_peer_index("peer-7") == 3


def test_pin_window_defaults_to_twice_the_walk_window() -> None:
    assert PeerSettings().pin_depth == 2 * PeerSettings().particle_depth_max
    assert PeerSettings(entry="genesis").pin_depth is None
    assert PeerSettings(pin_window=5).pin_depth == 5


# --- pinning window -------------------------------------------------------------------------------
def test_window_pins_every_transaction_and_recent_weights_only() -> None:
    genesis_id, genesis_block = _genesis()
    tangle = Tangle(decode_transaction(genesis_id, genesis_block), weight_horizon=None)
    storage = MemoryStorage()
    window = PinWindow(tangle, storage, depth=2)
    parent = genesis_id
    txs = []
    for n in range(1, 7):
        cid, block = _child(parent, n)
        tx = decode_transaction(cid, block)
        tangle.add(tx)
        txs.append(tx)
        parent = cid
        asyncio.run(window.update())
    pinned = set(storage.pins)
    assert {tx.id for tx in txs} | {genesis_id} <= pinned  # every block, for late joiners
    recent = {tx.weights for tx in txs[-3:]}  # heights 4..6 with depth 2
    assert window.weights == recent | {tangle.genesis.weights}
    assert not {tx.weights for tx in txs[:-3]} & pinned  # unpinned once out of the window


class SlowStorage(MemoryStorage):
    """Pins take a moment, as on kubo, so that updates can overlap."""

    async def pin(self, cids: list[str]) -> None:
        await asyncio.sleep(0.01)
        await super().pin(cids)


def test_overlapping_window_updates_leak_no_pin() -> None:
    genesis_id, genesis_block = _genesis()
    tangle = Tangle(decode_transaction(genesis_id, genesis_block), weight_horizon=None)
    storage = SlowStorage()
    window = PinWindow(tangle, storage, depth=1)

    async def grow() -> list[str]:
        parent, weights = genesis_id, []
        for n in range(1, 8):
            cid, block = _child(parent, n)
            tx = decode_transaction(cid, block)
            tangle.add(tx)
            weights.append(tx.weights)
            parent = cid
            # the daemon updates after publishing while the window's own loop may be updating too
            await asyncio.gather(window.update(), window.update())
        return weights

    weights = asyncio.run(grow())
    assert window.weights == set(weights[-2:]) | {tangle.genesis.weights}
    assert all(storage.pins[w] == 1 for w in window.weights)  # each pinned once
    assert not set(weights[:-2]) & set(storage.pins)  # and everything that left the window released


# --- intake ---------------------------------------------------------------------------------------
class LyingStorage(MemoryStorage):
    """Hands out a block under another CID: how a cycle or a self-parent would have to arrive."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        super().__init__()
        self.answers = answers

    async def get_transaction(self, cid: str, *, max_bytes: int) -> bytes:
        if cid in self.answers:
            return self.answers[cid]
        raise BlockNotFound(cid)


def test_cycles_cannot_enter_the_tangle() -> None:
    genesis_id, genesis_block = _genesis()
    tangle = Tangle(decode_transaction(genesis_id, genesis_block))
    # A and B approve each other: only possible if the store lies about what a CID holds
    a_cid = cid_for(b"a", 0x71)
    b_cid, b_block = _child(a_cid, 2)
    _, a_block = _child(b_cid, 1)
    builder = TangleBuilder(
        TangleGuard(tangle), LyingStorage({a_cid: a_block, b_cid: b_block}), architecture="m", attempts=1
    )
    asyncio.run(builder.on_message(Message("a", Announcement(b_cid, ()).encode())))
    assert builder.rejected == {"hash_mismatch": 1}
    assert len(tangle) == 1


class CountingStorage(MemoryStorage):
    """Counts block reads; each takes a moment, as over the network, so that walks overlap in time."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    async def get_transaction(self, cid: str, *, max_bytes: int) -> bytes:
        self.reads[cid] += 1
        await asyncio.sleep(0.001)
        return await super().get_transaction(cid, max_bytes=max_bytes)


async def _wide_tangle(storage: MemoryStorage, width: int, depth: int) -> list[list[str]]:
    """Levels of `width` transactions, each approving two of the level below, stored; the genesis first."""
    genesis_id, _ = _genesis()
    levels = [[genesis_id]]
    for height in range(1, depth + 1):
        below = levels[-1]
        level = []
        for k in range(width):
            cid, block = encode_transaction(
                parents=sorted({below[k % len(below)], below[(k + 1) % len(below)]}),
                weights=cid_for(b"w%d-%d" % (height, k)),
                model="m",
                author="a",
                created=height,
            )
            await storage.put_transaction(cid, block)
            level.append(cid)
        levels.append(level)
    return levels


def test_a_late_joiner_fetches_each_ancestor_once_however_many_walks_overlap() -> None:
    """Announcements keep arriving while a late joiner walks back to the genesis; every walk needs the
    same ancestors. They share what was fetched, so the rebuild reads each block once (a kubo soak's late
    joiner, re-fetching the past once per walk, held 231 of 3,024 transactions after 11 minutes)."""

    async def rebuild() -> tuple[Tangle, TangleBuilder, CountingStorage, list[list[str]]]:
        storage = CountingStorage()
        levels = await _wide_tangle(storage, width=3, depth=200)
        tangle = Tangle(decode_transaction(*_genesis()))
        builder = TangleBuilder(TangleGuard(tangle), storage, architecture="m")
        walks = []
        for level in levels[-1:-41:-2]:  # tips of ever lower levels, announced while the first walks run
            message = Message("a", Announcement(None, tuple(level)).encode())
            walks.append(asyncio.create_task(builder.on_message(message)))
            await asyncio.sleep(0.005)
        await asyncio.gather(*walks)
        return tangle, builder, storage, levels

    tangle, builder, storage, levels = asyncio.run(rebuild())
    assert {tx.id for tx in tangle} == {cid for level in levels for cid in level}
    assert builder.unresolved == 0
    assert max(storage.reads.values()) == 1
    assert builder.fetches == len(tangle) - 1 == 600
    assert not builder._fetched  # everything fetched was inserted: nothing is held for later


# --- weights cache --------------------------------------------------------------------------------
def test_failed_fetches_are_not_retried_at_once() -> None:
    calls = []

    def fetch(weights_id: str) -> bytes:
        calls.append(weights_id)
        raise TimeoutError("unreachable")

    now = [100.0]
    source = WeightsSource(fetch, {"w": (1,)}, max_bytes=1024, retry_after=30.0, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(WeightsUnavailable):
            source.get("x")
    assert calls == ["x"]  # the walks that meet it again do not wait for another timeout
    now[0] += 29.9
    with pytest.raises(WeightsUnavailable):
        source.get("x")
    assert calls == ["x"]
    now[0] += 0.2
    with pytest.raises(WeightsUnavailable):
        source.get("x")
    assert calls == ["x", "x"]
    assert not source.unusable  # unreachable is not invalid: it may come back


# --- shutdown -------------------------------------------------------------------------------------
def test_shutdown_logs_what_it_could_not_pin_or_announce(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from peer.node.daemon import PeerDaemon

    class Unreachable:
        async def update(self) -> None:
            raise ConnectionError("the IPFS node is gone")

        async def publish(self, topic: str, data: bytes) -> None:
            raise ConnectionError("pubsub is gone")

    genesis_id, genesis_block = _genesis()
    tip, tip_block = _child(genesis_id, 1)
    tangle = Tangle(decode_transaction(genesis_id, genesis_block))
    tangle.add(decode_transaction(tip, tip_block))
    peer = SimpleNamespace(
        tangle=tangle,
        genesis=SimpleNamespace(transaction=SimpleNamespace(id=genesis_id)),
        broker=Unreachable(),
        topic="t",
        published_count=0,
    )
    daemon = PeerDaemon(PeerSettings(peer_index=0))

    async def stop() -> None:
        training = asyncio.create_task(asyncio.sleep(3600))
        await daemon._shutdown(peer, Unreachable(), training, [], None)  # type: ignore[arg-type]

    with caplog.at_level("ERROR", logger="peer.daemon"):
        asyncio.run(stop())
    messages = [r.getMessage() for r in caplog.records]
    assert any("last pin update failed" in m and "the IPFS node is gone" in m for m in messages)
    assert any("final tip announcement failed" in m and "pubsub is gone" in m for m in messages)


# --- memory between rounds ----------------------------------------------------------------------------
def test_every_round_ends_by_releasing_the_model_even_a_failed_one() -> None:
    from types import SimpleNamespace

    from peer.node.daemon import PeerDaemon

    released: list[str] = []

    class Model:
        def release(self) -> None:
            released.append("model")

    async def train_once(rng: object, attacking: bool) -> None:
        raise RuntimeError("no reference")

    peer = SimpleNamespace(model=Model(), forget_below_window=lambda: None, train_once=train_once)
    daemon = PeerDaemon(PeerSettings(peer_index=0))
    asyncio.run(daemon._train(peer, 1))  # type: ignore[arg-type]
    assert released == ["model"]
    assert daemon.last_round is not None
    assert daemon.last_round.error == "RuntimeError: no reference"
