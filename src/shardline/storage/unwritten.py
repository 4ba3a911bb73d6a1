"""Reading a shard log whose staged records cannot be written to its segments (a full disk).

Every ``ShardLog`` read first writes the staged records it covers (log.py), so that readers only ever look at segment
files. When that write fails, the records are still acknowledged: they are in the journal and staged in memory. The
functions here answer the same reads without writing: the segments up to the end of what they hold, then the staged
records decoded from memory (staged in a frame's record encoding, offset deltas from ``pending_base`` and arrival
deltas from ``pending_first``, see staging.py). The normal path is tried first; the fallback costs a copy of the
staged records per read, which is fine for a degraded mode.
"""

from __future__ import annotations

from typing import Any

from .framing import HEADER_SIZE, FrameHeader, StoredRecord, decode_into
from .log import ShardLog

__all__ = ["arrival_of", "offset_for_time", "read_counted"]

_SCAN_RECORDS = 10_000


def read_counted(
    lg: ShardLog,
    offset: int,
    max_records: int,
    max_bytes: int,
    *,
    id_base: int | None = None,
    encryption: str | None = None,
) -> tuple[list[Any], int, int]:
    """``lg.read_counted``; when writing the staged records first fails, the same answer read without writing."""
    try:
        return lg.read_counted(offset, max_records, max_bytes, id_base=id_base, encryption=encryption)
    except OSError:
        if not lg.pending_count:
            raise
    return _read_without_writing(lg, offset, max_records, max_bytes, id_base=id_base, encryption=encryption)


def _read_without_writing(
    lg: ShardLog, offset: int, max_records: int, max_bytes: int, *, id_base: int | None, encryption: str | None
) -> tuple[list[Any], int, int]:
    written = lg.written_offset
    # Up to ``written`` the segments hold everything, and ``read_counted`` writes nothing to read it.
    records, nxt, nbytes = lg.read_counted(
        offset, max_records, max_bytes, written, id_base=id_base, encryption=encryption
    )
    end = lg.visible_offset
    if nxt < written or end <= written or not lg.pending_count:
        return records, nxt, nbytes
    body = b"".join(lg.pending)
    base = lg.pending_base
    header = FrameHeader(base, HEADER_SIZE + len(body), lg.pending_count, lg.pending_first, lg.pending_max)
    used, after, full = decode_into(
        records,
        bytes(HEADER_SIZE) + body,
        0,
        header,
        max(nxt, base),
        end,
        max_records,
        max_bytes - nbytes,
        id_base,
        encryption,
    )
    return records, after if full else end, nbytes + used


def arrival_of(lg: ShardLog, offset: int) -> int | None:
    """``lg.arrival_of``, read without writing when writing fails."""
    recs, _, _ = read_counted(lg, offset, 1, 1)
    return recs[0].arrival_ms if recs and recs[0].offset == offset else None


def offset_for_time(lg: ShardLog, arrival_ms: int) -> int:
    """``lg.offset_for_time``; when writing fails, found by reading the whole log without writing."""
    try:
        return lg.offset_for_time(arrival_ms)
    except OSError:
        if not lg.pending_count:
            raise
    offset = lg.log_start
    while True:
        recs, nxt, _ = _read_without_writing(lg, offset, _SCAN_RECORDS, 1 << 62, id_base=None, encryption=None)
        for rec in recs:
            assert isinstance(rec, StoredRecord)
            if rec.arrival_ms >= arrival_ms:
                return int(rec.offset)
        if not recs:
            return lg.visible_offset
        offset = nxt
