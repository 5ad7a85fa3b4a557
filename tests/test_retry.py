"""The one retry policy (peer/retry.py), tested once: every retrying call in the peer goes through it."""

from __future__ import annotations

import asyncio
import random

import pytest

from peer.retry import Backoff, retry


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.5)
    rng = random.Random(0)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base / 4  # jittered: peers do not retry in lockstep
    assert Backoff(1.0, 8.0, jitter=0).delay(2) == 4.0
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(2.0, 1.0)


def test_retry_until_it_works_then_gives_up_after_its_attempts() -> None:
    slept: list[float] = []
    told: list[str] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    def flaky(failures: int) -> object:
        calls = []

        async def call() -> str:
            calls.append(1)
            if len(calls) <= failures:
                raise ConnectionError(f"down {len(calls)}")
            return "up"

        return call

    async def main() -> None:
        backoff = Backoff(1.0, 2.0, jitter=0)
        common = {"backoff": backoff, "retry_on": (ConnectionError,), "sleep": sleep}
        on_retry = {"on_retry": lambda error, delay: told.append(f"{error} {delay}")}
        assert await retry(flaky(2), attempts=3, **common, **on_retry) == "up"  # type: ignore[arg-type]
        assert slept == [1.0, 2.0]
        assert told == ["down 1 1.0", "down 2 2.0"]
        with pytest.raises(ConnectionError, match="down 3"):
            await retry(flaky(5), attempts=3, **common)  # type: ignore[arg-type]
        assert await retry(flaky(10), attempts=None, **common) == "up"  # type: ignore[arg-type]

        async def wrong() -> None:
            raise KeyError("not retried")

        with pytest.raises(KeyError):
            await retry(wrong, attempts=3, **common)  # type: ignore[arg-type]

    asyncio.run(main())
    assert len(slept) == 2 + 2 + 10
