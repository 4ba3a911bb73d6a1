"""HashRouter: the top-bits table must give exactly the answer of a binary search over the range starts."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.engine.hashing import MAX_HASH_KEY, HashRouter, even_ranges, hash_key, md5


def _reference(starts: list[int], key: int) -> int:
    return bisect.bisect_right(starts, key) - 1


def _cuts(rnd: random.Random, n: int, style: str) -> list[int]:
    """``n - 1`` distinct cut points in [1, MAX_HASH_KEY]: range i is [cuts[i - 1], cuts[i] - 1]."""
    cuts: set[int] = set()
    while len(cuts) < n - 1:
        if style == "uniform":
            c = rnd.randrange(1, MAX_HASH_KEY + 1)
        elif style == "slot edges":
            # At or next to a boundary of a top-bits slot, for any table size up to 2^16 slots.
            bits = rnd.randrange(1, 17)
            c = rnd.randrange(1, 1 << bits) << (128 - bits)
            c += rnd.choice((-1, 0, 0, 1))
        elif style == "clustered":
            # Many narrow ranges inside one slot, and a few wide ones.
            base = rnd.randrange(1, 1 << 16) << 112
            c = base + rnd.randrange(0, 1 << 20) if rnd.random() < 0.9 else rnd.randrange(1, MAX_HASH_KEY + 1)
        else:  # "edges of the key space"
            c = rnd.choice((rnd.randrange(1, 1 << 20), MAX_HASH_KEY - rnd.randrange(0, 1 << 20)))
        if 1 <= c <= MAX_HASH_KEY:
            cuts.add(c)
    return sorted(cuts)


@settings(max_examples=40, deadline=None)
@given(
    n=st.one_of(st.integers(1, 40), st.integers(1, 2000)),
    style=st.sampled_from(["uniform", "slot edges", "clustered", "edges of the key space"]),
    rnd=st.randoms(use_true_random=False),
)
def test_route_matches_binary_search(n: int, style: str, rnd: random.Random) -> None:
    cuts = _cuts(rnd, n, style)
    starts = [0, *cuts]
    ends = [c - 1 for c in cuts] + [MAX_HASH_KEY]
    ranges: list[tuple[int, int, int]] = [(s, e, i) for i, (s, e) in enumerate(zip(starts, ends, strict=True))]
    rnd.shuffle(ranges)  # the router sorts them itself
    router = HashRouter(ranges)

    keys = [0, MAX_HASH_KEY, *starts, *ends]
    keys += [rnd.randrange(MAX_HASH_KEY + 1) for _ in range(1000)]
    for bits in (1, 4, 8, 12, 15, 16):  # around top-bits slot boundaries
        for _ in range(20):
            edge = rnd.randrange(1, 1 << bits) << (128 - bits)
            keys += [edge - 1, edge]
    for key in keys:
        assert router.route(key) == _reference(starts, key), (key, n, style)


def test_a_table_slot_with_one_boundary_is_answered_without_a_search() -> None:
    ranges = even_ranges(1000)
    router = HashRouter([(lo, hi, i) for i, (lo, hi) in enumerate(ranges)])
    assert len(router.straddles) == 999 and -1 not in router.table  # one boundary in each: none searched
    for k, (boundary, below, above) in enumerate(router.straddles):
        assert router.table[boundary >> router.shift] == -2 - k
        assert (router.route(boundary - 1), router.route(boundary)) == (below, above) == (below, below + 1)


@pytest.mark.parametrize("count", [1, 2, 3, 64, 1000, 10000])
def test_even_ranges_route_their_own_ends(count: int) -> None:
    ranges = even_ranges(count)
    assert len(ranges) == count
    assert ranges[0][0] == 0 and ranges[-1][1] == MAX_HASH_KEY
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    router = HashRouter([(lo, hi, i) for i, (lo, hi) in enumerate(ranges)])
    for i, (lo, hi) in enumerate(ranges):
        assert router.route(lo) == i
        assert router.route(hi) == i
        assert router.route((lo + hi) // 2) == i


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.text(min_size=1, max_size=256).map(str.encode), st.binary(max_size=300)))
def test_hash_key_is_md5_as_a_big_endian_integer(key: bytes) -> None:
    """The routing MD5 (CPython's own where it exists) gives hashlib's digest, read big-endian."""
    digest = hashlib.md5(key, usedforsecurity=False).digest()
    assert md5(key).digest() == digest
    assert hash_key(key) == int.from_bytes(digest, "big")


def test_hash_key_known_values() -> None:
    """AWS's documented rule, checked on fixed keys: the key space position is MD5 read as a 128-bit number."""
    assert hash_key(b"") == 0xD41D8CD98F00B204E9800998ECF8427E
    assert hash_key(b"abc") == 0x900150983CD24FB0D6963F7D28E17F72
