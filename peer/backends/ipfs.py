"""The `ipfs` backends: storage and PubSub through a kubo RPC node.

- Weights are UnixFS files (``add``, CIDv1, raw leaves): their CID is what :func:`peer.ipld.unixfs_file_cid`
  computes, so the genesis is the same on every backend and weights read back with ``cat`` are checked
  against their CID before anyone decodes them.
- Transactions are single dag-cbor blocks stored with ``block/put`` under the CID computed locally and read
  with ``block/get``, verified by hash (never trusting the node's ``dag/get`` decoding), bounded in size.
- Pins are reference-counted here, because several lab peers may share one node and IPFS pins are a set:
  a transaction block is pinned directly (a recursive pin would hold its whole past), weights recursively.
- Every RPC call is timed and its failures counted by kind (``PeerInstruments.ipfs_request``).
- The subscription is reopened with capped, jittered backoff for as long as the peer runs; every reopening
  is counted, and its state is what ``/healthz`` reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from peer.backends.base import BlockNotFound, ContentTooLarge, Message
from peer.bounded import LruDict
from peer.ipfs.client import IpfsClient
from peer.ipfs.errors import IpfsApiError, IpfsConnectionError, IpfsError, IpfsTimeout, IpfsTooLarge
from peer.ipld import CODEC_DAG_CBOR, BlockVerificationError, cid_codec, verify_file
from peer.metrics import PeerInstruments
from peer.retry import Backoff, retry
from peer.tangle.transaction import InvalidTransaction

log = logging.getLogger(__name__)

_TRANSIENT = (IpfsConnectionError, IpfsTimeout)
MAX_SIZES = 4096


class IpfsStorage:
    """:class:`peer.backends.base.Storage` on one IPFS node. Share one instance between peers of a node."""

    def __init__(self, client: IpfsClient, metrics: PeerInstruments | None = None) -> None:
        self.client = client
        self.metrics = metrics if metrics is not None else PeerInstruments.detached()
        self.pins: dict[str, int] = defaultdict(int)
        # bytes of what we recently stored or fetched (for the pinned-bytes gauge): bounded, since most of
        # what a long-running peer fetches is never pinned; a pinned CID's size moves to `pinned_sizes`
        self.sizes: LruDict[str, int] = LruDict(MAX_SIZES)
        self.pinned_sizes: dict[str, int] = {}
        self.pinned_bytes = 0
        self._pin_lock = asyncio.Lock()

    async def put_weights(self, data: bytes) -> str:
        # pinned at once, so a GC between adding and the window's pin cannot drop it; the window owns it after
        with self.metrics.ipfs_request("add"):
            cid = await self.client.add(data, pin=True)
        self.sizes[cid] = len(data)
        return cid

    async def get_weights(self, cid: str, *, max_bytes: int) -> bytes:
        # the size the file's root declares (`files/stat` reads the root block only) is checked before any
        # content is fetched: one transaction naming 200 MB of weights must cost a block, not 200 MB
        try:
            with self.metrics.ipfs_request("files/stat"):
                declared = await self.client.file_size(cid)
        except IpfsError as error:
            raise BlockNotFound(f"weights {cid}: {error}") from error
        if declared > max_bytes:
            raise ContentTooLarge(f"weights {cid} declare {declared} bytes, over the limit of {max_bytes}")
        try:
            with self.metrics.ipfs_request("cat"):
                data = await self.client.cat(cid, max_bytes=max_bytes)
        except IpfsTooLarge as error:  # a root that declared less than its content: read no further
            raise ContentTooLarge(f"weights {cid}: {error}") from error
        except IpfsError as error:
            raise BlockNotFound(f"weights {cid}: {error}") from error
        verify_file(cid, data)  # a node (or a relay) handing out other bytes is caught here
        self.sizes[cid] = len(data)
        return data

    async def put_transaction(self, cid: str, block: bytes) -> None:
        # pin=False: a pin on put is recursive and walks (fetches) the whole past; the window pins directly
        with self.metrics.ipfs_request("block/put"):
            stored = await self.client.block_put(block, codec="dag-cbor", pin=False)
        if stored != cid:
            raise BlockVerificationError("hash_mismatch", f"node stored {cid} as {stored}")
        self.sizes[cid] = len(block)

    async def get_transaction(self, cid: str, *, max_bytes: int) -> bytes:
        try:
            with self.metrics.ipfs_request("block/get"):
                block = await self.client.block_get(cid, max_bytes=max_bytes)
        except IpfsTooLarge as error:
            raise InvalidTransaction("too_large", f"{cid} is over {max_bytes} bytes") from error
        except BlockVerificationError as error:
            raise InvalidTransaction(error.reason, str(error)) from error
        except IpfsApiError as error:
            if "invalid" in error.message.lower():
                raise InvalidTransaction("bad_cid", f"{cid}: {error.message}") from error
            raise BlockNotFound(f"{cid}: {error}") from error
        except IpfsError as error:
            raise BlockNotFound(f"{cid}: {error}") from error
        self.sizes[cid] = len(block)
        return block

    async def pin(self, cids: list[str]) -> None:
        """Pin each CID (weights are fetched from other nodes if missing); raises on the first failure,
        after keeping the ones that worked."""
        for cid in cids:
            async with self._pin_lock:
                if self.pins.get(cid, 0) > 0:
                    self.pins[cid] += 1
                    continue
            recursive = cid_codec(cid) != CODEC_DAG_CBOR
            with self.metrics.ipfs_request("pin/add"):
                await self.client.pin_add(cid, recursive=recursive)
            size = self.sizes.pop(cid, None)
            if size is None and recursive:  # weights the window pinned before anyone here read them
                with self.metrics.ipfs_request("files/stat"):
                    size = await self.client.file_size(cid)
            async with self._pin_lock:
                self.pins[cid] += 1
                if self.pins[cid] == 1:
                    self.pinned_sizes[cid] = size or 0
                    self.pinned_bytes += size or 0
            self.metrics.set_pinned_bytes(self.pinned_bytes)

    async def unpin(self, cids: list[str]) -> None:
        for cid in cids:
            async with self._pin_lock:
                count = self.pins.get(cid, 0)
                if count > 1:
                    self.pins[cid] -= 1
                    continue
                self.pins.pop(cid, None)
                if count == 1:
                    self.pinned_bytes -= self.pinned_sizes.pop(cid, 0)
            if count == 0:
                continue
            try:
                with self.metrics.ipfs_request("pin/rm"):
                    await self.client.pin_rm(cid, recursive=cid_codec(cid) != CODEC_DAG_CBOR)
            except IpfsApiError as error:
                if "not pinned" not in error.message:
                    raise
            self.metrics.set_pinned_bytes(self.pinned_bytes)


@dataclass
class SubscriptionState:
    """What /healthz shows of the PubSub subscription."""

    connected: bool = False
    reconnects: int = 0
    last_error: str = ""
    since: float = 0.0  # monotonic time of the last change


class IpfsBroker:
    """:class:`peer.backends.base.Broker` over the node's PubSub. Messages carry the node's peer id."""

    def __init__(
        self,
        client: IpfsClient,
        metrics: PeerInstruments | None = None,
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        publish_attempts: int = 3,
    ) -> None:
        self.client = client
        self.metrics = metrics if metrics is not None else PeerInstruments.detached()
        self.backoff = Backoff(min_backoff, max_backoff)
        self.publish_attempts = publish_attempts
        self.state = SubscriptionState(since=time.monotonic())

    async def publish(self, topic: str, data: bytes) -> None:
        # an announcement repeated is harmless (intake is idempotent), so transient failures are retried
        async def publish_once() -> None:
            with self.metrics.ipfs_request("pubsub/pub"):
                await self.client.pubsub_pub(topic, data)

        await retry(publish_once, backoff=self.backoff, retry_on=_TRANSIENT, attempts=self.publish_attempts)

    async def subscribe(self, topic: str) -> AsyncIterator[Message]:
        """Messages of ``topic`` forever: a lost subscription is reopened with backoff, never given up."""
        retries = 0  # since the subscription last worked
        first = True
        while True:
            subscription = self.client.pubsub_sub(topic)
            try:
                with self.metrics.ipfs_request("pubsub/sub"):
                    await subscription.start()
                if not first:
                    self.state.reconnects += 1
                    self.metrics.pubsub_reconnected()
                    log.info("PubSub subscription to %s reopened (%d so far)", topic, self.state.reconnects)
                first = False
                self._set(connected=True)
                retries = 0
                async for message in subscription:
                    yield Message(sender=message.from_peer, data=message.data)
            except IpfsError as error:
                self._set(connected=False, error=f"{type(error).__name__}: {error}")
                delay = self.backoff.delay(retries)
                log.warning("PubSub subscription to %s lost (%s); retrying in %.1f s", topic, error, delay)
            else:
                delay = self.backoff.delay(retries)
            finally:
                await subscription.aclose()
            first = False
            retries += 1
            await asyncio.sleep(delay)

    def _set(self, *, connected: bool, error: str = "") -> None:
        self.state.connected = connected
        if error:
            self.state.last_error = error
        self.state.since = time.monotonic()
