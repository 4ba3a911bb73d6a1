"""What a stream shows while CREATING, UPDATING and DELETING (and a consumer while CREATING and DELETING): AWS's
answers, with the delays of the settings and a ManualClock (nobody waits)."""

from __future__ import annotations

import pytest

from shardline import Engine, ManualClock, StreamStatus
from shardline.errors import LimitExceededException, ResourceInUseException, ResourceNotFoundException

from ._kit import Kit

ACCOUNT = "000000000000"
ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/"
MID = 1 << 127
S0, S1, S2 = (f"shardId-{i:012d}" for i in range(3))


def not_found(stream: str) -> str:
    return f"Stream {stream} under account {ACCOUNT} not found."


def in_state(stream: str, state: str) -> str:
    return f"Stream {stream} under account {ACCOUNT} not ACTIVE or UPDATING, instead in state {state}"


async def assert_no_shards(engine: Engine, name: str, state: str) -> None:
    """What a stream without usable shards (CREATING, DELETING) answers to the shard and data actions."""
    d = await engine.describe_stream(name)
    assert d.stream_status.value == state
    assert d.shards == [] and d.has_more_shards is False
    assert (await engine.describe_stream_summary(name)).open_shard_count == 0
    with pytest.raises(ResourceInUseException) as busy:
        await engine.list_shards(name)
    assert busy.value.message == in_state(name, state)
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.put_record(stream_name=name, data=b"x", partition_key="k")
    assert missing.value.message == not_found(name)
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.put_records([(b"x", "k")], stream_name=name)
    assert missing.value.message == not_found(name)
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.get_shard_iterator(stream_name=name, shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    assert missing.value.message == f"Shard {S0} in stream {name} under account {ACCOUNT} does not exist"


async def test_a_creating_stream_has_no_shards_and_refuses_puts(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(status_delay_s=10, creating_delay_s=3)
    await engine.create_stream("s", 2)
    await assert_no_shards(engine, "s", "CREATING")
    with pytest.raises(ResourceInUseException) as busy:
        await engine.register_stream_consumer(ARN + "s", "c")
    assert busy.value.message == in_state("s", "CREATING")
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(MID))
    assert missing.value.message == f"Could not find shard {S0} in stream s under account {ACCOUNT}."
    with pytest.raises(ResourceInUseException) as busy:
        await engine.update_shard_count(stream_name="s", target_shard_count=4)
    assert busy.value.message == f"Stream s under account {ACCOUNT} not ACTIVE, instead in state CREATING"

    clock.advance(ms=2999)
    assert (await engine.describe_stream("s")).shards == []
    clock.advance(ms=1)
    d = await engine.describe_stream("s")
    assert d.stream_status is StreamStatus.ACTIVE
    assert [s.shard_id for s in d.shards] == [S0, S1]
    assert [s.shard_id for s in (await engine.list_shards("s")).shards] == [S0, S1]
    await engine.put_record(stream_name="s", data=b"x", partition_key="k")


async def test_updating_shows_the_map_before_the_split_until_active(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(updating_delay_s=5)
    await engine.create_stream("s", 1)
    first = await engine.put_record(stream_name="s", data=b"before", partition_key="k")
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(MID))

    d = await engine.describe_stream("s")
    assert d.stream_status is StreamStatus.UPDATING
    assert [s.shard_id for s in d.shards] == [S0]
    assert d.shards[0].sequence_number_range.ending_sequence_number is None
    assert [s.shard_id for s in (await engine.list_shards("s")).shards] == [S0]
    assert (await engine.describe_stream_summary("s")).open_shard_count == 1
    # Writes go on, to the parent, which is still open.
    during = await engine.put_record(stream_name="s", data=b"during", partition_key="k")
    assert during.shard_id == S0 == first.shard_id
    with pytest.raises(ResourceNotFoundException):
        await engine.get_shard_iterator(stream_name="s", shard_id=S1, shard_iterator_type="TRIM_HORIZON")

    updating = f"Stream s under account {ACCOUNT} not ACTIVE, instead in state UPDATING"
    with pytest.raises(ResourceInUseException) as busy:
        await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(MID))
    assert busy.value.message == updating
    with pytest.raises(ResourceInUseException) as busy:
        await engine.update_shard_count(stream_name="s", target_shard_count=2)
    assert busy.value.message == updating

    clock.advance(5)
    d = await engine.describe_stream("s")
    assert d.stream_status is StreamStatus.ACTIVE
    assert [s.shard_id for s in d.shards] == [S0, S1, S2]
    assert d.shards[0].sequence_number_range.ending_sequence_number is not None
    assert {s.parent_shard_id for s in d.shards[1:]} == {S0}
    after = await engine.put_record(stream_name="s", data=b"after", partition_key="k")
    assert after.shard_id in (S1, S2)
    assert [r.data for r in await kit.read_all(engine, "s", S0)] == [b"before", b"during"]
    assert [r.data for r in await kit.read_all(engine, "s", after.shard_id)] == [b"after"]


