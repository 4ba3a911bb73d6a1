"""Sequence numbers: decimal strings that encode (stream, shard, offset) and sort as integers.

```
 135   132                      96                     64                                   0
 +------+------------------------+----------------------+------------------------------------+
 | v=2  | stream tag (36)        | shard index (32)     | offset in the shard's log (64)     |
 +------+------------------------+----------------------+------------------------------------+
```
The stream tag is random per stream, so a number from a deleted stream never works on a new stream of the
same name. Every number has 41 decimal digits. Within a shard numbers grow with the offset; a child shard has a higher
index than its parents, so all its numbers are larger than theirs. Decoding is exact, so AT/AFTER_SEQUENCE_NUMBER
is an index lookup. Always compare them as integers (``int(s)``), never as strings.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAX_OFFSET", "TAG_MASK", "DecodedSequence", "decode", "encode", "prefix"]

VERSION = 2
MAX_OFFSET = (1 << 64) - 1
TAG_MASK = (1 << 36) - 1
_VERSION_SHIFT = 132


class DecodedSequence(NamedTuple):
    stream_tag: int
    shard_index: int
    offset: int


def prefix(stream_tag: int, shard_index: int) -> int:
    """The part shared by every number of one shard: ``prefix + offset`` is the sequence number."""
    return (VERSION << _VERSION_SHIFT) | ((stream_tag & TAG_MASK) << 96) | (shard_index << 64)


def encode(stream_tag: int, shard_index: int, offset: int) -> str:
    return str(prefix(stream_tag, shard_index) + offset)


def decode(value: str) -> DecodedSequence | None:
    """The fields of a sequence number, or None when it is not one of ours."""
    if not (value.isascii() and value.isdigit()) or len(value) > 129:
        return None
    n = int(value)
    if n >> _VERSION_SHIFT != VERSION:
        return None
    return DecodedSequence((n >> 96) & TAG_MASK, (n >> 64) & 0xFFFFFFFF, n & MAX_OFFSET)
