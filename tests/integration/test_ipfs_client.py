"""The IPFS RPC client against real kubo v0.43.1 nodes (and a mocked transport for failure paths)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import libipld
import pytest

from peer.ipfs import (
    IpfsApiError,
    IpfsClient,
    IpfsConnectionError,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsVerificationError,
    Link,
    cid_for,
    encode_dag_cbor,
    normalize_cid,
    parse_car,
    verify_block,
)
from peer.ipfs.testnet import IpfsTestnet, wait_for_pubsub_peers
from peer.ipld import CODEC_DAG_CBOR, BlockVerificationError

from .conftest import TestnetFactory

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _unknown_cid() -> str:
    """A well-formed CID of random bytes: no node has it."""
    return cid_for(os.urandom(64))


# -- add / cat -------------------------------------------------------------------------------------


async def test_add_on_a_then_cat_on_b(ipfs_a: IpfsClient, ipfs_b: IpfsClient) -> None:
    data = os.urandom(10 * MiB)
    started = time.perf_counter()
    cid = await ipfs_a.add(data)
    added = time.perf_counter()
    assert await ipfs_a.cat(cid, max_bytes=len(data)) == data
    local = time.perf_counter()
    assert await ipfs_b.cat(cid, max_bytes=len(data)) == data
    remote = time.perf_counter()
    print(
        f"10 MiB: add {added - started:.2f} s, local cat {local - added:.2f} s, "
        f"cat from the other node {remote - local:.2f} s"
    )
    assert cid.startswith("bafy")  # CIDv1 dag-pb root in base32
    assert normalize_cid(cid) == cid


async def test_small_add_is_one_raw_block(ipfs_a: IpfsClient) -> None:
    data = b"one small raw leaf"
    cid = await ipfs_a.add(data)
    assert cid == cid_for(data)  # raw-leaves + CIDv1: a single-block file is the raw block itself


# -- blocks ----------------------------------------------------------------------------------------


async def test_block_get_is_verified_against_the_cid(ipfs_a: IpfsClient, ipfs_b: IpfsClient) -> None:
    data = b"block payload " * 100
    cid = await ipfs_a.add(data)
    assert await ipfs_b.block_get(cid, max_bytes=len(data)) == data
    verify_block(cid, data)
    with pytest.raises(BlockVerificationError):
        verify_block(cid, data + b"tampered")
    with pytest.raises(BlockVerificationError):
        verify_block(cid_for(b"something else"), data)


async def test_block_get_rejects_bytes_that_do_not_match() -> None:
    # A node (or anything between) answering with other bytes than asked for must be caught.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not the block you asked for")

    async with IpfsClient("http://node.invalid:5001", transport=httpx.MockTransport(handler)) as client:
        cid = cid_for(b"the real block")
        with pytest.raises(IpfsVerificationError):
            await client.block_get(cid, max_bytes=1024)
        assert await client.block_get(cid, max_bytes=1024, verify=False) == b"not the block you asked for"


# -- DAG-CBOR objects and CAR export ---------------------------------------------------------------


async def test_dag_put_links_and_export_as_car(
    ipfs_a: IpfsClient, ipfs_b: IpfsClient, tmp_path: Path
) -> None:
    weights = os.urandom(300 * 1024)  # > one 256 KiB chunk: a dag-pb root with raw leaves
    weights_cid = await ipfs_a.add(weights)
    parent_1 = await ipfs_a.dag_put({"version": 1, "parents": [], "note": "genesis"})
    parent_2 = await ipfs_a.dag_put({"version": 1, "parents": [Link(parent_1)], "accuracy": 0.5})
    tx = {
        "version": 1,
        "parents": [Link(parent_1), {"/": parent_2}],  # both link spellings are accepted
        "weights": Link(weights_cid),
        "accuracy": 1.0,  # integral float: a node re-encoding it would make it an integer
        "created": 1_700_000_000,
    }
    tx_cid = await ipfs_a.dag_put(tx)
    assert tx_cid == cid_for(encode_dag_cbor(tx), CODEC_DAG_CBOR)

    # The object reads back with its links and value types intact, fetched from the other node.
    decoded = libipld.decode_dag_cbor(await ipfs_b.block_get(tx_cid, max_bytes=4096))
    assert [normalize_cid(p) for p in decoded["parents"]] == [parent_1, parent_2]
    assert normalize_cid(decoded["weights"]) == weights_cid
    assert decoded["accuracy"] == 1.0
    assert isinstance(decoded["accuracy"], float)

    # Node B exports the whole past (fetching from A): every block is there and hashes to its CID.
    car_bytes = b"".join([chunk async for chunk in ipfs_b.dag_export(tx_cid)])
    car = parse_car(car_bytes)
    assert car.roots == [tx_cid]
    assert {tx_cid, parent_1, parent_2, weights_cid} <= set(car.blocks)
    leaves = [cid for cid in car.blocks if cid.startswith("bafkrei")]
    assert b"".join(car.blocks[c] for c in leaves) == weights  # raw leaves, in DAG order

    written = await ipfs_a.dag_export_to(tx_cid, tmp_path / "experiment.car")
    assert written == len(car_bytes)
    assert (tmp_path / "experiment.car").read_bytes() == car_bytes
    assert not (tmp_path / "experiment.car.part").exists()

    # A past without raw leaves is plain DAG-CBOR, which libipld's own CAR decoder reads too.
    parents_car = b"".join([chunk async for chunk in ipfs_b.dag_export(parent_2)])
    header, blocks = libipld.decode_car(parents_car)
    assert {normalize_cid(c) for c in blocks} == {parent_1, parent_2}
    assert [normalize_cid(r) for r in header["roots"]] == [parent_2]


def test_dag_cbor_encoding_matches_libipld_and_keeps_bytes_as_bytes() -> None:
    plain = {"b": [1, -2, 2**40, 0.25, 1.0, "x", None, True], "aa": {"z": False, "y": ""}}
    assert encode_dag_cbor(plain) == libipld.encode_dag_cbor(plain)
    # libipld's encoder would turn these bytes into a link because they start like a CID.
    cid_like = bytes([1, 0x55, 0x12, 0x20]) + b"\x00" * 32
    assert libipld.decode_dag_cbor(encode_dag_cbor({"blob": cid_like}))["blob"] == cid_like
    assert encode_dag_cbor({"blob": cid_like}) != encode_dag_cbor({"blob": Link(normalize_cid(cid_like))})
    with pytest.raises(ValueError, match="NaN"):
        encode_dag_cbor({"x": float("nan")})
    with pytest.raises(ValueError, match="invalid CID"):
        Link("not-a-cid")


# -- pins ------------------------------------------------------------------------------------------


async def test_pin_add_ls_rm(ipfs_a: IpfsClient, ipfs_b: IpfsClient) -> None:
    cid = await ipfs_a.add(b"pin me " + os.urandom(16), pin=False)
    assert not await ipfs_b.is_pinned(cid)
    assert await ipfs_b.pin_add(cid) == [cid]  # B fetches it from A to pin it
    assert (await ipfs_b.pin_ls("recursive")).get(cid) == "recursive"
    assert await ipfs_b.is_pinned(cid)
    assert await ipfs_b.pin_rm(cid) == [cid]
    assert cid not in await ipfs_b.pin_ls("recursive")
    assert not await ipfs_b.is_pinned(cid)
    with pytest.raises(IpfsApiError, match="not pinned"):
        await ipfs_b.pin_rm(cid)


# -- pubsub ----------------------------------------------------------------------------------------


async def test_pubsub_message_from_a_arrives_at_b(
    ipfs_testnet: IpfsTestnet, ipfs_a: IpfsClient, ipfs_b: IpfsClient
) -> None:
    topic = f"learning-tangle/test/{os.urandom(4).hex()}"
    async with ipfs_b.pubsub_sub(topic) as subscription:
        assert topic in await ipfs_b.pubsub_ls()
        await wait_for_pubsub_peers(ipfs_a, topic, [ipfs_testnet[1].peer_id])
        assert ipfs_testnet[1].peer_id in await ipfs_a.pubsub_peers(topic)
        payload = b'{"cid": "bafy...", "tips": []}'
        await ipfs_a.pubsub_pub(topic, payload)
        message = await asyncio.wait_for(anext(subscription), timeout=10)
    assert message.from_peer == ipfs_testnet[0].peer_id
    # `from` is what the peers' author check relies on: kubo signs every message and drops unsigned ones
    # or ones whose signature does not match `from` (unless signing is disabled, which nothing here does)
    assert await ipfs_a.config_get("Pubsub.DisableSigning") is False
    assert await ipfs_b.config_get("Pubsub.DisableSigning") is False
    assert message.data == payload
    assert message.topics == (topic,)
    assert message.seqno
    # Closing the stream unsubscribes, once the node has noticed the closed connection.
    for _ in range(50):
        if topic not in await ipfs_b.pubsub_ls():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the node kept the subscription after its stream was closed")


async def test_subscription_raises_when_its_node_goes_away(ipfs_testnet_factory: TestnetFactory) -> None:
    net = await ipfs_testnet_factory(1)
    async with net[0].client() as client, client.pubsub_sub("doomed") as subscription:
        waiter = asyncio.ensure_future(anext(subscription))
        await asyncio.sleep(0.2)
        await net.stop(0)
        with pytest.raises(IpfsConnectionError):
            await asyncio.wait_for(waiter, timeout=10)


# -- errors, limits, timeouts, retries -------------------------------------------------------------


async def test_api_error_carries_the_nodes_message(ipfs_a: IpfsClient) -> None:
    with pytest.raises(IpfsApiError) as info:
        await ipfs_a.cat("not-a-cid", max_bytes=1024)
    error = info.value
    assert error.message  # kubo: "invalid path ..."
    assert error.status in {400, 500}
    assert error.code is not None
    assert error.message in str(error)


async def test_max_bytes_is_enforced(ipfs_a: IpfsClient) -> None:
    data = os.urandom(2 * MiB)
    cid = await ipfs_a.add(data)
    with pytest.raises(IpfsTooLarge):
        await ipfs_a.cat(cid, max_bytes=MiB)
    assert await ipfs_a.cat(cid, max_bytes=len(data)) == data  # exactly at the limit is fine
    small = await ipfs_a.add(b"x" * 1000)
    with pytest.raises(IpfsTooLarge):
        await ipfs_a.block_get(small, max_bytes=999)
    with pytest.raises(IpfsTooLarge):
        async for _ in ipfs_a.dag_export(cid, max_bytes=MiB):
            pass


async def test_max_bytes_stops_reading_early() -> None:
    # The limit must hold without buffering the rest: count what the transport handed out.
    served = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal served
        while True:
            served += 64 * 1024
            yield b"\0" * (64 * 1024)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    async with IpfsClient("http://node.invalid:5001", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(IpfsTooLarge):
            await client.cat(_unknown_cid(), max_bytes=MiB)
    assert served <= MiB + 64 * 1024


async def test_cat_of_missing_cid_times_out(ipfs_testnet: IpfsTestnet) -> None:
    async with ipfs_testnet[1].client(timeout=1.0, retries=0) as client:
        started = time.perf_counter()
        with pytest.raises(IpfsTimeout):
            await client.cat(_unknown_cid(), max_bytes=1024)
        assert time.perf_counter() - started < 5
    # Reads are retried on timeouts: with one retry the call takes two timeouts (plus backoff).
    async with ipfs_testnet[1].client(timeout=1.0, retries=1, backoff=0.1) as client:
        started = time.perf_counter()
        with pytest.raises(IpfsTimeout):
            await client.block_get(_unknown_cid(), max_bytes=1024)
        assert time.perf_counter() - started >= 2.0


async def test_connection_errors_retry_reads_but_not_writes() -> None:
    calls: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] = calls.get(request.url.path, 0) + 1
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(handler)
    async with IpfsClient("http://node.invalid:5001", transport=transport, retries=2, backoff=0.01) as client:
        with pytest.raises(IpfsConnectionError):
            await client.id()
        with pytest.raises(IpfsConnectionError):
            await client.add(b"data")
    assert calls == {"/api/v0/id": 3, "/api/v0/add": 1}


async def test_unreachable_node_is_a_connection_error() -> None:
    async with IpfsClient("http://127.0.0.1:9", retries=1, backoff=0.01, timeout=5) as client:
        with pytest.raises(IpfsConnectionError):
            await client.version()


# -- node info and the testnet itself --------------------------------------------------------------


async def test_node_info(ipfs_testnet: IpfsTestnet, ipfs_a: IpfsClient) -> None:
    node_id = await ipfs_a.id()
    assert node_id.peer_id == ipfs_testnet[0].peer_id
    assert node_id.agent_version == "kubo/0.43.1"
    assert (await ipfs_a.version()).version == "0.43.1"
    assert ipfs_testnet.implementation == "kubo/0.43.1"  # what the lab records in summary.json
    peers = {peer.peer_id: peer.addr for peer in await ipfs_a.swarm_peers()}
    assert peers[ipfs_testnet[1].peer_id] == f"/ip4/127.0.0.1/tcp/{ipfs_testnet[1].swarm_port}"
    stat = await ipfs_a.repo_stat()
    assert stat.num_objects > 0
    assert stat.repo_size > 0


async def test_stop_and_restart_keeps_identity_and_data(ipfs_testnet_factory: TestnetFactory) -> None:
    net = await ipfs_testnet_factory(2)
    async with net[0].client() as a:
        cid = await a.add(b"survives a restart")
    peer_id, api_url = net[0].peer_id, net[0].api_url
    await net.stop(0)
    assert not net[0].running
    async with net[1].client(timeout=2, retries=0) as b:
        assert net[0].peer_id not in {p.peer_id for p in await b.swarm_peers()}
    await net.start(0)
    assert (net[0].peer_id, net[0].api_url) == (peer_id, api_url)
    async with net[0].client() as a, net[1].client() as b:
        assert (await a.id()).peer_id == peer_id
        assert await a.is_pinned(cid)
        assert peer_id in {p.peer_id for p in await b.swarm_peers()}  # reconnected on start
        assert await b.cat(cid, max_bytes=100) == b"survives a restart"
    assert "Daemon is ready" in net[0].log_path.read_text()  # each node logs to its own directory
