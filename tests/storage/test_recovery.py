"""Recovery: torn tails are cut, damaged frames in the middle cost exactly their own offsets."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest

from shardline.storage.framing import encode_frame
from shardline.storage.log import FileCache

from ._util import Model, flip_byte, frame_positions, open_log, read_all, segment_files

SEG: dict[str, Any] = {"segment_bytes": 3000, "index_interval": 150}


def _closed_log(tmp_path: Path, files: FileCache, frames: int = 80) -> Model:
    lg, _ = open_log(tmp_path, files, **SEG)
    m = Model(lg, seed=3)
    m.fill(frames)
    # Damage goes in the middle of the active segment too, so it needs a few frames.
    while len(frame_positions(segment_files(tmp_path)[-1])) < 6:
        m.fill(1)
    lg.close()
    assert len(segment_files(tmp_path)) >= 3
    return m


def _check_appends_continue(m: Model, tmp_path: Path, files: FileCache, lost: set[int]) -> None:
    """Append after recovery, then reopen: offsets go on from the recovered end and nothing else changes."""
    m.fill(5, start_ms=50_000)
    want = [r for r in m.records if r.offset not in lost]
    assert read_all(m.log) == want
    m.log.close()
    lg, _ = open_log(tmp_path, files, **SEG)
    assert lg.next_offset == len(m.records)
    assert read_all(lg) == want
    lg.close()


@pytest.mark.parametrize("cut", [1, 20, 36, 37, 38, -1])
def test_torn_last_frame_is_cut(tmp_path: Path, files: FileCache, cut: int) -> None:
    m = _closed_log(tmp_path, files)
    last = segment_files(tmp_path)[-1]
    frames = frame_positions(last)
    assert len(frames) >= 2
    pos, size, base, _ = frames[-1]
    keep = cut if cut > 0 else size + cut
    with open(last, "r+b") as f:
        f.truncate(pos + keep)
    lg, report = open_log(tmp_path, files, **SEG)
    assert report.truncated_bytes == keep
    assert report.corrupt == []
    assert last.stat().st_size == pos
    assert lg.next_offset == lg.visible_offset == base
    assert read_all(lg) == m.records[:base]
    # The lost frame was never acknowledged: its offsets are handed out again.
    del m.records[base:]
    m.log = lg
    _check_appends_continue(m, tmp_path, files, set())


def test_torn_first_frame_of_the_last_segment_leaves_it_empty(tmp_path: Path, files: FileCache) -> None:
    m = _closed_log(tmp_path, files)
    last = segment_files(tmp_path)[-1]
    base = int(last.stem)
    with open(last, "r+b") as f:
        f.truncate(frame_positions(last)[0][1] - 3)
    lg, report = open_log(tmp_path, files, **SEG)
    assert report.truncated_bytes > 0
    assert last.stat().st_size == 0
    assert lg.next_offset == base
    assert read_all(lg) == m.records[:base]
    del m.records[base:]
    m.log = lg
    _check_appends_continue(m, tmp_path, files, set())


@pytest.mark.parametrize("garbage", ["random1", "random36", "random37", "random999", "zeros", "stale_frame", "half"])
def test_garbage_after_the_last_frame_is_cut(tmp_path: Path, files: FileCache, garbage: str) -> None:
    m = _closed_log(tmp_path, files)
    last = segment_files(tmp_path)[-1]
    rng = random.Random(garbage)
    if garbage.startswith("random"):
        junk = rng.randbytes(int(garbage.removeprefix("random")))
    elif garbage == "zeros":
        junk = bytes(4096)  # a file system that extended the file but lost the data
    elif garbage == "stale_frame":
        # A complete, CRC-valid frame that does not continue the log (an older frame's bytes).
        junk = encode_frame(3, 1_000, [(b"k", b"", b"old")])
    else:
        junk = encode_frame(len(m.records), 99_000, [(b"k", b"", bytes(300))])[:200]
    with open(last, "ab") as f:
        f.write(junk)
    lg, report = open_log(tmp_path, files, **SEG)
    assert report.truncated_bytes == len(junk)
    assert lg.next_offset == len(m.records)
    assert read_all(lg) == m.records
    m.log = lg
    _check_appends_continue(m, tmp_path, files, set())


# Where to flip a byte of a frame: (offset in the frame, xor mask). Offsets past the header are in the records.
FLIPS = {
    "body": (60, 0x01),
    "last_byte": (-1, 0x80),
    "crc": (14, 0x10),
    "count": (20, 0x01),
    "arrival": (28, 0x04),
    "length_low": (11, 0x01),
    "length_low_high_bit": (11, 0x80),
    "length_second": (10, 0x01),
    "magic": (12, 0x02),
}


def _damage_middle_frame(tmp_path: Path, which: str, flip: str) -> tuple[Path, set[int]]:
    segs = segment_files(tmp_path)
    seg = segs[-1] if which == "active" else segs[1]
    frames = frame_positions(seg)
    assert len(frames) >= 5
    pos, size, base, count = frames[len(frames) // 2]
    at, mask = FLIPS[flip]
    flip_byte(seg, pos + (at if at >= 0 else size + at), mask)
    return seg, set(range(base, base + count))


@pytest.mark.parametrize("flip", sorted(FLIPS))
@pytest.mark.parametrize("where", ["active-kept", "active-deleted", "sealed-kept", "sealed-deleted"])
def test_damaged_frame_in_the_middle_loses_only_its_own_offsets(
    tmp_path: Path, files: FileCache, caplog: pytest.LogCaptureFixture, flip: str, where: str
) -> None:
    # "kept": the saved index lets open skip the damaged place, so reads find it; "deleted": open scans it.
    which, index = where.split("-")
    m = _closed_log(tmp_path, files)
    seg, lost = _damage_middle_frame(tmp_path, which, flip)
    if index == "deleted":
        for p in tmp_path.glob("*.index"):
            p.unlink()
    with caplog.at_level(logging.ERROR, logger="shardline.storage"):
        lg, report = open_log(tmp_path, files, **SEG)
        assert report.truncated_bytes == 0
        assert lg.next_offset == len(m.records)
        if index == "deleted":
            # Without an index the whole segment is scanned at open, so the damage is found and measured there.
            assert len(report.corrupt) == 1
            bad = report.corrupt[0]
            assert bad.segment == seg.stem
            assert (bad.first_offset, bad.end_offset) == (min(lost), max(lost) + 1)
        want = [r for r in m.records if r.offset not in lost]
        assert read_all(lg) == want
        assert read_all(lg, max_records=1000) == want
    assert any(str(seg) in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    for offset in lost:
        assert lg.arrival_of(offset) is None
        recs, _ = lg.read(offset, 1, 1 << 20)
        assert recs == [m.records[max(lost) + 1]]
    for offset in (min(lost) - 1, max(lost) + 1):
        assert lg.arrival_of(offset) == m.records[offset].arrival_ms
    probe = m.records[min(lost)].arrival_ms
    assert lg.offset_for_time(probe) in (min(lost), max(lost) + 1)
    m.log = lg
    _check_appends_continue(m, tmp_path, files, lost)


@pytest.mark.parametrize("where", ["active-scan", "sealed-read"])
@pytest.mark.parametrize(("byte", "mask"), [(7, 0x02), (0, 0x01)])
def test_flipped_base_offset_in_the_middle_loses_only_its_own_offsets(
    tmp_path: Path, files: FileCache, where: str, byte: int, mask: int
) -> None:
    # The base offset is outside the CRC, so only a comparison with the offset the log expects at that place can
    # tell that it is wrong; a frame must never be served under offsets it was not written with.
    m = _closed_log(tmp_path, files)
    if where == "active-scan":
        for p in tmp_path.glob("*.index"):
            p.unlink()
    seg = segment_files(tmp_path)[-1 if where == "active-scan" else 1]
    frames = frame_positions(seg)
    pos, _, base, count = frames[len(frames) // 2]
    flip_byte(seg, pos + byte, mask)
    lost = set(range(base, base + count))
    lg, report = open_log(tmp_path, files, **SEG)
    assert lg.next_offset == len(m.records)
    if where == "active-scan":
        assert [(c.first_offset, c.end_offset) for c in report.corrupt] == [(base, base + count)]
    assert read_all(lg) == [r for r in m.records if r.offset not in lost]
    lg.close()


def test_leftover_temp_files_are_removed(tmp_path: Path, files: FileCache) -> None:
    m = _closed_log(tmp_path, files, frames=20)
    (tmp_path / ".00000000000000000000.index.tmp").write_bytes(b"half")
    (tmp_path / ".log-start.tmp").write_bytes(b"")
    lg, report = open_log(tmp_path, files, **SEG)
    assert sorted(report.removed_files) == [".00000000000000000000.index.tmp", ".log-start.tmp"]
    assert not list(tmp_path.glob(".*"))
    assert read_all(lg) == m.records
    lg.close()
