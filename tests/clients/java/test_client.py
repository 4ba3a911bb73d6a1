"""The AWS SDK for Java v2 clients with their defaults, the sync KinesisClient (CBOR through the Apache HTTP client
over HTTP/1.1) and the KinesisAsyncClient (CBOR through Netty over HTTP/2), against a real `shardline serve`: every
call the SDK makes must marshal, reach the engine and unmarshal, and what it writes must read back the same through
boto3 (JSON 1.1), and the other way round."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ._java import JavaKinesis, JavaServiceError

CBOR = ("application/x-amz-cbor-1.1", "application/x-amz-cbor-1.1")
ALL_BYTES = bytes(range(256))
MAX_HASH = (1 << 128) - 1


def make_stream(java: JavaKinesis, name: str, shards: int = 1) -> dict[str, Any]:
    """CreateStream, then the SDK's StreamExists waiter; the description the waiter matched."""
    assert java.call("CreateStream", StreamName=name, ShardCount=shards) == {}
    waited = java.call("waitUntilStreamExists", StreamName=name)
    assert waited["attempts"] >= 1
    description: dict[str, Any] = waited["response"]["StreamDescription"]
    return description


def records_of(java: JavaKinesis, stream: str, shard: str, kind: str = "TRIM_HORIZON", **where: Any) -> Any:
    it = java.call("GetShardIterator", StreamName=stream, ShardId=shard, ShardIteratorType=kind, **where)
    return java.call("GetRecords", ShardIterator=it["ShardIterator"])


def test_the_client_speaks_cbor_both_ways(java: JavaKinesis) -> None:
    java.call("ListStreams")
    assert java.last_wire == CBOR


