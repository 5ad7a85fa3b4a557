"""Availability with bounded storage: every peer pins what tip selection can reach, not only the publisher.

The 2020 prototype stalled after two days because selected tips' weights had become unfetchable, and filled
its disks. Here each peer pins the weights of the transactions within `depth` heights of its highest tip
(what walks and the reference can reach, with a margin) and unpins them once they fall out, so that with
kubo's GC on the repository stays bounded and a publisher going away loses nothing anyone still builds on.
Transaction blocks (a few hundred bytes each) stay pinned for good: a late joiner rebuilds the whole tangle
by walking back from the tips, and `ipfs dag export` of a tip needs the whole past.

Pinning weights fetches them, whole, so a hostile transaction could make every peer download and keep any
amount (issue 14, finding 4: 200 MB behind one transaction filled the victims' disks). Weights are pinned
only once `vet` has fetched them within the weights size limit, checked them against their CID and decoded
them (`Peer.usable_weights`): their DAG is then the canonical one of at most the model's size, and is all
local. The window hangs from `top`, the learner's highest usable height, so a chain of implausible
transactions piled on top cannot push the weights honest peers build on out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable

from peer.backends.base import Storage
from peer.tangle.dag import Tangle

log = logging.getLogger(__name__)


class PinWindow:
    def __init__(
        self,
        tangle: Tangle,
        storage: Storage,
        depth: int | None,
        *,
        concurrency: int = 4,
        vet: Callable[[str], Awaitable[bool]] | None = None,
        top: Callable[[], int | None] | None = None,
    ) -> None:
        self.tangle = tangle
        self.storage = storage
        self.depth = depth
        self.vet = vet
        self.top = top
        self.weights: set[str] = set()  # weights pinned by this window
        self.failures = 0
        self.refused = 0  # weights not pinned because `vet` turned them down (retried at later updates)
        self._seen = 0  # transactions of the tangle whose block was handed to pinning
        self._retry: list[str] = []
        self._semaphore = asyncio.Semaphore(concurrency)
        self._changed = asyncio.Event()
        # one update at a time: the daemon updates after publishing while `run` may be updating, and two
        # overlapping updates would both pin the same new weights (counted twice) and unpin them once, a
        # leaked pin kubo's GC can never collect (a soak on kubo showed repositories growing past StorageMax)
        self._updating = asyncio.Lock()

    def wanted_weights(self) -> set[str]:
        """Weights that should be pinned now: those of the window, and the genesis model."""
        tangle = self.tangle
        top = self.top() if self.top is not None else None
        ids = tangle.window(self.depth, top=top) if self.depth is not None else [tx.id for tx in tangle]
        return {tangle.get(t).weights for t in ids} | {tangle.genesis.weights}

    def changed(self, *_args: object) -> None:
        """Call when the tangle grew (an `on_insert` callback)."""
        self._changed.set()

    async def update(self) -> None:
        async with self._updating:
            await self._update()

    async def _update(self) -> None:
        # transaction blocks: the ones inserted since the last update (insertion order is stable), and
        # the ones whose pin failed before; no pass over the whole tangle
        new_blocks = [tx.id for tx in itertools.islice(iter(self.tangle), self._seen, None)]
        self._seen += len(new_blocks)
        blocks = [*self._retry, *new_blocks]
        self._retry = []
        wanted = self.wanted_weights()
        to_pin = blocks + sorted(wanted - self.weights)
        results = await asyncio.gather(*(self._pin(cid, vet=cid in wanted) for cid in to_pin))
        for cid, ok in zip(to_pin, results, strict=True):
            if cid in wanted:
                if ok:
                    self.weights.add(cid)
            elif not ok:
                self._retry.append(cid)
        to_unpin = sorted(self.weights - wanted)
        if to_unpin:
            try:
                await self.storage.unpin(to_unpin)
                self.weights.difference_update(to_unpin)
            except Exception as error:  # retried at the next update
                log.warning("unpinning %d weights failed: %s", len(to_unpin), error)

    async def run(self, interval: float = 5.0) -> None:
        """Update whenever the tangle changed, at most every `interval` seconds, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):  # also retry failed pins now and then
                await asyncio.wait_for(self._changed.wait(), timeout=interval)
            self._changed.clear()
            await self.update()

    async def _pin(self, cid: str, *, vet: bool) -> bool:
        async with self._semaphore:
            if vet and self.vet is not None and not await self.vet(cid):
                self.refused += 1
                return False
            try:
                await self.storage.pin([cid])
            except Exception as error:  # unreachable: retried at the next update
                self.failures += 1
                log.info("pinning %s failed: %s", cid, error)
                return False
            return True
