"""The one retry policy: capped exponential backoff with jitter, for every call a peer repeats (RPC reads,
PubSub publishes and subscriptions, fetching announced blocks, waiting for the node at start-up).

Jitter draws each delay from [(1 - jitter) x d, d] so that peers that lost the same node at the same moment
do not retry in lockstep."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    first: float  # seconds before the first retry
    cap: float  # no delay grows beyond this
    jitter: float = 0.5  # share of each delay that is random (0: none)

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.cap and 0 <= self.jitter <= 1):
            raise ValueError(f"invalid backoff {self}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first)."""
        base = min(self.first * 2.0**retry, self.cap)
        draw = (rng or _RNG).random()
        return base * (1 - self.jitter * draw)


_RNG = random.Random()  # noqa: S311 - jitter, not cryptography


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    retry_on: tuple[type[BaseException], ...],
    attempts: int | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """`await call()` until it returns; an exception of `retry_on` is retried after a backoff delay, up to
    `attempts` calls in all (None: without limit), and then raised. `on_retry(error, delay)` is told of
    each retry (to log it); `sleep` is injectable (the daemon's sleep ends early on SIGTERM)."""
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    failures = 0
    while True:
        try:
            return await call()
        except retry_on as error:
            failures += 1
            if attempts is not None and failures >= attempts:
                raise
            delay = backoff.delay(failures - 1)
            if on_retry is not None:
                on_retry(error, delay)
            await sleep(delay)
