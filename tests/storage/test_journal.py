"""The write-ahead journal (storage/journal.py) over real shard logs: staging, materialising, replay after a crash,
torn and damaged journal files, checkpoints, write failures and the arrival times of staged batches."""

from __future__ import annotations

import errno
import logging
import os
import random
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

import shardline.storage.journal as journal_module
import shardline.storage.segment as segment_module
from shardline._fsutil import append_all
from shardline.storage.framing import StoredRecord
from shardline.storage.journal import HEADER_SIZE, Journal, JournalReport, Loss
from shardline.storage.log import FileCache, LogTable, ShardLog

from ._util import file_size_limit, flip_byte, frame_positions, open_log, read_all, segment_files

TAG = 0x5EED
GONE = 0xDEAD  # the tag of a stream deleted before the crash
Item = tuple[int, bytes, bytes, bytes]  # shard index, partition key, explicit hash key, data


def _items(rng: random.Random, n: int, shards: int, size: int = 60) -> list[Item]:
    out: list[Item] = []
    for _ in range(n):
        ehk = str(rng.randrange(1 << 128)).encode() if rng.random() < 0.3 else b""
        out.append((rng.randrange(shards), f"pk-{rng.randrange(10**9)}".encode(), ehk, rng.randbytes(size)))
    return out


def _expected(offsets: list[int], now: int, items: list[Item]) -> list[tuple[int, StoredRecord]]:
    return [
        (index, StoredRecord(off, now, pk.decode(), ehk.decode() if ehk else None, data))
        for off, (index, pk, ehk, data) in zip(offsets, items, strict=True)
    ]


class Rig:
    """Shard logs and a journal over one directory, and a reference model of what every log must read back.

    ``crash`` stops the way a kill does: the journal file and the segment files stay as written, staged records
    are lost from memory, nothing is checkpointed."""

    def __init__(
        self,
        root: Path,
        shards: int = 3,
        *,
        file_bytes: int = 1 << 20,
        max_span_ms: int = 1000,
        gone_shards: int = 0,
    ) -> None:
        self.root = root
        self.shards = shards
        self.gone_shards = gone_shards
        self.file_bytes = file_bytes
        self.max_span_ms = max_span_ms
        self.files = FileCache(16)
        self.logs: list[ShardLog] = []
        self.gone: list[ShardLog] = []  # logs of the stream with tag GONE (never resolvable after a reopen)
        self.sealed: set[int] = set()  # shard indexes to open sealed
        self.model: list[list[StoredRecord]] = [[] for _ in range(shards)]
        self.ends = [0] * shards  # one past the highest offset each shard handed out (and must never reuse)
        self.journal: Journal
        self.table = LogTable()
        self.gone_table = LogTable()

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    def wal_files(self) -> list[Path]:
        return sorted(self.journal_dir.glob("*.wal"))

    def open(self, *, first: bool = False) -> JournalReport:
        """Open the logs, then the journal; like the engine, checkpoint right after the replay."""
        self.table = LogTable()  # one stream's logs, slot = shard index (as the engine opens them)
        self.logs = [
            open_log(
                self.root / "s" / str(i),
                self.files,
                segment_bytes=1 << 20,
                sealed=i in self.sealed,
                table=self.table,
                slot=i,
            )[0]
            for i in range(self.shards)
        ]
        if first:
            self.gone_table = LogTable()
            self.gone = [
                open_log(self.root / "gone" / str(i), self.files, table=self.gone_table, slot=i)[0]
                for i in range(self.gone_shards)
            ]
        self.journal, report = Journal.open(
            self.journal_dir, self.resolve, file_bytes=self.file_bytes, durable=False, max_span_ms=self.max_span_ms
        )
        return report

    def resolve(self, tag: int, index: int) -> ShardLog | None:
        if tag == TAG and 0 <= index < len(self.logs):
            return self.logs[index]
        return None

    def finish_open(self) -> None:
        self.journal.checkpoint_now()
        for lg in self.logs:
            if not lg.sealed:
                lg.mark_synced(lg.next_offset)

    def put(self, now: int, items: list[Item], *, tag: int = TAG) -> list[int]:
        table = self.table if tag == TAG else self.gone_table
        offsets = self.journal.put(tag, now, table, list(items)).offsets
        if tag == TAG:
            for index, rec in _expected(offsets, now, items):
                self.model[index].append(rec)
                self.ends[index] = max(self.ends[index], rec.offset + 1)
        return offsets

    def put_random(self, rng: random.Random, now: int, n: int, size: int = 60) -> list[int]:
        return self.put(now, _items(rng, n, self.shards, size))

    def crash(self) -> None:
        j = self.journal
        if j._fd >= 0:
            os.close(j._fd)
            j._fd = -1
        for lg in self.logs + self.gone:
            lg.discard_pending()
            lg.close()

    def close(self) -> None:
        """A clean stop, in the engine's order: the logs first, then the journal."""
        for lg in self.logs:
            lg.close()
        self.journal.close()

    def check(self) -> None:
        for index, lg in enumerate(self.logs):
            assert lg.next_offset == self.ends[index]
            assert read_all(lg) == self.model[index], f"shard {index}"


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)
    assert r.open(first=True).clean
    r.finish_open()
    return r


