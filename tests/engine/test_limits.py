"""Throughput limits (enforce_limits=True): per-shard write records and bytes, read calls and bytes, and the
stream-level limits of ON_DEMAND streams. Time moves only by ManualClock."""

from __future__ import annotations

import pytest

from shardline import Engine, ManualClock, PutRecordsRequestEntry
from shardline.errors import ProvisionedThroughputExceededException

from ._kit import Kit

ACCOUNT = "000000000000"
MIB = 1024 * 1024
S0, S1 = "shardId-000000000000", "shardId-000000000001"
LOW, HIGH = "0", str((1 << 128) - 1)  # explicit hash keys of the first and the last shard


def write_throttled(shard: str, stream: str = "s") -> str:
    return f"Rate exceeded for shard {shard} in stream {stream} under account {ACCOUNT}."


async def put_n(engine: Engine, n: int, ehk: str = LOW, stream: str = "s") -> int:
    """Put ``n`` one-byte records in batches of 500; returns how many failed."""
    failed = 0
    while n:
        k = min(n, 500)
        res = await engine.put_records([PutRecordsRequestEntry(b"x", "k", ehk)] * k, stream_name=stream)
        failed += res.failed_record_count
        n -= k
    return failed


async def open_limited(kit: Kit, **overrides: object) -> Engine:
    return await kit.open(enforce_limits=True, **overrides)


# ----------------------------------------------------------------- writes
async def test_write_records_per_second(kit: Kit, clock: ManualClock) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 2)
    assert await put_n(engine, 1000) == 0
    with pytest.raises(ProvisionedThroughputExceededException) as exc:
        await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key=LOW)
    assert type(exc.value).__name__ == "ProvisionedThroughputExceededException"
    assert exc.value.message == write_throttled(S0)
    # Another shard has its own budget.
    assert await put_n(engine, 1000, HIGH) == 0
    # Capacity comes back with time: half a second gives half the records.
    clock.advance(0.5)
    assert await put_n(engine, 500) == 0
    assert await put_n(engine, 1) == 1
    clock.advance(1)
    assert await put_n(engine, 1000) == 0
    # Unused capacity does not pile up beyond one second.
    clock.advance(10)
    assert await put_n(engine, 1001) == 1


async def test_write_bytes_per_second(kit: Kit, clock: ManualClock) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 1)
    big = b"\x00" * (600 * 1024)
    await engine.put_record(stream_name="s", data=big, partition_key="k")
    with pytest.raises(ProvisionedThroughputExceededException) as exc:
        await engine.put_record(stream_name="s", data=big, partition_key="k")
    assert exc.value.message == write_throttled(S0)
    # The bytes left this second still take a smaller record.
    await engine.put_record(stream_name="s", data=b"\x00" * (400 * 1024), partition_key="k")
    clock.advance(1)
    await engine.put_record(stream_name="s", data=big, partition_key="k")


async def test_partition_key_bytes_count_toward_the_write_limit(kit: Kit, clock: ManualClock) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 1)
    key = "k" * 256
    data = b"\x00" * (MIB - 256)
    await engine.put_record(stream_name="s", data=data, partition_key=key)  # exactly 1 MiB
    with pytest.raises(ProvisionedThroughputExceededException):
        await engine.put_record(stream_name="s", data=b"", partition_key="k")
    clock.advance(1)
    await engine.put_record(stream_name="s", data=b"", partition_key="k")


async def test_throttled_put_records_entries_do_not_stop_the_rest(kit: Kit, clock: ManualClock) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 2)
    entries = [PutRecordsRequestEntry(b"x", "k", LOW if i % 2 == 0 else HIGH) for i in range(500)]
    entries += [PutRecordsRequestEntry(b"x", "k", LOW)] * 500
    res1 = await engine.put_records(entries[:500], stream_name="s")
    res2 = await engine.put_records(entries[500:], stream_name="s")
    assert res1.failed_record_count == 0
    # Shard 0 got 250 + 500 = 750 so far; 250 left this second.
    res = await engine.put_records([PutRecordsRequestEntry(b"y", "k", LOW)] * 300, stream_name="s")
    assert res.failed_record_count == 50
    assert [e.error_code is None for e in res.records] == [True] * 250 + [False] * 50
    assert all(e.error_code == "ProvisionedThroughputExceededException" for e in res.records[250:])
    assert all(e.error_message == write_throttled(S0) for e in res.records[250:])
    assert res2.failed_record_count == 0


