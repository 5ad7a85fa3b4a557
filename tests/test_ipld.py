"""peer.ipld: one strict DAG-CBOR encoder, UnixFS file CIDs and block checks for the client, the transactions
and the memory backend (tests/integration/test_ipfs_backend.py checks the same CIDs against real nodes)."""

from __future__ import annotations

import os

import libipld
import pytest

from peer.backends.memory import MemoryStorage
from peer.ipld import (
    CODEC_DAG_CBOR,
    CODEC_DAG_PB,
    CODEC_RAW,
    UNIXFS_CHUNK,
    BlockVerificationError,
    Link,
    cid_codec,
    cid_for,
    cid_to_bytes,
    encode_dag_cbor,
    unixfs_file_blocks,
    unixfs_file_cid,
    verify_block,
    verify_file,
)
from peer.tangle.transaction import InvalidTransaction, decode_transaction, encode_transaction


def _tx(**changes: object) -> tuple[str, bytes]:
    fields: dict = {
        "parents": [cid_for(b"parent", CODEC_DAG_CBOR)],
        "weights": cid_for(b"weights"),
        "model": "mlp-64-128-10",
        "author": "12D3KooWExample",
        "created": 1_700_000_000.5,
        "metrics": {"accuracy": 1.0, "loss": 0.25},
    }
    fields.update(changes)
    return encode_transaction(**fields)


def test_transactions_are_strict_dag_cbor_with_real_links() -> None:
    cid, block = _tx()
    assert cid == cid_for(block, CODEC_DAG_CBOR)
    decoded = libipld.decode_dag_cbor(block)
    assert decoded["metrics"]["accuracy"] == 1.0
    assert isinstance(decoded["metrics"]["accuracy"], float)  # an integral float stays a float
    # the parents and weights are tag-42 links: the block carries them as CID bytes behind 0xd8 0x2a
    assert b"\xd8\x2a" in block
    tx = decode_transaction(cid, block)
    assert tx.parents == (cid_for(b"parent", CODEC_DAG_CBOR),)
    assert tx.weights == cid_for(b"weights")


def test_byte_strings_posing_as_links_are_not_canonical() -> None:
    _, block = _tx()
    obj = libipld.decode_dag_cbor(block)  # links come back as plain bytes
    forged = encode_dag_cbor(obj)  # re-encoded without Link: byte strings where links were
    assert forged != block
    with pytest.raises(InvalidTransaction) as info:
        decode_transaction(cid_for(forged, CODEC_DAG_CBOR), forged)
    assert info.value.reason == "bad_encoding"


def test_a_block_that_does_not_hash_to_its_cid_is_rejected() -> None:
    cid, block = _tx()
    with pytest.raises(InvalidTransaction) as info:
        decode_transaction(cid, block + b"\x00")
    assert info.value.reason == "hash_mismatch"
    with pytest.raises(BlockVerificationError) as plain:
        verify_block(cid, b"other")
    assert plain.value.reason == "hash_mismatch"


def test_self_and_duplicate_parents_are_rejected() -> None:
    # a block cannot name itself (its CID depends on its bytes): decoding it under the parent's CID shows
    # what the check guards against, should a lying store ever hand such a block out
    parent = cid_for(b"parent", CODEC_DAG_CBOR)
    _, block = _tx(parents=[parent])
    with pytest.raises(InvalidTransaction) as info:
        decode_transaction(parent, block, verify=False)
    assert info.value.reason == "self_parent"
    with pytest.raises(InvalidTransaction) as info:
        _tx(parents=[parent, parent])
    assert info.value.reason == "duplicate_parents"


def test_unixfs_cid_of_one_chunk_is_the_raw_block() -> None:
    data = os.urandom(1000)
    assert unixfs_file_cid(data) == cid_for(data, CODEC_RAW)
    exact = os.urandom(UNIXFS_CHUNK)
    assert unixfs_file_cid(exact) == cid_for(exact, CODEC_RAW)


def test_unixfs_file_of_many_chunks_is_a_balanced_dag() -> None:
    data = os.urandom(3 * UNIXFS_CHUNK + 5)
    root, blocks = unixfs_file_blocks(data)
    assert cid_codec(root) == CODEC_DAG_PB
    assert root == unixfs_file_cid(data)
    leaves = [c for c in blocks if cid_codec(c) == CODEC_RAW]
    assert len(leaves) == 4
    assert b"".join(blocks[c] for c in leaves) == data
    for cid, block in blocks.items():
        verify_block(cid, block)
    verify_file(root, data)
    with pytest.raises(BlockVerificationError):
        verify_file(root, data[:-1])


def test_unixfs_tree_gets_a_second_level_past_174_chunks() -> None:
    data = bytes(175 * UNIXFS_CHUNK)  # zeros: every leaf is the same block
    root, blocks = unixfs_file_blocks(data)
    internal = [c for c in blocks if cid_codec(c) == CODEC_DAG_PB]
    assert len(internal) == 3  # two level-1 nodes (174 + 1 leaves) under the root
    assert root in internal


def test_memory_storage_names_weights_like_ipfs_add() -> None:
    import asyncio

    storage = MemoryStorage()
    data = os.urandom(UNIXFS_CHUNK + 1)
    cid = asyncio.run(storage.put_weights(data))
    assert cid == unixfs_file_cid(data)
    assert asyncio.run(storage.get_weights(cid, max_bytes=len(data))) == data
    other = MemoryStorage()
    other.add_replica(cid, data)
    with pytest.raises(BlockVerificationError):
        other.add_replica(cid, data + b"x")


def test_links_must_be_valid_cids() -> None:
    with pytest.raises(ValueError, match="invalid CID"):
        Link("bafy-not-a-cid")
    assert cid_to_bytes(cid_for(b"x"))[:2] == b"\x01\x55"
