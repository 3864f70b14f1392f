"""An async token bucket shared by every call of one client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens per second, at most `burst` banked; rate <= 0 disables the limit.

    A caller reserves its token up front (the balance may go negative, i.e. into debt) and
    then sleeps exactly once for its turn: no polling loop, no lock, and waiters are served
    in arrival order.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._stamp = clock()

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> float:
        """Wait for a token; returns the time waited (for tests and logs)."""
        wait = self.reserve()
        if wait > 0:
            await self._sleep(wait)
        return wait
