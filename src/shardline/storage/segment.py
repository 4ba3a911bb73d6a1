"""One segment file of a shard log, with its sparse index.

A segment holds whole frames (see framing.py) back to back. Its name is the 20-digit base offset of its first
frame. The sparse index is kept in memory and saved beside the segment when the segment is sealed or the log is
closed; it is a cache: recovery rebuilds it whenever it is missing, stale or damaged.

Index file ``<base>.index`` (all big-endian):

```
 0      4   5          13          21
 +------+---+----------+-----------+---------------------------------+--------+
 | SLIX | v | covered  | entry     | entries: offset u64, position   | crc32  |
 |      |(1)| size u64 | count u64 | u64, prefix max arrival ms i64  | u32    |
 +------+---+----------+-----------+---------------------------------+--------+
```
An entry says: the frame at ``position`` starts at ``offset``, and every frame before it arrived at or before
``prefix max arrival``. ``covered size`` is the segment size the index describes.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import struct
import threading
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._fsutil import CutBackFailed, append_all, atomic_write, cut_file
from .framing import HEADER_SIZE, LEN_PREFIX, MAGIC, REC_SIZE, FrameError, FrameHeader, check_crc, parse_header

__all__ = ["CorruptRange", "FileCache", "Segment", "segment_name"]

log = logging.getLogger("shardline.storage")

_INDEX_MAGIC = b"SLIX"
_INDEX_HEAD = struct.Struct(">4sBQQ")
_INDEX_ENTRY = struct.Struct(">QQq")
_READ_CHUNK = 1 << 20


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


@dataclass(frozen=True, slots=True)
class CorruptRange:
    """Bytes [start, end) of a segment that hold no valid frame; offsets [first_offset, end_offset) were lost."""

    segment: str
    start: int
    end: int
    first_offset: int
    end_offset: int


@dataclass(slots=True)
class _ScanResult:
    valid_end: int
    corrupt: list[CorruptRange] = field(default_factory=list)
    claimed_end: int = -1  # see Segment.claimed_end


class Segment:
    """A segment file. Appends happen on the event-loop thread; fsync may run on a worker thread."""

    def __init__(self, directory: Path, base_offset: int, index_interval: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.name = segment_name(base_offset)
        self.path = directory / f"{self.name}.log"
        self.index_path = directory / f"{self.name}.index"
        self.index_interval = index_interval
        self.size = 0
        self.end_offset = base_offset
        self.max_arrival_ms = -1
        self.first_arrival_ms = -1
        self._idx_offsets = array("q")
        self._idx_positions = array("q")
        self._idx_prefix_max = array("q")
        self._last_indexed_pos = -(1 << 62)
        self._fd = -1
        self._fd_lock = threading.Lock()
        self._skips: dict[int, int] = {}  # corrupt position -> next valid position
        self.truncated_bytes = 0  # torn tail cut by open_active
        # The end offset the cut tail's first frame claims (-1: none): a torn write, or an acknowledged frame whose
        # bytes were damaged since. Its offsets may have been handed out, so the log never hands them out again.
        self.claimed_end = -1
        # The file ends in bytes of a failed write that could not be cut back off it: they lie past ``size``, where
        # the next frame must start, so the next append (or seal) cuts them first (``cut_torn_tail``).
        self.torn = False

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, directory: Path, base_offset: int, index_interval: int) -> Segment:
        """Create the segment file, open for appending. An empty file of that name is what a roll that failed (and
        could not remove it) or crashed left: it is taken over. A file that holds bytes is never touched."""
        seg = cls(directory, base_offset, index_interval)
        flags = os.O_WRONLY | os.O_APPEND
        try:
            seg._fd = os.open(seg.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(seg.path, flags)
            try:
                if os.fstat(fd).st_size:
                    raise FileExistsError(errno.EEXIST, "a segment file with data exists", str(seg.path)) from None
            except BaseException:
                os.close(fd)
                raise
            seg._fd = fd
        return seg

    def discard(self) -> None:
        """Undo ``create`` (a roll that failed): close the descriptor and remove the file, still empty. A file that
        cannot be removed is harmless: ``create`` takes it over, recovery drops it (log_recovery.open_segments)."""
        self.release()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot remove the segment file of a failed roll: %s", self.path, exc)

    @classmethod
    def open_sealed(cls, directory: Path, base_offset: int, index_interval: int) -> tuple[Segment, _ScanResult]:
        """Open a segment that is not written any more. Trusts a matching index; otherwise scans the file."""
        seg = cls(directory, base_offset, index_interval)
        seg.size = seg.path.stat().st_size
        if seg._load_index() and seg._idx_offsets:
            scan = seg._scan(int(seg._idx_positions[-1]), int(seg._idx_offsets[-1]), trust_tail=True)
        else:
            seg._reset_index()
            scan = seg._scan(0, base_offset, trust_tail=True)
        return seg, scan

    @classmethod
    def open_active(cls, directory: Path, base_offset: int, index_interval: int) -> tuple[Segment, _ScanResult]:
        """Open the newest segment for appending: validate every frame after the recovery point, cut a torn tail."""
        seg = cls(directory, base_offset, index_interval)
        seg.size = seg.path.stat().st_size
        if seg._load_index() and seg._idx_offsets:
            start_pos, start_off = int(seg._idx_positions[-1]), int(seg._idx_offsets[-1])
        else:
            seg._reset_index()
            start_pos, start_off = 0, base_offset
        scan = seg._scan(start_pos, start_off, trust_tail=False)
        seg._first_arrival_from_file()
        if scan.valid_end < seg.size:
            cut_file(seg.path, scan.valid_end)
            seg.truncated_bytes = seg.size - scan.valid_end
            seg.size = scan.valid_end
            seg.claimed_end = scan.claimed_end
        seg._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
        return seg, scan

    def _first_arrival_from_file(self) -> None:
        """The segment's age counts from its first frame, which a loaded index does not describe."""
        try:
            with open(self.path, "rb") as f:
                self.first_arrival_ms = parse_header(f.read(HEADER_SIZE), 0).first_arrival_ms
        except (OSError, FrameError):
            pass

    def seal(self, *, durable: bool) -> None:
        """Stop appending: fsync (when asked), save the index, close the write descriptor. All or nothing: when the
        fsync fails the segment stays writable, as it was, and a second call does it all. An index that cannot be
        saved fails nothing (``try_save_index``)."""
        if self.torn:
            self.cut_torn_tail()
        if durable:
            self.fsync()
        self.try_save_index()
        self.release()

    def release(self) -> None:
        """Close the write descriptor: the segment takes no more appends. The descriptor is given up even when
        ``close`` reports an error (the kernel frees it anyway), so no later write can reach a reused number."""
        with self._fd_lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError as exc:
                log.warning("%s: closing the write descriptor: %s", self.path, exc)

    def close(self) -> None:
        self.seal(durable=True)

    @property
    def writable(self) -> bool:
        return self._fd >= 0

    @property
    def fd(self) -> int:
        """The descriptor appends go to (-1 once sealed): StageTable.write_frames writes frames to it directly, and
        ``appended`` records them."""
        return self._fd

    # ----------------------------------------------------------------- writes
    def append(
        self,
        frame: bytes | Sequence[bytes | memoryview],
        base_offset: int,
        count: int,
        arrival_ms: int,
        max_arrival_ms: int,
        *,
        size: int | None = None,
    ) -> None:
        """Write one frame (bytes, or its pieces back to back, ``size`` bytes in all) whose records arrived from
        ``arrival_ms`` to ``max_arrival_ms``. A failed write is cut back off the file, so the next frame still
        starts where this one would have."""
        if self.torn:
            self.cut_torn_tail()
        pos = self.size
        if size is None:
            size = len(frame) if isinstance(frame, bytes) else sum(memoryview(part).nbytes for part in frame)
        try:
            append_all(self._fd, frame, pos, size)
        except CutBackFailed as exc:
            self.torn = True
            log.error("%s: %s (cut before the next write)", self.path, exc)
            raise
        self.appended(pos, size, base_offset, count, arrival_ms=arrival_ms, max_arrival_ms=max_arrival_ms)

    def appended(
        self, pos: int, size: int, base_offset: int, count: int, *, arrival_ms: int, max_arrival_ms: int
    ) -> None:
        """Record a frame of ``size`` bytes written at ``pos``, the end of the file (by ``append``, or by
        StageTable.write_frames to ``fd``)."""
        if pos - self._last_indexed_pos >= self.index_interval:
            self._add_index_entry(pos, base_offset)
        if self.first_arrival_ms < 0:
            self.first_arrival_ms = arrival_ms
        if max_arrival_ms > self.max_arrival_ms:
            self.max_arrival_ms = max_arrival_ms
        self.end_offset = base_offset + count
        self.size = pos + size

    def truncate(self, position: int, offset: int) -> int:
        """Cut the (active) segment at ``position``, where the frame of ``offset`` started. Returns the bytes cut."""
        cut = self.size - position
        # A saved index may point at frames past ``position``; once new frames fill those bytes it would send the
        # next open to positions inside them.
        self.index_path.unlink(missing_ok=True)
        with self._fd_lock:
            os.ftruncate(self._fd, position)
        self.size = position
        self.torn = False
        self.end_offset = offset
        keep = [i for i, p in enumerate(self._idx_positions) if p < position]
        self._idx_offsets = array("q", [self._idx_offsets[i] for i in keep])
        self._idx_positions = array("q", [self._idx_positions[i] for i in keep])
        self._idx_prefix_max = array("q", [self._idx_prefix_max[i] for i in keep])
        self._last_indexed_pos = self._idx_positions[-1] if keep else -(1 << 62)
        self._skips = {p: n for p, n in self._skips.items() if n <= position}
        return cut

    def cut_torn_tail(self) -> None:
        """Cut the bytes a failed write left past ``size`` (see ``torn``); raises while the cut still fails."""
        with self._fd_lock:
            os.ftruncate(self._fd, self.size)
        self.torn = False
        log.warning("%s: cut the partial write left by a failed append", self.path)

    def fsync(self) -> None:
        """Make every appended byte durable. Safe to call from a worker thread; a sealed segment is already synced."""
        with self._fd_lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def _add_index_entry(self, pos: int, base_offset: int) -> None:
        self._idx_offsets.append(base_offset)
        self._idx_positions.append(pos)
        self._idx_prefix_max.append(self.max_arrival_ms)
        self._last_indexed_pos = pos

    def _note_frame(self, pos: int, header: FrameHeader) -> None:
        if pos - self._last_indexed_pos >= self.index_interval:
            self._add_index_entry(pos, header.base_offset)
        if self.first_arrival_ms < 0:
            self.first_arrival_ms = header.first_arrival_ms
        self.max_arrival_ms = max(self.max_arrival_ms, header.max_arrival_ms)
        self.end_offset = header.end_offset

    # ----------------------------------------------------------------- index
    def _reset_index(self) -> None:
        self._idx_offsets = array("q")
        self._idx_positions = array("q")
        self._idx_prefix_max = array("q")
        self._last_indexed_pos = -(1 << 62)
        self.max_arrival_ms = -1
        self.first_arrival_ms = -1
        self.end_offset = self.base_offset

    def save_index(self) -> None:
        """Write the index (not fsynced: it is a cache, a lost or torn one is rebuilt)."""
        n = len(self._idx_offsets)
        body = bytearray(_INDEX_HEAD.pack(_INDEX_MAGIC, 1, self.size, n))
        for i in range(n):
            body += _INDEX_ENTRY.pack(self._idx_offsets[i], self._idx_positions[i], self._idx_prefix_max[i])
        body += struct.pack(">I", zlib.crc32(body))
        # (A failed write removes its temporary file: a full disk gets its space back, the old index stays.)
        atomic_write(self.index_path, bytes(body), durable=False)

    def try_save_index(self) -> None:
        """``save_index``, but a failure is only logged: the index is a cache, and an index file left from before
        still describes a prefix of the segment correctly (``truncate`` removes one that would not)."""
        try:
            self.save_index()
        except OSError as exc:
            log.warning("%s: index not saved (the next open rebuilds it): %s", self.index_path, exc)

    def _load_index(self) -> bool:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return False
        if len(raw) < _INDEX_HEAD.size + 4 or zlib.crc32(raw[:-4]) != struct.unpack(">I", raw[-4:])[0]:
            log.warning("segment %s: index damaged, rebuilding", self.path)
            return False
        magic, version, covered, n = _INDEX_HEAD.unpack_from(raw, 0)
        if magic != _INDEX_MAGIC or version != 1 or len(raw) != _INDEX_HEAD.size + n * _INDEX_ENTRY.size + 4:
            return False
        if covered > self.size:
            return False  # the index describes bytes that are gone: rebuild
        for i in range(n):
            off, pos, pmax = _INDEX_ENTRY.unpack_from(raw, _INDEX_HEAD.size + i * _INDEX_ENTRY.size)
            self._idx_offsets.append(off)
            self._idx_positions.append(pos)
            self._idx_prefix_max.append(pmax)
        if n and (self._idx_offsets[0] != self.base_offset or self._idx_positions[0] != 0):
            log.warning("segment %s: index belongs to another segment, rebuilding", self.path)
            self._reset_index()
            return False
        if n:
            self._last_indexed_pos = self._idx_positions[-1]
            self.max_arrival_ms = max(self._idx_prefix_max[-1], -1)
        return True

    def position_for_offset(self, offset: int) -> tuple[int, int]:
        """The start (position, offset) of the indexed frame at or before ``offset``."""
        i = bisect.bisect_right(self._idx_offsets, offset) - 1
        if i < 0:
            return 0, self.base_offset
        return int(self._idx_positions[i]), int(self._idx_offsets[i])

    def position_for_time(self, arrival_ms: int) -> tuple[int, int]:
        """A (position, offset) from which a scan finds the first record that arrived at or after ``arrival_ms``."""
        i = bisect.bisect_left(self._idx_prefix_max, arrival_ms) - 1
        if i < 0:
            return 0, self.base_offset
        return int(self._idx_positions[i]), int(self._idx_offsets[i])

    # ----------------------------------------------------------------- reads
    def frames(
        self, fd: int, pos: int, end_pos: int, expected_offset: int | None = None
    ) -> Iterator[tuple[bytes, int, FrameHeader]]:
        """Yield (buffer, position in buffer, header) for each valid frame from ``pos`` up to ``end_pos``: its CRC
        matches and it starts at the offset where the previous frame ended (``expected_offset`` for the first).

        A damaged frame is skipped up to the next valid one, logged once, and remembered.
        """
        buf = b""
        buf_start = pos
        expected = expected_offset
        while pos < end_pos:
            skip = self._skips.get(pos)
            if skip is not None:
                pos = skip
                expected = None
                continue
            rel = pos - buf_start
            if len(buf) - rel < HEADER_SIZE:
                buf = os.pread(fd, max(_READ_CHUNK, HEADER_SIZE), pos)
                buf_start, rel = pos, 0
            try:
                header = parse_header(buf, rel)
                if header.total_size > end_pos - pos:
                    raise FrameError("frame runs past the end of the segment")
                if len(buf) - rel < header.total_size:
                    buf = os.pread(fd, max(_READ_CHUNK, header.total_size), pos)
                    buf_start, rel = pos, 0
                if not check_crc(buf, rel, header):
                    raise FrameError("crc mismatch")
                if expected is not None and header.base_offset != expected:
                    raise FrameError(f"frame starts at offset {header.base_offset}, expected {expected}")
            except FrameError as exc:
                nxt = self._resync(fd, pos, end_pos)
                self._skips[pos] = nxt
                log.error(
                    "segment %s: damaged frame at byte %d (%s); skipped %d bytes to the next valid frame",
                    self.path,
                    pos,
                    exc,
                    nxt - pos,
                )
                pos = nxt
                expected = None
                continue
            yield buf, rel, header
            expected = header.end_offset
            pos += header.total_size

    def _resync(self, fd: int, pos: int, end_pos: int, min_base: int = -1) -> int:
        """The position of the next valid frame after a damaged one at ``pos`` (``end_pos`` if there is none): one
        whose base offset is at least ``min_base`` (recovery knows where the frames before it ended) and at least
        the segment's base."""
        data = os.pread(fd, end_pos - pos, pos)
        # The damaged frame's own header may be intact (a flipped byte in its body): trust its length if the frame
        # after it checks out.
        try:
            h = parse_header(data, 0)
            nxt = h.total_size
            if nxt == len(data):
                return end_pos
            if nxt < len(data):
                h2 = parse_header(data, nxt)
                if check_crc(data, nxt, h2) and h2.base_offset == h.end_offset:
                    return pos + nxt
        except FrameError:
            pass
        # Otherwise look for the next frame start: the magic byte at its place, a plausible header, a valid CRC.
        q = 1
        while True:
            q = data.find(bytes([MAGIC]), q + LEN_PREFIX) - LEN_PREFIX
            if q < 1:
                return end_pos
            try:
                h = parse_header(data, q)
                if h.base_offset >= max(self.base_offset, min_base) and check_crc(data, q, h):
                    return pos + q
            except FrameError:
                pass
            q += 1

    # ----------------------------------------------------------------- recovery
    def _scan(self, pos: int, expected_offset: int, *, trust_tail: bool) -> _ScanResult:
        """Validate frames from ``pos``, rebuilding the index past it. Damaged frames become CorruptRanges; what
        cannot be resynchronised at the end of an active segment is a torn tail (``valid_end`` < size)."""
        result = _ScanResult(valid_end=pos)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            # Drop index entries at or after pos; they are re-added as frames are validated.
            while self._idx_positions and self._idx_positions[-1] >= pos:
                self._idx_positions.pop()
                self._idx_offsets.pop()
                self._idx_prefix_max.pop()
            self._last_indexed_pos = int(self._idx_positions[-1]) if self._idx_positions else -(1 << 62)
            self.end_offset = expected_offset
            after_damage = False
            while pos < self.size:
                chunk = os.pread(fd, _READ_CHUNK, pos)
                try:
                    header = parse_header(chunk, 0)
                    if header.total_size > self.size - pos:
                        raise FrameError("frame runs past the end of the file")
                    if header.total_size > len(chunk):
                        chunk = os.pread(fd, header.total_size, pos)
                    # Frames are dense: each starts where the previous ended, unless damage took frames away.
                    in_place = header.base_offset == self.end_offset or (
                        after_damage and header.base_offset > self.end_offset
                    )
                    ok = check_crc(chunk, 0, header) and in_place
                except FrameError:
                    ok = False
                if ok:
                    self._note_frame(pos, header)
                    pos += header.total_size
                    result.valid_end = pos
                    after_damage = False
                    continue
                nxt = self._resync(fd, pos, self.size, self.end_offset)
                if nxt >= self.size and not trust_tail:
                    result.claimed_end = self._claimed_end(fd, pos)
                    break  # torn tail: the caller truncates at valid_end
                first_lost = self.end_offset
                next_base = self._peek_base(fd, nxt)
                result.corrupt.append(
                    CorruptRange(self.name, pos, nxt, first_lost, next_base if next_base is not None else first_lost)
                )
                log.error("segment %s: damaged bytes %d..%d, offsets %d.. lost", self.path, pos, nxt, first_lost)
                self._skips[pos] = nxt
                if next_base is not None and next_base > self.end_offset:
                    self.end_offset = next_base
                pos = nxt
                result.valid_end = pos
                after_damage = True
        finally:
            os.close(fd)
        return result

    def _claimed_end(self, fd: int, pos: int) -> int:
        """The end offset of the frame whose header starts at ``pos`` if that header is plausible (known magic,
        the expected base offset, a record count its length can hold), else -1. Its CRC failed or its bytes run
        past the file, so only the header is believed, and only to keep its offsets unused."""
        try:
            header = parse_header(os.pread(fd, HEADER_SIZE, pos), 0)
        except FrameError:
            return -1
        if header.base_offset != self.end_offset or HEADER_SIZE + header.record_count * REC_SIZE > header.total_size:
            return -1
        return header.end_offset

    def _peek_base(self, fd: int, pos: int) -> int | None:
        if pos >= self.size:
            return None
        try:
            return parse_header(os.pread(fd, HEADER_SIZE, pos), 0).base_offset
        except FrameError:
            return None


class FileCache:
    """A bounded LRU of read-only descriptors shared by every log of an engine."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._fds: OrderedDict[Path, int] = OrderedDict()

    def get(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        fd = os.open(path, os.O_RDONLY)
        self._fds[path] = fd
        while len(self._fds) > self.capacity:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def forget(self, path: Path) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
