"""How fast a late joiner rebuilds a tangle over kubo, against the depth-bound floor. Prints one JSON object.

    .venv/bin/python benchmarks/rebuild.py [--width 3] [--depth 100] [--announcements 20] [--stagger 0.05]

A tangle `--width` transactions wide and `--depth` levels deep (each approving two of the level below) is
stored on node 0 of a 4-node kubo testnet. On fresh nodes, in one run:

1. the floor: one serial `block/get` per level down one path of the tangle on node 2 (a walk back cannot
   know a parent's CID before it has its child, so a rebuild needs at least `depth` such round trips);
2. the tangle builder (`peer/node/builder.py`) over `IpfsStorage` on node 1, as a late joiner meets it:
   `--announcements` announcements of tips from ever lower levels, `--stagger` seconds apart, each starting
   walks back to the genesis;
3. the same without sharing fetched ancestors between walks (the behaviour before the soak found it), on
   node 3.

Reported: seconds, `block/get` requests per transaction, and the ratio of each rebuild to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from peer.backends.base import Message  # noqa: E402
from peer.backends.ipfs import IpfsStorage  # noqa: E402
from peer.bounded import LruDict  # noqa: E402
from peer.ipfs.testnet import IpfsTestnet  # noqa: E402
from peer.ipld import cid_for  # noqa: E402
from peer.node.announcement import Announcement  # noqa: E402
from peer.node.builder import TangleBuilder  # noqa: E402
from peer.node.guard import TangleGuard  # noqa: E402
from peer.tangle.dag import Tangle  # noqa: E402
from peer.tangle.transaction import MAX_TRANSACTION_BYTES, decode_transaction, encode_transaction  # noqa: E402


class CountingStorage(IpfsStorage):
    reads = 0

    async def get_transaction(self, cid: str, *, max_bytes: int) -> bytes:
        self.reads += 1
        return await super().get_transaction(cid, max_bytes=max_bytes)


class Forgetful(LruDict[str, Any]):
    """Keeps nothing: every walk fetches what it needs again once no one else is fetching it."""

    def __setitem__(self, key: str, value: Any) -> None:
        pass


def build(width: int, depth: int) -> tuple[tuple[str, bytes], list[list[tuple[str, bytes]]]]:
    genesis = encode_transaction(parents=[], weights=cid_for(b"g"), model="m", author="genesis", created=0)
    levels = [[genesis]]
    for height in range(1, depth + 1):
        below = [cid for cid, _ in levels[-1]]
        levels.append(
            [
                encode_transaction(
                    parents=sorted({below[k % len(below)], below[(k + 1) % len(below)]}),
                    weights=cid_for(b"w%d-%d" % (height, k)),
                    model="m",
                    author="a",
                    created=1_700_000_000 + height,
                )
                for k in range(width)
            ]
        )
    return genesis, levels


async def rebuild(
    net: IpfsTestnet, node: int, genesis: tuple[str, bytes], levels: list[list[tuple[str, bytes]]], args: Any
) -> dict[str, Any]:
    async with net[node].client(timeout=60) as client:
        storage = CountingStorage(client)
        tangle = Tangle(decode_transaction(*genesis))
        builder = TangleBuilder(TangleGuard(tangle), storage, architecture="m")
        if args.unshared:
            builder._fetched = Forgetful(1)
        started = time.monotonic()
        walks = []
        for level in levels[-1 : -2 * args.announcements - 1 : -2]:
            message = Message("a", Announcement(None, tuple(cid for cid, _ in level)).encode())
            walks.append(asyncio.create_task(builder.on_message(message)))
            await asyncio.sleep(args.stagger)
        await asyncio.gather(*walks)
        seconds = time.monotonic() - started
    total = sum(len(level) for level in levels)
    assert len(tangle) == total, f"rebuilt {len(tangle)} of {total}"
    return {
        "seconds": round(seconds, 2),
        "block_gets": storage.reads,
        "block_gets_per_transaction": round(storage.reads / (total - 1), 2),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    genesis, levels = build(args.width, args.depth)
    with tempfile.TemporaryDirectory(prefix="rebuild-") as directory:
        async with IpfsTestnet(Path(directory), 4) as net:
            async with net[0].client() as source:
                for level in levels:
                    for _cid, block in level:
                        await source.block_put(block, codec="dag-cbor")
            # 1. the floor: one path, one level at a time
            async with net[2].client(timeout=60) as client:
                started = time.monotonic()
                cid = levels[-1][0][0]
                hops = 0
                while True:
                    tx = decode_transaction(cid, await client.block_get(cid, max_bytes=MAX_TRANSACTION_BYTES))
                    if tx.is_genesis:
                        break
                    cid, hops = tx.parents[0], hops + 1
                floor = time.monotonic() - started
            args.unshared = False
            shared = await rebuild(net, 1, genesis, levels, args)
            args.unshared = True
            unshared = await rebuild(net, 3, genesis, levels, args)
    return {
        "ipfs": net.implementation,
        "load_average": os.getloadavg(),
        "transactions": sum(len(level) for level in levels),
        "depth": args.depth,
        "announcements": args.announcements,
        "floor": {"hops": hops, "seconds": round(floor, 2), "ms_per_hop": round(1000 * floor / hops, 1)},
        "builder": {**shared, "x_floor": round(shared["seconds"] / floor, 2)},
        "builder_without_sharing": {**unshared, "x_floor": round(unshared["seconds"] / floor, 2)},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=3)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--announcements", type=int, default=20)
    parser.add_argument("--stagger", type=float, default=0.05)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
