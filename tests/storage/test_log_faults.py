"""A log operation that fails half way (EIO, a full disk) leaves the log as it was, in memory and on disk: no
descriptor leaks, no half-registered segment, no file that recovery would misread. The put (or seal, trim, skip)
fails cleanly; once the fault clears the next one succeeds, and a reopen finds every acknowledged record at its
offset.

A full disk or a failing device cannot be made here, so the faults come from the OS calls themselves (os.fsync,
os.open, os.write, os.unlink), failing only for the one file or directory a test names. A "crash" at the moment of a
failure is a copy of the directory taken then, opened as a fresh log.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shardline._fsutil import CutBackFailed
from shardline.storage import journal as journal_module
from shardline.storage.framing import HEADER_SIZE, REC_SIZE, StoredRecord
from shardline.storage.log import FileCache, LogTable, ShardLog

from ._util import expected, open_log, read_all, segment_files
from .test_journal import Rig

SEG: dict[str, Any] = {"segment_bytes": 2048, "index_interval": 200}
EIO, ENOSPC = errno.EIO, errno.ENOSPC


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class Faults:
    """Makes chosen OS calls fail with an errno while a rule matches: ``fail("fsync", pred)`` fails every
    ``os.fsync`` whose file's path satisfies ``pred`` (calls taking a descriptor are matched by its path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rules: list[tuple[str, Callable[[str], bool], int]] = []
        self.hits = 0
        for name in ("fsync", "write", "writev", "pwrite"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name), by_fd=True))
        for name in ("open", "unlink"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name), by_fd=False))

    def fail(self, name: str, pred: Callable[[str], bool], error: int = EIO) -> None:
        self.rules.append((name, pred, error))

    def clear(self) -> None:
        self.rules = []

    def _wrap(self, name: str, real: Any, *, by_fd: bool) -> Any:
        def call(target: Any, *args: Any, **kwargs: Any) -> Any:
            if self.rules:
                path = _fd_path(target) if by_fd else os.fspath(target)
                for rule, pred, error in self.rules:
                    if rule == name and pred(path):
                        self.hits += 1
                        raise OSError(error, os.strerror(error))
            return real(target, *args, **kwargs)

        return call


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(monkeypatch)


def descriptors() -> set[int]:
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return {int(name) for name in os.listdir(listing)} - {listing}
    finally:
        os.close(listing)


def listing(directory: Path) -> dict[str, int]:
    """Every file of a shard directory and its size (index files are caches, rewritten at will: names only)."""
    return {p.name: 0 if p.suffix == ".index" else p.stat().st_size for p in directory.iterdir()}


class Writer:
    """Appends frames of ``n`` records of ``size`` data bytes and remembers every acknowledged record."""

    def __init__(self, log: ShardLog) -> None:
        self.log = log
        self.records: list[StoredRecord] = []
        self.ms = 1_000

    @staticmethod
    def frame_bytes(n: int, size: int) -> int:
        return HEADER_SIZE + n * (REC_SIZE + 2 + size)

    def put(self, n: int = 1, size: int = 40) -> int:
        batch = [(b"pk", b"", bytes([len(self.records) % 251]) * size) for _ in range(n)]
        self.ms += 10
        base = self.log.append(batch, self.ms)  # (raises before anything below is remembered)
        assert base == len(self.records)
        self.records.extend(expected(base, self.ms, batch))
        return base

    def fill_to(self, free: int) -> None:
        """Small frames until the active segment has fewer than ``free`` bytes left before a roll."""
        while SEG["segment_bytes"] - segment_files(self.log.directory)[-1].stat().st_size >= free:
            self.put()

    def check(self, log: ShardLog | None = None) -> None:
        lg = self.log if log is None else log
        assert lg.next_offset == len(self.records)
        assert read_all(lg) == self.records

    def reopen_and_go_on(self, directory: Path, files: FileCache) -> None:
        """Every record is there after a close and a reopen, and the reopened log takes more."""
        self.check()
        self.log.close()
        self.log = reopen(directory, files)
        self.check()
        self.put(3)
        self.check()
        self.log.close()


def reopen(directory: Path, files: FileCache, *, sealed: bool = False) -> ShardLog:
    lg, report = open_log(directory, files, sealed=sealed, **SEG)
    assert report.lost == [] and report.corrupt == []
    return lg


def crash_copy(directory: Path, tmp_path: Path, files: FileCache, *, sealed: bool = False) -> ShardLog:
    """The log as a crash at this moment would leave it: its files copied and opened afresh."""
    copy = tmp_path / f"crash-{len(list(tmp_path.glob('crash-*')))}"
    shutil.copytree(directory, copy)
    return reopen(copy, files, sealed=sealed)