# ----------------------------------------------------------------- reads
async def test_read_calls_per_second(kit: Kit, clock: ManualClock) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 2)
    await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key=LOW)
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    other = await engine.get_shard_iterator(stream_name="s", shard_id=S1, shard_iterator_type="TRIM_HORIZON")
    for _ in range(5):
        await engine.get_records(it)
    with pytest.raises(ProvisionedThroughputExceededException) as exc:
        await engine.get_records(it)
    assert exc.value.message == f"Rate exceeded for Shard - {ACCOUNT}/s/{S0}"
    await engine.get_records(other)  # per shard
    clock.advance(0.2)  # one call's worth
    await engine.get_records(it)
    with pytest.raises(ProvisionedThroughputExceededException):
        await engine.get_records(it)
    clock.advance(1)
    for _ in range(5):
        res = await engine.get_records(it)
    assert [r.data for r in res.records] == [b"x"]


async def test_read_bytes_per_second(kit: Kit, clock: ManualClock) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 1)
    for _ in range(4):
        await engine.put_record(stream_name="s", data=b"\x00" * 1_000_000, partition_key="k")
        clock.advance(1)
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    res = await engine.get_records(it)  # 4 MB in one call: allowed, but it uses up the next seconds
    assert len(res.records) == 4
    with pytest.raises(ProvisionedThroughputExceededException):
        assert res.next_shard_iterator is not None
        await engine.get_records(res.next_shard_iterator)
    clock.advance(0.5)
    with pytest.raises(ProvisionedThroughputExceededException):
        assert res.next_shard_iterator is not None
        await engine.get_records(res.next_shard_iterator)
    clock.advance(1.5)  # 4 MB at 2 MiB/s is paid back within 2 s
    assert res.next_shard_iterator is not None
    await engine.get_records(res.next_shard_iterator)


async def test_a_10_mib_response_blocks_the_next_5_seconds(kit: Kit, clock: ManualClock) -> None:
    """K-LIM: after a GetRecords call that returns 10 MiB, calls in the next 5 s throw."""
    engine = await open_limited(kit)
    await engine.create_stream("s", 1)
    for _ in range(10):  # 1 MiB of key + data each; the write limit allows one a second
        await engine.put_record(stream_name="s", data=b"\x00" * (MIB - 1), partition_key="k")
        clock.advance(1)
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    res = await engine.get_records(it)
    assert sum(len(r.data) + len(r.partition_key) for r in res.records) == 10 * MIB
    for wait_ms in (1, 2000, 2000, 900):  # +0.001 s, +2.001 s, +4.001 s, +4.901 s
        clock.advance(ms=wait_ms)
        with pytest.raises(ProvisionedThroughputExceededException):
            assert res.next_shard_iterator is not None
            await engine.get_records(res.next_shard_iterator)
    clock.advance(ms=99)  # +5 s
    assert res.next_shard_iterator is not None
    await engine.get_records(res.next_shard_iterator)


# ----------------------------------------------------------------- ON_DEMAND and resharding
async def test_on_demand_uses_stream_level_limits(kit: Kit) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("od", stream_mode="ON_DEMAND")
    # Far beyond one provisioned shard's 1000 records/s, all on one shard.
    assert await put_n(engine, 3000, stream="od") == 0


async def test_on_demand_stream_budget_is_shared_by_its_shards(kit: Kit) -> None:
    engine = await open_limited(kit, on_demand_write_records_per_s=1500)
    await engine.create_stream("od", stream_mode="ON_DEMAND")
    shards = (await engine.describe_stream("od")).shards
    keys = [str(s.hash_key_range.starting_hash_key) for s in shards]
    assert await put_n(engine, 500, keys[0], "od") == 0
    assert await put_n(engine, 500, keys[1], "od") == 0
    assert await put_n(engine, 500, keys[2], "od") == 0
    with pytest.raises(ProvisionedThroughputExceededException):
        await engine.put_record(stream_name="od", data=b"x", partition_key="k", explicit_hash_key=keys[3])


async def test_switching_mode_switches_limits(kit: Kit) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 1)
    arn = (await engine.describe_stream("s")).stream_arn
    assert await put_n(engine, 1000) == 0
    assert await put_n(engine, 1) == 1
    await engine.update_stream_mode(arn, "ON_DEMAND")
    assert await put_n(engine, 1000) == 0


async def test_children_of_a_split_have_their_own_budget(kit: Kit) -> None:
    engine = await open_limited(kit)
    await engine.create_stream("s", 1)
    assert await put_n(engine, 1000) == 0
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    assert await put_n(engine, 1000, LOW) == 0
    assert await put_n(engine, 1000, HIGH) == 0


async def test_limits_are_off_by_default(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    assert await put_n(engine, 3000) == 0
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    for _ in range(20):
        await engine.get_records(it, limit=1)