def test_create_stream_waiter_and_descriptions(java: JavaKinesis, boto: Any) -> None:
    before = dt.datetime.now(dt.UTC)
    desc = make_stream(java, "created", shards=3)
    assert desc["StreamName"] == "created"
    assert desc["StreamStatus"] == "ACTIVE"
    assert desc["RetentionPeriodHours"] == 24
    assert desc["HasMoreShards"] is False
    assert [s["ShardId"] for s in desc["Shards"]] == [f"shardId-00000000000{i}" for i in range(3)]
    assert desc["Shards"][0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert desc["Shards"][-1]["HashKeyRange"]["EndingHashKey"] == str(MAX_HASH)
    created = desc["StreamCreationTimestamp"]
    # The instant the SDK decoded is the one boto3 reads over JSON, to the millisecond, and a plausible one.
    assert created == boto.describe_stream(StreamName="created")["StreamDescription"]["StreamCreationTimestamp"]
    assert before - dt.timedelta(seconds=1) <= created <= dt.datetime.now(dt.UTC)
    assert created.microsecond % 1000 == 0

    summary = java.call("DescribeStreamSummary", StreamName="created")["StreamDescriptionSummary"]
    assert java.last_wire == CBOR
    assert summary["StreamCreationTimestamp"] == created
    assert summary["OpenShardCount"] == 3
    assert summary["ConsumerCount"] == 0
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert summary["StreamARN"] == desc["StreamARN"]

    by_arn = java.call("DescribeStream", StreamARN=desc["StreamARN"], Limit=1)["StreamDescription"]
    assert [s["ShardId"] for s in by_arn["Shards"]] == ["shardId-000000000000"]
    assert by_arn["HasMoreShards"] is True


def test_list_streams_and_shards_page_through(java: JavaKinesis) -> None:
    for name in ("list-a", "list-b"):
        make_stream(java, name, shards=2)
    listed = java.call("ListStreams", Limit=1, ExclusiveStartStreamName="list-")
    assert listed["StreamNames"] == ["list-a"]
    assert listed["HasMoreStreams"] is True
    summary = listed["StreamSummaries"][0]
    assert summary["StreamName"] == "list-a"
    assert summary["StreamStatus"] == "ACTIVE"
    assert isinstance(summary["StreamCreationTimestamp"], dt.datetime)
    rest = java.call("ListStreams", NextToken=listed["NextToken"])
    assert "list-b" in rest["StreamNames"]

    first = java.call("ListShards", StreamName="list-a", MaxResults=1)
    assert [s["ShardId"] for s in first["Shards"]] == ["shardId-000000000000"]
    second = java.call("ListShards", NextToken=first["NextToken"], MaxResults=1)
    assert [s["ShardId"] for s in second["Shards"]] == ["shardId-000000000001"]
    assert "NextToken" not in second
    filtered = java.call("ListShards", StreamName="list-a", ShardFilter={"Type": "AT_LATEST"})
    assert len(filtered["Shards"]) == 2


def test_binary_data_round_trips_between_the_sdk_and_boto3(java: JavaKinesis, boto: Any) -> None:
    desc = make_stream(java, "binary", shards=2)
    upper = desc["Shards"][1]
    put = java.call(
        "PutRecords",
        StreamName="binary",
        Records=[
            {"Data": ALL_BYTES, "PartitionKey": "k", "ExplicitHashKey": str(MAX_HASH)},
            {"Data": b"", "PartitionKey": "k", "ExplicitHashKey": "0"},
            {"Data": b"\xff" * 1000, "PartitionKey": "k", "ExplicitHashKey": upper["HashKeyRange"]["StartingHashKey"]},
        ],
    )
    assert java.last_wire == CBOR
    assert put["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in put["Records"]] == [upper["ShardId"], "shardId-000000000000", upper["ShardId"]]
    one = java.call("PutRecord", StreamName="binary", PartitionKey="p", Data=ALL_BYTES[::-1], ExplicitHashKey="0")
    assert one["ShardId"] == "shardId-000000000000"
    boto.put_record(StreamName="binary", PartitionKey="q", Data=ALL_BYTES * 4, ExplicitHashKey="1")

    low = records_of(java, "binary", "shardId-000000000000")
    assert [r["Data"] for r in low["Records"]] == [b"", ALL_BYTES[::-1], ALL_BYTES * 4]
    assert [r["PartitionKey"] for r in low["Records"]] == ["k", "p", "q"]
    assert low["Records"][1]["SequenceNumber"] == one["SequenceNumber"]
    assert low["MillisBehindLatest"] == 0
    assert low["NextShardIterator"]
    high = records_of(java, "binary", upper["ShardId"])
    assert [r["Data"] for r in high["Records"]] == [ALL_BYTES, b"\xff" * 1000]

    # boto3 reads what the SDK wrote: the same bytes and the same arrival instants, to the millisecond.
    it = boto.get_shard_iterator(StreamName="binary", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
    seen = boto.get_records(ShardIterator=it["ShardIterator"])["Records"]
    assert [r["Data"] for r in seen] == [r["Data"] for r in low["Records"]]
    assert [r["ApproximateArrivalTimestamp"] for r in seen] == [
        r["ApproximateArrivalTimestamp"] for r in low["Records"]
    ]


def test_every_shard_iterator_type(java: JavaKinesis) -> None:
    make_stream(java, "iterators")
    seqs = []
    for i in range(4):
        seqs.append(java.call("PutRecord", StreamName="iterators", PartitionKey="p", Data=b"%d" % i)["SequenceNumber"])
    shard = "shardId-000000000000"
    everything = records_of(java, "iterators", shard)["Records"]
    assert [r["Data"] for r in everything] == [b"0", b"1", b"2", b"3"]
    arrivals = [r["ApproximateArrivalTimestamp"] for r in everything]
    assert all(isinstance(a, dt.datetime) and a.microsecond % 1000 == 0 for a in arrivals)
    assert arrivals == sorted(arrivals)

    at = records_of(java, "iterators", shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])["Records"]
    assert [r["Data"] for r in at] == [b"2", b"3"]
    after = records_of(java, "iterators", shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])["Records"]
    assert [r["Data"] for r in after] == [b"3"]
    assert records_of(java, "iterators", shard, "LATEST")["Records"] == []

    # AT_TIMESTAMP with the SDK's own timestamp (CBOR tag 1, epoch milliseconds): the first record that arrived at
    # or after it; one from before the stream gives everything; one from the future is refused, as
    # AWS refuses it.
    third = arrivals[2]
    stamped = records_of(java, "iterators", shard, "AT_TIMESTAMP", Timestamp=third)["Records"]
    assert [r["Data"] for r in stamped] == [r["Data"] for r in everything if r["ApproximateArrivalTimestamp"] >= third]
    assert stamped[0]["Data"] in (b"0", b"1", b"2")
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert len(records_of(java, "iterators", shard, "AT_TIMESTAMP", Timestamp=past)["Records"]) == 4
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with pytest.raises(JavaServiceError) as ahead:
        records_of(java, "iterators", shard, "AT_TIMESTAMP", Timestamp=future)
    assert ahead.value.simple_name == "InvalidArgumentException"
    assert f"timestampInMillis: {round(future.timestamp() * 1000)}," in str(ahead.value.error_message)


def test_millis_behind_latest_counts_what_is_left(java: JavaKinesis) -> None:
    make_stream(java, "behind")
    for i in range(3):
        java.call("PutRecord", StreamName="behind", PartitionKey="p", Data=b"%d" % i)
    it = java.call(
        "GetShardIterator", StreamName="behind", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )
    part = java.call("GetRecords", ShardIterator=it["ShardIterator"], Limit=1)
    assert [r["Data"] for r in part["Records"]] == [b"0"]
    assert part["MillisBehindLatest"] >= 0
    rest = java.call("GetRecords", ShardIterator=part["NextShardIterator"])
    assert [r["Data"] for r in rest["Records"]] == [b"1", b"2"]
    assert rest["MillisBehindLatest"] == 0


def test_tags(java: JavaKinesis, boto: Any) -> None:
    make_stream(java, "tagged")
    java.call("AddTagsToStream", StreamName="tagged", Tags={"team": "data", "env": "test", "empty": ""})
    tags = java.call("ListTagsForStream", StreamName="tagged")
    assert tags["Tags"] == [
        {"Key": "empty", "Value": ""},
        {"Key": "env", "Value": "test"},
        {"Key": "team", "Value": "data"},
    ]
    assert tags["HasMoreTags"] is False
    java.call("RemoveTagsFromStream", StreamName="tagged", TagKeys=["env", "empty"])
    assert java.call("ListTagsForStream", StreamName="tagged")["Tags"] == [{"Key": "team", "Value": "data"}]
    assert boto.list_tags_for_stream(StreamName="tagged")["Tags"] == [{"Key": "team", "Value": "data"}]


def test_consumers(java: JavaKinesis, boto: Any) -> None:
    arn = make_stream(java, "consumed")["StreamARN"]
    registered = java.call("RegisterStreamConsumer", StreamARN=arn, ConsumerName="reader")["Consumer"]
    assert registered["ConsumerName"] == "reader"
    assert registered["ConsumerARN"].startswith(f"{arn}/consumer/reader:")
    assert registered["ConsumerStatus"] in ("CREATING", "ACTIVE")
    created = registered["ConsumerCreationTimestamp"]
    assert isinstance(created, dt.datetime)

    described = java.call("DescribeStreamConsumer", ConsumerARN=registered["ConsumerARN"])["ConsumerDescription"]
    assert described["ConsumerName"] == "reader"
    assert described["StreamARN"] == arn
    assert described["ConsumerCreationTimestamp"] == created
    by_name = java.call("DescribeStreamConsumer", StreamARN=arn, ConsumerName="reader")["ConsumerDescription"]
    assert by_name["ConsumerARN"] == registered["ConsumerARN"]
    boto_view = boto.describe_stream_consumer(ConsumerARN=registered["ConsumerARN"])["ConsumerDescription"]
    assert boto_view["ConsumerCreationTimestamp"] == created

    listed = java.call("ListStreamConsumers", StreamARN=arn, StreamCreationTimestamp=created)["Consumers"]
    assert [(c["ConsumerName"], c["ConsumerCreationTimestamp"]) for c in listed] == [("reader", created)]
    java.call("DeregisterStreamConsumer", ConsumerARN=registered["ConsumerARN"])
    with pytest.raises(JavaServiceError) as gone:
        java.call("DescribeStreamConsumer", ConsumerARN=registered["ConsumerARN"])
    assert gone.value.simple_name == "ResourceNotFoundException"


def test_errors_arrive_as_the_sdks_exception_classes(java: JavaKinesis) -> None:
    with pytest.raises(JavaServiceError) as missing:
        java.call("DescribeStreamSummary", StreamName="no-such-stream")
    assert java.last_wire == CBOR
    err = missing.value
    assert err.simple_name == "ResourceNotFoundException"
    assert err.code == "ResourceNotFoundException"
    assert err.status == 400
    assert err.error_message == "Stream no-such-stream under account 000000000000 not found."

    make_stream(java, "errors")
    with pytest.raises(JavaServiceError) as in_use:
        java.call("CreateStream", StreamName="errors", ShardCount=1)
    assert in_use.value.simple_name == "ResourceInUseException"
    assert in_use.value.error_message == "Stream errors under account 000000000000 already exists."

    with pytest.raises(JavaServiceError) as invalid:
        java.call("DecreaseStreamRetentionPeriod", StreamName="errors", RetentionPeriodHours=48)
    assert invalid.value.simple_name == "InvalidArgumentException"
    assert invalid.value.error_message == (
        "Requested retention period (48 hours) for stream errors can not be longer than existing retention period "
        "(24 hours). Use IncreaseRetentionPeriod API."
    )

    with pytest.raises(JavaServiceError) as invalid_name:
        java.call("DescribeStreamSummary", StreamName="bad name!")
    assert invalid_name.value.simple_name == "ValidationException"
    assert invalid_name.value.status == 400
    assert invalid_name.value.error_message == (
        "1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    )

    with pytest.raises(JavaServiceError) as bad_iterator:
        java.call("GetRecords", ShardIterator="AAAA")
    assert bad_iterator.value.simple_name == "InvalidArgumentException"


def test_retention_changes(java: JavaKinesis) -> None:
    make_stream(java, "retained")
    java.call("IncreaseStreamRetentionPeriod", StreamName="retained", RetentionPeriodHours=168)
    assert (
        java.call("DescribeStreamSummary", StreamName="retained")["StreamDescriptionSummary"]["RetentionPeriodHours"]
        == 168
    )
    java.call("DecreaseStreamRetentionPeriod", StreamName="retained", RetentionPeriodHours=48)
    summary = java.call("DescribeStreamSummary", StreamName="retained")["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 48


def test_split_and_merge(java: JavaKinesis, boto: Any) -> None:
    make_stream(java, "reshard")
    java.call("PutRecord", StreamName="reshard", PartitionKey="p", Data=b"before", ExplicitHashKey="5")
    middle = str(1 << 127)
    java.call("SplitShard", StreamName="reshard", ShardToSplit="shardId-000000000000", NewStartingHashKey=middle)
    desc = java.call("waitUntilStreamExists", StreamName="reshard")["response"]["StreamDescription"]
    assert desc["StreamStatus"] == "ACTIVE"
    shards = {s["ShardId"]: s for s in java.call("ListShards", StreamName="reshard")["Shards"]}
    assert sorted(shards) == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    assert "EndingSequenceNumber" in shards["shardId-000000000000"]["SequenceNumberRange"]
    assert shards["shardId-000000000001"]["ParentShardId"] == "shardId-000000000000"
    assert shards["shardId-000000000002"]["HashKeyRange"]["StartingHashKey"] == middle

    # Reading the closed parent to its end: its record, then ChildShards and no next iterator.
    parent = records_of(java, "reshard", "shardId-000000000000")
    assert [r["Data"] for r in parent["Records"]] == [b"before"]
    if "NextShardIterator" in parent:
        parent = java.call("GetRecords", ShardIterator=parent["NextShardIterator"])
    assert "NextShardIterator" not in parent
    children = sorted(parent["ChildShards"], key=lambda c: c["ShardId"])
    assert [c["ShardId"] for c in children] == ["shardId-000000000001", "shardId-000000000002"]
    assert children[0]["ParentShards"] == ["shardId-000000000000"]
    assert children[1]["HashKeyRange"]["StartingHashKey"] == middle

    java.call(
        "MergeShards",
        StreamName="reshard",
        ShardToMerge="shardId-000000000001",
        AdjacentShardToMerge="shardId-000000000002",
    )
    java.call("waitUntilStreamExists", StreamName="reshard")
    merged = java.call("ListShards", StreamName="reshard", ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert [s["ShardId"] for s in merged] == ["shardId-000000000003"]
    assert merged[0]["ParentShardId"] == "shardId-000000000001"
    assert merged[0]["AdjacentParentShardId"] == "shardId-000000000002"
    put = java.call("PutRecord", StreamName="reshard", PartitionKey="p", Data=b"after")
    assert put["ShardId"] == "shardId-000000000003"
    assert java.call("DescribeStreamSummary", StreamName="reshard")["StreamDescriptionSummary"]["OpenShardCount"] == 1
    assert len(boto.list_shards(StreamName="reshard")["Shards"]) == 4


def test_records_of_the_largest_size(java: JavaKinesis) -> None:
    make_stream(java, "large")
    mib = 1 << 20
    largest = (bytes(range(256)) * 4096)[: mib - 1]  # with its one-character partition key: 1 MiB, the most allowed
    java.call("PutRecord", StreamName="large", PartitionKey="p", Data=largest)
    java.call("PutRecords", StreamName="large", Records=[{"Data": largest[::-1], "PartitionKey": "p"}])
    got = records_of(java, "large", "shardId-000000000000")["Records"]
    assert [r["Data"] for r in got] == [largest, largest[::-1]]

    with pytest.raises(JavaServiceError) as over:
        java.call("PutRecord", StreamName="large", PartitionKey="p", Data=largest + b"!")
    assert over.value.simple_name == "InvalidArgumentException"
    assert over.value.error_message == (
        f"Record size {mib + 1} bytes (partition key + data) exceeds the stream's maximum record size of {mib} bytes"
    )
    with pytest.raises(JavaServiceError) as too_long:
        java.call("PutRecord", StreamName="large", PartitionKey="p", Data=largest + b"!!")
    assert too_long.value.simple_name == "ValidationException"
    assert "at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576" in str(
        too_long.value.error_message
    )
