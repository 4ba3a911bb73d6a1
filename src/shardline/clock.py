"""Injected time. Retention, iterator expiry and status transitions read a Clock; tests advance a ManualClock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when a test says so. ``sleep`` returns once the clock has been advanced enough."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._origin_ms = start_ms
        self._changed = asyncio.Event()

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return (self._now_ms - self._origin_ms) / 1000.0

    def advance(self, seconds: float = 0.0, *, ms: int = 0) -> None:
        self._now_ms += round(seconds * 1000) + ms
        self._changed.set()
        self._changed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        deadline = self._now_ms + round(seconds * 1000)
        while self._now_ms < deadline:
            await self._changed.wait()
