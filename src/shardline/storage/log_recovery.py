"""Opening a shard log (log.py): its segment files, the two small files beside them, and what recovery found.

```
<shard dir>/
  log-start     the first offset still readable, u64 big-endian + crc32 (atomic replace)
  holes         offset ranges known to hold no record (atomic replace):
                count u32 | (first u64, end u64) per hole | crc32 of what precedes it
```

A gap between segment files that ``holes`` does not list is a loss found at open (a segment file deleted):
``lost_ranges`` finds it, the log reports it once, then lists it. Segments wholly below log-start were being
deleted by retention when the process stopped: ``open_segments`` finishes deleting them.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .._fsutil import atomic_write
from .framing import CRC
from .segment import CorruptRange, Segment, segment_name

__all__ = [
    "RecoveryReport",
    "delete_files",
    "find_holes",
    "lost_ranges",
    "open_segments",
    "read_holes",
    "read_log_start",
    "write_holes",
    "write_log_start",
]

log = logging.getLogger("shardline.storage")

_LOG_START = "log-start"
_HOLES = "holes"
_HOLE = struct.Struct(">QQ")
_U64 = struct.Struct(">Q")
_COUNT = struct.Struct(">I")


@dataclass(slots=True)
class RecoveryReport:
    """What opening a log found. ``truncated_bytes`` were a torn tail (never acknowledged under fsync=always)."""

    directory: str
    segments: int = 0
    truncated_bytes: int = 0
    removed_files: list[str] = field(default_factory=list)
    corrupt: list[CorruptRange] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)  # [first, end) offset ranges no segment holds any more

    @property
    def clean(self) -> bool:
        return not (self.truncated_bytes or self.corrupt or self.lost)

    @property
    def lost_records(self) -> int:
        """Records lost in damaged frames and missing segments (a damaged range at a segment's end counts in the
        gap to the next segment)."""
        return sum(end - first for first, end in self.lost) + sum(c.end_offset - c.first_offset for c in self.corrupt)


def open_segments(
    directory: Path, log_start: int, *, sealed: bool, index_interval: int, report: RecoveryReport
) -> tuple[list[Segment], list[CorruptRange], int]:
    """Remove leftover temporary files and the segments wholly below ``log_start``, then open (recover) the rest,
    oldest first. Returns the segments, the damaged ranges found in the active one (a sealed log has none) and what
    its cut tail claimed (``Segment.claimed_end``; -1 without an active segment)."""
    bases = sorted(int(p.stem) for p in directory.glob("*.log") if p.stem.isdigit() and len(p.stem) == 20)
    for name in directory.iterdir():
        if name.name.startswith(".") and name.name.endswith(".tmp"):
            name.unlink()
            report.removed_files.append(name.name)
    while len(bases) > 1 and bases[1] <= log_start:
        delete_files(directory, bases.pop(0), report)
    segments: list[Segment] = []
    tail_damage: list[CorruptRange] = []
    claimed_end = -1
    for i, base in enumerate(bases):
        if segments and _leftover(directory, base, segments[-1], report):
            continue
        last = i == len(bases) - 1
        if last and not sealed:
            seg, scan = Segment.open_active(directory, base, index_interval)
            report.truncated_bytes += seg.truncated_bytes
            tail_damage = list(scan.corrupt)
            claimed_end = seg.claimed_end
        else:
            seg, scan = Segment.open_sealed(directory, base, index_interval)
        report.corrupt.extend(scan.corrupt)
        segments.append(seg)
    if not sealed and segments and segments[-1].base_offset != bases[-1]:
        # The newest files were leftovers: the segment before them is the active one after all (scanned again as
        # such: a torn tail is cut, not kept as damage).
        report.corrupt = [c for c in report.corrupt if c.segment != segments[-1].name]
        seg, scan = Segment.open_active(directory, segments[-1].base_offset, index_interval)
        report.truncated_bytes += seg.truncated_bytes
        report.corrupt.extend(scan.corrupt)
        tail_damage = list(scan.corrupt)
        claimed_end = seg.claimed_end
        segments[-1] = seg
    return segments, tail_damage, claimed_end


def _leftover(directory: Path, base: int, before: Segment, report: RecoveryReport) -> bool:
    """Whether the segment file ``base`` is an empty one named inside the offsets of the segment ``before`` it: a
    roll that failed and could not remove its file, after which the log went on in ``before``. Such a file would
    hide those offsets from readers and hand them out again; it holds nothing, so it is removed (or, when that
    fails, ignored)."""
    path = directory / f"{segment_name(base)}.log"
    if base >= before.end_offset or path.stat().st_size:
        return False
    log.warning("%s: removing %s, an empty segment file left by a failed roll", directory, path.name)
    try:
        delete_files(directory, base, report)
    except OSError as exc:
        log.warning("%s: cannot remove %s (ignored): %s", directory, path.name, exc)
    return True


def _subtract(span: tuple[int, int], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``span`` that no range of ``holes`` covers."""
    out = [span]
    for h_first, h_end in holes:
        nxt = []
        for first, end in out:
            if h_end <= first or h_first >= end:
                nxt.append((first, end))
                continue
            if first < h_first:
                nxt.append((first, h_first))
            if h_end < end:
                nxt.append((h_end, end))
        out = nxt
    return out


