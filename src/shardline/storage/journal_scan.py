"""Reading journal frames back at recovery (the frame format is drawn in journal.py).

A frame carries its own journal position, so recovery never has to trust a length field to find the next frame:
after damage it scans for the next place where a frame's position field names that very place, the magic byte is
known, the length fits the file and the CRC holds (``resync``). An 8-byte position that must equal its own place,
plus a CRC, is what a false frame would have to forge.

The bytes between a damaged frame and the next intact one are then tried as one frame whose position, length and
magic are the ones its place implies (``repair``): a flipped bit in those fields costs nothing. Otherwise the
region's records are lost, and what its header and record headers still say (``claims``) only serves to keep the
offsets they name unused: they may have been acknowledged.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import NamedTuple

from .framing import CRC, CRC_AT, CRC_START, HEADER_SIZE, LEN_PREFIX, MAGIC, MAX_FRAME_BYTES, PREFIX
from .framing import REC as SEGMENT_REC

__all__ = [
    "HEAD",
    "HEADER_SIZE",
    "ID",
    "REC",
    "REC_SIZE",
    "SUFFIX",
    "TAIL",
    "Frame",
    "claims",
    "file_name",
    "read_frame",
    "repair",
    "resync",
    "runs_past",
]

# A journal frame starts as a segment frame does (position, len, magic, crc: framing.py), then has its own tail; a
# journal record is a segment record with the shard index and offset in front (ID).
TAIL = struct.Struct(">QQI")  # arrival ms, stream tag, record count
HEAD = struct.Struct(PREFIX.format + CRC.format[1:] + TAIL.format[1:])
ID = struct.Struct(">IQ")  # shard index, offset
REC = struct.Struct(ID.format + SEGMENT_REC.format[1:])
REC_SIZE = REC.size  # 27
_MAGIC_BYTE = bytes([MAGIC])
SUFFIX = ".wal"  # a journal file is named by the journal position of its first frame, 20 digits, and this


def file_name(position: int) -> str:
    return f"{position:020d}{SUFFIX}"


class Frame(NamedTuple):
    """A frame read back: its size in all, header fields, records, and whether its CRC holds."""

    total: int
    arrival: int
    tag: int
    record_count: int
    body: bytes
    intact: bool


def _crc(head13: bytes | memoryview, rest: bytes | memoryview) -> int:
    """The frame CRC: every byte but the CRC's own (``rest`` starts after it)."""
    return zlib.crc32(rest, zlib.crc32(head13))


def read_frame(fd: int, start: int, pos: int, size: int) -> Frame | None:
    """The frame at journal position ``pos`` of the file that starts at ``start`` and holds ``size`` bytes, or None
    when no frame can start there (the end of the file, a torn tail, a damaged header)."""
    if pos - start + HEADER_SIZE > size:
        return None
    head = os.pread(fd, HEADER_SIZE, pos - start)
    position, length, magic, crc, arrival, tag, count = HEAD.unpack(head)
    total = LEN_PREFIX + length
    if position != pos or magic != MAGIC or total < HEADER_SIZE or total > MAX_FRAME_BYTES:
        return None
    if pos - start + total > size:
        return None
    body = os.pread(fd, total - HEADER_SIZE, pos - start + HEADER_SIZE)
    intact = zlib.crc32(body, _crc(head[:CRC_AT], head[CRC_START:])) == crc
    return Frame(total, arrival, tag, count, body, intact)


def resync(fd: int, start: int, pos: int, size: int) -> int:
    """The position of the first intact frame after ``pos`` in the file (``start``, ``size``), or the file's end
    position when there is none."""
    data = os.pread(fd, size - (pos - start), pos - start)
    i = LEN_PREFIX  # the magic byte of a frame at ``pos`` itself, which is not a candidate
    while True:
        i = data.find(_MAGIC_BYTE, i + 1)
        if i < 0:
            return start + size
        q = i - LEN_PREFIX
        position, length, _magic = PREFIX.unpack_from(data, q)
        total = LEN_PREFIX + length
        if position != pos + q or total < HEADER_SIZE or q + total > len(data):
            continue
        view = memoryview(data)
        if _crc(view[q : q + CRC_AT], view[q + CRC_START : q + total]) == CRC.unpack_from(data, q + CRC_AT)[0]:
            return pos + q


def runs_past(fd: int, start: int, pos: int, size: int) -> bool:
    """Whether the frame at ``pos`` is cut short by the end of the file (``start``, ``size``): a write that never
    finished, as far as its length field tells."""
    head = os.pread(fd, LEN_PREFIX, pos - start)
    return len(head) < LEN_PREFIX or pos - start + LEN_PREFIX + struct.unpack_from(">I", head, 8)[0] > size


def repair(fd: int, start: int, pos: int, end: int) -> Frame | None:
    """The bytes from ``pos`` to ``end`` as one intact frame, with the position, length and magic its place gives
    it, when the CRC then holds (the damage was in those fields only); else None."""
    total = end - pos
    if total < HEADER_SIZE or total > MAX_FRAME_BYTES:
        return None
    raw = os.pread(fd, total, pos - start)
    if len(raw) != total:
        return None
    head = PREFIX.pack(pos, total - LEN_PREFIX, MAGIC)
    if _crc(head, memoryview(raw)[CRC_START:]) != CRC.unpack_from(raw, CRC_AT)[0]:
        return None
    arrival, tag, count = TAIL.unpack_from(raw, CRC_START)
    return Frame(total, arrival, tag, count, raw[HEADER_SIZE:], True)


def claims(fd: int, start: int, pos: int, end: int) -> tuple[int, list[tuple[int, int]]]:
    """What the damaged bytes from ``pos`` to ``end`` still say about their first frame: its stream tag and the
    (shard index, offset) of each record whose header lies whole inside them, read in order while the record
    lengths stay inside the bytes. Never a record to restore: only offsets that may have been handed out."""
    raw = os.pread(fd, min(end - pos, MAX_FRAME_BYTES), pos - start)
    if len(raw) < HEADER_SIZE:
        return -1, []
    _, _, _, _, _, tag, count = HEAD.unpack_from(raw)
    out: list[tuple[int, int]] = []
    p = HEADER_SIZE
    while len(out) < count and p + REC_SIZE <= len(raw):
        index, offset, _d, _a, pk_len, ehk_len, data_len = REC.unpack_from(raw, p)
        out.append((index, offset))
        p += REC_SIZE + pk_len + ehk_len + data_len
    return tag, out
