"""A hostile participant: another kubo node that speaks the project's own wire format (signed PubSub
announcements, dag-cbor transaction blocks, UnixFS weights) and bends every field it can.

It extends :class:`integration.peers.Participant` (honest-looking traffic) with what an attacker sends:
transactions with any field, unreachable CIDs, other spellings of a CID, raw announcements.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import libipld
from integration.peers import Participant

from peer.ipfs.client import IpfsClient
from peer.ipld import (
    CODEC_DAG_CBOR,
    CODEC_RAW,
    Link,
    cid_for,
    cid_to_bytes,
    encode_dag_cbor,
    normalize_cid,
    varint,
)
from peer.node.announcement import Announcement

CODEC_DAG_JSON = 0x0129


def announcement(tx: str | None, tips: list[str] | tuple[str, ...] = ()) -> bytes:
    """An announcement as the peers encode it, with no checks (the attacker names whatever it likes)."""
    return json.dumps({"v": 1, "tx": tx, "tips": list(tips)}, separators=(",", ":")).encode()


def unreachable_cids(n: int) -> list[str]:
    """`n` well-formed transaction CIDs (CIDv1, dag-cbor, sha2-256) of blocks that exist nowhere."""
    return [cid_for(os.urandom(32), CODEC_DAG_CBOR) for _ in range(n)]


def spellings(cid: str) -> dict[str, str]:
    """Other names of the same block: base58btc text, the raw and dag-json codecs over its multihash."""
    raw = cid_to_bytes(cid)
    multihash = raw[2:]  # after the CIDv1 prefix: version 1, codec dag-cbor (one byte each)
    return {
        "base58btc": libipld.encode_multibase("z", raw),
        "raw": libipld.encode_cid(b"\x01" + bytes([CODEC_RAW]) + multihash),
        "dag-json": libipld.encode_cid(b"\x01" + varint(CODEC_DAG_JSON) + multihash),
    }


class Attacker(Participant):
    """`genesis` and `topic` are the honest network's; every method stores through the attacker's own node."""

    async def send(self, data: bytes) -> None:
        """Publish raw bytes on the topic (signed by the attacker's node, as every PubSub message is)."""
        await self.announce(data)

    async def announce_cids(self, tx: str | None, tips: list[str] | tuple[str, ...] = ()) -> None:
        await self.announce(announcement(tx, tips))

    def fields(self, author: str, weights: str, **changes: Any) -> dict[str, Any]:
        """The dag-cbor object of a well-formed transaction on the genesis, with `changes` applied."""
        genesis = self.genesis.transaction
        obj: dict[str, Any] = {
            "v": 1,
            "parents": [Link(genesis.id)],
            "weights": Link(weights),
            "model": genesis.model,
            "author": author,
            "created": int(time.time() * 1000),
            "tag": "attack",
            "metrics": {"accuracy": 0.5, "loss": 1.0},
        }
        obj.update(changes)
        return obj

    async def add_rechunked(self, data: bytes, chunk: int = 1024) -> str:
        """`data` as a UnixFS file chunked otherwise than kubo's default: a valid file whose CID is not the
        one its bytes give (what a peer sees as weights that do not hash to their CID)."""
        async with IpfsClient(self.api_url, timeout=20) as client:
            params = {"cid-version": 1, "raw-leaves": True, "chunker": f"size-{chunk}", "pin": True}
            body, _ = await client._request(
                "add", params, files={"file": ("w", data, "application/octet-stream")}, max_bytes=1 << 20
            )
        return normalize_cid(json.loads(body.splitlines()[-1])["Hash"])

    async def genesis_weights(self) -> str:
        return await self.add(self.genesis.weights_bytes)

    async def store(self, obj: dict[str, Any]) -> str:
        """Store any object as a dag-cbor block on the attacker's node; returns its CID."""
        return await self.put_block(encode_dag_cbor(obj))

    async def signed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """`obj` with the attacker's own key's signature (valid only when `obj`'s author is the attacker)."""
        return {**obj, "sig": await self.sign(encode_dag_cbor(obj))}

    async def crafted(self, *, announce: bool = True, sign: bool = True, **changes: Any) -> str:
        """Store (and by default announce first-hand) a transaction with the given fields changed, signed
        by the attacker's key unless `sign` is false."""
        me = await self.peer_id()
        weights = changes.pop("weights", None) or await self.genesis_weights()
        obj = self.fields(changes.pop("author", me), weights, **changes)
        cid = await self.store(await self.signed(obj) if sign else obj)
        if announce:
            await self.announce_cids(cid)
        return cid

    async def flood(self, count: int, *, parents: list[str] | None = None) -> list[str]:
        """`count` distinct well-formed transactions, each announced first-hand as fast as the node allows."""
        me = await self.peer_id()
        weights = await self.genesis_weights()
        cids = []
        async with IpfsClient(self.api_url, timeout=20) as client:
            for i in range(count):
                obj = self.fields(me, weights, tag=f"flood-{i}")
                if parents is not None:
                    obj["parents"] = [Link(p) for p in parents]
                obj["sig"] = await client.key_sign(encode_dag_cbor(obj))
                cid = await client.block_put(encode_dag_cbor(obj), codec="dag-cbor")
                await client.pubsub_pub(self.topic, Announcement(cid, ()).encode())
                cids.append(cid)
        return cids