def _staged_count(lg: ShardLog) -> int:
    return lg.next_offset - lg.written_offset


# ----------------------------------------------------------------- staging
def test_put_stages_records_and_materialize_writes_one_frame_per_shard(rig: Rig) -> None:
    rng = random.Random(1)
    items = [(i % 2, pk, ehk, data) for i, (_, pk, ehk, data) in enumerate(_items(rng, 6, 3))]  # shards 0 and 1
    offsets = rig.put(1_000, items)
    assert offsets == [0, 0, 1, 1, 2, 2]
    more = rig.put(1_010, [(0, b"late", b"", b"x" * 10)])
    assert more == [3]
    assert [lg.next_offset for lg in rig.logs] == [4, 3, 0]
    for lg in rig.logs[:2]:
        assert lg.pending and lg.written_offset == 0 and lg.visible_offset == lg.next_offset
        assert all(p.stat().st_size == 0 for p in segment_files(lg.directory)), "bytes reached a segment"
    assert not rig.logs[2].pending
    assert rig.journal.frames_written == 2
    assert rig.journal.staged_bytes > 0
    assert [p.stat().st_size for p in rig.wal_files()] == [rig.journal.position]

    rig.journal.materialize_all()
    assert rig.journal.staged_bytes == 0
    for index, lg in enumerate(rig.logs[:2]):
        assert not lg.pending and lg.written_offset == lg.next_offset
        (seg,) = segment_files(lg.directory)
        # Both puts to a shard became one segment frame (the second arrived 10 ms later, within the span).
        assert [(base, count) for _, _, base, count in frame_positions(seg)] == [(0, lg.next_offset)]
        recs, nxt = lg.read(0, 100, 1 << 20)
        assert recs == rig.model[index] and nxt == lg.next_offset
    assert [r.arrival_ms for r in rig.model[0]] == [1_000, 1_000, 1_000, 1_010]


def test_a_failed_segment_write_keeps_that_shard_and_the_rest_staged(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.put(1_000, [(0, b"a", b"", b"1"), (1, b"b", b"", b"2"), (2, b"c", b"", b"3")])
    real = append_all
    broken = rig.logs[1]._segments[-1]._fd

    def full_disk(fd: int, data: bytes, size: int, total: int | None = None) -> None:
        if fd == broken:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, size, total)

    monkeypatch.setattr(segment_module, "append_all", full_disk)
    with pytest.raises(OSError):
        rig.journal.materialize_all()
    assert [lg.written_offset for lg in rig.logs] == [1, 0, 0]  # shards are written in staging order
    assert rig.journal.staged_bytes > 0
    monkeypatch.undo()
    rig.journal.materialize_all()  # the failed shard and the one after it are still known as staged
    assert [lg.written_offset for lg in rig.logs] == [1, 1, 1] and rig.journal.staged_bytes == 0
    for index, lg in enumerate(rig.logs):
        assert read_all(lg) == rig.model[index]


