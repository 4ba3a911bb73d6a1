"""Batch frames: the unit of one atomic append.

One PutRecords sub-batch for one shard is one frame. All integers are big-endian.

```
 frame header (37 bytes)
 0        8      12  13       17       21                29                37
 +--------+-------+---+--------+--------+-----------------+-----------------+---------...
 | base   | len   | M | crc32  | count  | first_arrival   | max_arrival     | records
 | offset | (u32) |(1)| (u32)  | (u32)  | ms (u64)        | ms (u64)        |
 +--------+-------+---+--------+--------+-----------------+-----------------+---------...
 len  = bytes after the len field (magic .. end of records)
 M    = magic/version byte, currently 1
 crc  = zlib CRC-32 of every byte after the crc field (count .. end of records)

 record (15-byte header, then the variable parts)
 0          4            8        10      11         15
 +----------+------------+--------+-------+----------+---------------+-----------------+------+
 | offset   | arrival    | pk len | ehk   | data len | partition key | explicit hash   | data |
 | delta u32| delta u32  | u16    | len u8| u32      | UTF-8         | key, ASCII      |      |
 +----------+------------+--------+-------+----------+---------------+-----------------+------+
```
Offsets are dense per shard: record i of a frame has offset base + offset delta.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "FrameError",
    "FrameHeader",
    "StoredRecord",
    "check_crc",
    "decode_records",
    "encode_frame",
    "parse_header",
]

MAGIC = 1
HEADER = struct.Struct(">QIBIIQQ")
HEADER_SIZE = HEADER.size  # 37
_REC = struct.Struct(">IIHBI")
_REC_SIZE = _REC.size  # 15
_LEN_PREFIX = 12  # base offset + len field; len counts the bytes after these
_CRC_START = 17  # crc covers count .. end
MAX_FRAME_BYTES = 1 << 31


class FrameError(Exception):
    """A frame that cannot be trusted: wrong magic, impossible length, CRC mismatch."""


class FrameHeader(NamedTuple):
    base_offset: int
    total_size: int  # whole frame, header included
    record_count: int
    first_arrival_ms: int
    max_arrival_ms: int

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.record_count


class StoredRecord(NamedTuple):
    offset: int
    arrival_ms: int
    partition_key: str
    explicit_hash_key: str | None
    data: bytes


def encode_frame(
    base_offset: int,
    arrival_ms: int,
    records: Sequence[tuple[bytes, bytes, bytes]],
) -> bytes:
    """Build one frame from (partition key UTF-8, explicit hash key ASCII or b"", data) triples sharing one arrival."""
    pack = _REC.pack
    parts: list[bytes] = []
    append = parts.append
    for i, (pk, ehk, data) in enumerate(records):
        append(pack(i, 0, len(pk), len(ehk), len(data)))
        append(pk)
        if ehk:
            append(ehk)
        append(data)
    body = b"".join(parts)
    count_and_times = struct.pack(">IQQ", len(records), arrival_ms, arrival_ms)
    crc = zlib.crc32(body, zlib.crc32(count_and_times))
    length = 1 + 4 + len(count_and_times) + len(body)
    return struct.pack(">QIBI", base_offset, length, MAGIC, crc) + count_and_times + body


def parse_header(buf: bytes | memoryview, pos: int = 0) -> FrameHeader:
    """Parse the header at ``pos``; raises FrameError when it cannot be a frame. Does not check the CRC."""
    if len(buf) - pos < HEADER_SIZE:
        raise FrameError("short header")
    base, length, magic, _crc, count, first, mx = HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        raise FrameError(f"unknown magic {magic}")
    total = _LEN_PREFIX + length
    if total < HEADER_SIZE or total > MAX_FRAME_BYTES or count == 0:
        raise FrameError(f"impossible frame length {length} / count {count}")
    return FrameHeader(base, total, count, first, mx)


def check_crc(buf: bytes | memoryview, pos: int, header: FrameHeader) -> bool:
    end = pos + header.total_size
    if end > len(buf):
        return False
    (crc,) = struct.unpack_from(">I", buf, pos + 13)
    return bool(zlib.crc32(memoryview(buf)[pos + _CRC_START : end]) == crc)


def decode_records(buf: bytes, pos: int, header: FrameHeader, from_offset: int = 0) -> list[StoredRecord]:
    """Decode the records of the frame at ``pos`` whose offset is at least ``from_offset``."""
    out: list[StoredRecord] = []
    append = out.append
    unpack = _REC.unpack_from
    base = header.base_offset
    arrival = header.first_arrival_ms
    p = pos + HEADER_SIZE
    for _ in range(header.record_count):
        delta, adelta, pk_len, ehk_len, data_len = unpack(buf, p)
        p += _REC_SIZE
        offset = base + delta
        if offset >= from_offset:
            pk_end = p + pk_len
            ehk_end = pk_end + ehk_len
            append(
                StoredRecord(
                    offset,
                    arrival + adelta,
                    buf[p:pk_end].decode(),
                    buf[pk_end:ehk_end].decode() if ehk_len else None,
                    buf[ehk_end : ehk_end + data_len],
                )
            )
        p += pk_len + ehk_len + data_len
    return out
