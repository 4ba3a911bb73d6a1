"""Staged batches reach the segment as frames of bounded size: a read that starts inside a frame decodes it from
its start, so a batch of thousands of records must not become one frame."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from shardline.storage import log as log_module
from shardline.storage.framing import HEADER_SIZE, parse_header
from shardline.storage.journal import Journal
from shardline.storage.log import FRAME_BYTES, FRAME_RECORDS, FileCache, ShardLog


def _open(root: Path) -> tuple[ShardLog, Journal]:
    lg, _ = ShardLog.open(
        root / "shard",
        FileCache(8),
        segment_bytes=1 << 30,
        index_interval=1 << 16,
        segment_max_age_ms=1 << 40,
        visible_on_write=True,
    )
    journal, _ = Journal.open(root / "journal", lambda tag, index: lg, file_bytes=1 << 30, durable=False)
    return lg, journal


def _frames(lg: ShardLog) -> list[tuple[int, int, int]]:
    """(base offset, record count, bytes) of every frame in the log's segment files."""
    out = []
    for path in sorted(lg.directory.glob("*.log")):
        raw = path.read_bytes()
        pos = 0
        while pos < len(raw):
            h = parse_header(raw, pos)
            out.append((h.base_offset, h.record_count, h.total_size))
            pos += h.total_size
    return out


def _check(lg: ShardLog, expected: list[tuple[str, bytes, int]]) -> None:
    recs, _ = lg.read(0, 1 << 20, 1 << 40)
    assert [(r.partition_key, r.data, r.arrival_ms) for r in recs] == expected
    assert [r.offset for r in recs] == list(range(len(expected)))


def test_a_batch_of_small_records_is_written_as_frames_of_at_most_frame_records(tmp_path: Path) -> None:
    lg, journal = _open(tmp_path)
    expected = []
    for request in range(7):  # 7 x 300 records staged, the checkpoint-style write at the end
        batch = [(f"k{request}-{i}".encode(), b"", os.urandom(20)) for i in range(300)]
        journal.stage_records(1_000 + request, lg.table, [(0, pk, ehk, d) for pk, ehk, d in batch])
        expected += [(pk.decode(), d, 1_000 + request) for pk, _, d in batch]
    journal.materialize_all()
    frames = _frames(lg)
    assert max(count for _, count, _ in frames) == FRAME_RECORDS
    assert [base for base, _, _ in frames] == [i * FRAME_RECORDS for i in range(len(frames))]
    _check(lg, expected)


def test_a_batch_of_large_records_is_written_as_frames_of_about_frame_bytes(tmp_path: Path) -> None:
    lg, journal = _open(tmp_path)
    batch = [(f"k{i}".encode(), b"", os.urandom(200_000)) for i in range(12)]
    journal.stage_records(5_000, lg.table, [(0, pk, ehk, d) for pk, ehk, d in batch])
    journal.materialize_all()
    frames = _frames(lg)
    assert len(frames) > 1
    assert all(size <= FRAME_BYTES + HEADER_SIZE or count == 1 for _, count, size in frames)
    _check(lg, [(pk.decode(), d, 5_000) for pk, _, d in batch])


def test_a_put_that_fills_a_batch_writes_it_once_the_journal_has_it(tmp_path: Path) -> None:
    lg, journal = _open(tmp_path)
    batch = [(f"k{i}".encode(), b"", b"x") for i in range(FRAME_RECORDS)]
    journal.put(1, 1_000, lg.table, [(0, pk, ehk, d) for pk, ehk, d in batch])
    assert lg.pending == [] and lg.written_offset == FRAME_RECORDS


def test_a_failed_frame_in_a_split_keeps_the_rest_staged_and_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lg, journal = _open(tmp_path)
    batch = [(f"k{i}".encode(), b"", os.urandom(10)) for i in range(3 * FRAME_RECORDS)]
    journal.stage_records(7_000, lg.table, [(0, pk, ehk, d) for pk, ehk, d in batch])
    segment = lg._segments[-1]
    real = segment.append
    calls = 0

    def second_write_fails(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(segment, "append", second_write_fails)
    with pytest.raises(OSError):
        lg.materialize()
    assert lg.written_offset == FRAME_RECORDS and len(lg.pending) == 2 * FRAME_RECORDS
    monkeypatch.undo()
    lg.materialize()
    assert lg.written_offset == lg.next_offset == 3 * FRAME_RECORDS
    _check(lg, [(pk.decode(), d, 7_000) for pk, _, d in batch])
    assert log_module.FRAME_RECORDS == FRAME_RECORDS