def _spy_jobs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the jobs write_frames gets from materialize_all (one entry per call of a thread)."""
    counts: list[int] = []
    real = journal_module._write_jobs

    def spy(jobs: list[Any]) -> list[Any]:
        counts.append(len(jobs))
        return real(jobs)

    monkeypatch.setattr(journal_module, "_write_jobs", spy)
    return counts


def _files_match(logs: list[ShardLog]) -> bool:
    """Every active segment file holds exactly the bytes its segment accounts for."""
    return all(lg._segments[-1].size == lg._segments[-1].path.stat().st_size for lg in logs)


def test_many_shards_are_written_together_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With FAN_OUT_MIN shards or more staged, materialize_all writes one frame per shard through write_frames
    (from two threads where the table is compiled and there are two cores), across tables; a batch that needs a
    segment roll goes the ordinary way. The frames read back and replay."""
    shards = journal_module.FAN_OUT_MIN * 3
    rig = Rig(tmp_path, shards=shards, gone_shards=40)
    rig.open(first=True)
    rig.finish_open()
    rng = random.Random(7)
    rig.put(900, [(0, b"fill", b"", rng.randbytes(1000)) for _ in range(1020)])  # shard 0's segment: nearly full
    rig.journal.materialize_all()
    counts = _spy_jobs(monkeypatch)
    for now in (1_000, 1_001):
        rig.put_random(rng, now, 600)
    rig.put(1_001, [(0, b"big", b"", rng.randbytes(20_000))])  # shard 0's batch: a new segment
    rig.journal.put(GONE, 1_001, rig.gone_table, [(i, b"g", b"", b"gone") for i in range(40)])
    rig.journal.materialize_all()
    assert sum(counts) == shards - 1 + 40  # shard 0 rolled its segment: written by materialize
    assert len(counts) == (2 if journal_module._HELPERS else 1)
    assert (rig.journal._helper is not None) == bool(journal_module._HELPERS)
    assert all(lg.written_offset == lg.next_offset for lg in rig.logs + rig.gone)
    assert len(segment_files(rig.logs[0].directory)) == 2
    for lg in rig.logs[1:]:
        (seg,) = segment_files(lg.directory)
        assert [(base, count) for _, _, base, count in frame_positions(seg)] == [(0, lg.next_offset)]
    assert all(read_all(lg)[-1].data == b"gone" for lg in rig.gone)
    rig.check()
    rig.put_random(rng, 2_000, 300)  # then records that only the journal holds, through a crash
    rig.crash()
    rig.open()
    rig.finish_open()
    rig.check()


def test_a_failed_write_among_many_shards_keeps_only_that_shard_staged(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shards=journal_module.FAN_OUT_MIN * 2)
    rig.open(first=True)
    rig.finish_open()
    rig.put_random(random.Random(3), 1_000, 500, size=40)
    rig.put(1_001, [(5, b"big", b"", b"x" * 9000)])  # shard 5's frame passes the file size limit
    with file_size_limit(8192), pytest.raises(OSError) as raised:
        rig.journal.materialize_all()
    assert raised.value.errno == errno.EFBIG
    staged = [i for i, lg in enumerate(rig.logs) if lg.written_offset < lg.next_offset]
    assert staged == [5]
    assert segment_files(rig.logs[5].directory)[0].stat().st_size == 0  # the part written was cut back
    rig.journal.materialize_all()  # still known as staged: written now
    assert all(lg.written_offset == lg.next_offset for lg in rig.logs)
    rig.check()


