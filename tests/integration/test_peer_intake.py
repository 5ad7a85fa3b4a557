"""Hostile traffic on the topic of a real `tangle peer`: everything malformed is counted by reason and
dropped, the peer never crashes, keeps training, and its tangle stays intact.

The attacker is another kubo node on the testnet, so its announcements are signed PubSub messages like
any peer's. Cycles and self-parents cannot be built over IPFS at all (a block cannot contain its own hash);
a lying storage that tries is caught by hash verification (see tests/test_intake.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from peer.ipld import Link, cid_for, cid_to_bytes, encode_dag_cbor
from peer.node.announcement import Announcement

from .peers import Participant, PeerProcess, digits_genesis, peers_stopped, run, running_testnet, wait_for

pytestmark = pytest.mark.integration

# A classic pickle exploit (protocol 0): unpickling it runs `touch <marker>`. Written as bytes, since
# nothing in this project imports pickle; it must never be unpickled, only rejected.
MARKER = Path("/tmp/learning-tangle-pickle-was-executed")
PICKLE_PAYLOAD = b"cos\nsystem\n(S'touch " + str(MARKER).encode() + b"'\ntR."


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PeerProcess, Participant]]:
    directory = tmp_path_factory.mktemp("peer-intake")
    with running_testnet(directory / "ipfs", 2) as net:
        peer = PeerProcess(
            directory / "peer",
            {"IPFS_API": net[0].api_url, "PEER_INDEX": "0", "TIMEOUT": "2", "REANNOUNCE_INTERVAL": "60"},
        )
        with peers_stopped([peer]):
            peer.start().wait_ready()
            yield peer, Participant(net[1].api_url, digits_genesis())


def _raw_transaction(participant: Participant, sender: str, weights: str, **changes: object) -> dict:
    genesis = participant.genesis.transaction
    obj: dict = {
        "v": 1,
        "parents": [Link(genesis.id)],
        "weights": Link(weights),
        "model": genesis.model,
        "author": sender,
        "created": 1_700_000_000_000,
        "tag": "attack",
        "metrics": {"accuracy": 0.5, "loss": 1.0},
    }
    obj.update(changes)
    return obj


async def _attack(participant: Participant) -> dict[str, str]:
    """Send one of each kind of bad traffic; returns the CIDs of the structurally valid transactions."""
    me = await participant.peer_id()
    genesis = participant.genesis
    send = participant.announce
    await send(os.urandom(300))  # random bytes
    await send(b'{"v": 1, "tx": ')  # invalid JSON
    await send(PICKLE_PAYLOAD)  # a pickle as announcement
    await send(json.dumps({"v": 2, "cid": "x"}).encode())  # JSON, wrong schema
    await send(json.dumps({"v": 1, "tx": "not-a-cid", "tips": []}).encode())  # bad CID
    await send(b" " * 5000)  # oversized announcement
    await send(Announcement(cid_for(os.urandom(32), 0x71), ()).encode())  # unknown, unreachable CID

    weights = await participant.add(genesis.weights_bytes)

    async def announce_block(block: bytes) -> str:
        cid = await participant.put_block(block)
        await send(Announcement(cid, ()).encode())
        return cid

    await announce_block(b"\xff\xfe not cbor at all")  # invalid CBOR
    await announce_block(encode_dag_cbor({"hello": "world"}))  # CBOR, not a transaction
    parents = [Link(genesis.transaction.id)] * 9
    await announce_block(encode_dag_cbor(_raw_transaction(participant, me, weights, parents=parents)))
    parents = [Link(genesis.transaction.id)] * 2
    await announce_block(encode_dag_cbor(_raw_transaction(participant, me, weights, parents=parents)))
    await announce_block(encode_dag_cbor(_raw_transaction(participant, me, weights, tag="x" * 17_000)))
    await announce_block(encode_dag_cbor(_raw_transaction(participant, me, weights, model="resnet-152")))
    await announce_block(encode_dag_cbor(_raw_transaction(participant, me, weights, parents=[])))
    await announce_block(encode_dag_cbor(_raw_transaction(participant, me, weights, author="someone-else")))
    # links as plain byte strings: decodes alike with libipld, but is not the canonical form
    plain = _raw_transaction(participant, me, weights)
    plain["parents"] = [cid_to_bytes(genesis.transaction.id)]
    await announce_block(encode_dag_cbor(plain))

    # structurally valid transactions whose weights are poison: inserted, but never built on
    spec = {name: array.shape for name, array in genesis.weights.items()}
    wrong_shapes = {name: np.zeros((*shape, 2), np.float32) for name, shape in spec.items()}
    nan = {name: np.full(shape, np.nan, np.float32) for name, shape in spec.items()}
    return {
        "wrong_shapes": await participant.transaction(weights=safetensors.numpy.save(wrong_shapes)),
        "nan": await participant.transaction(weights=safetensors.numpy.save(nan)),
        "pickle": await participant.transaction(weights=PICKLE_PAYLOAD),
    }


def test_malformed_traffic_is_counted_and_dropped(attacked: tuple[PeerProcess, Participant]) -> None:
    peer, participant = attacked
    MARKER.unlink(missing_ok=True)
    wait_for("a first publication", lambda: peer.info()["published"] >= 1, timeout=60)
    honest_before = set(peer.transactions())
    poisoned = run(_attack(participant))

    expected = {
        "bad_announcement": 4,
        "bad_cid": 1,
        "announcement_too_large": 1,
        "bad_encoding": 2,
        "bad_schema": 1,
        "too_many_parents": 1,
        "duplicate_parents": 1,
        "too_large": 1,
        "unknown_model": 1,
        "foreign_genesis": 1,
        "author_mismatch": 1,
    }

    def all_rejected() -> dict[str, int] | None:
        rejected = peer.info()["rejected"]
        return rejected if all(rejected.get(k, 0) >= n for k, n in expected.items()) else None

    rejected = wait_for("every rejection to be counted", all_rejected, timeout=60)
    assert rejected == expected
    wait_for("the unreachable CID to be dropped", lambda: peer.info()["unresolved"] == 1, timeout=60)

    # the poisoned weights are found out when a walk reaches them, and never built on
    def found_out() -> dict[str, str] | None:
        unusable = peer.info()["unusableWeights"]
        return unusable if len(unusable) >= 3 else None

    unusable = wait_for("the poisoned weights to be found out", found_out, timeout=120)
    assert all(reason.startswith("invalid") for reason in unusable.values()), unusable
    published_before = peer.info()["published"]
    wait_for(
        "more publications after the attack",
        lambda: peer.info()["published"] > published_before + 1,
        timeout=60,
    )
    nodes = peer.transactions()
    assert honest_before <= set(nodes)
    me = peer.info()["peer"]
    for node in nodes.values():
        if node["peer"] == me:
            assert not set(node["parents"]) & set(poisoned.values()), "a poisoned model was built on"
    assert peer.alive()
    assert peer.get("/healthz")["ok"]
    assert not MARKER.exists(), "the pickle payload was executed"
    metrics = peer.get("/metrics")
    assert 'learning_tangle_transactions_rejected_total{peer="' in metrics
    assert 'reason="too_many_parents"} 1.0' in metrics
