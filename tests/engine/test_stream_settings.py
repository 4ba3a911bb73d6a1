"""Maximum record size, warm throughput and record distribution strategy (engine/stream_settings.py)."""

from __future__ import annotations

import pytest

from shardline import Engine, ManualClock, StreamStatus
from shardline.errors import (
    InvalidArgumentException,
    LimitExceededException,
    ProvisionedThroughputExceededException,
    ValidationException,
)

from ._kit import Kit

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
MIB = 1024 * 1024


async def test_max_record_size_takes_effect_at_once_and_lasts(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1)
    big = b"x" * (5 * MIB)
    with pytest.raises(ValidationException, match="Member must have length less than or equal to 1048576"):
        await engine.put_record(stream_name="s", data=big, partition_key="k")
    await engine.update_max_record_size(5 * 1024 + 1, stream_arn=ARN + "s")
    r = await engine.put_record(stream_name="s", data=big, partition_key="k")
    assert (await engine.describe_stream_summary("s")).max_record_size_kib == 5 * 1024 + 1
    # The limit counts the partition key with the data, as AWS does.
    with pytest.raises(InvalidArgumentException, match="exceeds the stream's maximum record size of 5243904 bytes"):
        await engine.put_record(stream_name="s", data=b"y" * (5 * MIB + 1024), partition_key="kk")
    engine = await kit.reopen(engine)
    assert (await engine.describe_stream_summary("s")).max_record_size_kib == 5 * 1024 + 1
    records = await kit.read_all(engine, "s", r.shard_id)
    assert [rec.data for rec in records] == [big]
    await engine.update_max_record_size(1024, stream_arn=ARN + "s")
    with pytest.raises(ValidationException):
        await engine.put_record(stream_name="s", data=big, partition_key="k")


