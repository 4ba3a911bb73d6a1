"""Journal recovery past damage: the resync scan finds the next frame by its own position, never a lookalike; what
damaged bytes still say keeps offsets unused only within plausible bounds; checkpoints keep each log's mark."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from shardline.storage.journal import Loss

from ._util import flip_byte
from .test_journal import TAG, Rig


def _frame_starts(rig: Rig, puts: list[list[tuple[int, bytes, bytes, bytes]]]) -> list[int]:
    starts = []
    for i, items in enumerate(puts):
        starts.append(rig.journal.position)
        rig.put(1_000 + i, items)
    starts.append(rig.journal.position)
    return starts


def test_resync_does_not_take_a_copied_frame_for_the_next_one(tmp_path: Path) -> None:
    """A record holds a byte-exact copy of an earlier frame (magic, length and CRC all valid). When the frame holding
    it is damaged, the scan for the next frame must not stop at the copy: its position field names another place."""
    rig = Rig(tmp_path, shards=2)
    rig.open(first=True)
    rig.finish_open()
    starts = _frame_starts(rig, [[(0, b"a", b"", b"first frame")]])
    (wal,) = rig.wal_files()
    first_frame = wal.read_bytes()[starts[0] : starts[1]]
    starts = starts[:1] + _frame_starts(
        rig, [[(0, b"b", b"", first_frame)], [(0, b"c", b"", b"c"), (1, b"c", b"", b"d")]]
    )
    rig.crash()
    flip_byte(wal, starts[1] + 37 + 27)  # the partition key of the frame that holds the copy

    report = rig.open()
    assert report.damaged == [f"{wal.name}: damaged bytes at journal positions {starts[1]}..{starts[2]} skipped"]
    assert report.frames == 2 and report.already_written == 0
    assert report.lost == [Loss(TAG, 0, 1, 2)]
    rig.model[0] = [r for r in rig.model[0] if r.offset != 1]
    rig.finish_open()
    rig.check()


def test_a_damaged_offset_field_claims_nothing_implausible(tmp_path: Path) -> None:
    """The last frame fails its CRC because a high bit of its first record's offset flipped: the other records'
    offsets are claimed (they may have been acknowledged), the absurd one is not."""
    rig = Rig(tmp_path, shards=1)
    rig.open(first=True)
    rig.finish_open()
    starts = _frame_starts(rig, [[(0, b"a%d" % i, b"", b"x" * 20) for i in range(3)] for _ in range(2)])
    rig.crash()
    (wal,) = rig.wal_files()
    flip_byte(wal, starts[1] + 37 + 4, 0x40)  # the top bytes of the offset of the last frame's first record

    report = rig.open()
    assert report.lost == [Loss(TAG, 0, 3, 6)]
    rig.model[0] = rig.model[0][:3]
    rig.finish_open()
    rig.check()
    assert rig.logs[0].next_offset == 6


def test_marks_bring_back_a_next_offset_whose_segment_is_gone(tmp_path: Path) -> None:
    """After a checkpoint the journal no longer holds the records; the segment file that did is deleted. The
    checkpoint's mark still keeps their offsets unused, and the reopen reports them lost."""
    rig = Rig(tmp_path, shards=2)
    rig.open(first=True)
    rig.finish_open()
    _frame_starts(rig, [[(0, b"a", b"", b"1"), (0, b"b", b"", b"2"), (1, b"c", b"", b"3")]])
    rig.journal.checkpoint_now()
    rig.crash()
    for seg in (tmp_path / "s" / "0").glob("*.log"):
        seg.unlink()

    report = rig.open()
    assert report.lost == [Loss(TAG, 0, 0, 2)]
    rig.model[0] = []
    rig.finish_open()
    rig.check()
    rig.put(2_000, [(0, b"new", b"", b"n")])
    assert rig.model[0][0].offset == 2


def test_a_checkpoint_from_before_marks_still_opens(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shards=1)
    rig.open(first=True)
    rig.finish_open()
    _frame_starts(rig, [[(0, b"a", b"", b"1")]])
    rig.journal.checkpoint_now()
    position = rig.journal.position
    rig.crash()
    head = struct.pack(">Q", position)
    (rig.journal_dir / "checkpoint").write_bytes(head + struct.pack(">I", zlib.crc32(head)))

    report = rig.open()
    assert report.checkpoint == position and report.clean
    rig.finish_open()
    rig.check()
