"""Throughput limits: token buckets per shard (PROVISIONED) or per stream (ON_DEMAND)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Holds at most one second of capacity; ``take`` succeeds only when the whole amount fits."""

    __slots__ = ("_level", "_rate", "_updated")

    def __init__(self, rate_per_s: float, now_s: float) -> None:
        self._rate = float(rate_per_s)
        self._level = float(rate_per_s)
        self._updated = now_s

    def _refill(self, now_s: float) -> None:
        if now_s > self._updated:
            self._level = min(self._rate, self._level + (now_s - self._updated) * self._rate)
            self._updated = now_s

    def take(self, amount: float, now_s: float) -> bool:
        self._refill(now_s)
        if amount <= self._level:
            self._level -= amount
            return True
        return False

    def take_burst(self, amount: float, now_s: float) -> bool:
        """``take``, except that an amount larger than a second's capacity (a large record) succeeds from a full
        bucket and leaves it in debt, paid back at the rate: AWS bursts past a shard's write rate for a large record,
        then throttles until its capacity has refilled."""
        self._refill(now_s)
        if amount <= self._level or (amount > self._rate and self._level >= self._rate):
            self._level -= amount
            return True
        return False

    def level(self, now_s: float) -> float:
        """What may be taken now (negative while a debt from ``spend`` is being paid back)."""
        self._refill(now_s)
        return self._level

    def seconds_until(self, amount: float, now_s: float) -> float:
        """How long until ``amount`` fits (0 when it fits now)."""
        self._refill(now_s)
        return max(0.0, (amount - self._level) / self._rate) if self._rate > 0 else float("inf")

    def refund(self, amount: float) -> None:
        self._level = min(self._rate, self._level + amount)

    def spend(self, amount: float, now_s: float) -> None:
        """Charge ``amount`` even past empty: the debt makes the next calls fail until it is paid back, as AWS
        throttles the seconds after a very large read."""
        self._refill(now_s)
        self._level -= amount
        if amount > self._rate:
            # A read larger than a second's budget owes all of it: AWS throttles the next 5 s after 10 MiB.
            self._level = min(self._level, -amount)
