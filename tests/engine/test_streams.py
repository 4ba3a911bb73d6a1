"""Stream lifecycle and the control plane: create, status machine, ARNs, describe/list pagination, shard filters,
shard limit, delete and recreate, and what survives a close/reopen."""

from __future__ import annotations

from typing import Any

import pytest

from shardline import Engine, ManualClock, StreamMode, StreamStatus
from shardline.errors import (
    ExpiredNextTokenException,
    InvalidArgumentException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
    ValidationException,
)

from ._kit import Kit

ACCOUNT = "000000000000"
ARN_PREFIX = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/"
MID = 1 << 127


def not_found(stream: str) -> str:
    return f"Stream {stream} under account {ACCOUNT} not found."


# ----------------------------------------------------------------- create
async def test_provisioned_stream_needs_shard_count(engine: Engine) -> None:
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.create_stream("s")
    assert exc.value.message == "ShardCount must be provided for streams in PROVISIONED mode."
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_stream("s")


async def test_provisioned_stream_has_the_requested_shards(engine: Engine) -> None:
    await engine.create_stream("s", 3)
    d = await engine.describe_stream("s")
    assert d.stream_mode is StreamMode.PROVISIONED
    assert d.stream_status is StreamStatus.ACTIVE
    assert [s.shard_id for s in d.shards] == [f"shardId-{i:012d}" for i in range(3)]
    assert all(s.parent_shard_id is None and s.adjacent_parent_shard_id is None for s in d.shards)
    assert all(s.sequence_number_range.ending_sequence_number is None for s in d.shards)
    assert d.retention_period_hours == 24
    assert d.has_more_shards is False


async def test_zero_shards_is_rejected(engine: Engine) -> None:
    with pytest.raises(ValidationException):
        await engine.create_stream("s", 0)


