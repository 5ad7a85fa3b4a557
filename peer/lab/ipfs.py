"""`tangle lab --backend ipfs`: the same experiment over a local IPFS testnet instead of in-process backends.

The lab starts `--ipfs-nodes` kubo nodes on 127.0.0.1 (see `peer.ipfs.testnet`), gives peer i the node
i mod nodes (so with more peers than nodes, several peers share a node, and their transactions carry that
node's peer id as author), runs its rounds with real `add`, `block/put`, PubSub and fetches, writes the whole
tangle as `tangle.car` and stops the nodes. The CAR's root is a small dag-cbor object linking every tip of
the reporting peer's tangle, since `dag export` exports the past of one root and a tangle has many tips.
Unlike the memory backend, a run is not bit-for-bit reproducible: PubSub decides the order in which peers
receive a round's transactions, and that order feeds the walks.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peer.api.schema import TransactionsDocument
from peer.config import LabSettings
from peer.ipfs.testnet import IpfsTestnet
from peer.ipld import Link, parse_car

log = logging.getLogger(__name__)

CAR_NAME = "tangle.car"
MAX_CAR_BYTES = 4 * 1024**3


def peers_per_node(peers: int, nodes: int) -> list[int]:
    """How many peers each node hosts when peer i uses node i mod nodes."""
    return [len(range(node, peers, nodes)) for node in range(nodes)]


@contextmanager
def ipfs_testnet(
    settings: LabSettings,
) -> Iterator[tuple[LabSettings, Callable[[TransactionsDocument], dict[str, Any]]]]:
    """Start the testnet; yield the settings that point the workers at it and the function that writes the
    CAR at the end (while the nodes still run); stop the testnet and remove its repositories."""
    nodes = min(settings.ipfs_nodes, settings.peers)
    directory = Path(tempfile.mkdtemp(prefix="lab-ipfs-"))
    net = IpfsTestnet(directory, nodes)
    try:
        asyncio.run(net.start_all())
        shares = peers_per_node(settings.peers, nodes)
        log.info("IPFS testnet of %d nodes; peers per node: %s", nodes, shares)
        apis = [node.api_url for node in net]
        implementation, _, version = net.implementation.partition("/")  # kubo/0.43.1

        def finish(tangle: TransactionsDocument) -> dict[str, Any]:
            settings.out.mkdir(parents=True, exist_ok=True)
            path = settings.out / CAR_NAME
            blocks = asyncio.run(export_car(apis[0], tangle.genesis, tangle.tips, path))
            return {
                "implementation": implementation,
                "version": version,
                "nodes": nodes,
                "peers_per_node": shares,
                "car": CAR_NAME,
                "car_blocks": blocks,
            }

        yield settings.model_copy(update={"ipfs_apis": apis}), finish
    finally:
        asyncio.run(net.close())
        shutil.rmtree(directory, ignore_errors=True)


async def export_car(api: str, genesis: str, tips: list[str], path: Path) -> int:
    """`dag export` of a root linking every tip: the whole tangle, weights included, as one CAR v1."""
    from peer.ipfs.client import IpfsClient

    async with IpfsClient(api, timeout=120) as client:
        # not pinned: a recursive pin would make kubo walk (and fetch) the whole DAG once more
        root = await client.dag_put({"genesis": Link(genesis), "tips": [Link(t) for t in tips]}, pin=False)
        await client.dag_export_to(root, path, max_bytes=MAX_CAR_BYTES)
    car = parse_car(await asyncio.to_thread(path.read_bytes))  # every block hashes to its CID
    if car.roots != [root]:
        raise RuntimeError(f"{path} has roots {car.roots}, expected {root}")
    return len(car.blocks)
