"""Retention: whole segments go, the log start moves durably first, and a crash in between is finished by open."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from shardline.storage.log import FileCache

from ._util import Model, open_log, read_all, segment_files

SEG: dict[str, Any] = {"segment_bytes": 1500, "index_interval": 150}


def _log(tmp_path: Path, files: FileCache, *, sealed: bool = False) -> Model:
    lg, _ = open_log(tmp_path, files, **SEG)
    m = Model(lg, seed=11)
    m.fill(80, step_ms=10)
    if sealed:
        lg.seal()
    assert len(lg.segment_ranges()) >= 5
    return m


def _names(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def _log_start_bytes(offset: int) -> bytes:
    head = struct.pack(">Q", offset)
    return head + struct.pack(">I", zlib.crc32(head))


def test_trim_deletes_whole_old_segments_and_moves_log_start(tmp_path: Path, files: FileCache) -> None:
    m = _log(tmp_path, files)
    lg = m.log
    ranges = lg.segment_ranges()
    assert [r[0] for r in ranges] == [int(p.stem) for p in segment_files(tmp_path)]
    # The cutoff equals the newest arrival of segment 2: segment 2 is not older than it and stays.
    assert lg.trim_before_time(ranges[2][2]) == ranges[2][0]
    assert lg.log_start == ranges[2][0]
    assert [r[0] for r in lg.segment_ranges()] == [r[0] for r in ranges[2:]]
    assert not (tmp_path / f"{ranges[0][0]:020d}.log").exists()
    assert not (tmp_path / f"{ranges[1][0]:020d}.index").exists()
    start = ranges[2][0]
    want = m.records[start:]
    assert read_all(lg) == want
    assert lg.read(0, 3, 1 << 20) == (want[:3], start + 3)
    assert lg.arrival_of(start - 1) is None
    assert lg.offset_for_time(0) == start
    assert lg.trim_before_time(ranges[2][2]) == 0  # nothing more to do
    lg.close()
    lg, report = open_log(tmp_path, files, **SEG)
    assert report.clean and report.removed_files == []
    assert lg.log_start == start and lg.next_offset == len(m.records)
    assert read_all(lg) == want and lg.offset_for_time(0) == start
    lg.close()


def test_trim_keeps_a_segment_with_any_record_not_older_than_the_cutoff(tmp_path: Path, files: FileCache) -> None:
    m = _log(tmp_path, files)
    first_max = m.log.segment_ranges()[0][2]
    assert m.log.trim_before_time(first_max) == 0
    assert m.log.trim_before_time(-1) == 0
    assert m.log.log_start == 0 and not (tmp_path / "log-start").exists()
    assert read_all(m.log) == m.records
    assert m.log.trim_before_time(first_max + 1) > 0
    m.log.close()


def test_trim_everything_keeps_next_offset_and_stays_appendable(tmp_path: Path, files: FileCache) -> None:
    m = _log(tmp_path, files)
    end = len(m.records)
    assert m.log.trim_before_time(m.next_ms + 1) == end
    assert m.log.log_start == m.log.next_offset == m.log.visible_offset == end
    assert read_all(m.log, 0) == []
    assert m.log.read(0, 10, 1 << 20) == ([], end)
    assert m.log.offset_for_time(0) == end
    assert [p.name for p in segment_files(tmp_path)] == [f"{end:020d}.log"]
    m.log.close()
    lg, report = open_log(tmp_path, files, **SEG)
    assert report.clean
    assert lg.log_start == lg.next_offset == end
    m.log = lg
    m.records = m.records[:end]
    m.fill(3)
    assert m.records[end].offset == end
    assert read_all(lg, 0) == m.records[end:]
    lg.close()
    lg, _ = open_log(tmp_path, files, **SEG)
    assert read_all(lg, 0) == m.records[end:]
    lg.close()


def test_trim_everything_of_a_sealed_log(tmp_path: Path, files: FileCache) -> None:
    m = _log(tmp_path, files, sealed=True)
    end = len(m.records)
    assert m.log.trim_before_time(m.next_ms + 1) == end
    assert segment_files(tmp_path) == []
    assert m.log.read(0, 10, 1 << 20) == ([], end)
    m.log.close()
    lg, _ = open_log(tmp_path, files, sealed=True, **SEG)
    assert lg.next_offset == lg.log_start == end
    assert read_all(lg, 0) == []
    lg.close()


def test_open_finishes_a_retention_cut_short_after_the_log_start_write(tmp_path: Path, files: FileCache) -> None:
    m = _log(tmp_path, files)
    ranges = m.log.segment_ranges()
    m.log.close()
    start = ranges[3][0]
    (tmp_path / "log-start").write_bytes(_log_start_bytes(start))
    lg, report = open_log(tmp_path, files, **SEG)
    doomed = {f"{b:020d}{s}" for b, _, _ in ranges[:3] for s in (".log", ".index")}
    assert set(report.removed_files) == doomed
    assert not doomed & set(_names(tmp_path))
    assert lg.log_start == start
    assert read_all(lg) == m.records[start:]
    lg.close()


@pytest.mark.parametrize("everything", [False, True])
@pytest.mark.parametrize("sealed", [False, True])
def test_open_removes_segment_files_a_crash_left_behind(
    tmp_path: Path, files: FileCache, everything: bool, sealed: bool
) -> None:
    m = _log(tmp_path, files, sealed=sealed)
    saved = tmp_path.parent / f"{tmp_path.name}-saved"
    shutil.copytree(tmp_path, saved)
    cutoff = m.next_ms + 1 if everything else m.log.segment_ranges()[2][2] + 1
    m.log.trim_before_time(cutoff)
    start = m.log.log_start
    m.log.close()
    after = _names(tmp_path)
    # The process stopped after the log-start write: the old segment files are all still there.
    for p in saved.iterdir():
        if p.suffix in (".log", ".index") and not (tmp_path / p.name).exists():
            shutil.copy2(p, tmp_path / p.name)
    assert _names(tmp_path) != after
    lg, report = open_log(tmp_path, files, sealed=sealed, **SEG)
    assert report.removed_files
    assert _names(tmp_path) == after
    assert lg.log_start == start and lg.next_offset == len(m.records)
    assert read_all(lg) == m.records[start:]
    lg.close()


def test_damaged_log_start_falls_back_to_the_oldest_segment(
    tmp_path: Path, files: FileCache, caplog: pytest.LogCaptureFixture
) -> None:
    m = _log(tmp_path, files)
    m.log.trim_before_time(m.log.segment_ranges()[1][2] + 1)
    start = m.log.log_start
    m.log.close()
    raw = (tmp_path / "log-start").read_bytes()
    (tmp_path / "log-start").write_bytes(raw[:3] + bytes([raw[3] ^ 1]) + raw[4:])
    lg, _ = open_log(tmp_path, files, **SEG)
    assert any("log-start" in r.getMessage() for r in caplog.records)
    assert read_all(lg) == m.records[start:]
    assert lg.next_offset == len(m.records)
    lg.close()


def test_trim_counts_no_record_for_the_offsets_of_a_hole(tmp_path: Path, files: FileCache) -> None:
    lg, _ = open_log(tmp_path, files, **SEG)
    lg.append([(b"a", b"", b"1"), (b"b", b"", b"2")], 1_000)
    lg.skip_to(10)  # offsets 2..9 were lost at a recovery
    lg.append([(b"c", b"", b"3")], 2_000)
    lg.append([(b"d", b"", b"4")], 9_000)
    assert lg.trim_before_time(5_000) == 2  # the segment before the hole: log-start moves from 0 to 10
    assert lg.log_start == 10
    assert [r.offset for r in read_all(lg)] == [10, 11]
    lg.close()
