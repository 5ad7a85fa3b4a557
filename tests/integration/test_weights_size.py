"""Weights past the size limit cost a block, not their size (issue 14, finding 4), on real kubo nodes: the
size a UnixFS root declares is checked before any content is fetched, and what is too large is final."""

from __future__ import annotations

import os

import pytest

from peer.backends.base import ContentTooLarge
from peer.backends.ipfs import IpfsStorage
from peer.ipfs import IpfsClient
from peer.ipld import UNIXFS_CHUNK

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024


async def test_oversized_weights_are_refused_before_their_content_is_fetched(
    ipfs_a: IpfsClient, ipfs_b: IpfsClient
) -> None:
    a, b = IpfsStorage(ipfs_a), IpfsStorage(ipfs_b)
    big = os.urandom(40 * UNIXFS_CHUNK)  # 10 MiB: 40 leaves under one root
    big_cid = await a.put_weights(big)
    before = (await ipfs_b.repo_stat()).repo_size
    with pytest.raises(ContentTooLarge, match="declare"):
        await b.get_weights(big_cid, max_bytes=LIMIT)
    grown = (await ipfs_b.repo_stat()).repo_size - before
    assert grown < LIMIT, grown  # the root block at most, not the 10 MiB behind it

    # a single raw block (the usual weights: one chunk or less) is sized the same way, and read when small
    small = os.urandom(LIMIT // 2)
    small_cid = await a.put_weights(small)
    assert small_cid.startswith("bafk")  # raw codec: the block is the file
    assert await b.get_weights(small_cid, max_bytes=LIMIT) == small
    one_chunk = await a.put_weights(os.urandom(UNIXFS_CHUNK))
    with pytest.raises(ContentTooLarge):
        await b.get_weights(one_chunk, max_bytes=LIMIT)
