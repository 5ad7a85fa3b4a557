"""IPFS access: a thin typed async client for the kubo RPC API, and a local kubo testnet.

``peer.ipfs.testnet`` is imported explicitly by those who need it (tests, the lab, benchmarks): it builds and
manages kubo processes, which the peer itself never does.
"""

from peer.ipfs.client import (
    IpfsClient,
    NodeId,
    NodeVersion,
    PubsubMessage,
    RepoStat,
    Subscription,
    SwarmPeer,
    encode_topic,
)
from peer.ipfs.errors import (
    IpfsApiError,
    IpfsConnectionError,
    IpfsError,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsVerificationError,
)
from peer.ipld import Car, Link, cid_for, encode_dag_cbor, normalize_cid, parse_car, verify_block

__all__ = [
    "Car",
    "IpfsApiError",
    "IpfsClient",
    "IpfsConnectionError",
    "IpfsError",
    "IpfsTimeout",
    "IpfsTooLarge",
    "IpfsVerificationError",
    "Link",
    "NodeId",
    "NodeVersion",
    "PubsubMessage",
    "RepoStat",
    "Subscription",
    "SwarmPeer",
    "cid_for",
    "encode_dag_cbor",
    "encode_topic",
    "normalize_cid",
    "parse_car",
    "verify_block",
]
