"""The client-side token bucket, driven by a fake clock (no real waiting)."""

from __future__ import annotations

import asyncio

import pytest

from gpupod_operator.yotta import TokenBucket


class FakeTime:
    """A clock whose sleep advances time instantly, recording each wait."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


async def test_burst_then_spaced_at_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(10.0, 3, clock=t.clock, sleep=t.sleep)
    waits = [await bucket.acquire() for _ in range(6)]
    # Three banked tokens, then one every 0.1 s (reserved up front, so waits accumulate).
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3])


async def test_refills_over_time_up_to_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(2.0, 2, clock=t.clock, sleep=t.sleep)
    assert bucket.reserve() == 0.0 and bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)
    t.now += 100  # a long idle period banks at most `burst` tokens
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.5)


async def test_concurrent_waiters_are_spaced_without_polling() -> None:
    t = FakeTime()
    bucket = TokenBucket(5.0, 1, clock=t.clock, sleep=t.sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(5)))
    # One sleep per waiter (no busy loop), each a further 1/rate later.
    assert sorted(t.sleeps) == pytest.approx([0.2, 0.4, 0.6, 0.8])


async def test_zero_rate_disables_the_limit() -> None:
    t = FakeTime()
    bucket = TokenBucket(0, 1, clock=t.clock, sleep=t.sleep)
    assert [await bucket.acquire() for _ in range(100)] == [0.0] * 100
    assert t.sleeps == []
