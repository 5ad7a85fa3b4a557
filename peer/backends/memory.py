"""In-process backends: a content-addressed block store and a PubSub broker, for the lab and unit tests."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

from peer.backends.base import BlockNotFound, ContentTooLarge, Message
from peer.ipld import unixfs_file_cid, verify_block


class MemoryStorage:
    """A dict of blocks, shared by the peers of one process like an IPFS node shared by its peers.

    `drain_new()` hands out the blocks added since the last call, so that the lab can replicate them to the
    stores of its other processes.
    """

    def __init__(self) -> None:
        self._blocks: dict[str, bytes] = {}
        self._new: dict[str, bytes] = {}
        self.pins: dict[str, int] = defaultdict(int)

    async def put_weights(self, data: bytes) -> str:
        cid = unixfs_file_cid(data)  # the CID `ipfs add` would give the file, so both backends agree
        self._store(cid, data)
        return cid

    async def get_weights(self, cid: str, *, max_bytes: int) -> bytes:
        return self.read(cid, max_bytes=max_bytes)

    async def put_transaction(self, cid: str, block: bytes) -> None:
        verify_block(cid, block)
        self._store(cid, block)

    async def get_transaction(self, cid: str, *, max_bytes: int) -> bytes:
        return self._get(cid, max_bytes)

    async def pin(self, cids: list[str]) -> None:
        for cid in cids:
            self.pins[cid] += 1

    async def unpin(self, cids: list[str]) -> None:
        for cid in cids:
            if self.pins.get(cid, 0) > 1:
                self.pins[cid] -= 1
            else:
                self.pins.pop(cid, None)

    def add_replica(self, cid: str, data: bytes) -> None:
        """Accept a block (or weights file) from another process, checked like anything from outside."""
        if cid != unixfs_file_cid(data):
            verify_block(cid, data)
        self._blocks.setdefault(cid, data)

    def read(self, cid: str, *, max_bytes: int) -> bytes:
        """`get_weights` without the event loop, for a weights cache that several peers share."""
        data = self._get(cid, None)
        if len(data) > max_bytes:  # final, as on IPFS: the same CID never names other bytes
            raise ContentTooLarge(f"weights {cid}: {len(data)} bytes exceed the limit of {max_bytes}")
        return data

    def drop(self, cids: list[str]) -> int:
        """Forget blocks (what garbage collection does to unpinned blocks on IPFS); returns bytes freed."""
        freed = 0
        for cid in cids:
            data = self._blocks.pop(cid, None)
            if data is not None:
                freed += len(data)
            self._new.pop(cid, None)
        return freed

    @property
    def nbytes(self) -> int:
        return sum(len(data) for data in self._blocks.values())

    def drain_new(self) -> dict[str, bytes]:
        new, self._new = self._new, {}
        return new

    def _store(self, cid: str, data: bytes) -> None:
        if cid not in self._blocks:
            self._blocks[cid] = data
            self._new[cid] = data

    def _get(self, cid: str, max_bytes: int | None) -> bytes:
        try:
            data = self._blocks[cid]
        except KeyError:
            raise BlockNotFound(cid) from None
        if max_bytes is not None and len(data) > max_bytes:
            raise BlockNotFound(f"{cid}: {len(data)} bytes exceed the limit of {max_bytes}")
        return data


class MemoryBroker:
    """Fan-out of published messages to every subscriber of a topic, in publication order.

    Each peer connects under its own sender name, as each IPFS node signs its own messages. Everything
    published is also kept in `outbox` until drained, so that the lab can carry it to its other processes.
    """

    def __init__(self) -> None:
        self._queues: dict[str, list[asyncio.Queue[Message]]] = defaultdict(list)
        self.outbox: list[tuple[str, Message]] = []

    def connect(self, sender: str) -> MemoryBrokerClient:
        return MemoryBrokerClient(self, sender)

    def deliver(self, topic: str, message: Message) -> None:
        self.outbox.append((topic, message))
        for queue in self._queues[topic]:
            queue.put_nowait(message)

    def drain_outbox(self) -> list[tuple[str, Message]]:
        out, self.outbox = self.outbox, []
        return out

    async def subscribe(self, topic: str) -> AsyncIterator[Message]:
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._queues[topic].append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues[topic].remove(queue)


class MemoryBrokerClient:
    def __init__(self, broker: MemoryBroker, sender: str) -> None:
        self._broker = broker
        self.sender = sender

    async def publish(self, topic: str, data: bytes) -> None:
        self._broker.deliver(topic, Message(sender=self.sender, data=data))

    def subscribe(self, topic: str) -> AsyncIterator[Message]:
        return self._broker.subscribe(topic)
