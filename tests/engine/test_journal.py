"""The write-ahead journal through the Engine: routing and read-back at 1,000 shards, visibility of staged records,
fsync=always, clean close, replay after a real SIGKILL (and of a deleted stream's records), retention by age."""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shardline import Engine, ManualClock, PutRecordsRequestEntry, Settings

from ._kit import Kit

HOUR = 3600
S0 = "shardId-000000000000"
WAIT_S = 60.0  # only guards against a hung child; no assertion depends on timing


def md5_key(partition_key: str) -> int:
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_by_seq(engine: Engine, stream: str, shard_id: str, seq: str) -> tuple[str, bytes, str]:
    it = await engine.get_shard_iterator(
        stream_name=stream, shard_id=shard_id, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=seq
    )
    (rec,) = (await engine.get_records(it, limit=1)).records
    return rec.sequence_number, rec.data, rec.partition_key


def staged(engine: Engine, stream: str) -> int:
    return sum(sh.log.next_offset - sh.log.written_offset for sh in engine.streams[stream].shards if sh.log is not None)


# ----------------------------------------------------------------- 1,000 shards
async def test_put_records_to_1000_shards_reads_back_by_sequence_number_and_in_order(kit: Kit) -> None:
    engine = await kit.open(shard_limit=1000)
    await engine.create_stream("s", 1000)
    shards = await kit.all_shards(engine, "s")
    assert len(shards) == 1000
    starts = sorted((s.hash_key_range.starting_hash_key, s.shard_id) for s in shards)
    start_keys = [k for k, _ in starts]

    rng = random.Random(1000)
    per_shard: dict[str, list[tuple[str, bytes, str]]] = {}
    for _ in range(8):
        entries = [
            PutRecordsRequestEntry(rng.randbytes(rng.randrange(0, 64)), f"{rng.getrandbits(64):x}-{i}")
            for i in range(500)
        ]
        result = await engine.put_records(entries, stream_name="s")
        assert result.failed_record_count == 0
        for e, r in zip(entries, result.records, strict=True):
            assert r.shard_id is not None and r.sequence_number is not None
            # Routed as an independent bisect over the shard list says.
            assert r.shard_id == starts[bisect.bisect_right(start_keys, md5_key(e.partition_key)) - 1][1]
            per_shard.setdefault(r.shard_id, []).append((r.sequence_number, e.data, e.partition_key))
    assert staged(engine, "s") > 0  # the reads below start from staged records
    assert len(per_shard) > 900

    for shard_id, recs in per_shard.items():
        for seq, data, pk in recs:
            assert await read_by_seq(engine, "s", shard_id, seq) == (seq, data, pk)
    for s in shards:
        got = await kit.read_all(engine, "s", s.shard_id)
        assert [(r.sequence_number, r.data, r.partition_key) for r in got] == per_shard.get(s.shard_id, [])
        seqs = [int(r.sequence_number) for r in got]
        assert seqs == sorted(seqs)
    assert engine.journal.frames_written == 8


# ----------------------------------------------------------------- visibility and durability
@pytest.mark.parametrize("fsync", ["never", "always"])
async def test_staged_records_are_readable_right_after_the_put(kit: Kit, fsync: str) -> None:
    engine = await kit.open(fsync=fsync)
    await engine.create_stream("s", 2)
    latest = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="LATEST")
    res = await engine.put_record(stream_name="s", data=b"one", partition_key="k", explicit_hash_key="0")
    lg = engine.streams["s"].shards[0].log
    assert lg is not None and lg.pending and lg.written_offset == 0  # staged, not in a segment
    assert lg.visible_offset == lg.next_offset == 1
    got = (await engine.get_records(latest)).records
    assert [(r.sequence_number, r.data) for r in got] == [(res.sequence_number, b"one")]

    batch = await engine.put_records(
        [PutRecordsRequestEntry(b"two", "k", "0"), PutRecordsRequestEntry(b"three", "k", str((1 << 128) - 1))],
        stream_name="s",
    )
    assert staged(engine, "s") >= 1
    assert [r.data for r in await kit.read_all(engine, "s", S0)] == [b"one", b"two"]
    assert [r.data for r in await kit.read_all(engine, "s", "shardId-000000000001")] == [b"three"]
    assert batch.records[1].shard_id == "shardId-000000000001"


