"""The two interfaces a peer talks to the world through: content-addressed storage and a PubSub broker.

Backends: `memory` (in-process, for the lab and unit tests) and `ipfs` (kubo RPC). Ids are CIDv1 text in
both, transactions are dag-cbor blocks whose links name their parents and weights, and announcements go to
a topic derived from the genesis id, so peer code cannot tell the two apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class BlockNotFound(LookupError):
    """The storage could not produce the block (yet): absent, unreachable, or timed out."""


class ContentTooLarge(ValueError):
    """The content behind a CID is over the size allowed (declared so, or found so while reading). Content
    never changes, so this is final: callers remember the CID as unusable instead of asking again."""


@dataclass(frozen=True)
class Message:
    sender: str  # the publishing node's identity (kubo signs PubSub messages)
    data: bytes


class Storage(Protocol):
    async def put_weights(self, data: bytes) -> str:
        """Store a safetensors blob; returns its CID."""
        ...

    async def get_weights(self, cid: str, *, max_bytes: int) -> bytes: ...

    async def put_transaction(self, cid: str, block: bytes) -> None:
        """Store a dag-cbor transaction block under the CID computed locally (the backend checks it)."""
        ...

    async def get_transaction(self, cid: str, *, max_bytes: int) -> bytes:
        """The raw block, verified to hash to the CID."""
        ...

    async def pin(self, cids: list[str]) -> None: ...

    async def unpin(self, cids: list[str]) -> None: ...


class Broker(Protocol):
    async def publish(self, topic: str, data: bytes) -> None: ...

    def subscribe(self, topic: str) -> AsyncIterator[Message]: ...