async def test_merge_and_update_shard_count_wait_for_active_too(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(updating_delay_s=5)
    await engine.create_stream("s", 2)
    await engine.merge_shards(stream_name="s", shard_to_merge=S0, adjacent_shard_to_merge=S1)
    assert [s.shard_id for s in (await engine.describe_stream("s")).shards] == [S0, S1]
    with pytest.raises(ResourceInUseException):
        await engine.merge_shards(stream_name="s", shard_to_merge=S0, adjacent_shard_to_merge=S1)
    clock.advance(5)
    assert [s.shard_id for s in (await engine.list_shards("s", shard_filter_type="AT_LATEST")).shards] == [S2]

    assert await engine.update_shard_count(stream_name="s", target_shard_count=2) == (1, 2)
    assert len((await engine.list_shards("s", shard_filter_type="AT_LATEST")).shards) == 1
    clock.advance(5)
    latest = (await engine.list_shards("s", shard_filter_type="AT_LATEST")).shards
    assert [s.parent_shard_id for s in latest] == [S2, S2]


async def test_a_pending_reshard_survives_a_restart(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(updating_delay_s=5)
    await engine.create_stream("s", 1)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(MID))
    engine = await kit.reopen(engine)
    d = await engine.describe_stream("s")
    assert (d.stream_status, [s.shard_id for s in d.shards]) == (StreamStatus.UPDATING, [S0])
    clock.advance(5)
    engine = await kit.reopen(engine)
    d = await engine.describe_stream("s")
    assert (d.stream_status, [s.shard_id for s in d.shards]) == (StreamStatus.ACTIVE, [S0, S1, S2])


async def test_a_pending_split_counts_against_the_shard_limit(kit: Kit) -> None:
    engine = await kit.open(updating_delay_s=5, shard_limit=2)
    await engine.create_stream("s", 1)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(MID))
    with pytest.raises(LimitExceededException):
        await engine.create_stream("t", 1)


async def test_a_deleting_stream_has_no_shards(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(deleting_delay_s=4)
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    iterator = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    await engine.delete_stream("s")
    await assert_no_shards(engine, "s", "DELETING")
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.get_records(iterator)
    assert missing.value.message == f"Shard {S0} in stream s under account {ACCOUNT} does not exist"
    clock.advance(4)
    with pytest.raises(ResourceNotFoundException) as gone:
        await engine.describe_stream("s")
    assert gone.value.message == not_found("s")


async def test_consumers_are_creating_then_active_and_deleting_then_gone(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(creating_delay_s=2, deleting_delay_s=3)
    await engine.create_stream("s", 1, active=True)
    c = await engine.register_stream_consumer(ARN + "s", "c")
    assert c.consumer_status == "CREATING"
    assert [x.consumer_status for x in await engine.list_stream_consumers(ARN + "s")] == ["CREATING"]
    clock.advance(ms=1999)
    assert (await engine.describe_stream_consumer(consumer_arn=c.consumer_arn)).consumer_status == "CREATING"
    clock.advance(ms=1)
    assert (await engine.describe_stream_consumer(consumer_arn=c.consumer_arn)).consumer_status == "ACTIVE"

    await engine.deregister_stream_consumer(consumer_arn=c.consumer_arn)
    clock.advance(2)
    await engine.deregister_stream_consumer(consumer_arn=c.consumer_arn)  # asking again does not push the end back
    assert [x.consumer_status for x in await engine.list_stream_consumers(ARN + "s")] == ["DELETING"]
    with pytest.raises(ResourceInUseException):
        await engine.register_stream_consumer(ARN + "s", "c")
    clock.advance(1)
    assert await engine.list_stream_consumers(ARN + "s") == []
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_stream_consumer(consumer_arn=c.consumer_arn)


async def test_a_stream_created_active_is_usable_at_once(kit: Kit) -> None:
    engine = await kit.open(status_delay_s=60)
    await engine.create_stream("s", 1, active=True)
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.ACTIVE
    await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    await engine.increase_stream_retention_period(48, stream_name="s")
