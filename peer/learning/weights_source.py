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

from peer.models.base import Weights, WeightSpec
from peer.models.weights import WeightsError, decode_weights, weights_nbytes


class WeightsUnavailable(RuntimeError):
    def __init__(self, weights_id: str, reason: str) -> None:
        super().__init__(f"weights {weights_id} unavailable: {reason}")
        self.weights_id = weights_id
        self.reason = reason


class WeightsSource:
    """`fetch(weights_id)` returns raw bytes (blocking) or raises; decoding happens on the caller's thread."""

    def __init__(
        self,
        fetch: Callable[[str], bytes],
        spec: WeightSpec,
        *,
        max_bytes: int,
        cache_bytes: int = 64 * 1024 * 1024,
        retry_after: float = 30.0,
    ) -> None:
        self._fetch = fetch
        # a failed fetch (unreachable, timed out) is not retried for `retry_after` seconds, so walks that
        # keep meeting the same unreachable tip do not each wait a whole timeout for it
        self._retry_after = retry_after
        self._failed: dict[str, float] = {}
        self._spec = spec
        self._max_bytes = max_bytes
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[str, Weights] = OrderedDict()
        self._cached_bytes = 0
        self._unusable: dict[str, str] = {}
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
            if weights_id in self._unusable:
                raise WeightsUnavailable(weights_id, self._unusable[weights_id])
            retry_at = self._failed.get(weights_id)
            if retry_at is not None and time.monotonic() < retry_at:
                raise WeightsUnavailable(weights_id, "fetch failed recently")
            self.misses += 1
        try:
            data = self._fetch(weights_id)
            self.fetched_bytes += len(data)
            weights = decode_weights(data, self._spec, max_bytes=self._max_bytes)
        except WeightsError as error:
            # invalid content never becomes valid: remember it
            with self._lock:
                self._unusable[weights_id] = f"invalid: {error}"
            raise WeightsUnavailable(weights_id, f"invalid: {error}") from error
        except Exception as error:
            with self._lock:
                if len(self._failed) > 10_000:
                    self._failed.clear()
                self._failed[weights_id] = time.monotonic() + self._retry_after
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

    def is_usable(self, weights_id: str) -> bool:
        """True unless the weights are known to be invalid or cannot be fetched now."""
        try:
            self.get(weights_id)
        except WeightsUnavailable:
            return False
        return True

    @property
    def unusable(self) -> dict[str, str]:
        return dict(self._unusable)
