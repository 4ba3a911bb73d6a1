"""Recovery from damaged files of a real data directory: every acknowledged record in an intact frame comes back
byte-identical at its sequence number, the lost ones are reported exactly (shard, sequence range), and no sequence
number handed out before the damage is ever handed out again.

An engine under fsync="always" takes puts; the test then copies its data directory as a kill leaves it (the engine
is still open: nothing is closed or checkpointed on the way), damages the copy, and opens an engine on the copy.
"""

from __future__ import annotations

import logging
import random
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shardline import Engine, PutRecordsRequestEntry
from shardline.runtime.source import EngineSource
from storage._util import flip_byte, frame_positions

from ._kit import Kit

STREAM = "s"
SHARDS = 2
NO_CHECKPOINT_MS = 10**9  # the test checkpoints by hand


@dataclass
class Ledger:
    """Every acknowledged record, by (shard id, sequence number), and the put that carried it."""

    acks: dict[tuple[str, int], tuple[str, bytes, int]] = field(default_factory=dict)
    puts: int = 0

    def of_put(self, put: int, shard_id: str | None = None) -> set[tuple[str, int]]:
        return {k for k, (_, _, p) in self.acks.items() if p == put and shard_id in (None, k[0])}

    def of_shard(self, shard_id: str) -> list[int]:
        return sorted(seq for sid, seq in self.acks if sid == shard_id)


async def _put(engine: Engine, ledger: Ledger, rng: random.Random, n: int = 20) -> None:
    entries = [
        PutRecordsRequestEntry(rng.randbytes(rng.randrange(1, 120)), f"pk-{rng.getrandbits(40)}") for _ in range(n)
    ]
    res = await engine.put_records(entries, stream_name=STREAM)
    assert res.failed_record_count == 0
    for e, r in zip(entries, res.records, strict=True):
        assert r.shard_id is not None and r.sequence_number is not None
        key = (r.shard_id, int(r.sequence_number))
        assert key not in ledger.acks, f"{key} acknowledged twice"
        ledger.acks[key] = (e.partition_key, e.data, ledger.puts)
    ledger.puts += 1


def _crash_copy(kit: Kit, name: str) -> Path:
    """The data directory as a kill of the (still open) engine leaves it."""
    copy = kit.data_dir.parent / name
    shutil.copytree(kit.data_dir, copy)
    return copy


def _journal_frames(journal_dir: Path) -> list[tuple[Path, int, int]]:
    """(file, byte position, frame size) of every journal frame, oldest first."""
    out = []
    for wal in sorted(journal_dir.glob("*.wal")):
        raw = wal.read_bytes()
        pos = 0
        while pos < len(raw):
            (length,) = struct.unpack_from(">I", raw, pos + 8)
            out.append((wal, pos, 12 + length))
            pos += 12 + length
    return out


def _reported_lost(engine: Engine) -> set[tuple[str, int]]:
    """What recovery reported lost, as (shard id, sequence number)."""
    st = engine.streams[STREAM]
    out: set[tuple[str, int]] = set()
    for loss in engine.journal_report.lost:
        sh = st.shard(loss.index)
        assert sh is not None and loss.tag == st.tag
        out |= {(sh.shard_id, sh.seq_prefix + o) for o in range(loss.first, loss.end)}
    by_dir = {str(engine.catalog.shard_dir(st.stream_id, sh.index)): sh for sh in st.shards}
    for report in engine.recovery:
        sh = by_dir[report.directory]
        ranges = list(report.lost) + [(c.first_offset, c.end_offset) for c in report.corrupt]
        for first, end in ranges:
            out |= {(sh.shard_id, sh.seq_prefix + o) for o in range(first, end)}
    return out