def _shard(tmp_path: Path, files: FileCache) -> tuple[Path, Writer]:
    directory = tmp_path / "shard"
    lg, _ = open_log(directory, files, **SEG)
    w = Writer(lg)
    for _ in range(30):  # a few segments
        w.put(3, 60)
    assert len(segment_files(directory)) >= 3
    return directory, w


def _is_log(directory: Path) -> Callable[[str], bool]:
    return lambda path: path.startswith(str(directory)) and path.endswith(".log")


def _is_dir(directory: Path) -> Callable[[str], bool]:
    return lambda path: path == str(directory)


def _is_index_tmp(directory: Path) -> Callable[[str], bool]:
    return lambda path: path.startswith(str(directory)) and path.endswith(".index.tmp")


def _is_new_log(directory: Path) -> Callable[[str], bool]:
    """Opening a segment file that does not exist yet (a roll creating it, not a reader)."""
    return lambda path: _is_log(directory)(path) and not os.path.exists(path)


ROLL_FAULTS = {
    # the active segment's fsync, before the new segment is made
    "fsync-segment": ("fsync", _is_log, EIO),
    # creating the new segment file
    "create": ("open", _is_new_log, ENOSPC),
    # the directory fsync that makes the new segment's name durable
    "fsync-dir": ("fsync", _is_dir, EIO),
}