@pytest.mark.parametrize("where", ["after the writes", "before a record", "half way through a record"])
def test_an_interrupt_during_a_many_shard_write_leaves_no_unrecorded_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A KeyboardInterrupt between writing frames and recording them (Ctrl-C lands when write_frames returns)
    must not leave bytes in a segment file that its segment does not account for: those frames are cut back and
    their records stay staged, and the next pass writes each record once."""
    rig = Rig(tmp_path, shards=journal_module.FAN_OUT_MIN * 2)
    rig.open(first=True)
    rig.finish_open()
    rig.put_random(random.Random(5), 1_000, 400)
    if where == "after the writes":
        real_jobs = journal_module._write_jobs

        def interrupted(jobs: list[Any]) -> list[Any]:
            out = real_jobs(jobs)
            if threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt  # (the helper's half is written and returned)
            return out

        monkeypatch.setattr(journal_module, "_write_jobs", interrupted)
    else:
        real_commit = ShardLog.commit_written
        calls = [0]

        def commit(lg: ShardLog, seg: Any, pos: int, written: tuple[int, int, int, int, int, int]) -> int:
            calls[0] += 1
            if calls[0] == 5:
                if where == "half way through a record":
                    count, base, first, newest, _, size = written
                    seg.appended(pos, size, base, count, arrival_ms=first, max_arrival_ms=newest)
                raise KeyboardInterrupt
            return real_commit(lg, seg, pos, written)

        monkeypatch.setattr(ShardLog, "commit_written", commit)
    with pytest.raises(KeyboardInterrupt):
        rig.journal.materialize_all()
    monkeypatch.undo()
    assert _files_match(rig.logs)
    assert any(lg.written_offset < lg.next_offset for lg in rig.logs) or where == "half way through a record"
    rig.journal.materialize_all()
    assert _files_match(rig.logs) and all(lg.written_offset == lg.next_offset for lg in rig.logs)
    rig.check()


def test_a_read_of_a_staged_range_materialises_that_shard_only(rig: Rig) -> None:
    rig.put(1_000, [(0, b"a", b"", b"1"), (1, b"b", b"", b"2")])
    recs, _ = rig.logs[0].read(0, 10, 1 << 20)
    assert [r.data for r in recs] == [b"1"]
    assert rig.logs[0].written_offset == 1 and rig.logs[1].written_offset == 0


# ----------------------------------------------------------------- replay
def test_replay_after_a_crash_restores_every_staged_record(rig: Rig) -> None:
    rng = random.Random(2)
    for i in range(20):
        rig.put_random(rng, 5_000 + 10 * i, rng.randrange(1, 9))
    staged = sum(len(m) for m in rig.model)
    position = rig.journal.position
    assert all(lg.written_offset == 0 for lg in rig.logs)
    rig.crash()

    report = rig.open()
    assert report.clean
    assert (report.frames, report.records, report.already_written, report.orphaned) == (20, staged, 0, 0)
    assert (report.checkpoint, report.end) == (0, position)
    assert [lg.next_offset for lg in rig.logs] == [len(m) for m in rig.model]
    rig.finish_open()
    assert all(not lg.pending and lg.written_offset == lg.next_offset for lg in rig.logs)
    rig.check()  # same offsets, keys, data and arrival times

    # New puts continue where the replayed records end.
    before = [lg.next_offset for lg in rig.logs]
    offsets = rig.put(6_000, [(i, b"after", b"", b"z") for i in range(3)])
    assert offsets == before
    rig.crash()

    # The checkpoint at the last open is past every earlier frame: only the new put is replayed.
    report = rig.open()
    assert report.clean and report.checkpoint == position
    assert (report.frames, report.records, report.already_written) == (1, 3, 0)
    rig.finish_open()
    rig.check()
    rig.crash()

    report = rig.open()
    assert report.clean and (report.frames, report.records, report.already_written) == (0, 0, 0)
    rig.finish_open()
    rig.check()


def test_replay_skips_records_that_already_reached_their_segments(rig: Rig) -> None:
    rng = random.Random(3)
    for i in range(12):
        rig.put(1_000 + i, _items(rng, 6, 3))
    in_segment = rig.logs[0].next_offset
    assert rig.logs[0].materialize()
    rig.put(1_100, [(0, b"staged", b"", b"s"), (1, b"staged", b"", b"t")])  # staged again after it
    staged = sum(_staged_count(lg) for lg in rig.logs)
    rig.crash()

    report = rig.open()
    assert report.clean
    assert report.already_written == in_segment
    assert report.records == staged
    assert rig.logs[0].next_offset == in_segment + 1
    rig.finish_open()
    rig.check()  # nothing duplicated, nothing missing


# ----------------------------------------------------------------- damaged journal files
@pytest.mark.parametrize("damage", ["cut last frame in half", "garbage after the last frame"])
def test_torn_tail_is_cut_and_the_journal_continues(rig: Rig, damage: str) -> None:
    rng = random.Random(4)
    starts = []
    for i in range(6):
        starts.append(rig.journal.position)
        rig.put_random(rng, 2_000 + i, 4)
    end = rig.journal.position
    rig.crash()
    (wal,) = rig.wal_files()
    if damage == "cut last frame in half":
        half = (end - starts[-1]) // 2
        os.truncate(wal, end - half)
        torn, valid_end, frames = end - half - starts[-1], starts[-1], 5
        # The last put was never fully written: its records were not acknowledged and must not come back.
        _drop_records_at(rig, 2_005, count=4)
    else:
        with wal.open("ab") as f:
            f.write(b"\x00\x07garbage" * 5)
        torn, valid_end, frames = 45, end, 6

    report = rig.open()
    assert not report.clean
    assert report.torn_bytes == torn
    assert report.frames == frames
    assert report.records == sum(len(m) for m in rig.model)
    assert report.end == valid_end
    assert wal.stat().st_size == valid_end
    rig.finish_open()
    rig.check()

    # Positions and offsets continue from the valid end; a reopen replays the new frame.
    before = [lg.next_offset for lg in rig.logs]
    offsets = rig.put(3_000, [(0, b"new", b"", b"n"), (2, b"new", b"", b"m")])
    assert offsets == [before[0], before[2]]
    assert rig.journal.position > valid_end
    rig.crash()
    report = rig.open()
    assert report.clean and report.checkpoint == valid_end
    assert (report.frames, report.records) == (1, 2)
    rig.finish_open()
    rig.check()


def _drop_records_at(rig: Rig, arrival_ms: int, *, count: int, acknowledged: bool = False) -> None:
    """Forget from the model the records of the put made at ``arrival_ms``. Unless they were ``acknowledged``
    (the put was the last one), their offsets are handed out again."""
    dropped = sum(1 for m in rig.model for r in m if r.arrival_ms == arrival_ms)
    assert dropped == count
    for index in range(rig.shards):
        rig.model[index] = [r for r in rig.model[index] if r.arrival_ms != arrival_ms]
        if not acknowledged:
            rig.ends[index] = rig.model[index][-1].offset + 1 if rig.model[index] else 0


def test_a_damaged_frame_followed_by_valid_ones_is_skipped_and_the_replay_goes_on(rig: Rig) -> None:
    """Bit rot in the middle of the newest file: an intact frame follows, so it is not a torn write. Its records are
    lost (reported) and their offsets stay unused; every later record, of its shards too, comes back at its own
    offset. Nothing is cut."""
    starts = []
    for i in range(5):
        starts.append(rig.journal.position)
        shards = [0] if i == 2 else [0, 1]  # frame 2 holds shard 0 only
        rig.put(1_000 + i, [(shard, b"k%d" % i, b"", b"frame %d" % i) for shard in shards])
    end = rig.journal.position
    rig.crash()
    (wal,) = rig.wal_files()
    flip_byte(wal, starts[2] + HEADER_SIZE + 30)  # inside the records of frame 2

    report = rig.open()
    assert not report.clean and report.torn_bytes == 0
    assert report.damaged == [f"{wal.name}: damaged bytes at journal positions {starts[2]}..{starts[3]} skipped"]
    assert report.frames == 4 and report.end == end and wal.stat().st_size == end
    assert report.records == 4 + 4  # frames 0, 1, 3 and 4: every intact record
    assert report.lost == [Loss(TAG, 0, 2, 3)]  # frame 2's record, at offset 2 of shard 0
    _drop_records_at(rig, 1_002, count=1, acknowledged=True)
    rig.finish_open()
    rig.check()
    # The journal goes on after the damaged frame; it is never replayed again.
    rig.put(2_000, [(0, b"after", b"", b"a"), (1, b"after", b"", b"b")])
    rig.crash()
    again = rig.open()
    assert again.damaged == [] and again.records == 2
    rig.finish_open()
    rig.check()


def test_a_damaged_last_frame_is_cut_and_its_offsets_stay_unused(rig: Rig) -> None:
    """The newest file's last frame fails its CRC and nothing follows it. Its bytes are cut (counted as torn bytes)
    and the frames before it are replayed; but it is whole, so it may be an acknowledged frame that rotted: the
    offsets its record headers name are reported lost and never handed out again."""
    starts = []
    for i in range(3):
        starts.append(rig.journal.position)
        rig.put(1_000 + i, [(0, b"k%d" % i, b"", b"frame %d" % i), (1, b"k%d" % i, b"", b"frame %d" % i)])
    end = rig.journal.position
    rig.crash()
    (wal,) = rig.wal_files()
    flip_byte(wal, starts[2] + HEADER_SIZE + 30)

    report = rig.open()
    assert not report.clean and report.damaged == []
    assert report.frames == 2 and report.records == 4
    assert report.torn_bytes == end - starts[2] and report.end == starts[2] and wal.stat().st_size == starts[2]
    assert report.lost == [Loss(TAG, 0, 2, 3), Loss(TAG, 1, 2, 3)]
    _drop_records_at(rig, 1_002, count=2, acknowledged=True)
    rig.finish_open()
    rig.check()
    rig.put(2_000, [(0, b"new", b"", b"n")])
    assert rig.model[0][-1].offset == 3


def test_a_damaged_frame_in_an_older_file_is_skipped_and_that_file_replayed_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In a file that is not the newest, a damaged frame whose successor is valid is skipped: the rest of that file
    and the newer files are replayed; only the damaged frame's records are lost, at their own offsets."""
    rig = Rig(tmp_path, shards=2, file_bytes=4096)
    rig.open(first=True)
    rig.finish_open()
    starts: list[int] = []
    files_of: list[int] = []
    for i in range(24):
        starts.append(rig.journal.position)
        shard = 0 if i < 16 else 1  # shard 1 only gets records once the first file is full
        rig.put(1_000 + i, [(shard, b"k%d" % i, b"", bytes([i]) * 500)])
        files_of.append(rig.journal._file_start)
    first_file_frames = [i for i, f in enumerate(files_of) if f == 0]
    assert 3 <= len(first_file_frames) < 16, files_of
    assert len(rig.wal_files()) >= 3
    damaged = first_file_frames[1]
    rig.crash()
    flip_byte(rig.wal_files()[0], starts[damaged] + HEADER_SIZE + 40)

    with caplog.at_level(logging.ERROR, logger="shardline.storage"):
        report = rig.open()
    assert not report.clean
    # Only the damaged frame is skipped: no positions are missing, nothing is torn.
    assert report.damaged == [
        f"{rig.wal_files()[0].name}: damaged bytes at journal positions {starts[damaged]}..{starts[damaged + 1]} "
        "skipped"
    ]
    assert report.torn_bytes == 0
    # Shard 0: every record but the damaged frame's comes back at its own offset.
    assert rig.logs[0].next_offset == 16
    assert report.lost == [Loss(TAG, 0, damaged, damaged + 1)]
    # Shard 1: all its records are in newer files and come back.
    assert rig.logs[1].next_offset == 8
    assert report.records == 15 + 8
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    _drop_records_at(rig, 1_000 + damaged, count=1, acknowledged=True)
    rig.finish_open()
    rig.check()


