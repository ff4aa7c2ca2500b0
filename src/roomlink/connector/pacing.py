"""Backoff and rate limiting, shared by the core's delivery and by connectors."""

from __future__ import annotations

import asyncio
import random
import time


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter: uniform in [base/2, base], base doubling from
    ``initial`` at attempt 1 up to ``maximum``."""
    base = min(maximum, initial * 2 ** max(attempt - 1, 0))
    return random.uniform(base / 2, base)


class TokenBucket:
    """``rate`` actions per second after a burst of ``burst``; ``rate=None``: no limit."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate
        self.capacity = float(max(burst, 1))
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        """Wait until one action is allowed, and spend it."""
        if self.rate is None:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)