@pytest.mark.parametrize("fault", list(ROLL_FAULTS))
def test_a_failed_roll_leaves_the_log_as_it_was(tmp_path: Path, files: FileCache, faults: Faults, fault: str) -> None:
    directory, w = _shard(tmp_path, files)
    lg = w.log
    big = (SEG["segment_bytes"] // Writer.frame_bytes(1, 60)) // 2
    w.fill_to(Writer.frame_bytes(big, 60))
    read_all(lg)  # (the cache holds its read descriptors before the count)
    fds, files_before, end = descriptors(), listing(directory), lg.next_offset
    segments = lg.segment_ranges()
    name, pred, error = ROLL_FAULTS[fault]
    faults.fail(name, pred(directory), error)
    with pytest.raises(OSError) as info:
        w.put(big, 60)  # due to roll
    assert info.value.errno == error and faults.hits
    assert descriptors() == fds
    assert listing(directory) == files_before
    assert lg.next_offset == end and lg.segment_ranges() == segments
    w.check()
    crash_copy(directory, tmp_path, files).close()  # (its checks are reopen's)
    # Still failing: every try fails the same way, and leaves nothing behind either.
    fds = descriptors()
    with pytest.raises(OSError):
        w.put(big, 60)
    assert descriptors() == fds and listing(directory) == files_before
    faults.clear()
    w.put(big, 60)
    assert len(lg.segment_ranges()) == len(segments) + 1
    for _ in range(20):
        w.put(2, 50)
    w.reopen_and_go_on(directory, files)


@pytest.mark.parametrize("then", ["retry", "small-frames"])
def test_a_roll_whose_new_file_cannot_be_removed(tmp_path: Path, files: FileCache, faults: Faults, then: str) -> None:
    """The directory fsync fails and so does removing the new (empty) file: the file stays. A retried roll takes it
    over; if small frames still fit the active segment, recovery drops the file instead of reading the offsets
    those frames took from it."""
    directory, w = _shard(tmp_path, files)
    lg = w.log
    big = (SEG["segment_bytes"] // Writer.frame_bytes(1, 60)) // 2
    w.fill_to(Writer.frame_bytes(big, 60))
    fds, end = descriptors(), lg.next_offset
    stray = directory / f"{end:020d}.log"
    faults.fail("fsync", _is_dir(directory))
    faults.fail("unlink", lambda p: p == str(stray))
    with pytest.raises(OSError):
        w.put(big, 60)
    assert descriptors() == fds
    assert stray.exists() and stray.stat().st_size == 0  # what the test is about
    faults.clear()
    # A crash now: the empty file names the log's end, which is right.
    crash = crash_copy(directory, tmp_path, files)
    w.check(crash)
    crash.close()
    if then == "retry":
        w.put(big, 60)
        assert lg.segment_ranges()[-1][0] == end and stray.stat().st_size > 0
    else:
        w.put(1, 10)  # fits the active segment: offsets from ``end`` on are in it, not in the stray file
        w.put(1, 10)
        assert lg.segment_ranges()[-1][1] == end + 2
        w.check(crash := crash_copy(directory, tmp_path, files))
        crash.close()
        for _ in range(20):
            w.put(2, 50)
    w.reopen_and_go_on(directory, files)
    assert not (then == "small-frames" and stray.exists())  # (recovery dropped it at the reopen)


def test_a_failed_seal_changes_nothing_and_a_second_seal_completes_it(
    tmp_path: Path, files: FileCache, faults: Faults
) -> None:
    directory, w = _shard(tmp_path, files)
    lg = w.log
    active = segment_files(directory)[-1]
    read_all(lg)
    fds = descriptors()
    faults.fail("fsync", _is_log(directory), EIO)
    with pytest.raises(OSError) as info:
        lg.seal()
    assert info.value.errno == EIO
    assert not lg.sealed and descriptors() == fds
    assert not list(directory.glob(".*.tmp"))
    w.check()  # reads go on
    crash = crash_copy(directory, tmp_path, files, sealed=True)  # a crash once the shard was closed
    w.check(crash)
    crash.close()
    w.put(2)  # and so do appends, until the seal is done
    faults.clear()
    read_all(lg)
    fds = descriptors()
    lg.seal()
    assert lg.sealed
    assert len(descriptors()) == len(fds) - 1  # the active segment's write descriptor is closed
    assert active.with_suffix(".index").exists()
    with pytest.raises(RuntimeError):
        w.put()
    w.check()
    lg.seal()  # sealing twice is harmless
    lg.close()
    lg = reopen(directory, files, sealed=True)
    w.check(lg)
    lg.close()


def test_an_index_that_cannot_be_saved_fails_nothing(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    """The sparse index is a cache: a roll, a seal and a close go on without it, and the next open rebuilds it."""
    directory = tmp_path / "shard"
    lg, _ = open_log(directory, files, **SEG)
    w = Writer(lg)
    faults.fail("write", _is_index_tmp(directory), ENOSPC)
    for _ in range(30):
        w.put(3, 60)
    assert len(segment_files(directory)) >= 3 and faults.hits
    lg.seal()
    assert lg.sealed
    w.check()
    fds = len(descriptors())
    lg.close()
    assert len(descriptors()) < fds  # (the cache's read descriptors)
    assert not list(directory.glob("*.index")) and not list(directory.glob(".*.tmp"))
    faults.clear()
    lg = reopen(directory, files, sealed=True)
    w.check(lg)
    lg.close()


def test_a_cut_segment_forgets_its_saved_index(tmp_path: Path, files: FileCache) -> None:
    """An index saved before a cut may name frame starts past it, which new frames would then overwrite."""
    directory, w = _shard(tmp_path, files)
    w.log.close()
    lg = reopen(directory, files)
    seg = lg._segments[-1]
    assert seg.index_path.exists()
    seg.truncate(0, seg.base_offset)
    assert not seg.index_path.exists()
    lg.close()


def test_a_failed_skip_is_retried_without_a_second_hole(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    directory, w = _shard(tmp_path, files)
    lg = w.log
    end = lg.next_offset
    fds = descriptors()
    faults.fail("open", _is_new_log(directory), ENOSPC)
    with pytest.raises(OSError):
        lg.skip_to(end + 10)
    assert descriptors() == fds
    assert not (directory / f"{end + 10:020d}.log").exists()
    assert lg.holes == [(end, end + 10)]  # written durably before the roll
    faults.clear()
    lg.skip_to(end + 10)
    assert lg.holes == [(end, end + 10)] and lg.next_offset == end + 10
    base = lg.append([(b"pk", b"", b"x")], 99_000)
    assert base == end + 10
    lg.close()
    lg = reopen(directory, files)
    assert lg.holes == [(end, end + 10)] and lg.next_offset == end + 11
    assert read_all(lg)[: len(w.records)] == w.records
    assert lg.records_between(0, lg.next_offset) == len(w.records) + 1
    lg.close()


def test_a_failed_skip_from_an_empty_segment(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    """The empty active segment is replaced by the one past the hole only once that one is in place."""
    directory = tmp_path / "shard"
    lg, _ = open_log(directory, files, **SEG)
    fds = len(descriptors())
    faults.fail("open", _is_new_log(directory), ENOSPC)
    with pytest.raises(OSError):
        lg.skip_to(10)
    assert len(descriptors()) == fds
    assert [p.name for p in segment_files(directory)] == [f"{0:020d}.log"]
    assert lg.next_offset == 0 and lg.segment_ranges() == [(0, 0, -1)]
    faults.clear()
    lg.skip_to(10)
    assert [p.name for p in segment_files(directory)] == [f"{10:020d}.log"]
    assert lg.next_offset == 10 and lg.holes == [(0, 10)]
    assert len(descriptors()) == fds
    lg.close()
    lg = reopen(directory, files)
    assert lg.next_offset == 10 and lg.holes == [(0, 10)]
    lg.close()


def _aged(tmp_path: Path, files: FileCache) -> tuple[Path, Writer]:
    directory, w = _shard(tmp_path, files)
    w.ms = 1_000_000  # the frames from here on are new; the ones before are old
    for _ in range(10):
        w.put(2, 60)
    return directory, w


def test_a_failed_log_start_write_trims_nothing(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    directory, w = _aged(tmp_path, files)
    lg = w.log
    before = listing(directory)
    faults.fail("write", lambda p: p.endswith(".log-start.tmp"), ENOSPC)
    with pytest.raises(OSError):
        lg.trim_before_time(500_000)
    assert lg.log_start == 0 and listing(directory) == before  # (no temporary file either)
    w.check()
    faults.clear()
    assert lg.trim_before_time(500_000) > 0
    first = lg.log_start
    assert first > 0 and read_all(lg) == w.records[first:]
    lg.close()


def test_a_failed_segment_deletion_is_finished_later(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    directory, w = _aged(tmp_path, files)
    lg = w.log
    ranges = lg.segment_ranges()
    doomed = [r for r in ranges if r[2] < 500_000]
    assert len(doomed) >= 2
    victim = directory / f"{doomed[1][0]:020d}.log"
    faults.fail("unlink", lambda p: p == str(victim))
    with pytest.raises(OSError):
        lg.trim_before_time(500_000)
    first = lg.log_start
    assert first == ranges[len(doomed)][0]  # durable first: nothing below it is read again
    assert read_all(lg) == w.records[first:]
    assert lg.segment_ranges()[0][0] == doomed[1][0]  # the first segment is gone, the rest stay listed
    crash = crash_copy(directory, tmp_path, files)
    assert crash.log_start == first and read_all(crash) == w.records[first:]
    crash.close()
    faults.clear()
    lg.trim_before_time(500_000)
    assert [r[0] for r in lg.segment_ranges()] == [r[0] for r in ranges[len(doomed) :]]
    assert victim.exists() is False
    w.put(2)
    assert read_all(lg) == w.records[first:]
    lg.close()
    lg = reopen(directory, files)
    assert lg.log_start == first and read_all(lg) == w.records[first:] and lg.next_offset == len(w.records)
    lg.close()


def test_a_failed_roll_in_a_trim_of_everything(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    """Trimming every record needs a fresh empty segment first; when it cannot be made, nothing is trimmed."""
    directory, w = _shard(tmp_path, files)
    lg = w.log
    fds, before = descriptors(), listing(directory)
    faults.fail("fsync", _is_dir(directory))
    with pytest.raises(OSError):
        lg.trim_before_time(10**9)
    assert descriptors() == fds and listing(directory) == before
    assert lg.log_start == 0
    w.check()
    faults.clear()
    assert lg.trim_before_time(10**9) == len(w.records)
    assert lg.log_start == lg.next_offset == len(w.records)
    lg.close()
    lg = reopen(directory, files)
    assert lg.log_start == lg.next_offset == len(w.records) and read_all(lg) == []
    lg.close()


def test_a_failed_open_gives_back_its_descriptors_and_slot(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    directory, w = _shard(tmp_path, files)
    w.log.close()
    # A segment file deleted behind the log's back: opening records the loss in ``holes``, and that write fails.
    (directory / segment_files(directory)[1].name).unlink()
    table = LogTable()
    fds = descriptors()
    faults.fail("write", lambda p: p.endswith(".holes.tmp"), ENOSPC)
    with pytest.raises(OSError):
        open_log(directory, files, table=table, slot=3, **SEG)
    assert descriptors() == fds
    assert table.logs[3] is None
    faults.clear()
    lg, report = open_log(directory, files, table=table, slot=3, **SEG)
    assert report.lost and lg.next_offset == len(w.records)
    lg.close()
    # A fresh log whose first segment cannot be made durable.
    fresh = tmp_path / "fresh"
    faults.fail("fsync", _is_dir(fresh))
    with pytest.raises(OSError):
        open_log(fresh, files, table=table, slot=3, **SEG)
    assert descriptors() == fds and table.logs[3] is None
    assert segment_files(fresh) == []
    faults.clear()
    lg, _ = open_log(fresh, files, table=table, slot=3, **SEG)
    assert lg.next_offset == 0
    lg.close()


def test_a_failed_close_still_gives_back_every_descriptor(tmp_path: Path, files: FileCache, faults: Faults) -> None:
    fds = descriptors()
    directory, w = _shard(tmp_path, files)
    read_all(w.log)
    faults.fail("fsync", _is_log(directory))
    with pytest.raises(OSError):
        w.log.close()
    faults.clear()
    assert w.log.table.logs[0] is None
    assert descriptors() == fds
    lg = reopen(directory, files)
    w.check(lg)
    lg.close()


def test_a_write_that_cannot_be_cut_back_is_cut_before_the_next(
    tmp_path: Path, files: FileCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame half written when the disk filled, and the cut that should take it back fails too: the file ends in
    bytes the segment does not account for. The next append cuts them first, so its frame starts where the
    segment says and reads (and a reopen) find every record without damage."""
    directory, w = _shard(tmp_path, files)
    active = segment_files(directory)[-1]
    size = active.stat().st_size
    real_write, real_ftruncate = os.write, os.ftruncate
    state = {"full": True}

    def half_then_full(fd: int, data: Any) -> int:
        if state["full"] and _fd_path(fd) == str(active):
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(ENOSPC, os.strerror(ENOSPC))
        return int(real_write(fd, data))

    def failing_cut(fd: int, length: int) -> None:
        if state["full"] and _fd_path(fd) == str(active):
            raise OSError(EIO, os.strerror(EIO))
        real_ftruncate(fd, length)

    monkeypatch.setattr(os, "write", half_then_full)
    monkeypatch.setattr(os, "ftruncate", failing_cut)
    with pytest.raises(CutBackFailed):
        w.put(2)
    assert active.stat().st_size > size  # what the test is about
    w.check()
    with pytest.raises(OSError):  # still failing: the cut is tried again first, and fails again
        w.put(2)
    state["full"] = False
    w.put(2)
    assert active.stat().st_size == w.log.size_bytes - sum(p.stat().st_size for p in segment_files(directory)[:-1])
    w.check()
    w.log.close()
    lg, report = open_log(directory, files, **SEG)
    assert report.clean
    w.check(lg)
    lg.close()


def test_a_shared_write_that_cannot_be_cut_back_is_cut_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for frames written for many shards at once (StageTable.write_frames): a partial frame its cut
    could not take back is cut before that shard's next write."""
    rig = Rig(tmp_path, shards=journal_module.FAN_OUT_MIN * 2)
    rig.open(first=True)
    rig.finish_open()
    rig.put_random(random.Random(3), 1_000, 300, size=40)
    rig.journal.materialize_all()
    rig.put_random(random.Random(4), 2_000, 300, size=40)
    victim = rig.logs[7]
    real_jobs = journal_module._write_jobs

    def torn(jobs: list[Any]) -> list[Any]:
        out = real_jobs(jobs)
        for i, (lg, seg, pos) in enumerate(jobs):
            if lg is victim and isinstance(out[i], tuple):  # written: undo it, leaving half of it behind
                written = out[i][-1]
                os.ftruncate(seg.fd, pos + written // 2)
                out[i] = (ENOSPC, EIO)
        return out

    monkeypatch.setattr(journal_module, "_write_jobs", torn)
    with pytest.raises(CutBackFailed):
        rig.journal.materialize_all()
    monkeypatch.undo()
    seg = victim._segments[-1]
    assert seg.path.stat().st_size > seg.size and victim.written_offset < victim.next_offset
    rig.journal.materialize_all()
    assert all(lg.written_offset == lg.next_offset for lg in rig.logs)
    assert seg.path.stat().st_size == seg.size
    rig.check()
    rig.crash()
    report = rig.open()
    rig.finish_open()
    assert report.clean
    rig.check()


@pytest.mark.parametrize("where", ["last", "middle"])
def test_recovery_drops_an_empty_segment_file_inside_the_offsets_before_it(
    tmp_path: Path, files: FileCache, where: str
) -> None:
    """What a roll leaves when it fails and cannot remove its new file, after which the log goes on in the segment
    before it: an empty file named inside that segment's offsets. Taken for a segment, it would hide those offsets
    and (as the newest) hand them out again."""
    directory, w = _shard(tmp_path, files)
    if where == "middle":
        for _ in range(15):
            w.put(3, 60)
    w.log.close()
    ranges = [(int(p.stem), p) for p in segment_files(directory)]
    base, _ = ranges[-1] if where == "last" else ranges[-2]
    stray = directory / f"{base + 2:020d}.log"
    stray.touch()
    lg, report = open_log(directory, files, **SEG)
    assert report.clean and stray.name in report.removed_files and not stray.exists()
    w.check(lg)
    w.log = lg
    w.put(2)
    w.check()
    lg.close()
    lg = reopen(directory, files)
    w.check(lg)
    lg.close()
