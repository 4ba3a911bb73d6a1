"""Hash keys: MD5 routing of partition keys and the split of the 128-bit key space."""

from __future__ import annotations

import bisect
from hashlib import md5

__all__ = ["MAX_HASH_KEY", "HashRouter", "even_ranges", "hash_key"]

MAX_HASH_KEY = (1 << 128) - 1


def hash_key(partition_key: bytes) -> int:
    """MD5 of the UTF-8 partition key read as an unsigned 128-bit big-endian integer."""
    return int.from_bytes(md5(partition_key, usedforsecurity=False).digest(), "big")


def even_ranges(count: int, start: int = 0, end: int = MAX_HASH_KEY) -> list[tuple[int, int]]:
    """Split [start, end] into ``count`` contiguous inclusive ranges of (nearly) equal size; the last one takes the
    remainder, as AWS does at CreateStream."""
    size = (end - start + 1) // count
    out = [(start + i * size, start + (i + 1) * size - 1) for i in range(count)]
    out[-1] = (out[-1][0], end)
    return out


class HashRouter:
    """Finds the open shard whose range holds a hash key. Rebuilt whenever the set of open shards changes.

    A table indexed by the top bits of the key answers most lookups at once (about 16 slots per shard, so at most
    one slot in 16 straddles a boundary); the slots that do fall back to a binary search. With 1,000 shards this
    keeps routing as cheap as with one."""

    __slots__ = ("_shift", "_starts", "_table", "_targets")

    def __init__(self, ranges: list[tuple[int, int, object]]) -> None:
        ranges = sorted(ranges, key=lambda r: r[0])
        self._starts = [r[0] for r in ranges]
        self._targets = [r[2] for r in ranges]
        bits = min(16, max(1, (len(ranges) * 16 - 1).bit_length()))
        self._shift = 128 - bits
        table: list[object | None] = []
        for slot in range(1 << bits):
            lo = slot << self._shift
            hi = lo + (1 << self._shift) - 1
            first = self._find(lo)
            table.append(first if first is not None and first is self._find(hi) else None)
        self._table = table

    def _find(self, key: int) -> object | None:
        i = bisect.bisect_right(self._starts, key) - 1
        return self._targets[i] if i >= 0 else None

    def route(self, key: int) -> object:
        target = self._table[key >> self._shift]
        if target is None:
            return self._targets[bisect.bisect_right(self._starts, key) - 1]
        return target