async def test_fsync_always_returns_after_the_journal_is_fsynced(kit: Kit) -> None:
    engine = await kit.open(fsync="always")
    await engine.create_stream("s", 4)
    journal = engine.journal
    assert journal.durable
    for i in range(3):
        rounds = engine.committer.rounds
        await engine.put_records([PutRecordsRequestEntry(b"x%d" % j, f"k{i}-{j}") for j in range(20)], stream_name="s")
        assert engine.committer.rounds > rounds
        assert journal.synced_position >= journal.position > 0
    assert staged(engine, "s") == 60  # durable in the journal only; the segments get them at a checkpoint
    await engine.checkpoint()
    assert staged(engine, "s") == 0 and journal.checkpointed == journal.position


@pytest.mark.parametrize("fsync", ["never", "always"])
async def test_a_segment_roll_fsyncs_the_sealed_segment_unless_fsync_is_never(
    kit: Kit, fsync: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint fsyncs only a log's active segment, so a roll makes the segment it seals durable, and the new
    segment's directory entry. With fsync=never nothing is fsynced, and a roll must not stall the loop to fsync
    (a full 64 MiB segment took 50 ms)."""
    engine = await kit.open(fsync=fsync, segment_bytes=4096, journal_staged_bytes=0)
    await engine.create_stream("s", 1)
    lg = engine.streams["s"].shards[0].log
    assert lg is not None
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    for i in range(12):
        batch = [PutRecordsRequestEntry(os.urandom(500), f"k{i}-{j}") for j in range(2)]
        await engine.put_records(batch, stream_name="s")
    monkeypatch.undo()
    segments = sorted(str(p) for p in lg.directory.glob("*.log"))
    assert len(segments) >= 4  # (each put was written to its segment at once: journal_staged_bytes=0)
    in_log = [p for p in synced if p.startswith(str(lg.directory))]
    if fsync == "never":
        assert in_log == []
    else:
        assert set(segments[:-1]) <= set(in_log)  # every sealed segment
        assert str(lg.directory) in in_log
    assert len(await kit.read_all(engine, "s", S0)) == 24


async def test_journal_staged_bytes_zero_writes_every_put_to_its_segments(kit: Kit) -> None:
    engine = await kit.open(journal_staged_bytes=0)
    await engine.create_stream("s", 4)
    for i in range(5):
        await engine.put_records([PutRecordsRequestEntry(b"%d" % j, f"k{i}-{j}") for j in range(10)], stream_name="s")
        assert staged(engine, "s") == 0
    assert sum(sh.log.next_offset for sh in engine.streams["s"].shards if sh.log is not None) == 50


@pytest.mark.parametrize(
    "bad",
    [
        {"journal_staged_bytes": -1},
        {"journal_batch_span_ms": -1},
        {"journal_checkpoint_ms": 0},
        {"journal_file_bytes": 4095},
    ],
)
def test_journal_settings_are_validated(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Settings(**bad)  # type: ignore[arg-type]
    Settings(journal_staged_bytes=0, journal_checkpoint_ms=1, journal_file_bytes=4096)


async def test_clean_close_leaves_no_journal_files_and_reopen_replays_nothing(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 3)
    rng = random.Random(3)
    written: dict[str, list[tuple[str, bytes]]] = {}
    for _ in range(5):
        entries = [PutRecordsRequestEntry(rng.randbytes(30), str(rng.random())) for _ in range(50)]
        result = await engine.put_records(entries, stream_name="s")
        for e, r in zip(entries, result.records, strict=True):
            assert r.shard_id is not None and r.sequence_number is not None
            written.setdefault(r.shard_id, []).append((r.sequence_number, e.data))
    assert staged(engine, "s") > 0
    await engine.close()
    journal_dir = kit.data_dir / "journal"
    assert journal_dir.is_dir()
    assert list(journal_dir.glob("*.wal")) == []

    engine = await kit.open()
    report = engine.journal_report
    assert report.records == 0 and report.frames == 0 and report.clean
    for shard_id, recs in written.items():
        assert [(r.sequence_number, r.data) for r in await kit.read_all(engine, "s", shard_id)] == recs


# ----------------------------------------------------------------- a real SIGKILL
CHILD = r"""
import asyncio, hashlib, json, os, random, sys
from pathlib import Path
from shardline import Engine, PutRecordsRequestEntry

data_dir, count, deleted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def staged(engine, name):
    return sum(sh.log.next_offset - sh.log.written_offset for sh in engine.streams[name].shards)

async def main():
    engine = Engine(
        data_dir=Path(data_dir), fsync="never", journal_checkpoint_ms=600_000, retention_check_interval_s=3600,
        status_delay_s=0,
    )
    await engine.open()
    rng = random.Random(count)
    if deleted:
        await engine.create_stream("s", 50)
        old = [PutRecordsRequestEntry(b"old-%d" % i, "old-%d" % i) for i in range(deleted)]
        assert (await engine.put_records(old, stream_name="s")).failed_record_count == 0
        await engine.delete_stream("s")
        assert "s" not in engine.streams
    await engine.create_stream("s", 50)
    lines = []
    for start in range(0, count, 250):
        entries = [
            PutRecordsRequestEntry(rng.randbytes(rng.randrange(1, 300)), "pk-%d-%d" % (i, rng.getrandbits(32)))
            for i in range(start, min(count, start + 250))
        ]
        result = await engine.put_records(entries, stream_name="s")
        assert result.failed_record_count == 0
        for e, r in zip(entries, result.records):
            ack = [r.shard_id, r.sequence_number, e.partition_key, hashlib.sha256(e.data).hexdigest()]
            lines.append(json.dumps(ack))
    lines.append(json.dumps({"staged": staged(engine, "s"), "checkpointed": engine.journal.checkpointed}))
    sys.stdout.write("\n".join(lines) + "\ndone\n")
    sys.stdout.flush()
    await asyncio.sleep(120)  # the parent kills it long before
    os._exit(3)

asyncio.run(main())
"""


def run_and_kill(data_dir: Path, count: int, deleted: int = 0) -> tuple[list[list[str]], dict[str, int]]:
    """Run the child, read what it acknowledged, SIGKILL it while its records are still staged."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), str(count), str(deleted)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    buf = b""
    try:
        deadline = time.monotonic() + WAIT_S
        while not buf.endswith(b"\ndone\n"):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the child did not finish its puts in time"
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    proc.wait()
                    raise AssertionError(f"child exited with {proc.returncode}: {proc.stderr.read().decode()[-3000:]}")
                buf += chunk
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    *acks, summary, _done = buf.decode().splitlines()
    return [json.loads(line) for line in acks], json.loads(summary)


async def test_sigkill_with_staged_records_loses_no_acknowledged_record(kit: Kit) -> None:
    acks, summary = run_and_kill(kit.data_dir, 1500)
    assert len(acks) == 1500
    assert summary["staged"] > 0 and summary["checkpointed"] == 0

    engine = await kit.open()
    report = engine.journal_report
    assert not engine.was_clean
    assert report.records > 0 and report.orphaned == 0 and report.clean
    assert report.records == summary["staged"] and report.already_written == 1500 - summary["staged"]
    by_shard: dict[str, list[list[str]]] = {}
    for shard_id, seq, pk, dig in acks:
        by_shard.setdefault(shard_id, []).append([seq, pk, dig])
    for shard_id, expected in by_shard.items():
        got = await kit.read_all(engine, "s", shard_id)
        assert [[r.sequence_number, r.partition_key, digest(r.data)] for r in got] == expected
    assert sum(len(v) for v in by_shard.values()) == 1500
    # Replayed records were counted as incoming by the process that took them, not again by this one.
    st = engine.streams["s"]
    assert all(sh.counters.incoming_records == sh.counters.incoming_bytes == 0 for sh in st.shards)
    await engine.put_records([PutRecordsRequestEntry(b"after", "k-after")], stream_name="s")
    assert sum(sh.counters.incoming_records for sh in st.shards) == 1
    assert sum(sh.counters.incoming_bytes for sh in st.shards) == len(b"after") + len("k-after")
    # The replayed records reached the segments and the checkpoint: the next clean open replays nothing.
    engine = await kit.reopen(engine)
    assert engine.journal_report.records == 0


async def test_a_deleted_streams_journal_records_are_not_replayed_into_its_successor(kit: Kit) -> None:
    acks, summary = run_and_kill(kit.data_dir, 400, deleted=120)
    assert summary["staged"] > 0

    engine = await kit.open()
    report = engine.journal_report
    assert report.orphaned == 120
    assert report.records == summary["staged"] and report.already_written == 400 - summary["staged"]
    total = 0
    expected = {(seq, pk, dig) for _, seq, pk, dig in acks}
    for s in await kit.all_shards(engine, "s"):
        for r in await kit.read_all(engine, "s", s.shard_id):
            assert not r.partition_key.startswith("old-"), r
            assert (r.sequence_number, r.partition_key, digest(r.data)) in expected
            total += 1
    assert total == 400


# ----------------------------------------------------------------- retention
async def test_records_put_hours_apart_land_in_separate_frames_and_expire_by_age(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(segment_bytes=4096, segment_max_age_s=60)
    await engine.create_stream("s", 1)
    lg = engine.streams["s"].shards[0].log
    assert lg is not None
    written = []
    for i in range(30):
        res = await engine.put_record(stream_name="s", data=b"h%d" % i, partition_key="k", explicit_hash_key="0")
        written.append(res.sequence_number)
        # The put staged its record; the previous one (an hour older, past the span) went to its segment.
        assert lg.next_offset == i + 1 and lg.written_offset == i
        clock.advance(HOUR)
    assert engine.enforce_retention() == 6
    assert [r.sequence_number for r in await kit.read_all(engine, "s", S0)] == written[6:]

    # A record that is still staged when it expires goes too.
    await engine.create_stream("t", 1)
    await engine.put_record(stream_name="t", data=b"old", partition_key="k")
    assert staged(engine, "t") == 1
    clock.advance(25 * HOUR)
    engine.enforce_retention()
    assert await kit.read_all(engine, "t", S0) == []
    res = await engine.put_record(stream_name="t", data=b"new", partition_key="k")
    assert [r.sequence_number for r in await kit.read_all(engine, "t", S0)] == [res.sequence_number]


async def test_records_within_the_span_share_one_frame(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(journal_batch_span_ms=600_000)
    await engine.create_stream("s", 1)
    lg = engine.streams["s"].shards[0].log
    assert lg is not None
    for _ in range(5):
        await engine.put_record(stream_name="s", data=b"x", partition_key="k")
        clock.advance(60)
    assert lg.written_offset == 0 and lg.next_offset == 5
    clock.advance(600)
    await engine.put_record(stream_name="s", data=b"y", partition_key="k")
    assert lg.written_offset == 5
    arrivals = [r.approximate_arrival_ms for r in await kit.read_all(engine, "s", S0)]
    assert [a - arrivals[0] for a in arrivals] == [0, 60_000, 120_000, 180_000, 240_000, 900_000]


@pytest.mark.parametrize("fsync", ["never", "interval"])
async def test_a_tight_put_loop_still_lets_checkpoints_run(tmp_path: Path, fsync: str) -> None:
    """Puts that never wait (fsync never/interval) yield to the event loop now and then, so an embedded caller
    putting in a loop still gets checkpoints: the journal recovery replays stays bounded."""
    settings = Settings(data_dir=tmp_path / "data", fsync=fsync, journal_checkpoint_ms=20)  # type: ignore[arg-type]
    async with Engine(settings) as engine:
        await engine.create_stream("s", 2)
        batch = [(os.urandom(50), f"k{i}") for i in range(100)]
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and engine.journal.checkpointed == 0:
            await engine.put_records(batch, stream_name="s")  # never awaits anything that suspends by itself
        assert engine.journal.checkpointed > 0