async def test_on_demand_stream_gets_the_default_shard_count(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("od", stream_mode="ON_DEMAND")
    d = await engine.describe_stream("od")
    assert d.stream_mode is StreamMode.ON_DEMAND
    assert len(d.shards) == engine.settings.on_demand_initial_shards == 4
    kit.assert_covers_key_space(d.shards)
    summary = await engine.describe_stream_summary("od")
    assert summary.open_shard_count == 4
    assert summary.stream_mode is StreamMode.ON_DEMAND


async def test_duplicate_name_is_in_use(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    with pytest.raises(ResourceInUseException) as exc:
        await engine.create_stream("s", 2)
    assert type(exc.value).__name__ == "ResourceInUseException"
    assert exc.value.message == f"Stream s under account {ACCOUNT} already exists."
    assert len((await engine.describe_stream("s")).shards) == 1


async def test_duplicate_name_while_deleting_is_in_use(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(status_delay_s=5)
    await engine.create_stream("s", 1)
    clock.advance(5)
    await engine.delete_stream("s")
    with pytest.raises(ResourceInUseException) as exc:
        await engine.create_stream("s", 1)
    assert exc.value.message == f"Stream s under account {ACCOUNT} already exists."
    clock.advance(5)
    await engine.create_stream("s", 1)


# ----------------------------------------------------------------- status machine
async def test_status_machine_with_delays(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(status_delay_s=10)
    await engine.create_stream("s", 2)
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.CREATING

    # AWS answers a put to a CREATING stream as if the stream did not exist yet.
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    assert missing.value.message == not_found("s")
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.put_records([(b"x", "k")], stream_name="s")
    assert missing.value.message == not_found("s")

    clock.advance(9.999)
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.CREATING
    clock.advance(ms=1)
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.ACTIVE
    await engine.put_record(stream_name="s", data=b"a", partition_key="k")

    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 126)
    )
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.UPDATING
    # Reads and writes keep working while UPDATING.
    await engine.put_record(stream_name="s", data=b"b", partition_key="k")
    await engine.put_records([(b"c", "k")], stream_name="s")

    updating = f"Stream s under account {ACCOUNT} not ACTIVE, instead in state UPDATING"
    with pytest.raises(ResourceInUseException) as exc:
        await engine.split_shard(
            stream_name="s", shard_to_split="shardId-000000000001", new_starting_hash_key=str(MID + 5)
        )
    assert exc.value.message == updating
    with pytest.raises(ResourceInUseException) as exc:
        await engine.merge_shards(
            stream_name="s", shard_to_merge="shardId-000000000000", adjacent_shard_to_merge="shardId-000000000001"
        )
    assert exc.value.message == updating
    with pytest.raises(ResourceInUseException) as exc:
        await engine.update_shard_count(stream_name="s", target_shard_count=4)
    assert exc.value.message == updating

    clock.advance(10)
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.ACTIVE

    await engine.delete_stream("s")
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.DELETING
    with pytest.raises(ResourceNotFoundException) as missing:
        await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    assert missing.value.message == not_found("s")
    clock.advance(10)
    with pytest.raises(ResourceNotFoundException) as gone:
        await engine.describe_stream("s")
    assert gone.value.message == not_found("s")
    assert (await engine.list_streams()).stream_names == []


async def test_transitions_continue_across_a_restart(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(status_delay_s=10)
    await engine.create_stream("creating", 1)
    await engine.create_stream("deleting", 1)
    clock.advance(10)
    await engine.delete_stream("deleting")
    await engine.create_stream("late", 1)
    engine = await kit.reopen(engine)
    assert (await engine.describe_stream("deleting")).stream_status is StreamStatus.DELETING
    assert (await engine.describe_stream("late")).stream_status is StreamStatus.CREATING
    clock.advance(10)
    engine = await kit.reopen(engine)
    assert (await engine.list_streams()).stream_names == ["creating", "late"]
    assert (await engine.describe_stream("late")).stream_status is StreamStatus.ACTIVE
    await engine.put_record(stream_name="late", data=b"x", partition_key="k")


async def test_on_demand_stream_count_limit(kit: Kit) -> None:
    engine = await kit.open(on_demand_stream_limit=1)
    await engine.create_stream("a", stream_mode="ON_DEMAND")
    with pytest.raises(LimitExceededException):
        await engine.create_stream("b", stream_mode="ON_DEMAND")
    await engine.create_stream("b", 1)


async def test_without_delay_transitions_are_immediate(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    await engine.split_shard(stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(MID))
    assert (await engine.describe_stream("s")).stream_status is StreamStatus.ACTIVE
    await engine.delete_stream("s")
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_stream("s")


async def test_missing_stream_messages(engine: Engine) -> None:
    for call in (
        engine.describe_stream("nope"),
        engine.describe_stream_summary("nope"),
        engine.delete_stream("nope"),
        engine.list_shards("nope"),
        engine.put_record(stream_name="nope", data=b"x", partition_key="k"),
        engine.put_records([(b"x", "k")], stream_name="nope"),
    ):
        with pytest.raises(ResourceNotFoundException) as exc:
            await call
        assert exc.value.message == not_found("nope")


# ----------------------------------------------------------------- ARNs
async def test_stream_arn_and_arn_addressing(engine: Engine) -> None:
    await engine.create_stream("s", 2)
    arn = ARN_PREFIX + "s"
    d = await engine.describe_stream("s")
    assert d.stream_arn == arn
    assert (await engine.describe_stream(stream_arn=arn)).stream_name == "s"
    assert (await engine.describe_stream_summary(stream_arn=arn)).stream_arn == arn
    assert len((await engine.list_shards(stream_arn=arn)).shards) == 2
    assert (await engine.list_streams()).stream_summaries[0].stream_arn == arn

    put = await engine.put_record(stream_arn=arn, data=b"by-arn", partition_key="k")
    res = await engine.put_records([(b"by-arn-2", "k")], stream_arn=arn)
    it = await engine.get_shard_iterator(stream_arn=arn, shard_id=put.shard_id, shard_iterator_type="TRIM_HORIZON")
    got = (await engine.get_records(it)).records
    assert [r.data for r in got] == [b"by-arn", b"by-arn-2"]
    assert res.records[0].shard_id == put.shard_id

    # Name and ARN together must agree.
    assert (await engine.describe_stream("s", stream_arn=arn)).stream_name == "s"
    await engine.create_stream("t", 1)
    with pytest.raises(InvalidArgumentException):
        await engine.describe_stream("t", stream_arn=arn)
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.describe_stream(stream_arn=ARN_PREFIX + "nope")
    assert exc.value.message == not_found("nope")
    # Another account's stream is never one of ours.
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.describe_stream(stream_arn="arn:aws:kinesis:us-east-1:111111111111:stream/s")
    assert exc.value.message == "Stream s under account 111111111111 not found."
    with pytest.raises(ValidationException):
        await engine.describe_stream()
    await engine.delete_stream(stream_arn=arn)
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_stream("s")


async def test_arn_uses_configured_region_and_account(kit: Kit) -> None:
    engine = await kit.open(region="eu-west-1", account_id="123456789012")
    await engine.create_stream("s", 1)
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/s"
    assert (await engine.describe_stream("s")).stream_arn == arn
    assert (await engine.describe_stream(stream_arn=arn)).stream_name == "s"
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.describe_stream("x")
    assert exc.value.message == "Stream x under account 123456789012 not found."


# ----------------------------------------------------------------- pagination
async def test_describe_stream_pagination(engine: Engine) -> None:
    await engine.create_stream("s", 5)
    seen: list[str] = []
    start = None
    pages = 0
    while True:
        d = await engine.describe_stream("s", limit=2, exclusive_start_shard_id=start)
        pages += 1
        assert len(d.shards) <= 2
        seen += [s.shard_id for s in d.shards]
        if not d.has_more_shards:
            break
        start = d.shards[-1].shard_id
    assert pages == 3
    assert seen == [f"shardId-{i:012d}" for i in range(5)]
    d = await engine.describe_stream("s", exclusive_start_shard_id="shardId-000000000004")
    assert d.shards == [] and d.has_more_shards is False
    with pytest.raises(ValidationException):
        await engine.describe_stream("s", limit=0)


async def test_describe_stream_returns_at_most_100_shards(engine: Engine) -> None:
    await engine.create_stream("s", 101)
    d = await engine.describe_stream("s", limit=10000)
    assert len(d.shards) == 100
    assert d.has_more_shards is True
    rest = await engine.describe_stream("s", exclusive_start_shard_id=d.shards[-1].shard_id)
    assert [s.shard_id for s in rest.shards] == ["shardId-000000000100"]
    assert rest.has_more_shards is False


async def test_list_streams_pagination(engine: Engine) -> None:
    names = ["e", "a", "d", "c", "b"]
    for n in names:
        await engine.create_stream(n, 1)
    page = await engine.list_streams(limit=2)
    assert page.stream_names == ["a", "b"]
    assert page.has_more_streams is True
    assert [s.stream_name for s in page.stream_summaries] == ["a", "b"]
    assert all(s.stream_status is StreamStatus.ACTIVE for s in page.stream_summaries)
    collected = list(page.stream_names)
    while page.next_token is not None:
        page = await engine.list_streams(limit=2, next_token=page.next_token)
        collected += page.stream_names
    assert collected == sorted(names)
    assert page.has_more_streams is False
    after = await engine.list_streams(exclusive_start_stream_name="c")
    assert after.stream_names == ["d", "e"]
    assert after.has_more_streams is False and after.next_token is None


async def test_list_shards_pagination_and_argument_errors(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 5)
    first = await engine.list_shards("s", max_results=2)
    assert [s.shard_id for s in first.shards] == ["shardId-000000000000", "shardId-000000000001"]
    assert first.next_token is not None
    second = await engine.list_shards(next_token=first.next_token, max_results=2)
    assert [s.shard_id for s in second.shards] == ["shardId-000000000002", "shardId-000000000003"]
    third = await engine.list_shards(next_token=second.next_token, max_results=2)
    assert [s.shard_id for s in third.shards] == ["shardId-000000000004"]
    assert third.next_token is None

    with pytest.raises(InvalidArgumentException) as exc:
        await engine.list_shards("s", next_token=first.next_token)
    assert exc.value.message == "NextToken and StreamName cannot be provided together."
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.list_shards()
    assert exc.value.message == "Either NextToken or StreamName should be provided."
    with pytest.raises(InvalidArgumentException):
        await engine.list_shards(next_token="not-a-token")
    tampered = first.next_token[:-4] + ("AAAA" if first.next_token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(InvalidArgumentException):
        await engine.list_shards(next_token=tampered)

    after = await engine.list_shards("s", exclusive_start_shard_id="shardId-000000000002")
    assert [s.shard_id for s in after.shards] == ["shardId-000000000003", "shardId-000000000004"]

    clock.advance(301)
    with pytest.raises(ExpiredNextTokenException):
        await engine.list_shards(next_token=first.next_token)


async def test_list_shards_next_token_does_not_outlive_its_stream(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 3)
    tok = (await engine.list_shards("s", max_results=1)).next_token
    assert tok is not None
    await engine.delete_stream("s")
    clock.advance(1)
    await engine.create_stream("s", 3)
    with pytest.raises(ResourceNotFoundException):
        await engine.list_shards(next_token=tok)


async def test_list_shards_checks_the_stream_creation_timestamp(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 2)
    created = (await engine.describe_stream("s")).stream_creation_timestamp_ms
    assert created == clock.now_ms()
    assert len((await engine.list_shards("s", stream_creation_timestamp_ms=created)).shards) == 2
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.list_shards("s", stream_creation_timestamp_ms=created - 5000)
    assert exc.value.message == not_found("s")


async def test_list_shards_filters(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 2)  # shard 0: [0, MID-1], shard 1: [MID, MAX]
    before_split = clock.now_ms()
    clock.advance(10)
    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 126)
    )
    clock.advance(10)
    after_split = clock.now_ms()

    async def ids(**kw: Any) -> list[str]:
        res = await engine.list_shards("s", **kw)
        return [s.shard_id[-1] for s in res.shards]

    assert await ids() == ["0", "1", "2", "3"]
    assert await ids(shard_filter_type="AT_LATEST") == ["1", "2", "3"]
    assert await ids(shard_filter_type="AT_TRIM_HORIZON") == ["0", "1"]
    assert await ids(shard_filter_type="FROM_TRIM_HORIZON") == ["0", "1", "2", "3"]
    assert await ids(shard_filter_type="AFTER_SHARD_ID", shard_filter_shard_id="shardId-000000000001") == ["2", "3"]
    assert await ids(shard_filter_type="AT_TIMESTAMP", shard_filter_timestamp_ms=before_split) == ["0", "1"]
    assert await ids(shard_filter_type="AT_TIMESTAMP", shard_filter_timestamp_ms=after_split) == ["1", "2", "3"]
    assert await ids(shard_filter_type="FROM_TIMESTAMP", shard_filter_timestamp_ms=before_split) == ["0", "1", "2", "3"]
    assert await ids(shard_filter_type="FROM_TIMESTAMP", shard_filter_timestamp_ms=after_split) == ["1", "2", "3"]

    # A filter carries over to the next page.
    page = await engine.list_shards("s", shard_filter_type="AT_LATEST", max_results=2)
    assert [s.shard_id[-1] for s in page.shards] == ["1", "2"]
    assert page.next_token is not None
    rest = await engine.list_shards(next_token=page.next_token)
    assert [s.shard_id[-1] for s in rest.shards] == ["3"]

    with pytest.raises(InvalidArgumentException):
        await engine.list_shards("s", shard_filter_type="AFTER_SHARD_ID")
    with pytest.raises(InvalidArgumentException):
        await engine.list_shards("s", shard_filter_type="AT_TIMESTAMP")


# ----------------------------------------------------------------- limits
async def test_shard_limit_message(kit: Kit) -> None:
    engine = await kit.open(shard_limit=5)
    await engine.create_stream("a", 3)
    with pytest.raises(LimitExceededException) as exc:
        await engine.create_stream("b", 3)
    assert exc.value.message == (
        f"This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. "
        "Current shard count for the account: 3. Limit: 5. "
        "Number of additional shards that would have resulted from this request: 3. "
        "Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) "
        "for current limits and how to request higher limits."
    )
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_stream("b")
    await engine.create_stream("b", 2)
    with pytest.raises(LimitExceededException) as exc:
        await engine.split_shard(stream_name="a", shard_to_split="shardId-000000000000", new_starting_hash_key="100")
    assert "Current shard count for the account: 5. Limit: 5." in exc.value.message
    assert "resulted from this request: 1." in exc.value.message
    limits = await engine.describe_limits()
    assert (limits.shard_limit, limits.open_shard_count) == (5, 5)
    # Deleting frees the quota.
    await engine.delete_stream("b")
    await engine.create_stream("c", 2)


# ----------------------------------------------------------------- delete / recreate
async def test_delete_and_recreate_gives_a_fresh_empty_stream(kit: Kit, engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 2)
    await engine.add_tags_to_stream({"team": "a"}, stream_name="s")
    await engine.increase_stream_retention_period(48, stream_name="s")
    for i in range(10):
        await engine.put_record(stream_name="s", data=b"old%d" % i, partition_key=f"k{i}")
    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 126)
    )
    await engine.delete_stream("s")
    clock.advance(1)
    await engine.create_stream("s", 2)
    d = await engine.describe_stream("s")
    assert [s.shard_id for s in d.shards] == ["shardId-000000000000", "shardId-000000000001"]
    assert all(s.sequence_number_range.ending_sequence_number is None for s in d.shards)
    assert d.retention_period_hours == 24
    tags, _ = await engine.list_tags_for_stream(stream_name="s")
    assert tags == []
    for s in d.shards:
        assert await kit.read_all(engine, "s", s.shard_id) == []
    # Still fresh after a reopen: the old stream's files are gone.
    engine = await kit.reopen(engine)
    for s in (await engine.describe_stream("s")).shards:
        assert await kit.read_all(engine, "s", s.shard_id) == []


async def test_delete_and_recreate_in_the_same_millisecond(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"old", partition_key="k")
    await engine.delete_stream("s")
    await engine.create_stream("s", 1)
    assert await kit.read_all(engine, "s", "shardId-000000000000") == []


async def test_delete_with_consumers_needs_enforcement(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.register_stream_consumer(ARN_PREFIX + "s", "c1")
    with pytest.raises(ResourceInUseException):
        await engine.delete_stream("s")
    await engine.delete_stream("s", enforce_consumer_deletion=True)
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_stream("s")


# ----------------------------------------------------------------- persistence
async def test_everything_survives_close_and_reopen(kit: Kit, engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 2, tags={"env": "test"})
    await engine.create_stream("od", stream_mode="ON_DEMAND")
    await engine.add_tags_to_stream({"team": "core"}, stream_name="s")
    await engine.increase_stream_retention_period(72, stream_name="s")
    await engine.register_stream_consumer(ARN_PREFIX + "s", "reader")
    await engine.enable_enhanced_monitoring(["IncomingBytes"], stream_name="s")
    await engine.start_stream_encryption("KMS", "alias/test", stream_name="s")
    puts = [await engine.put_record(stream_name="s", data=b"r%d" % i, partition_key=f"k{i}") for i in range(20)]
    clock.advance(1)
    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 126)
    )
    after = [await engine.put_record(stream_name="s", data=b"a%d" % i, partition_key=f"k{i}") for i in range(20)]
    before_desc = await engine.describe_stream("s")
    before_summary = await engine.describe_stream_summary("s")
    before_consumers = await engine.list_stream_consumers(ARN_PREFIX + "s")
    before_od = await engine.describe_stream("od")

    engine = await kit.reopen(engine)
    assert engine.was_clean

    assert await engine.describe_stream("s") == before_desc
    assert (before_desc.encryption_type, before_desc.key_id) == ("KMS", "alias/test")
    assert before_desc.shard_level_metrics == ("IncomingBytes",)
    assert before_desc.retention_period_hours == 72
    assert [c.consumer_name for c in before_consumers] == ["reader"]
    assert await engine.describe_stream_summary("s") == before_summary
    assert await engine.list_stream_consumers(ARN_PREFIX + "s") == before_consumers
    assert await engine.describe_stream("od") == before_od
    tags, more = await engine.list_tags_for_stream(stream_name="s")
    assert {t.key: t.value for t in tags} == {"env": "test", "team": "core"} and not more
    closed = [s for s in before_desc.shards if s.sequence_number_range.ending_sequence_number is not None]
    assert [s.shard_id for s in closed] == ["shardId-000000000000"]

    got: dict[str, bytes] = {}
    for s in before_desc.shards:
        for r in await kit.read_all(engine, "s", s.shard_id):
            got[r.sequence_number] = r.data
    assert got == {p.sequence_number: b"r%d" % i for i, p in enumerate(puts)} | {
        p.sequence_number: b"a%d" % i for i, p in enumerate(after)
    }
    # A closed shard stays closed: the split cannot be repeated and writes go to the children.
    with pytest.raises(InvalidArgumentException):
        await engine.split_shard(stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key="5")
    res = await engine.put_record(stream_name="s", data=b"z", partition_key="k0")
    assert res.shard_id != "shardId-000000000000"
