"""A power loss can leave a hole in segment bytes written since the last checkpoint (they were never fsynced)
with intact frames after it. The journal holds every one of those records, so recovery cuts the segment at the
hole and refills it in order instead of skipping the hole as bit rot."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from shardline.storage.journal import Journal, JournalReport
from shardline.storage.log import FileCache, ShardLog

TAG = 7


def _open(root: Path) -> tuple[ShardLog, Journal, JournalReport]:
    lg, _ = ShardLog.open(
        root / "shard",
        FileCache(8),
        segment_bytes=1 << 20,
        index_interval=64,
        segment_max_age_ms=3_600_000,
        visible_on_write=True,
    )
    journal, report = Journal.open(
        root / "journal", lambda tag, index: lg if (tag, index) == (TAG, 0) else None, file_bytes=1 << 20, durable=True
    )
    return lg, journal, report


def _batch(name: str, n: int) -> list[tuple[bytes, bytes, bytes]]:
    return [(f"{name}-{i}".encode(), b"", os.urandom(40)) for i in range(n)]


def _crash(lg: ShardLog, journal: Journal) -> None:
    """Stop without a checkpoint: what a kill leaves (the journal file and the segment bytes as written)."""
    os.close(journal._fd)
    journal._fd = -1
    lg.discard_pending()
    lg.close()
    for index in lg.directory.glob("*.index"):
        index.unlink()  # close saved the active segment's index; a crash would not have


def _read_all(lg: ShardLog) -> list[tuple[int, str, bytes]]:
    recs, _ = lg.read(0, 10_000, 1 << 30)
    return [(r.offset, r.partition_key, r.data) for r in recs]


@pytest.mark.parametrize("damaged_frame", [1, 2])
def test_a_hole_after_the_checkpoint_is_refilled_from_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged_frame: int
) -> None:
    lg, journal, _ = _open(tmp_path)
    written: list[tuple[int, str, bytes]] = []

    def put(name: str, now: int) -> None:
        batch = _batch(name, 5)
        offsets = journal.put(TAG, now, lg.table, [(0, pk, ehk, data) for pk, ehk, data in batch]).offsets
        written.extend((off, pk.decode(), data) for off, (pk, _, data) in zip(offsets, batch, strict=True))

    put("a", 1_000)
    journal.checkpoint_now()  # frame 0: fsynced, behind the checkpoint
    frame_starts = []
    for i, name in enumerate(("b", "c", "d")):  # frames 1..3: written to the segment after the checkpoint
        frame_starts.append(lg._segments[-1].size)
        put(name, 1_100 + i)
        journal.materialize_all()
    _crash(lg, journal)

    segment = next((tmp_path / "shard").glob("*.log"))
    raw = bytearray(segment.read_bytes())
    raw[frame_starts[damaged_frame - 1] + 50] ^= 0xFF  # inside frame 1 or 2: intact frames follow it
    segment.write_bytes(bytes(raw))

    with caplog.at_level(logging.WARNING):
        lg, journal, report = _open(tmp_path)
        assert report.cut_bytes > 0, "recovery must have cut the segment at the damaged frame"
        assert report.records == 5 * (4 - damaged_frame)  # the damaged frame and every frame after it
        journal.checkpoint_now()
    assert _read_all(lg) == written
    assert lg.next_offset == len(written)
    assert "the journal restores them" in caplog.text


def test_damage_before_the_checkpoint_stays_bit_rot(tmp_path: Path) -> None:
    """Bytes behind the checkpoint were fsynced: damage there is reported and skipped, later frames are kept."""
    lg, journal, _ = _open(tmp_path)
    offsets_by_frame = []
    for i, name in enumerate(("a", "b", "c")):
        batch = _batch(name, 4)
        staged = journal.put(TAG, 1_000 + i, lg.table, [(0, pk, ehk, data) for pk, ehk, data in batch])
        offsets_by_frame.append(staged.offsets)
        journal.materialize_all()
    journal.checkpoint_now()
    batch = _batch("d", 4)
    journal.put(TAG, 2_000, lg.table, [(0, pk, ehk, data) for pk, ehk, data in batch])  # staged only: replayed
    _crash(lg, journal)

    segment = next((tmp_path / "shard").glob("*.log"))
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside frame b (frames a, b, c are about the same size)
    segment.write_bytes(bytes(raw))

    lg, journal, report = _open(tmp_path)
    assert report.cut_bytes == 0
    journal.checkpoint_now()
    offsets = [off for off, _, _ in _read_all(lg)]
    lost = set(offsets_by_frame[1])
    assert offsets == [o for o in range(16) if o not in lost]