def lost_ranges(log_start: int, segments: list[Segment], known: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The offset ranges between ``log_start`` and the last segment's end that no segment covers and ``known``
    (the holes file) does not list: segment files that were deleted."""
    found: list[tuple[int, int]] = []
    ends = [log_start] + [s.end_offset for s in segments]
    for prev_end, seg in zip(ends, segments, strict=False):
        if seg.base_offset > prev_end:
            found += _subtract((prev_end, seg.base_offset), known)
    return found


def find_holes(
    directory: Path, log_start: int, segments: list[Segment], *, durable: bool, report: RecoveryReport
) -> list[tuple[int, int]]:
    """The log's holes at open: those ``holes`` lists, and the offsets between log-start and the end that no segment
    covers and it does not list (segment files that were deleted), which are reported once and listed from then on."""
    known = [h for h in read_holes(directory) if h[1] > log_start]
    found = lost_ranges(log_start, segments, known)
    for first, end in found:
        log.error(
            "%s: offsets %d..%d (%d records) are lost: no segment holds them", directory, first, end - 1, end - first
        )
    report.lost.extend(found)
    if not found:
        return known
    holes = sorted(known + found)
    write_holes(directory, holes, durable=durable)
    return holes


def read_holes(directory: Path) -> list[tuple[int, int]]:
    try:
        raw = (directory / _HOLES).read_bytes()
    except FileNotFoundError:
        return []
    n = _COUNT.unpack_from(raw)[0] if len(raw) >= 4 else -1
    size = 4 + n * _HOLE.size
    if n < 0 or len(raw) != size + 4 or zlib.crc32(raw[:size]) != CRC.unpack_from(raw, size)[0]:
        log.error("%s: damaged holes file, ignoring it", directory)
        return []
    return [_HOLE.unpack_from(raw, 4 + i * _HOLE.size) for i in range(n)]


def write_holes(directory: Path, holes: list[tuple[int, int]], *, durable: bool) -> None:
    body = _COUNT.pack(len(holes)) + b"".join(_HOLE.pack(first, end) for first, end in holes)
    atomic_write(directory / _HOLES, body + CRC.pack(zlib.crc32(body)), durable=durable)


def read_log_start(directory: Path) -> int:
    try:
        raw = (directory / _LOG_START).read_bytes()
    except FileNotFoundError:
        return 0
    if len(raw) != 12 or zlib.crc32(raw[:8]) != CRC.unpack(raw[8:])[0]:
        log.error("%s: damaged log-start checkpoint, reading from the oldest segment", directory)
        return 0
    return int(_U64.unpack(raw[:8])[0])


def write_log_start(directory: Path, offset: int) -> None:
    head = _U64.pack(offset)
    atomic_write(directory / _LOG_START, head + CRC.pack(zlib.crc32(head)))


def delete_files(directory: Path, base: int, report: RecoveryReport) -> None:
    """Delete the segment named ``base`` and its index (either may be gone already), listing them in ``report``."""
    for suffix in (".log", ".index"):
        p = directory / f"{segment_name(base)}{suffix}"
        try:
            p.unlink()
            report.removed_files.append(p.name)
        except FileNotFoundError:
            pass
