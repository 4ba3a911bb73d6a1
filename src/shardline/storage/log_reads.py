"""Reading a shard log's segments (log.py): the records of an offset range, and the first record of a time.

Both walk the log's segments, oldest first, each from the position its sparse index gives (segment.py), and decode
only the frames that overlap what is asked. The log decides the bounds (log-start, the visible end) and writes its
staged records first; what is here only reads files.
"""

from __future__ import annotations

import bisect
import operator
from typing import Any

from .framing import decode_into, decode_records
from .segment import FileCache, Segment

__all__ = ["first_at_or_after", "read_range"]

_BASE = operator.attrgetter("base_offset")


def read_range(
    segments: list[Segment],
    files: FileCache,
    offset: int,
    end: int,
    *,
    max_records: int,
    max_bytes: int,
    id_base: int | None,
    encryption: str | None,
) -> tuple[list[Any], int, int]:
    """Records of [``offset``, ``end``) from ``segments``, at most ``max_records`` and about ``max_bytes`` of key +
    data (always at least one record): ``ShardLog.read_counted``'s answer."""
    out: list[Any] = []
    if offset >= end or not segments:
        return out, offset, 0
    nbytes = 0
    next_offset = offset
    for i in range(max(0, bisect.bisect_right(segments, offset, key=_BASE) - 1), len(segments)):
        seg = segments[i]
        if seg.base_offset >= end:
            break
        pos, first = seg.position_for_offset(next_offset)
        fd = files.get(seg.path)
        for buf, rel, header in seg.frames(fd, pos, seg.size, first):
            if header.base_offset >= end:
                break
            if header.end_offset <= next_offset:
                continue
            used, next_offset, full = decode_into(
                out, buf, rel, header, next_offset, end, max_records, max_bytes - nbytes, id_base, encryption
            )
            nbytes += used
            if full:
                return out, next_offset, nbytes
    # Everything below ``end`` has been read (damaged frames that were skipped included).
    return out, end, nbytes


def first_at_or_after(segments: list[Segment], files: FileCache, log_start: int, end: int, arrival_ms: int) -> int:
    """The offset of the first record from ``log_start`` that arrived at or after ``arrival_ms`` (``end`` if none
    does before it): ``ShardLog.offset_for_time``'s answer."""
    for seg in segments:
        if seg.max_arrival_ms < arrival_ms or seg.end_offset <= log_start:
            continue
        pos, first = seg.position_for_time(arrival_ms)
        fd = files.get(seg.path)
        for buf, rel, header in seg.frames(fd, pos, seg.size, first):
            if header.base_offset >= end:
                return end
            if header.max_arrival_ms < arrival_ms:
                continue
            for rec in decode_records(buf, rel, header, log_start):
                if rec.arrival_ms >= arrival_ms:
                    return min(rec.offset, end)
    return end