# ----------------------------------------------------------------- orphans
def test_records_of_a_stream_that_no_longer_resolves_are_orphaned(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shards=2, gone_shards=2)
    rig.open(first=True)
    rig.finish_open()
    rng = random.Random(5)
    gone = 0
    for i in range(10):
        rig.put_random(rng, 1_000 + i, 3)
        items = _items(rng, 4, 2)
        rig.put(1_000 + i, items, tag=GONE)
        gone += len(items)
    rig.put(1_100, [(0, b"mixed", b"", b"m")])
    kept = sum(len(m) for m in rig.model)
    rig.crash()

    report = rig.open()
    assert report.clean
    assert report.orphaned == gone
    assert report.records == kept
    assert report.frames == 21
    rig.finish_open()
    rig.check()


def test_records_of_a_sealed_shard_are_not_staged_again(tmp_path: Path) -> None:
    """Sealing writes a shard's staged records first; replay counts a sealed shard's records as already written."""
    rig = Rig(tmp_path, shards=2)
    rig.open(first=True)
    rig.finish_open()
    for i in range(4):
        rig.put(1_000 + i, [(0, b"a%d" % i, b"", b"a"), (1, b"b%d" % i, b"", b"b")])
    rig.logs[1].seal()
    rig.sealed.add(1)
    rig.crash()

    report = rig.open()
    assert report.records == 4  # shard 0's
    assert (report.orphaned, report.already_written) == (0, 4)  # shard 1's: in its sealed segment already
    rig.finish_open()
    rig.check()


