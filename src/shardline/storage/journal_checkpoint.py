"""The journal's checkpoint file: the journal position recovery replays from, each written log's next offset (its
*mark*) and, under fsync=interval and never, each log's *reservation* (journal.py says what they protect).

The file is overwritten in place (all integers big-endian):

```
<data dir>/journal/checkpoint
  journal position u64 | crc32 of it
  mark count u32 | marks (stream tag u64, shard index u32, next offset u64) | crc32 of count and marks
  "RSV1" | journal position u64 | reservation count u32 | reservations (stream tag u64, shard index u32,
  reserved end u64) | crc32 of "RSV1" to the last reservation
```
A checkpoint written before marks existed ends after the first crc32; one written before reservations, after the
second. Bytes after the last CRC may be left from a longer checkpoint written before: the reservations' magic,
position and CRC must match for them to count.

No rename, so no directory fsync each time. A torn write fails a CRC: a torn position makes the next open replay
every journal file present, which is safe (the files before the previous checkpoint are gone, and replay skips
what the segments hold); torn marks lose only the marks' protection against segment files that go missing.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from pathlib import Path

from .._fsutil import fsync_dir
from .framing import CRC

__all__ = ["CHECKPOINT", "CheckpointFile", "Claims", "read_checkpoint"]

log = logging.getLogger("shardline.storage")

CHECKPOINT = "checkpoint"
_POSITION = struct.Struct(">Q")
_COUNT = struct.Struct(">I")
_MARK = struct.Struct(">QIQ")  # stream tag, shard index, next offset (a reservation: its end)
_RESERVE_HEAD = struct.Struct(">4sQI")  # magic, the checkpoint's journal position, count
_RESERVE_MAGIC = b"RSV1"

Claims = dict[tuple[int, int], int]  # (stream tag, shard index) -> an offset: a mark, a reservation, a claim


class CheckpointFile:
    """The checkpoint file of a journal directory, kept open for writing. ``lock`` serialises writers: the event
    loop's reservations and a worker thread's checkpoint both write it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self._fd = -1
        self._new = False  # the file was created and its directory not fsynced since

    def write(self, position: int, marks: list[tuple[tuple[int, int], int]], reserved: Claims, durable: bool) -> None:
        """Overwrite the checkpoint in place, and fsync it when ``durable``. The caller holds ``lock``."""
        head = _POSITION.pack(position)
        body = _COUNT.pack(len(marks)) + b"".join(_MARK.pack(t, i, end) for (t, i), end in marks)
        data = head + CRC.pack(zlib.crc32(head)) + body + CRC.pack(zlib.crc32(body))
        if reserved:
            rsv = _RESERVE_HEAD.pack(_RESERVE_MAGIC, position, len(reserved)) + b"".join(
                _MARK.pack(t, i, end) for (t, i), end in reserved.items()
            )
            data += rsv + CRC.pack(zlib.crc32(rsv))
        if self._fd < 0:
            path = self.directory / CHECKPOINT
            self._new = not path.exists()
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.pwrite(self._fd, data, 0)
        if durable:
            os.fsync(self._fd)
            if self._new:  # (its name too, the first time the file is made durable)
                fsync_dir(self.directory)
                self._new = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_checkpoint(directory: Path) -> tuple[int, bool, Claims, Claims]:
    """The recorded position, whether there was a readable one, the recorded marks and reservations."""
    try:
        raw = (directory / CHECKPOINT).read_bytes()
    except FileNotFoundError:
        return 0, False, {}, {}
    if len(raw) < 12 or zlib.crc32(raw[:8]) != CRC.unpack_from(raw, 8)[0]:
        log.error("journal: damaged checkpoint, replaying every journal file")
        return 0, False, {}, {}
    position = int(_POSITION.unpack_from(raw)[0])
    if len(raw) == 12:  # written before checkpoints recorded marks
        return position, True, {}, {}
    count = _COUNT.unpack_from(raw, 12)[0] if len(raw) >= 16 else -1
    end = 16 + count * _MARK.size
    if count < 0 or len(raw) < end + 4 or zlib.crc32(raw[12:end]) != CRC.unpack_from(raw, end)[0]:
        log.error("journal: damaged checkpoint marks; a missing segment file goes unnoticed until replay")
        return position, True, {}, {}
    marks = {}
    for i in range(count):
        tag, index, mark = _MARK.unpack_from(raw, 16 + i * _MARK.size)
        marks[(tag, index)] = mark
    return position, True, marks, _read_reservations(raw, end + 4, position)


def _read_reservations(raw: bytes, at: int, position: int) -> Claims:
    """The reservations after the marks, if this checkpoint wrote them: their magic, position and CRC must match
    (leftover bytes of a longer checkpoint written before do not)."""
    if len(raw) < at + _RESERVE_HEAD.size:
        return {}
    magic, pos, count = _RESERVE_HEAD.unpack_from(raw, at)
    end = at + _RESERVE_HEAD.size + count * _MARK.size
    if magic != _RESERVE_MAGIC or pos != position or len(raw) < end + 4:
        return {}
    if zlib.crc32(raw[at:end]) != CRC.unpack_from(raw, end)[0]:
        log.error("journal: damaged reservations in the checkpoint; numbers of a lost unsynced tail may recur")
        return {}
    out = {}
    for i in range(count):
        tag, index, reserved_end = _MARK.unpack_from(raw, at + _RESERVE_HEAD.size + i * _MARK.size)
        out[(tag, index)] = reserved_end
    return out