async def test_max_record_size_validation(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    with pytest.raises(ValidationException, match="greater than or equal to 1024"):
        await engine.update_max_record_size(1023, stream_arn=ARN + "s")
    with pytest.raises(ValidationException, match="less than or equal to 10240"):
        await engine.update_max_record_size(10241, stream_arn=ARN + "s")
    with pytest.raises(ValidationException, match="greater than or equal to 1024"):
        await engine.create_stream("t", 1, max_record_size_kib=1)
    await engine.create_stream("u", 1, max_record_size_kib=10240, active=True)
    await engine.put_record(stream_name="u", data=b"z" * (10 * MIB - 1), partition_key="k")


async def test_put_records_takes_10_mib_on_a_large_record_stream(engine: Engine) -> None:
    await engine.create_stream("small", 1, active=True)
    await engine.create_stream("large", 1, max_record_size_kib=5120, active=True)
    six = [(b"a" * (3 * MIB), "k1"), (b"b" * (3 * MIB), "k2")]
    with pytest.raises(InvalidArgumentException, match="Records size exceeds 5 MB limit"):
        await engine.put_records([(b"a" * (MIB - 10), f"k{i}") for i in range(6)], stream_name="small")
    assert (await engine.put_records(six, stream_name="large")).failed_record_count == 0
    with pytest.raises(InvalidArgumentException, match="Records size exceeds 10 MB limit"):
        await engine.put_records([*six, (b"c" * (4 * MIB + 1), "k3")], stream_name="large")


async def _commit(engine: Engine) -> None:
    await engine.update_account_settings("ENABLED")


async def test_warm_throughput_updates_through_updating(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(updating_delay_s=5)
    await engine.create_stream("od", stream_mode="ON_DEMAND", active=True)
    await _commit(engine)
    w = await engine.update_stream_warm_throughput(100, stream_arn=ARN + "od")
    assert (w.stream_name, w.stream_arn, w.target_mibps, w.current_mibps) == ("od", ARN + "od", 100, 0)
    d = await engine.describe_stream_summary("od")
    assert (d.stream_status, d.warm_throughput) == (StreamStatus.UPDATING, (100, 0))
    # Records go on while it is UPDATING; a second change waits for ACTIVE.
    await engine.put_record(stream_name="od", data=b"x", partition_key="k")
    with pytest.raises(Exception, match="not ACTIVE, instead in state UPDATING"):
        await engine.update_stream_warm_throughput(200, stream_name="od")
    clock.advance(5)
    d = await engine.describe_stream_summary("od")
    assert (d.stream_status, d.warm_throughput) == (StreamStatus.ACTIVE, (100, 100))
    await engine.update_stream_warm_throughput(40, stream_name="od")
    assert (await engine.describe_stream_summary("od")).warm_throughput == (40, 100)
    engine = await kit.reopen(engine)
    assert (await engine.describe_stream_summary("od")).warm_throughput == (40, 100)
    clock.advance(5)
    assert (await engine.describe_stream_summary("od")).warm_throughput == (40, 40)


async def test_warm_throughput_validation(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("prov", 1, active=True)
    await engine.create_stream("od", stream_mode="ON_DEMAND", active=True)
    with pytest.raises(InvalidArgumentException, match="MinimumThroughputBillingCommitment to be enabled"):
        await engine.update_stream_warm_throughput(10, stream_name="od")
    await _commit(engine)
    with pytest.raises(InvalidArgumentException, match="only supported for streams in ON_DEMAND mode"):
        await engine.update_stream_warm_throughput(10, stream_name="prov")
    with pytest.raises(InvalidArgumentException, match="only supported for streams in ON_DEMAND mode"):
        await engine.create_stream("p2", 1, warm_throughput_mibps=10)
    with pytest.raises(LimitExceededException, match="exceeds the limit of 10240 MiBps"):
        await engine.update_stream_warm_throughput(10241, stream_name="od")
    await engine.create_stream("od2", stream_mode="ON_DEMAND", warm_throughput_mibps=50)
    assert (await engine.describe_stream_summary("od2")).warm_throughput == (50, 50)  # (no delay here)


async def test_auto_distribution_spreads_records_over_the_open_shards(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("od", 4, stream_mode="ON_DEMAND", active=True)
    await engine.update_stream_record_distribution_strategy(ARN + "od", "AUTO")
    shards = [(await engine.put_record(stream_name="od", data=b"x", partition_key="same")).shard_id for _ in range(8)]
    assert sorted(set(shards)) == [f"shardId-00000000000{i}" for i in range(4)]
    assert all(shards.count(s) == 2 for s in set(shards))
    with pytest.raises(InvalidArgumentException, match="strategy is AUTO"):
        await engine.put_record(stream_name="od", data=b"x", partition_key="k", sequence_number_for_ordering="1")
    # The key is optional: a record put without one is read back without one.
    keyless = await engine.put_record(stream_name="od", data=b"no key", partition_key=None)
    batch = await engine.put_records([(b"a", None), (b"b", "k")], stream_name="od")  # type: ignore[list-item]
    assert batch.failed_record_count == 0
    engine = await kit.reopen(engine)
    assert (await engine.describe_stream_summary("od")).record_distribution_strategy == "AUTO"
    got = [r for r in await kit.read_all(engine, "od", keyless.shard_id) if r.data == b"no key"]
    assert [r.partition_key for r in got] == [""]
    await engine.update_stream_record_distribution_strategy(ARN + "od", "USER_PARTITION_KEY")
    keyed = {(await engine.put_record(stream_name="od", data=b"x", partition_key="same")).shard_id for _ in range(4)}
    assert len(keyed) == 1
    with pytest.raises(ValidationException, match="Member must not be null"):
        await engine.put_record(stream_name="od", data=b"x", partition_key=None)


async def test_auto_distribution_needs_on_demand(engine: Engine) -> None:
    await engine.create_stream("prov", 1, active=True)
    with pytest.raises(InvalidArgumentException, match="AUTO is only supported for streams in ON_DEMAND mode"):
        await engine.update_stream_record_distribution_strategy(ARN + "prov", "AUTO")
    await engine.update_stream_record_distribution_strategy(ARN + "prov", "USER_PARTITION_KEY")
    with pytest.raises(InvalidArgumentException, match="AUTO is only supported"):
        await engine.create_stream("p2", 1, record_distribution_strategy="AUTO")
    with pytest.raises(ValidationException, match=r"enum value set: \[USER_PARTITION_KEY, AUTO\]"):
        await engine.update_stream_record_distribution_strategy(ARN + "prov", "RANDOM")


async def test_a_large_record_bursts_past_the_shard_write_rate(kit: Kit, clock: ManualClock) -> None:
    # A shard writes 1 MiB/s; a 3 MiB record goes through from a full bucket (1 MiB), which then owes 2 MiB.
    engine = await kit.open(enforce_limits=True)
    await engine.create_stream("s", 1, max_record_size_kib=4096, active=True)
    await engine.put_record(stream_name="s", data=b"x" * (3 * MIB), partition_key="k")
    with pytest.raises(ProvisionedThroughputExceededException):
        await engine.put_record(stream_name="s", data=b"y", partition_key="k")
    clock.advance(1.5)  # (still in debt)
    with pytest.raises(ProvisionedThroughputExceededException):
        await engine.put_record(stream_name="s", data=b"y", partition_key="k")
    clock.advance(1)
    await engine.put_record(stream_name="s", data=b"y", partition_key="k")
    with pytest.raises(ProvisionedThroughputExceededException):  # a second large record waits for a full second
        await engine.put_record(stream_name="s", data=b"x" * (3 * MIB), partition_key="k")