# ----------------------------------------------------------------- checkpoints
def test_checkpoint_deletes_journal_files_wholly_before_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path, file_bytes=4096)
    rig.open(first=True)
    rig.finish_open()
    rng = random.Random(6)
    for i in range(40):
        rig.put_random(rng, 1_000 + i, 5, size=100)
    assert len(rig.wal_files()) >= 4
    assert all(p.stat().st_size >= 4096 for p in rig.wal_files()[:-1])

    rig.journal.checkpoint_now()
    active = f"{rig.journal._file_start:020d}.wal"
    assert [p.name for p in rig.wal_files()] == [active]
    assert all(lg.written_offset == lg.next_offset for lg in rig.logs)
    checkpoint = rig.journal.position
    raw = (rig.journal_dir / "checkpoint").read_bytes()
    assert raw[:12] == struct.pack(">QI", checkpoint, zlib.crc32(struct.pack(">Q", checkpoint)))

    # More files after the checkpoint; a crash replays only what came after it.
    for i in range(30):
        rig.put_random(rng, 2_000 + i, 5, size=100)
    assert len(rig.wal_files()) >= 3
    after = sum(_staged_count(lg) for lg in rig.logs)
    rig.crash()
    report = rig.open()
    assert report.clean and report.checkpoint == checkpoint
    assert (report.frames, report.records, report.already_written) == (30, after, 0)
    rig.finish_open()
    rig.check()
    assert len(rig.wal_files()) <= 1

    # A clean close removes every journal file; the next open replays nothing and finds every record.
    rig.put_random(rng, 3_000, 5)
    position = rig.journal.position
    rig.close()
    assert rig.wal_files() == []
    report = rig.open()
    assert report.clean and report.checkpoint == report.end == position
    assert (report.frames, report.records) == (0, 0)
    rig.finish_open()
    rig.check()
    assert rig.put(4_000, [(0, b"again", b"", b"a")]) == [len(rig.model[0]) - 1]
    rig.crash()
    report = rig.open()
    assert (report.checkpoint, report.records) == (position, 1)