async def _check(kit: Kit, engine: Engine, ledger: Ledger, lost: set[tuple[str, int]], rng: random.Random) -> None:
    """Every acknowledged record not in ``lost`` reads back byte-identical, in order, across the holes; the loss
    is reported exactly; new puts get sequence numbers above every one handed out before."""
    assert lost <= ledger.acks.keys()
    for index in range(SHARDS):
        shard_id = f"shardId-{index:012d}"
        got = await kit.read_all(engine, STREAM, shard_id)
        want = [seq for seq in ledger.of_shard(shard_id) if (shard_id, seq) not in lost]
        assert [int(r.sequence_number) for r in got] == want, shard_id
        for r in got:
            pk, data, _ = ledger.acks[(shard_id, int(r.sequence_number))]
            assert (r.partition_key, r.data) == (pk, data)
    # A reader positioned on a lost number goes on with the next record that exists.
    for shard_id, seq in sorted(lost)[:1]:
        recs = await kit.read_all(engine, STREAM, shard_id, "AT_SEQUENCE_NUMBER", starting_sequence_number=str(seq))
        after = [s for s in ledger.of_shard(shard_id) if s > seq and (shard_id, s) not in lost]
        assert [int(r.sequence_number) for r in recs] == after
    reported = _reported_lost(engine)  # (before the puts below: a reopen's report stays as it was)
    highest = {sid: max(s for s2, s in ledger.acks if s2 == sid) for sid, _ in ledger.acks}
    before = set(ledger.acks)
    for _ in range(4):
        await _put(engine, ledger, rng)
    for sid, seq in ledger.acks.keys() - before:
        assert seq > highest.get(sid, -1), f"{sid} handed out {seq} again or below an earlier number"
    assert reported == lost


async def _open(kit: Kit, data: Path, **overrides: object) -> Engine:
    settings = {"fsync": "always", "journal_checkpoint_ms": NO_CHECKPOINT_MS, **overrides}
    return await kit.open(data_dir=data, **settings)


# ----------------------------------------------------------------- the journal
@pytest.mark.parametrize("field_name", ["body", "length"])
async def test_a_damaged_journal_frame_costs_its_own_records_at_most(
    kit: Kit, caplog: pytest.LogCaptureFixture, field_name: str
) -> None:
    """A flipped bit in a frame's records loses that frame's records only: every later frame, of the same shards
    too, comes back at its own offsets. A flipped bit in its length field loses nothing: the next frame is found
    by its position, and the frame checks out with the length its place gives it."""
    rng = random.Random(9)
    engine = await _open(kit, kit.data_dir)
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    for _ in range(8):
        await _put(engine, ledger, rng)
    copy = _crash_copy(kit, "crashed")
    frames = _journal_frames(copy / engine.catalog.journal_dir.relative_to(kit.data_dir))
    assert len(frames) == 8  # one frame a put
    wal, pos, size = frames[3]
    if field_name == "body":
        flip_byte(wal, pos + size - 5)
        lost = ledger.of_put(3)
    else:
        flip_byte(wal, pos + 10, 0x01)  # the length's second-lowest byte: 256 bytes off
        lost = set()

    with caplog.at_level(logging.WARNING):
        recovered = await _open(kit, copy)
    report = recovered.journal_report
    assert report.torn_bytes == 0
    assert report.repaired == (field_name == "length")
    await _check(kit, recovered, ledger, lost, rng)
    if lost:
        for shard_id in {sid for sid, _ in lost}:
            assert f"{shard_id}: " in caplog.text and "records lost at sequence numbers" in caplog.text


# ----------------------------------------------------------------- segments
@pytest.mark.parametrize("journal_tail", [False, True])
async def test_a_damaged_last_frame_of_an_active_segment_is_reported_and_its_numbers_stay_unused(
    kit: Kit, caplog: pytest.LogCaptureFixture, journal_tail: bool
) -> None:
    """The last frame of a shard's active segment rots after a checkpoint (its records are acknowledged, fsynced,
    and gone from the journal). Its records are lost; they are reported as such, not as a torn write; records
    put after the checkpoint (still in the journal) come back at their own offsets; new records come after."""
    rng = random.Random(11)
    engine = await _open(kit, kit.data_dir)
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    for _ in range(6):
        await _put(engine, ledger, rng)
        await engine.checkpoint()
    if journal_tail:
        for _ in range(3):
            await _put(engine, ledger, rng)
    copy = _crash_copy(kit, "crashed")
    shard_dir = copy / engine.catalog.shard_dir(engine.streams[STREAM].stream_id, 0).relative_to(kit.data_dir)
    (segment,) = sorted(shard_dir.glob("*.log"))
    pos, size, base, count = frame_positions(segment)[-1]
    flip_byte(segment, pos + size - 3)
    prefix = engine.streams[STREAM].shards[0].seq_prefix
    lost = {("shardId-000000000000", prefix + o) for o in range(base, base + count)}
    assert lost == ledger.of_put(5, "shardId-000000000000")

    with caplog.at_level(logging.WARNING):
        recovered = await _open(kit, copy)
    await _check(kit, recovered, ledger, lost, rng)
    assert "shardId-000000000000: " in caplog.text and "records lost at sequence numbers" in caplog.text


