"""ShardLog and Segment: appends, paged reads, time lookups, index persistence and rebuild, visibility."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.storage.framing import StoredRecord
from shardline.storage.log import FileCache, ShardLog
from shardline.storage.segment import Segment

from ._util import Model, frame_positions, open_log, read_all, segment_files


def _filled(tmp_path: Path, files: FileCache, frames: int = 120, **kw: Any) -> Model:
    lg, report = open_log(tmp_path, files, **kw)
    assert report.clean and report.segments == 0
    m = Model(lg)
    m.fill(frames)
    return m


def _check_page(m: Model, offset: int, max_records: int, max_bytes: int) -> None:
    recs, nxt = m.log.read(offset, max_records, max_bytes)
    rest = m.records[max(offset, m.log.log_start) : m.log.visible_offset]
    if not rest:
        assert recs == []
        return
    assert 1 <= len(recs) <= max_records
    assert recs == rest[: len(recs)]
    assert nxt == recs[-1].offset + 1
    size = sum(len(r.data) + len(r.partition_key) for r in recs)
    assert len(recs) == 1 or size <= max_bytes
    if len(recs) < max_records and len(recs) < len(rest):
        # It stopped early only because the next record would not fit.
        nxt_rec = rest[len(recs)]
        assert size + len(nxt_rec.data) + len(nxt_rec.partition_key) > max_bytes


def test_append_and_read_across_many_frames_and_segments(tmp_path: Path, files: FileCache) -> None:
    m = _filled(tmp_path, files)
    assert len(segment_files(tmp_path)) >= 4
    assert m.log.next_offset == m.log.visible_offset == len(m.records)
    assert read_all(m.log) == m.records
    assert read_all(m.log, max_records=1000) == m.records
    # Every starting offset, mid-frame ones included, and page sizes that end mid-frame.
    for offset in range(len(m.records) + 2):
        for max_records in (1, 3, 1000):
            _check_page(m, offset, max_records, 1 << 20)


def test_read_respects_byte_limit_and_always_returns_one_record(tmp_path: Path, files: FileCache) -> None:
    m = _filled(tmp_path, files, frames=60)
    rng = random.Random(5)
    for _ in range(300):
        _check_page(m, rng.randrange(len(m.records) + 1), rng.choice([1, 2, 10, 10_000]), rng.choice([0, 1, 50, 400]))
    recs, nxt = m.log.read(0, 10_000, 0)
    assert recs == m.records[:1] and nxt == 1


def test_read_with_end_offset(tmp_path: Path, files: FileCache) -> None:
    m = _filled(tmp_path, files, frames=40)
    n = len(m.records)
    for start, stop in [(0, 1), (3, 50), (n - 5, n), (10, n + 100), (20, 20), (20, 10)]:
        recs, nxt = m.log.read(start, 10_000, 1 << 20, end_offset=stop)
        assert recs == m.records[start:stop]
        assert nxt == max(start, min(stop, n))


def test_offset_for_time_and_arrival_of(tmp_path: Path, files: FileCache) -> None:
    lg, _ = open_log(tmp_path, files, segment_bytes=1500, index_interval=150)
    m = Model(lg)
    t = 1_000
    for i in range(90):
        m.append(m.rng.randint(1, 4), t)
        # Several frames share an arrival time, then time jumps.
        t += 0 if i % 3 else m.rng.choice([1, 7, 100])
    assert len(segment_files(tmp_path)) >= 4
    times = sorted({r.arrival_ms for r in m.records})
    probes = {0, -5, *times, *(x - 1 for x in times), *(x + 1 for x in times), times[-1] + 10**6}
    for probe in sorted(probes):
        want = next((r.offset for r in m.records if r.arrival_ms >= probe), len(m.records))
        assert lg.offset_for_time(probe) == want, probe
    for r in m.records:
        assert lg.arrival_of(r.offset) == r.arrival_ms
    assert lg.arrival_of(len(m.records)) is None
    assert lg.arrival_of(len(m.records) + 100) is None


def _snapshot(lg: ShardLog) -> tuple[list[StoredRecord], list[int], int]:
    return read_all(lg), [lg.offset_for_time(t) for t in range(900, 2300, 37)], lg.next_offset


def test_reopen_after_close_reads_the_same_and_loads_the_index(tmp_path: Path, files: FileCache) -> None:
    m = _filled(tmp_path, files)
    before = _snapshot(m.log)
    assert before[0] == m.records
    m.log.close()
    bases = [int(p.stem) for p in segment_files(tmp_path)]
    assert all((tmp_path / f"{b:020d}.index").exists() for b in bases)
    lg, report = open_log(tmp_path, files)
    assert report.clean and report.segments == len(bases)
    assert _snapshot(lg) == before
    # The saved index is what a sealed segment is opened with: its entries point at real frame starts.
    seg, scan = Segment.open_sealed(tmp_path, bases[1], 200)
    assert scan.corrupt == []
    frames = frame_positions(seg.path)
    starts = {(base, pos) for pos, _, base, _ in frames}
    last_base, last_end = frames[-1][2], frames[-1][2] + frames[-1][3]
    assert seg.end_offset == last_end
    pos, off = seg.position_for_offset(last_base)
    assert pos > 0 and (off, pos) in starts
    lg.close()


@pytest.mark.parametrize("damage", ["delete", "flip", "truncate", "empty", "garbage"])
def test_reopen_rebuilds_a_missing_or_damaged_index(tmp_path: Path, files: FileCache, damage: str) -> None:
    m = _filled(tmp_path, files)
    before = _snapshot(m.log)
    m.log.close()
    for idx in sorted(tmp_path.glob("*.index")):
        raw = idx.read_bytes()
        if damage == "delete":
            idx.unlink()
        elif damage == "flip":
            idx.write_bytes(raw[:20] + bytes([raw[20] ^ 0x40]) + raw[21:])
        elif damage == "truncate":
            idx.write_bytes(raw[: len(raw) // 2])
        elif damage == "empty":
            idx.write_bytes(b"")
        else:
            idx.write_bytes(random.Random(idx.name).randbytes(len(raw)))
    lg, report = open_log(tmp_path, files)
    assert report.clean
    assert _snapshot(lg) == before
    # Appends continue where the log ended, and everything is still readable after another reopen.
    m.log = lg
    m.fill(10, start_ms=5_000)
    assert read_all(lg) == m.records
    lg.close()
    lg, _ = open_log(tmp_path, files)
    assert read_all(lg) == m.records
    lg.close()


def test_reopen_with_an_index_older_than_its_segment(tmp_path: Path, files: FileCache) -> None:
    # A crash after more appends leaves the active segment's index describing only its first part.
    m = _filled(tmp_path, files, frames=40, segment_bytes=1 << 20, index_interval=100)
    m.log.close()
    (idx,) = tmp_path.glob("*.index")
    old = idx.read_bytes()
    lg, _ = open_log(tmp_path, files, segment_bytes=1 << 20, index_interval=100)
    m.log = lg
    m.fill(40, start_ms=5_000)
    before = _snapshot(lg)
    lg.close()
    assert idx.read_bytes() != old
    idx.write_bytes(old)
    lg, report = open_log(tmp_path, files, segment_bytes=1 << 20, index_interval=100)
    assert report.clean
    assert _snapshot(lg) == before
    assert before[0] == m.records
    lg.close()


@settings(max_examples=25, deadline=None)
@given(
    layout=st.tuples(st.integers(100, 3000), st.integers(1, 800)),  # segment bytes, index interval
    batches=st.lists(st.tuples(st.integers(1, 6), st.integers(-3, 50)), min_size=1, max_size=40),
    reopen_at=st.integers(0, 40),
    drop_index=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_reads_match_a_model(
    layout: tuple[int, int],
    batches: list[tuple[int, int]],
    reopen_at: int,
    drop_index: bool,
    seed: int,
) -> None:
    files = FileCache(3)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        kw: dict[str, Any] = {"segment_bytes": layout[0], "index_interval": layout[1]}
        lg, _ = open_log(d, files, **kw)
        m = Model(lg, seed)
        t = 10_000
        for i, (n, dt) in enumerate(batches):
            if i == reopen_at:
                lg.close()
                if drop_index:
                    for p in d.glob("*.index"):
                        p.unlink()
                lg, report = open_log(d, files, **kw)
                assert report.clean
                m.log = lg
            t += dt  # arrival times may step back a little, as a wall clock can
            m.append(n, t)
        assert read_all(lg, max_records=m.rng.randint(1, 9)) == m.records
        rng = random.Random(seed)
        for _ in range(20):
            offset = rng.randrange(len(m.records))
            limit = rng.randint(1, 12)
            recs, _ = lg.read(offset, limit, 1 << 20)
            assert recs == m.records[offset : offset + limit]
        for probe in range(9_990, t + 2, 7):
            want = next((r.offset for r in m.records if r.arrival_ms >= probe), len(m.records))
            assert lg.offset_for_time(probe) == want
        lg.close()
    files.close()


def test_invisible_until_marked_synced(tmp_path: Path, files: FileCache) -> None:
    lg, _ = open_log(tmp_path, files, visible_on_write=False)
    m = Model(lg)
    m.append(3, 100)
    m.append(4, 200)
    assert lg.next_offset == 7 and lg.visible_offset == 0
    assert lg.read(0, 100, 1 << 20) == ([], 0)
    assert lg.offset_for_time(0) == 0
    assert lg.arrival_of(0) is None
    lg.mark_synced(5)
    assert lg.read(0, 100, 1 << 20) == (m.records[:5], 5)
    assert lg.offset_for_time(150) == 3
    assert lg.offset_for_time(201) == 5
    lg.mark_synced(2)  # never goes back
    assert lg.visible_offset == 5
    lg.mark_synced(7)
    assert read_all(lg) == m.records
    lg.close()
    # After a reopen everything on disk is durable, hence visible.
    lg, _ = open_log(tmp_path, files, visible_on_write=False)
    assert lg.visible_offset == 7 and read_all(lg) == m.records
    lg.close()


def test_segment_rolls_on_size_and_a_big_frame_gets_a_segment_of_its_own(tmp_path: Path, files: FileCache) -> None:
    lg, _ = open_log(tmp_path, files, segment_bytes=1000)
    m = Model(lg)
    m.fill(50)
    for p in segment_files(tmp_path):
        frames = frame_positions(p)
        assert p.stat().st_size <= 1000 or len(frames) == 1
        assert int(p.stem) == frames[0][2]
    base = lg.next_offset
    lg.append([(b"k", b"", bytes(5000))], 9_999)
    assert (tmp_path / f"{base:020d}.log").stat().st_size > 5000
    assert lg.read(base, 10, 1 << 20)[0][0].data == bytes(5000)
    assert lg.size_bytes == sum(p.stat().st_size for p in segment_files(tmp_path))
    lg.close()


def test_segment_rolls_on_age(tmp_path: Path, files: FileCache) -> None:
    lg, _ = open_log(tmp_path, files, segment_max_age_ms=1000, index_interval=1)
    m = Model(lg)
    for t in range(0, 1000, 100):
        m.append(1, t)
    assert len(segment_files(tmp_path)) == 1
    m.append(1, 1000)
    assert [int(p.stem) for p in segment_files(tmp_path)] == [0, 10]
    lg.close()


def test_segment_age_survives_reopen(tmp_path: Path, files: FileCache) -> None:
    # The segment's age counts from its first record, also when the log was reopened in between (otherwise
    # retention, which drops whole segments, overshoots by up to another segment age after every restart).
    lg, _ = open_log(tmp_path, files, segment_max_age_ms=1000, index_interval=1)
    m = Model(lg)
    for t in range(0, 1000, 100):
        m.append(1, t)
    lg.close()
    lg, _ = open_log(tmp_path, files, segment_max_age_ms=1000, index_interval=1)
    m.log = lg
    m.append(1, 1000)
    assert [int(p.stem) for p in segment_files(tmp_path)] == [0, 10]
    assert read_all(lg) == m.records
    lg.close()


def test_sealed_log_rejects_appends_and_stays_readable(tmp_path: Path, files: FileCache) -> None:
    m = _filled(tmp_path, files, frames=30)
    m.log.seal()
    with pytest.raises(RuntimeError):
        m.log.append([(b"k", b"", b"v")], 1)
    assert read_all(m.log) == m.records
    m.log.close()
    lg, report = open_log(tmp_path, files, sealed=True)
    assert report.clean and lg.sealed
    assert read_all(lg) == m.records and lg.next_offset == len(m.records)
    with pytest.raises(RuntimeError):
        lg.append([(b"k", b"", b"v")], 1)
    lg.close()