def test_damaged_checkpoint_replays_from_the_oldest_file_without_duplicates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path, file_bytes=4096)
    rig.open(first=True)
    rig.finish_open()
    rng = random.Random(7)
    for i in range(30):
        rig.put_random(rng, 1_000 + i, 5, size=100)
    rig.journal.checkpoint_now()
    oldest = rig.journal._file_start
    assert oldest > 0
    in_segments = sum(lg.next_offset for lg in rig.logs)
    checkpoint = rig.journal.position
    for i in range(10):
        rig.put_random(rng, 2_000 + i, 5, size=100)
    staged = sum(_staged_count(lg) for lg in rig.logs)
    rig.crash()
    flip_byte(rig.journal_dir / "checkpoint", 3)

    with caplog.at_level(logging.ERROR, logger="shardline.storage"):
        report = rig.open()
    assert any("damaged checkpoint" in r.getMessage() for r in caplog.records)
    assert report.checkpoint == 0
    # Replay starts at the oldest file present; what it holds before the lost checkpoint is already written.
    # The files before the oldest one were deleted by the checkpoint that is now unreadable: no damage to report.
    assert report.damaged == []
    assert report.records == staged
    assert 0 < report.already_written < in_segments
    assert report.frames > 10
    rig.finish_open()
    rig.check()
    assert rig.journal.checkpointed > checkpoint


