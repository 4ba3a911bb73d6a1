"""Batch frames: the unit of one atomic append.

A frame holds a batch of one shard's records: the records a put staged for it since the shard's last frame (see
journal.py), or one direct ``ShardLog.append``. All integers are big-endian.

```
 frame header (37 bytes)
 0        8      12  13       17       21                29                37
 +--------+-------+---+--------+--------+-----------------+-----------------+---------...
 | base   | len   | M | crc32  | count  | first_arrival   | max_arrival     | records
 | offset | (u32) |(1)| (u32)  | (u32)  | ms (u64)        | ms (u64)        |
 +--------+-------+---+--------+--------+-----------------+-----------------+---------...
 len  = bytes after the len field (magic .. end of records)
 M    = magic/version byte, currently 1
 crc  = zlib CRC-32 of every other byte of the frame (base offset .. magic, then count .. end of records)

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
from typing import Any, NamedTuple

from ..models import Record
from ._compiled import compiled

__all__ = [
    "ACCELERATED",
    "CRC",
    "CRC_AT",
    "CRC_START",
    "FRAME_BYTES",
    "FRAME_MAX_RECORDS",
    "FRAME_RECORDS",
    "HEADER",
    "HEADER_SIZE",
    "LEN_PREFIX",
    "MAGIC",
    "MAX_FRAME_BYTES",
    "PREFIX",
    "REC",
    "REC_SIZE",
    "FrameError",
    "FrameHeader",
    "StoredRecord",
    "check_crc",
    "decode_into",
    "decode_records",
    "encode_frame",
    "encode_frame_body",
    "encode_frame_header",
    "parse_header",
]

# The frame layout, defined here once. The journal's frames (journal_scan.py) share the first three fields, the CRC
# and the record header; the C accelerators compile the same numbers in and export them, and
# tests/storage/test_layout.py checks them against these.
MAGIC = 1
PREFIX = struct.Struct(">QIB")  # base offset (a journal frame: its position), len, magic
CRC = struct.Struct(">I")
LEN_PREFIX = 12  # base offset + len field; len counts the bytes after these
CRC_AT = PREFIX.size  # 13
CRC_START = CRC_AT + CRC.size  # 17: the crc covers [0, 13) and [17, end), every byte but its own
_COUNTS = struct.Struct(">IQQ")  # record count, first arrival ms, max arrival ms
HEADER = struct.Struct(PREFIX.format + CRC.format[1:] + _COUNTS.format[1:])
HEADER_SIZE = HEADER.size  # 37
REC = struct.Struct(">IIHBI")  # offset delta, arrival delta, pk len, ehk len, data len
REC_SIZE = REC.size  # 15
MAX_FRAME_BYTES = 1 << 31
# Bounds of a frame written from staged records: a batch is written once it holds FRAME_RECORDS (what one PutRecords
# sub-batch used to be at most), as one frame below twice that and FRAME_BYTES, else split.
FRAME_RECORDS = 500
FRAME_BYTES = 1 << 20
FRAME_MAX_RECORDS = 2 * FRAME_RECORDS - 1  # the most records a staged batch written as one frame holds


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
    pack = REC.pack
    parts: list[bytes] = []
    append = parts.append
    for i, (pk, ehk, data) in enumerate(records):
        append(pack(i, 0, len(pk), len(ehk), len(data)))
        append(pk)
        if ehk:
            append(ehk)
        append(data)
    body = b"".join(parts)
    length = HEADER_SIZE - LEN_PREFIX + len(body)  # magic, crc, count, two times, then the records
    head = PREFIX.pack(base_offset, length, MAGIC)
    tail = _COUNTS.pack(len(records), arrival_ms, arrival_ms)
    crc = zlib.crc32(body, zlib.crc32(tail, zlib.crc32(head)))
    return b"".join((head, CRC.pack(crc), tail, body))


def encode_frame_body(base_offset: int, count: int, first_arrival_ms: int, max_arrival_ms: int, body: bytes) -> bytes:
    """Wrap already encoded records (offset deltas from ``base_offset``, arrival deltas from ``first_arrival_ms``)
    in a frame header. The write-ahead journal stages records this way and materialises them in one piece."""
    return encode_frame_header(base_offset, count, first_arrival_ms, max_arrival_ms, body) + body


def encode_frame_header(
    base_offset: int, count: int, first_arrival_ms: int, max_arrival_ms: int, body: bytes | memoryview
) -> bytes:
    """The header of the frame whose records are ``body`` (see ``encode_frame_body``): written before the body as
    it is, the two are the frame, and the body is never copied."""
    length = HEADER_SIZE - LEN_PREFIX + len(body)
    head = PREFIX.pack(base_offset, length, MAGIC)
    tail = _COUNTS.pack(count, first_arrival_ms, max_arrival_ms)
    crc = zlib.crc32(body, zlib.crc32(tail, zlib.crc32(head)))
    return b"".join((head, CRC.pack(crc), tail))


def parse_header(buf: bytes | memoryview, pos: int = 0) -> FrameHeader:
    """Parse the header at ``pos``; raises FrameError when it cannot be a frame. Does not check the CRC."""
    if len(buf) - pos < HEADER_SIZE:
        raise FrameError("short header")
    base, length, magic, _crc, count, first, mx = HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        raise FrameError(f"unknown magic {magic}")
    total = LEN_PREFIX + length
    if total < HEADER_SIZE or total > MAX_FRAME_BYTES or count == 0:
        raise FrameError(f"impossible frame length {length} / count {count}")
    return FrameHeader(base, total, count, first, mx)


def check_crc(buf: bytes | memoryview, pos: int, header: FrameHeader) -> bool:
    end = pos + header.total_size
    if end > len(buf):
        return False
    (crc,) = CRC.unpack_from(buf, pos + CRC_AT)
    view = memoryview(buf)
    return bool(zlib.crc32(view[pos + CRC_START : end], zlib.crc32(view[pos : pos + CRC_AT])) == crc)


def decode_records(buf: bytes, pos: int, header: FrameHeader, from_offset: int = 0) -> list[StoredRecord]:
    """Decode the records of the frame at ``pos`` whose offset is at least ``from_offset``."""
    out: list[Any] = []
    decode_into(out, buf, pos, header, from_offset, header.end_offset, header.record_count, 1 << 62, None, None)
    return out


def _py_decode_into(  # noqa: PLR0917  (the hot read path: positional arguments are measurably cheaper)
    out: list[Any],
    buf: bytes,
    pos: int,
    header: FrameHeader,
    start: int,
    stop: int,
    max_records: int,
    max_bytes: int,
    id_base: int | None,
    encryption: str | None,
) -> tuple[int, int, bool]:
    """Append the frame's records with ``start <= offset < stop`` to ``out`` until it holds ``max_records`` or
    they reach about ``max_bytes`` of key + data (``out`` always gets at least one). With ``id_base`` the records
    are ``models.Record`` with sequence number ``id_base + offset``; without, ``StoredRecord``.

    Returns (bytes of key + data added, the offset after the last record added, whether a limit was reached).
    """
    unpack = REC.unpack_from
    new = tuple.__new__
    append = out.append
    base = header.base_offset
    arrival = header.first_arrival_ms
    p = pos + HEADER_SIZE
    used = 0
    nxt = start
    for _ in range(header.record_count):
        delta, adelta, pk_len, ehk_len, data_len = unpack(buf, p)
        p += REC_SIZE
        offset = base + delta
        if offset < start:
            p += pk_len + ehk_len + data_len
            continue
        if offset >= stop:
            return used, nxt, False
        size = pk_len + data_len
        if out and (used + size > max_bytes or len(out) >= max_records):
            return used, offset, True
        pk_end = p + pk_len
        ehk_end = pk_end + ehk_len
        data_end = ehk_end + data_len
        if id_base is None:
            append(
                new(
                    StoredRecord,
                    (
                        offset,
                        arrival + adelta,
                        buf[p:pk_end].decode(),
                        buf[pk_end:ehk_end].decode() if ehk_len else None,
                        buf[ehk_end:data_end],
                    ),
                )
            )
        else:
            append(
                new(
                    Record,
                    (
                        str(id_base + offset),
                        arrival + adelta,
                        buf[ehk_end:data_end],
                        buf[p:pk_end].decode(),
                        encryption,
                    ),
                )
            )
        used += size
        nxt = offset + 1
        p = data_end
        if len(out) >= max_records:
            return used, nxt, True
    return used, nxt, False


# The compiled decoder (``_speedups.c``, built by setup.py where a C compiler is present) returns the same records
# as ``_py_decode_into`` several times faster; it hands anything it cannot hold in 64-bit integers back to it.
# SHARDLINE_PURE_PYTHON=1 keeps the Python one (the tests run both).
decode_into = _py_decode_into
ACCELERATED = False
_speedups = compiled("_speedups")
if _speedups is not None:
    _speedups.configure(Record, StoredRecord, _py_decode_into)
    decode_into = _speedups.decode_into
    ACCELERATED = True
