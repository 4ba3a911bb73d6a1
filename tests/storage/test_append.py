"""The one way storage appends to a log file: all of it, or nothing left behind (a failed write is cut back off)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from shardline._fsutil import CutBackFailed, append_all
from shardline.storage.journal import Journal
from shardline.storage.log import FileCache, ShardLog


def test_append_all_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        append_all(fd, b"abc", 0)
        append_all(fd, b"x" * 1_000_000, 3)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abc" + b"x" * 1_000_000


def test_pieces_are_written_back_to_back_and_a_short_write_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    real_writev = os.writev

    def short(fd: int, buffers: list[bytes]) -> int:  # the kernel may write less than asked
        return real_writev(fd, [bytes(memoryview(buffers[0])[:3])])

    try:
        append_all(fd, (b"head", memoryview(b"body")), 0)
        monkeypatch.setattr("shardline._fsutil.os.writev", short)
        append_all(fd, (b"HEAD", memoryview(b"xBODYx")[1:5]), 8)
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert path.read_bytes() == b"headbodyHEADBODY"


def test_a_failed_append_is_cut_back_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"kept")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:  # a disk that fills up in the middle of the write
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("shardline._fsutil.os.write", half_then_full)
    try:
        with pytest.raises(OSError) as info:
            append_all(fd, b"0123456789", 4)
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, CutBackFailed)
    assert path.read_bytes() == b"kept"


def test_a_failed_append_of_pieces_is_cut_back_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"kept")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    real_writev = os.writev

    def half_then_full(fd: int, buffers: list[bytes]) -> int:
        real_writev(fd, [buffers[0]])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("shardline._fsutil.os.writev", half_then_full)
    try:
        with pytest.raises(OSError) as info:
            append_all(fd, (b"head", b"body"), 4)
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, CutBackFailed)
    assert path.read_bytes() == b"kept"


def test_an_append_that_cannot_be_cut_back_says_so(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"kept")
    fd = os.open(path, os.O_RDONLY)  # neither the write nor the cut can succeed
    try:
        with pytest.raises(CutBackFailed, match="cannot cut a failed write back off"):
            append_all(fd, b"more", 4)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"kept"


def test_a_journal_that_cannot_cut_a_failed_write_back_refuses_further_writes(tmp_path: Path) -> None:
    lg, _ = ShardLog.open(
        tmp_path / "shard",
        FileCache(4),
        segment_bytes=1 << 20,
        index_interval=4096,
        segment_max_age_ms=1 << 40,
        visible_on_write=True,
    )
    journal, _ = Journal.open(tmp_path / "journal", lambda tag, index: lg, file_bytes=1 << 20, durable=False)
    assert journal.put(1, 1_000, lg.table, [(0, b"k", b"", b"first")]).offsets == [0]
    wal = next((tmp_path / "journal").glob("*.wal"))
    size = wal.stat().st_size
    os.close(journal._fd)
    journal._fd = os.open(wal, os.O_RDONLY)  # writes and cuts both fail from here on
    with pytest.raises(CutBackFailed):
        journal.put(1, 1_001, lg.table, [(0, b"k", b"", b"second")])
    assert journal.broken is not None and lg.next_offset == 1 and wal.stat().st_size == size
    with pytest.raises(OSError, match="unusable after an earlier error"):
        journal.put(1, 1_002, lg.table, [(0, b"k", b"", b"third")])
    os.close(journal._fd)
    lg.close()