# ----------------------------------------------------------------- write failures
def test_a_failed_journal_write_leaves_no_trace(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.put(1_000, [(0, b"a", b"", b"1"), (1, b"b", b"", b"2")])
    before = [(lg.next_offset, list(lg.pending), lg.visible_offset) for lg in rig.logs]
    (wal,) = rig.wal_files()
    size = wal.stat().st_size
    position, staged = rig.journal.position, rig.journal.staged_bytes

    real_write = os.write
    failures: list[int] = []

    real_writev = os.writev

    def full_disk(fd: int, data: bytes) -> int:
        if not failures:
            failures.append(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def full_disk_v(fd: int, data: list[bytes]) -> int:
        if not failures:
            failures.append(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, data)

    monkeypatch.setattr("shardline.storage.journal.os.write", full_disk)
    monkeypatch.setattr("shardline.storage.journal.os.writev", full_disk_v)
    failed = [(0, b"c", b"", b"3"), (2, b"d", b"", b"4"), (0, b"e", b"", b"5")]
    with pytest.raises(OSError) as exc:
        rig.journal.put(TAG, 1_001, rig.table, list(failed))
    monkeypatch.undo()
    assert exc.value.errno == errno.ENOSPC and failures
    assert [(lg.next_offset, list(lg.pending), lg.visible_offset) for lg in rig.logs] == before
    assert wal.stat().st_size == size
    assert (rig.journal.position, rig.journal.staged_bytes) == (position, staged)
    assert rig.journal.broken is None

    # The next put gets the offsets the failed one would have had.
    assert rig.put(1_002, failed) == [1, 0, 2]
    rig.journal.materialize_all()
    rig.check()
    rig.crash()
    report = rig.open()
    assert report.clean and report.frames == 2
    assert (report.records, report.already_written) == (0, 5)  # materialised by the reads above
    rig.finish_open()
    rig.check()


# ----------------------------------------------------------------- arrival times
def test_a_clock_step_back_never_puts_a_record_before_its_batch(rig: Rig) -> None:
    rig.journal.put(TAG, 1_000, rig.table, [(0, b"first", b"", b"1")])
    rig.journal.put(TAG, 900, rig.table, [(0, b"second", b"", b"2")])
    assert rig.logs[0].written_offset == 0  # one batch
    rig.journal.materialize_all()
    recs, _ = rig.logs[0].read(0, 10, 1 << 20)
    assert [(r.offset, r.data) for r in recs] == [(0, b"1"), (1, b"2")]
    assert recs[0].arrival_ms == 1_000
    assert recs[1].arrival_ms >= 1_000
    assert rig.logs[0].last_arrival_ms == 1_000

    # Replayed the same way.
    rig.put(1_500, [(1, b"x", b"", b"x")])
    rig.journal.put(TAG, 1_400, rig.table, [(1, b"y", b"", b"y")])
    rig.crash()
    rig.open()
    rig.finish_open()
    recs, _ = rig.logs[1].read(0, 10, 1 << 20)
    assert [r.arrival_ms for r in recs] == [1_500, 1_500]


def test_a_staged_batch_never_spans_more_than_max_span(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shards=1, max_span_ms=1000)
    rig.open(first=True)
    rig.finish_open()
    lg = rig.logs[0]
    rig.put(0, [(0, b"a", b"", b"a")])
    rig.put(1_000, [(0, b"b", b"", b"b")])  # exactly the span: same batch
    assert lg.written_offset == 0
    rig.put(5_000, [(0, b"c", b"", b"c")])  # past it: the first batch was written by this put
    assert lg.written_offset == 2 and _staged_count(lg) == 1
    rig.put(6_001, [(0, b"d", b"", b"d")])
    assert lg.written_offset == 3
    rig.journal.materialize_all()
    (seg,) = segment_files(lg.directory)
    assert [(base, count) for _, _, base, count in frame_positions(seg)] == [(0, 2), (2, 1), (3, 1)]
    rig.check()
    assert [r.arrival_ms for r in read_all(lg)] == [0, 1_000, 5_000, 6_001]


def test_a_failed_put_leaves_the_batch_newest_arrival_alone(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.put(1_000, [(0, b"a", b"", b"1")])

    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("shardline.storage.journal.os.write", full_disk)
    monkeypatch.setattr("shardline.storage.journal.os.writev", full_disk)
    with pytest.raises(OSError):
        rig.journal.put(TAG, 1_500, rig.table, [(0, b"b", b"", b"2")])  # within the span
    monkeypatch.undo()
    assert rig.logs[0].last_arrival_ms == 1_000
    rig.journal.materialize_all()
    assert rig.logs[0].last_arrival_ms == 1_000


def test_the_checkpoint_at_open_deletes_files_left_by_a_crash_before_their_deletion(tmp_path: Path) -> None:
    """A crash between recording a checkpoint and deleting the files before it leaves them (the oldest one at
    position 0 included); the checkpoint right after the next open removes every one of them."""
    rig = Rig(tmp_path, file_bytes=4096)
    rig.open(first=True)
    rig.finish_open()
    rng = random.Random(8)
    for i in range(40):
        rig.put_random(rng, 1_000 + i, 5, size=100)
    saved = {p.name: p.read_bytes() for p in rig.wal_files()}
    assert "00000000000000000000.wal" in saved and len(saved) >= 4
    rig.journal.checkpoint_now()
    rig.crash()
    for name, raw in saved.items():  # as if the deletes had not happened
        if not (rig.journal_dir / name).exists():
            (rig.journal_dir / name).write_bytes(raw)

    report = rig.open()
    assert report.records == 0 and report.clean
    rig.finish_open()
    rig.check()
    assert [p.name for p in rig.wal_files()] == [max(saved)]  # only the file the checkpoint lies in
