"""Engine.view: the read view the layers above use (positions, bounds, lineage, counters), live and read-only."""

from __future__ import annotations

from typing import Any

import pytest

from _faults import Disk, Fsync, segment_files
from shardline import Engine, ManualClock
from shardline.engine.view import StorageState
from shardline.errors import ServiceUnavailable
from shardline.models import PutRecordsRequestEntry

from ._kit import Kit

S0, S1, S2 = (f"shardId-{i:012d}" for i in range(3))
HOUR_S = 3600


async def test_open_or_closed_and_the_streams(kit: Any) -> None:
    engine = Engine(kit.settings(), clock=kit.clock)
    assert engine.view.closed
    await engine.open()
    try:
        assert not engine.view.closed
        await engine.create_stream("a", 1)
        await engine.create_stream("b", 2)
        assert sorted(engine.view.stream_names()) == ["a", "b"] and engine.view.stream_count == 2
        b = engine.view.stream("b")
        assert b is not None and (b.name, b.arn, b.retention_hours, b.shard_count) == (
            "b",
            engine.stream_arn("b"),
            24,
            2,
        )
        assert engine.view.stream("c") is None
        assert b.shard("shardId-000000000007") is None and b.shard("no such shard") is None
        assert engine.view.journal() is not None
    finally:
        await engine.close()
    assert engine.view.closed


async def test_positions_follow_puts_without_looking_the_shard_up_again(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    stream = engine.view.stream("s")
    assert stream is not None
    shard = stream.shard(S0)
    assert shard is not None and (shard.log_start, shard.visible_end, shard.last_arrival_ms) == (0, 0, -1)
    result = await engine.put_records([PutRecordsRequestEntry(b"x", "k")] * 3, stream_name="s")
    assert (shard.log_start, shard.visible_end, shard.records_between(0, 3)) == (0, 3, 3)
    assert shard.sequence_number(2) == result.records[2].sequence_number
    assert shard.last_arrival_ms == engine.clock.now_ms()
    assert shard.counters.incoming_records == 3 and stream.counters.put_records_calls == 1


async def test_lineage_bounds_and_an_expired_shard(kit: Any, clock: ManualClock) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    stream = engine.view.stream("s")
    assert stream is not None
    parent, low, high = stream.shards()
    assert (parent.state, parent.is_open, parent.children()) == ("closed", False, [S1, S2])
    assert parent.ending_sequence_number is not None and low.ending_sequence_number is None
    assert (low.parent_shard_id, low.adjacent_parent_shard_id, low.state) == (S0, None, "open")
    assert (low.starting_hash_key, low.ending_hash_key, high.starting_hash_key) == (0, (1 << 127) - 1, 1 << 127)
    assert parent.closed_ms == clock.now_ms() and low.created_ms == clock.now_ms()
    clock.advance(25 * HOUR_S)
    engine.enforce_retention()
    assert (parent.state, parent.expired, parent.log_start, parent.visible_end) == ("expired", True, None, None)
    assert parent.records_between(0, 10) == 0 and parent.last_arrival_ms == -1


async def test_storage_is_ok_then_a_full_disk_then_failed_until_a_restart(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(kit.data_dir, monkeypatch)
    fsync = Fsync(segment_files(kit.data_dir), monkeypatch)
    engine = await kit.open(fsync="always", journal_checkpoint_ms=3_600_000)
    await engine.create_stream("s", 1)
    await Kit.put_numbered(engine, 3)
    assert engine.view.storage() == StorageState("ok", None)

    async def put_refused() -> None:
        with pytest.raises(ServiceUnavailable):
            await engine.put_record(stream_name="s", data=b"refused", partition_key="k")

    disk.full = True
    await put_refused()
    assert engine.view.storage() == StorageState("disk_full", None)
    disk.full = False  # (space freed: the state holds until a write goes through)
    assert engine.view.storage().state == "disk_full"
    await Kit.put_numbered(engine, 1, start=3)
    assert engine.view.storage() == StorageState("ok", None)

    disk.full = True
    await put_refused()
    disk.full = False
    fsync.failing = True  # the checkpoint writes the staged records (there is space again), then fsyncs them
    with pytest.raises(ServiceUnavailable):
        await engine.checkpoint()
    assert engine.disk_full  # (no write went through since the disk was full)
    assert engine.view.storage() == StorageState("failed", "Input/output error")  # failed wins: only a restart ends it
    fsync.failing = False
    await put_refused()
    assert engine.view.storage().state == "failed"

    engine = await kit.reopen(engine)
    assert engine.view.storage() == StorageState("ok", None)