@pytest.mark.parametrize("which", ["middle", "active"])
async def test_a_deleted_segment_file_is_reported_and_its_numbers_stay_unused(
    kit: Kit, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    rng = random.Random(12)
    engine = await _open(kit, kit.data_dir, segment_bytes=4096)
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    for _ in range(12):
        await _put(engine, ledger, rng)
        await engine.checkpoint()
    copy = _crash_copy(kit, "crashed")
    st = engine.streams[STREAM]
    shard_dir = copy / engine.catalog.shard_dir(st.stream_id, 0).relative_to(kit.data_dir)
    segments = sorted(shard_dir.glob("*.log"))
    assert len(segments) >= 3
    i = 1 if which == "middle" else len(segments) - 1
    first = int(segments[i].stem)
    log = st.shards[0].log
    assert log is not None
    end = int(segments[i + 1].stem) if i + 1 < len(segments) else log.next_offset
    segments[i].unlink()
    lost = {("shardId-000000000000", st.shards[0].seq_prefix + o) for o in range(first, end)}
    assert lost and lost <= ledger.acks.keys()

    with caplog.at_level(logging.WARNING):
        recovered = await _open(kit, copy, segment_bytes=4096)
    await _check(kit, recovered, ledger, lost, rng)
    assert "shardId-000000000000" in caplog.text and f"offsets {first}..{end - 1}" in caplog.text
    # Reported once: a clean reopen finds nothing new.
    again = await kit.reopen(recovered)
    assert _reported_lost(again) == set()


@pytest.mark.parametrize("fsync", ["interval", "never"])
async def test_a_journal_tail_lost_to_a_power_cut_keeps_its_numbers_unused(kit: Kit, fsync: str) -> None:
    """fsync=interval and never acknowledge a put before its journal frame is durable: a power cut may leave the
    last frame short. Its records are lost (the documented window), but their numbers were handed out, so the ones
    its surviving record headers name are never handed out again."""
    rng = random.Random(13)
    engine = await _open(kit, kit.data_dir, fsync=fsync)
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    for _ in range(6):
        await _put(engine, ledger, rng)
    copy = _crash_copy(kit, "crashed")
    wal, pos, size = _journal_frames(copy / engine.catalog.journal_dir.relative_to(kit.data_dir))[-1]
    with wal.open("r+b") as f:
        f.truncate(pos + size - 3)  # the last record's data did not reach the disk

    recovered = await _open(kit, copy, fsync=fsync)
    assert recovered.journal_report.torn_bytes == size - 3
    await _check(kit, recovered, ledger, ledger.of_put(5), rng)


# ----------------------------------------------------------------- reservations (fsync=interval and never)
def _highest(ledger: Ledger) -> dict[str, int]:
    return {sid: max(seq for s, seq in ledger.acks if s == sid) for sid, _ in ledger.acks}


async def _new_numbers_are_above(engine: Engine, ledger: Ledger, rng: random.Random) -> None:
    highest = _highest(ledger)
    before = set(ledger.acks)
    for _ in range(4):
        await _put(engine, ledger, rng)
    for sid, seq in ledger.acks.keys() - before:
        assert seq > highest.get(sid, -1), f"{sid} handed out {seq}, at or below {highest.get(sid)}"


def _power_cut_copy(kit: Kit, durable: Path) -> None:
    """After a power cut under fsync=never only the checkpoint file is as it was last (it alone is fsynced):
    ``durable`` (copied at an earlier checkpoint) gets the current one."""
    rel = Path("journal") / "checkpoint"
    shutil.copyfile(kit.data_dir / rel, durable / rel)


@pytest.mark.parametrize("fsync", ["interval", "never"])
async def test_a_power_cut_that_takes_the_whole_unsynced_tail_hands_out_none_of_its_numbers(
    kit: Kit, fsync: str
) -> None:
    """A put is acknowledged (and readable) before its frame is durable: a power cut can take every frame after the
    last durable point and leave no trace. The numbers those records had are never handed out again: each log goes
    on after the offsets reserved for it beforehand."""
    rng = random.Random(21)
    engine = await _open(kit, kit.data_dir, fsync=fsync)
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    for _ in range(3):
        await _put(engine, ledger, rng)
    await engine.checkpoint()
    durable = _crash_copy(kit, "durable")  # all that is on disk at the power cut
    kept = set(ledger.acks)
    for _ in range(5):
        await _put(engine, ledger, rng)  # acknowledged, readable, then gone with the cut
    recovered = await _open(kit, durable, fsync=fsync)
    assert recovered.journal_report.reserved_skipped > 0
    source = EngineSource(recovered, STREAM)
    for index in range(SHARDS):
        shard_id = f"shardId-{index:012d}"
        got = await kit.read_all(recovered, STREAM, shard_id)
        assert [int(r.sequence_number) for r in got] == sorted(seq for sid, seq in kept if sid == shard_id)
        # A consumer that read all of it is not behind: the reserved numbers skipped are no records.
        assert source.lag(shard_id, got[-1].sequence_number) == 0
    await _new_numbers_are_above(recovered, ledger, rng)


async def test_a_burst_past_the_reservation_is_reserved_durably_before_it_is_acknowledged(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log that takes more records between two checkpoints than it reserved reserves again, durably, before the
    put that needs it goes on: the checkpoint file always covers every number handed out."""
    monkeypatch.setattr("shardline.storage.journal.RESERVE_MIN", 16)
    rng = random.Random(22)
    engine = await _open(kit, kit.data_dir, fsync="never")
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    await _put(engine, ledger, rng)
    await engine.checkpoint()
    durable = _crash_copy(kit, "durable")
    for _ in range(150):  # 3,000 records, about 1,500 a shard: several batches past each reservation
        await _put(engine, ledger, rng)
    _power_cut_copy(kit, durable)
    recovered = await _open(kit, durable, fsync="never")
    assert recovered.journal_report.reserved_skipped >= 3000 - 20
    await _new_numbers_are_above(recovered, ledger, rng)


@pytest.mark.parametrize("fsync", ["interval", "never"])
async def test_a_clean_stop_leaves_no_gap(kit: Kit, fsync: str) -> None:
    rng = random.Random(23)
    engine = await _open(kit, kit.data_dir, fsync=fsync)
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    for _ in range(3):
        await _put(engine, ledger, rng)
    ends = {sid: seq + 1 for sid, seq in _highest(ledger).items()}
    engine = await kit.reopen(engine)
    assert engine.journal_report.reserved_skipped == 0
    before = set(ledger.acks)
    await _put(engine, ledger, rng)
    firsts: dict[str, int] = {}
    for sid, seq in sorted(ledger.acks.keys() - before):
        firsts.setdefault(sid, seq)
    assert firsts == {sid: ends[sid] for sid in firsts}


@pytest.mark.parametrize("where", ["magic", "entry", "crc"])
async def test_damaged_reservations_are_reported_and_recovery_goes_on(
    kit: Kit, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """The reservations are the last section of the checkpoint file: damage there costs only their protection
    (logged), never the open, and every acknowledged record still reads back."""
    rng = random.Random(24)
    engine = await _open(kit, kit.data_dir, fsync="never")
    await engine.create_stream(STREAM, SHARDS)
    ledger = Ledger()
    for _ in range(3):
        await _put(engine, ledger, rng)
    await engine.checkpoint()
    copy = _crash_copy(kit, "crashed")
    checkpoint = copy / "journal" / "checkpoint"
    raw = checkpoint.read_bytes()
    at = raw.index(b"RSV1")
    flip_byte(checkpoint, {"magic": at, "entry": at + 20, "crc": len(raw) - 1}[where])
    with caplog.at_level(logging.ERROR):
        recovered = await _open(kit, copy, fsync="never")
    if where != "magic":  # (without its magic the section is taken for bytes left from a longer checkpoint)
        assert "damaged reservations in the checkpoint" in caplog.text
    assert recovered.journal_report.reserved_skipped == 0
    await _check(kit, recovered, ledger, set(), rng)
