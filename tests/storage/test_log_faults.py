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
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shardline.storage.framing import HEADER_SIZE, REC_SIZE, StoredRecord
from shardline.storage.log import FileCache, ShardLog

from ._util import expected, open_log, read_all, segment_files

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
