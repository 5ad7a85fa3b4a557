"""The `ipfs` storage backend against real kubo nodes: CIDs computed locally are the nodes' CIDs, fetched
bytes are verified and bounded, pins are counted."""

from __future__ import annotations

import os

import pytest

from peer.backends.base import ContentTooLarge
from peer.backends.ipfs import IpfsStorage
from peer.ipfs import IpfsClient
from peer.ipld import CODEC_DAG_CBOR, UNIXFS_CHUNK, UNIXFS_MAX_LINKS, cid_for, unixfs_file_cid
from peer.tangle.transaction import InvalidTransaction, encode_transaction

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "size",
    [1, UNIXFS_CHUNK, UNIXFS_CHUNK + 1, 5 * UNIXFS_CHUNK + 123, UNIXFS_MAX_LINKS * UNIXFS_CHUNK + 1],
    ids=["1B", "one-chunk", "two-chunks", "six-chunks", "two-levels"],
)
async def test_unixfs_cid_is_what_the_node_computes(ipfs_a: IpfsClient, size: int) -> None:
    data = os.urandom(size)
    assert await ipfs_a.add(data, only_hash=True, request_timeout=120) == unixfs_file_cid(data)


async def test_storage_round_trip_across_nodes(ipfs_a: IpfsClient, ipfs_b: IpfsClient) -> None:
    a, b = IpfsStorage(ipfs_a), IpfsStorage(ipfs_b)
    weights = os.urandom(300 * 1024)
    weights_cid = await a.put_weights(weights)
    assert weights_cid == unixfs_file_cid(weights)
    assert await b.get_weights(weights_cid, max_bytes=len(weights)) == weights
    with pytest.raises(ContentTooLarge):  # final: declared over the limit, nothing fetched
        await b.get_weights(weights_cid, max_bytes=len(weights) - 1)

    parent = cid_for(b"a parent", CODEC_DAG_CBOR)  # parents are transactions (dag-cbor), never weights
    cid, block = encode_transaction(parents=[parent], weights=weights_cid, model="m", author="a", created=1.0)
    await a.put_transaction(cid, block)
    assert await b.get_transaction(cid, max_bytes=len(block)) == block
    with pytest.raises(InvalidTransaction) as info:
        await b.get_transaction(cid, max_bytes=len(block) - 1)
    assert info.value.reason == "too_large"


async def test_pins_are_counted_and_transactions_pinned_directly(ipfs_b: IpfsClient) -> None:
    storage = IpfsStorage(ipfs_b)
    weights_cid = await storage.put_weights(os.urandom(64))
    cid, block = encode_transaction(
        parents=[], weights=weights_cid, model="m", author="a", created=os.getpid()
    )
    await storage.put_transaction(cid, block)
    await storage.pin([cid, weights_cid])
    await storage.pin([weights_cid])  # a second peer on the same node
    pins = await ipfs_b.pin_ls("all")
    assert pins[cid] == "direct"  # never the whole past
    assert pins[weights_cid] == "recursive"
    assert storage.pinned_bytes == len(block) + 64
    await storage.unpin([weights_cid])
    assert await ipfs_b.is_pinned(weights_cid)  # the other peer still wants it
    await storage.unpin([weights_cid, cid])
    assert not await ipfs_b.is_pinned(weights_cid)
    assert not await ipfs_b.is_pinned(cid)
    assert storage.pinned_bytes == 0


async def test_pinned_bytes_count_weights_pinned_before_they_were_read(
    ipfs_a: IpfsClient, ipfs_b: IpfsClient
) -> None:
    """The window pins weights that walks never read: their size comes from the node, and reading them
    later never makes the gauge go wrong (it once went negative in a soak)."""
    data = os.urandom(300_000)  # past one chunk: a dag-pb root over raw leaves
    weights_cid = await IpfsStorage(ipfs_a).put_weights(data)
    storage = IpfsStorage(ipfs_b)
    await storage.pin([weights_cid])
    assert storage.pinned_bytes == len(data)
    assert await storage.get_weights(weights_cid, max_bytes=len(data)) == data
    await storage.unpin([weights_cid])
    assert storage.pinned_bytes == 0
