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
    """Finds the open shard whose range holds a hash key. Rebuilt whenever the set of open shards changes."""

    __slots__ = ("_starts", "_targets")

    def __init__(self, ranges: list[tuple[int, int, object]]) -> None:
        ranges = sorted(ranges, key=lambda r: r[0])
        self._starts = [r[0] for r in ranges]
        self._targets = [r[2] for r in ranges]

    def route(self, key: int) -> object:
        return self._targets[bisect.bisect_right(self._starts, key) - 1]
