"""Retention: the period's rules, and what enforce_retention removes (whole segments, then whole closed shards)."""

from __future__ import annotations

import asyncio

import pytest

from shardline import Engine, ManualClock
from shardline.errors import InvalidArgumentException, ResourceNotFoundException

from ._kit import Kit

ACCOUNT = "000000000000"
HOUR = 3600
S0 = "shardId-000000000000"
# Small segments that also roll every minute, so each record written an hour apart sits in its own segment and
# retention can remove exactly the expired ones.
ROLLING = {"segment_bytes": 4096, "segment_max_age_s": 60}


async def put_hourly(engine: Engine, clock: ManualClock, count: int, stream: str = "s") -> list[tuple[str, int]]:
    """One record per hour on shard 0; returns (sequence number, arrival ms). The clock ends an hour after the last."""
    out = []
    for i in range(count):
        res = await engine.put_record(stream_name=stream, data=b"h%d" % i, partition_key="k", explicit_hash_key="0")
        out.append((res.sequence_number, clock.now_ms()))
        clock.advance(HOUR)
    return out


# ----------------------------------------------------------------- the period
async def test_default_retention_is_24_hours(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    assert (await engine.describe_stream("s")).retention_period_hours == 24
    assert (await engine.describe_stream_summary("s")).retention_period_hours == 24


async def test_increase_and_decrease_rules(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.increase_stream_retention_period(48, stream_name="s")
    assert (await engine.describe_stream("s")).retention_period_hours == 48
    # An equal value is accepted by both calls.
    await engine.increase_stream_retention_period(48, stream_name="s")
    await engine.decrease_stream_retention_period(48, stream_name="s")

    with pytest.raises(InvalidArgumentException) as exc:
        await engine.increase_stream_retention_period(24, stream_name="s")
    assert exc.value.message == (
        "Requested retention period (24 hours) for stream s can not be shorter than existing retention period "
        "(48 hours). Use DecreaseRetentionPeriod API."
    )
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.decrease_stream_retention_period(100, stream_name="s")
    assert exc.value.message == (
        "Requested retention period (100 hours) for stream s can not be longer than existing retention period "
        "(48 hours). Use IncreaseRetentionPeriod API."
    )
    for call in (engine.decrease_stream_retention_period, engine.increase_stream_retention_period):
        with pytest.raises(InvalidArgumentException) as exc:
            await call(23, stream_name="s")
        assert exc.value.message == (
            "Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short."
        )
        with pytest.raises(InvalidArgumentException) as exc:
            await call(8761, stream_name="s")
        assert exc.value.message == (
            "Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long."
        )
    await engine.increase_stream_retention_period(8760, stream_name="s")
    await engine.decrease_stream_retention_period(24, stream_name="s")
    assert (await engine.describe_stream("s")).retention_period_hours == 24
    with pytest.raises(ResourceNotFoundException) as gone:
        await engine.increase_stream_retention_period(48, stream_name="nope")
    assert gone.value.message == f"Stream nope under account {ACCOUNT} not found."


# ----------------------------------------------------------------- enforcement
async def test_enforce_retention_removes_expired_records(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    written = await put_hourly(engine, clock, 30)
    # now = first arrival + 30 h: records 0..5 are more than 24 h old.
    cutoff = clock.now_ms() - 24 * HOUR * 1000
    expired = [seq for seq, at in written if at < cutoff]
    assert len(expired) == 6
    assert engine.enforce_retention() == 6
    assert engine.enforce_retention() == 0
    kept = await kit.read_all(engine, "s", S0)
    assert [r.sequence_number for r in kept] == [seq for seq, _ in written[6:]]
    # Expired numbers still name a position; reading from one starts at the trim horizon.
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=expired[0]
    )
    assert (await engine.get_records(it, limit=1)).records[0].sequence_number == written[6][0]


async def test_retention_keeps_records_younger_than_the_period(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    await put_hourly(engine, clock, 24)  # the oldest is exactly 24 h old now
    assert engine.enforce_retention() == 0
    assert len(await kit.read_all(engine, "s", S0)) == 24


async def test_trim_horizon_after_a_trim_starts_at_the_new_horizon(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    written = await put_hourly(engine, clock, 5)
    clock.advance(22 * HOUR)  # now: records 0..2 are older than 24 h
    before_trim = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    assert engine.enforce_retention() == 3
    got = await kit.read_all(engine, "s", S0)
    assert [r.sequence_number for r in got] == [s for s, _ in written[3:]]
    assert [r.data for r in got] == [b"h3", b"h4"]
    # An iterator issued before the trim points into removed data: it resumes at the new horizon.
    assert [r.data for r in (await engine.get_records(before_trim)).records] == [b"h3", b"h4"]


async def test_shorter_retention_removes_more(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    await engine.increase_stream_retention_period(72, stream_name="s")
    await put_hourly(engine, clock, 5)
    clock.advance(40 * HOUR)
    assert engine.enforce_retention() == 0
    await engine.decrease_stream_retention_period(24, stream_name="s")
    assert engine.enforce_retention() == 5
    assert await kit.read_all(engine, "s", S0) == []


async def test_everything_expired_then_restart_keeps_numbers_growing(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    written = await put_hourly(engine, clock, 3)
    clock.advance(30 * HOUR)
    assert engine.enforce_retention() == 3
    assert await kit.read_all(engine, "s", S0) == []
    engine = await kit.reopen(engine)
    assert await kit.read_all(engine, "s", S0) == []
    res = await engine.put_record(stream_name="s", data=b"new", partition_key="k")
    assert int(res.sequence_number) > max(int(s) for s, _ in written)
    assert [r.data for r in await kit.read_all(engine, "s", S0)] == [b"new"]


async def test_trim_survives_reopen(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    written = await put_hourly(engine, clock, 10)
    clock.advance(20 * HOUR)
    removed = engine.enforce_retention()
    assert removed == 6
    engine = await kit.reopen(engine)
    assert [r.sequence_number for r in await kit.read_all(engine, "s", S0)] == [s for s, _ in written[6:]]


async def test_closed_shards_disappear_after_retention(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    await put_hourly(engine, clock, 3)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    clock.advance(HOUR)
    after = await engine.put_record(stream_name="s", data=b"child", partition_key="k", explicit_hash_key="0")
    assert after.shard_id == "shardId-000000000001"

    clock.advance(23 * HOUR)  # the parent closed 24 h ago: still listed and readable
    assert next(s.shard_id for s in (await engine.list_shards("s")).shards) == S0
    assert len(await kit.read_all(engine, "s", S0)) == 3

    clock.advance(2 * HOUR)
    engine.enforce_retention()
    ids = [s.shard_id for s in (await engine.list_shards("s")).shards]
    assert ids == ["shardId-000000000001", "shardId-000000000002"]
    assert [s.shard_id for s in (await engine.describe_stream("s")).shards] == ids
    for flt in ("AT_TRIM_HORIZON", "FROM_TRIM_HORIZON"):
        assert [s.shard_id for s in (await engine.list_shards("s", shard_filter_type=flt)).shards] == ids
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    assert exc.value.message == f"Shard {S0} in stream s under account {ACCOUNT} does not exist"
    # The children keep naming their parent (lineage), and stay gone after a restart.
    engine = await kit.reopen(engine)
    shards = (await engine.list_shards("s")).shards
    assert [s.shard_id for s in shards] == ids
    assert all(s.parent_shard_id == S0 for s in shards)
    assert len(await kit.read_all(engine, "s", "shardId-000000000001")) == 0  # "child" is now 26 h old too
    assert (await engine.describe_stream_summary("s")).open_shard_count == 2


async def test_closed_shard_leaves_listings_even_before_enforcement(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    clock.advance(25 * HOUR)
    assert [s.shard_id for s in (await engine.list_shards("s")).shards] == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]


async def test_retention_runs_in_the_background(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(retention_check_interval_s=60, **ROLLING)
    await asyncio.sleep(0)  # the retention task starts its first wait now
    await engine.create_stream("s", 1)
    await put_hourly(engine, clock, 3)
    clock.advance(30 * HOUR)
    for _ in range(20):  # let the retention task see the new time
        await asyncio.sleep(0)
    assert await kit.read_all(engine, "s", S0) == []


async def test_closed_shard_whose_data_expired_first(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(**ROLLING)
    await engine.create_stream("s", 1)
    await put_hourly(engine, clock, 2)
    clock.advance(18 * HOUR)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    clock.advance(10 * HOUR)  # the records are 28-29 h old, the shard closed 10 h ago
    assert engine.enforce_retention() == 2
    assert next(s.shard_id for s in (await engine.list_shards("s")).shards) == S0
    for _ in range(2):
        it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
        res = await engine.get_records(it)
        assert res.records == [] and res.next_shard_iterator is None
        assert res.child_shards is not None and len(res.child_shards) == 2
        engine = await kit.reopen(engine)
