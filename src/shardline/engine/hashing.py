"""Hash keys: MD5 routing of partition keys and the split of the 128-bit key space."""

from __future__ import annotations

import bisect
import functools
import hashlib
import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_HASH_KEY", "HashRouter", "even_ranges", "hash_key", "md5"]

MAX_HASH_KEY = (1 << 128) - 1

md5: Callable[[bytes], Any]
try:
    # CPython's own MD5 hashes a partition key in 260 ns where hashlib's OpenSSL one takes 690 ns (it sets up an
    # OpenSSL context per call): a tenth of a put's cost per record. Same digests (tests/engine/test_hash_router.py).
    md5 = importlib.import_module("_md5").md5
except ImportError:  # a Python built without it
    md5 = functools.partial(hashlib.md5, usedforsecurity=False)


def hash_key(partition_key: bytes) -> int:
    """MD5 of the UTF-8 partition key read as an unsigned 128-bit big-endian integer."""
    return int.from_bytes(md5(partition_key).digest(), "big")


def even_ranges(count: int, start: int = 0, end: int = MAX_HASH_KEY) -> list[tuple[int, int]]:
    """Split [start, end] into ``count`` contiguous inclusive ranges of (nearly) equal size; the last one takes the
    remainder, as AWS does at CreateStream."""
    size = (end - start + 1) // count
    out = [(start + i * size, start + (i + 1) * size - 1) for i in range(count)]
    out[-1] = (out[-1][0], end)
    return out


class HashRouter:
    """Finds the open shard whose range holds a hash key, as its shard index. Rebuilt whenever the set of open
    shards changes.

    ``table`` indexed by the top bits of the key (``key >> shift``) answers most lookups at once (about 16 slots
    per shard, so at most one slot in 16 holds a boundary). A slot with one boundary in it holds ``-2 - k``: the
    key's shard is ``below`` if the key is under ``boundary`` and ``above`` if not, for ``(boundary, below,
    above) = straddles[k]``; a slot with several holds -1, and ``route`` does a binary search. The table is a list
    whose entries share one int object per value: a lookup reads one list entry and one of a few
    thousand small ints that stay in the caches, and allocates nothing. (An ``array('i')`` takes half the bytes but
    makes a new int for every lookup of a shard index over 256: with 1,000 shards that cost a third more per lookup
    than with one.) The put path reads ``table`` and ``straddles`` itself, saving a call per record."""

    __slots__ = ("_starts", "_targets", "shift", "straddles", "table")

    def __init__(self, ranges: list[tuple[int, int, int]]) -> None:
        """``ranges``: (start key, end key, shard index) of every open shard, in any order."""
        ranges = sorted(ranges, key=lambda r: r[0])
        self._starts = [r[0] for r in ranges]
        self._targets = [r[2] for r in ranges]
        if any(t < 0 for t in self._targets):
            raise ValueError("shard indexes are never negative")
        bits = min(16, max(1, (len(ranges) * 16 - 1).bit_length()))
        self.shift = 128 - bits
        table: list[int] = []
        self.straddles: list[tuple[int, int, int]] = []
        for slot in range(1 << bits):
            lo = slot << self.shift
            hi = lo + (1 << self.shift) - 1
            first, last = self._index(lo), self._index(hi)
            if first == last and first >= 0:
                table.append(self._targets[first])  # (the shard's one int object)
            elif first >= 0 and last == first + 1:
                table.append(-2 - len(self.straddles))
                self.straddles.append((self._starts[last], self._targets[first], self._targets[last]))
            else:  # several boundaries (or keys no shard holds): a binary search
                table.append(-1)
        self.table = table

    def _index(self, key: int) -> int:
        """The position in the sorted ranges of the one holding ``key`` (-1: none)."""
        return bisect.bisect_right(self._starts, key) - 1

    def route(self, key: int) -> int:
        target = self.table[key >> self.shift]
        if target >= 0:
            return target
        if target == -1:
            return self._targets[self._index(key)]
        boundary, below, above = self.straddles[-2 - target]
        return below if key < boundary else above
