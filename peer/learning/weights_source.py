"""Weights by content id, validated before use and kept in a bounded LRU cache.

The 2020 prototype downloaded about six models per training and never cached one. Weights are immutable
(content-addressed), so a small LRU of decoded weights serves the tips, the reference and the walks of
many rounds. A weights id that fails to fetch or to validate is remembered as unusable, and tip selection
walks around it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from peer.backends.base import ContentTooLarge
from peer.bounded import LruDict
from peer.ipld import BlockVerificationError
from peer.models.base import Weights, WeightSpec
from peer.models.weights import WeightsError, decode_weights, weights_nbytes


class WeightsUnavailable(RuntimeError):
    def __init__(self, weights_id: str, reason: str) -> None:
        super().__init__(f"weights {weights_id} unavailable: {reason}")
        self.weights_id = weights_id
        self.reason = reason


# weights ids remembered as invalid or recently unreachable: far more than a walk window holds, bounded so a
# daemon running for months does not grow with every bad announcement it ever saw
MAX_REMEMBERED = 4096


class WeightsSource:
    """`fetch(weights_id)` returns raw bytes (blocking) or raises; decoding happens on the caller's thread.
    `clock` (monotonic seconds) is injectable so the retry delay can be tested without sleeping."""

    def __init__(
        self,
        fetch: Callable[[str], bytes],
        spec: WeightSpec,
        *,
        max_bytes: int,
        cache_bytes: int = 64 * 1024 * 1024,
        retry_after: float = 30.0,
        remember: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        # a failed fetch (unreachable, timed out) is not retried for `retry_after` seconds, so walks that
        # keep meeting the same unreachable tip do not each wait a whole timeout for it
        self._retry_after = retry_after
        self._clock = clock
        self._failed: LruDict[str, float] = LruDict(remember)
        self._spec = spec
        self._max_bytes = max_bytes
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[str, Weights] = OrderedDict()
        self._cached_bytes = 0
        self._unusable: LruDict[str, str] = LruDict(remember)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.fetched_bytes = 0

    def get(self, weights_id: str) -> Weights:
        with self._lock:
            if weights_id in self._cache:
                self._cache.move_to_end(weights_id)
                self.hits += 1
                return self._cache[weights_id]
            reason = self._unusable.get(weights_id)
            if reason is not None:
                raise WeightsUnavailable(weights_id, reason)
            retry_at = self._failed.get(weights_id)
            if retry_at is not None and self._clock() < retry_at:
                raise WeightsUnavailable(weights_id, "fetch failed recently")
            self.misses += 1
        try:
            data = self._fetch(weights_id)
            self.fetched_bytes += len(data)
            weights = decode_weights(data, self._spec, max_bytes=self._max_bytes)
        except (WeightsError, BlockVerificationError, ContentTooLarge) as error:
            # invalid content never becomes valid, nor do bytes that do not hash to their CID (a node that
            # serves tampered bytes under a CID serves them again), nor oversized content: remember it
            with self._lock:
                self._unusable[weights_id] = f"invalid: {error}"
            raise WeightsUnavailable(weights_id, f"invalid: {error}") from error
        except Exception as error:
            with self._lock:
                self._failed[weights_id] = self._clock() + self._retry_after
            raise WeightsUnavailable(weights_id, f"fetch failed: {error}") from error
        self.put(weights_id, weights)
        return weights

    def put(self, weights_id: str, weights: Weights) -> None:
        """Cache weights this peer made itself (no need to fetch them back)."""
        size = weights_nbytes(weights)
        with self._lock:
            if weights_id in self._cache or size > self._cache_bytes:
                return
            self._cache[weights_id] = weights
            self._cached_bytes += size
            while self._cached_bytes > self._cache_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= weights_nbytes(evicted)

    def forget(self, weights_ids: list[str]) -> None:
        """Drop decoded weights nobody will read again (they left every walk window)."""
        with self._lock:
            for weights_id in weights_ids:
                evicted = self._cache.pop(weights_id, None)
                if evicted is not None:
                    self._cached_bytes -= weights_nbytes(evicted)

    def holds(self, weights_id: str) -> bool:
        """Whether the decoded weights are in the cache now."""
        with self._lock:
            return weights_id in self._cache

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    @property
    def unusable(self) -> dict[str, str]:
        with self._lock:
            return dict(self._unusable)

    @property
    def remembered(self) -> int:
        """Entries held about bad weights (invalid or recently unreachable): bounded by `remember` each."""
        with self._lock:
            return len(self._unusable) + len(self._failed)
