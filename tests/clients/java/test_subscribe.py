"""SubscribeToShard (enhanced fan-out) through the Java SDK v2's KinesisAsyncClient with its defaults: an event
stream over HTTP/2 whose events carry CBOR."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from _shardline import shardline

from ._java import JavaKinesis, java_kinesis
from .test_client import ALL_BYTES, make_stream


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    with shardline("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never") as running:
        yield running.url


@pytest.fixture(scope="module")
def java(endpoint: str) -> Iterator[JavaKinesis]:
    with java_kinesis(endpoint, "async") as client:
        yield client


def active_consumer(java: JavaKinesis, stream_arn: str, name: str) -> str:
    arn: str = java.call("RegisterStreamConsumer", StreamARN=stream_arn, ConsumerName=name)["Consumer"]["ConsumerARN"]
    for _ in range(600):  # each poll is a round trip; CREATING lasts the server's status delay
        if java.call("DescribeStreamConsumer", ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE":
            return arn
    raise AssertionError(f"consumer {name} never became ACTIVE")


def subscribe(java: JavaKinesis, consumer: str, shard: str, records: int, **position: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = java.call(
        "SubscribeToShard", ConsumerARN=consumer, ShardId=shard, StartingPosition=position, **{"$records": records}
    )["events"]
    return events


def test_events_carry_records_as_the_sdk_reads_them(java: JavaKinesis) -> None:
    stream_arn = make_stream(java, "pushed")["StreamARN"]
    consumer = active_consumer(java, stream_arn, "reader")
    put = [
        java.call("PutRecord", StreamName="pushed", PartitionKey="p", Data=data) for data in (ALL_BYTES, b"", b"third")
    ]
    events = subscribe(java, consumer, "shardId-000000000000", 3, Type="TRIM_HORIZON")
    assert {e["$type"] for e in events} == {"SubscribeToShardEvent"}
    records = [r for e in events for r in e["Records"]]
    assert [r["Data"] for r in records] == [ALL_BYTES, b"", b"third"]
    assert [r["SequenceNumber"] for r in records] == [p["SequenceNumber"] for p in put]
    assert all(isinstance(r["ApproximateArrivalTimestamp"], dt.datetime) for r in records)
    last = next(e for e in reversed(events) if e["Records"])
    assert last["ContinuationSequenceNumber"] == put[-1]["SequenceNumber"]
    assert last["MillisBehindLatest"] == 0

    # Each further subscription through a consumer of its own: AWS refuses a consumer's second subscription to a
    # shard within 5 seconds of the first (ResourceInUseException), even once the first is cancelled.
    after = subscribe(
        java,
        active_consumer(java, stream_arn, "after"),
        "shardId-000000000000",
        1,
        Type="AFTER_SEQUENCE_NUMBER",
        SequenceNumber=put[0]["SequenceNumber"],
    )
    assert [r["Data"] for e in after for r in e["Records"]][:1] == [b""]
    stamp = records[2]["ApproximateArrivalTimestamp"]
    timed = subscribe(
        java,
        active_consumer(java, stream_arn, "timed"),
        "shardId-000000000000",
        1,
        Type="AT_TIMESTAMP",
        Timestamp=stamp,
    )
    assert [r["Data"] for e in timed for r in e["Records"]][-1:] == [b"third"]


def test_a_closed_shard_ends_with_its_children(java: JavaKinesis) -> None:
    stream_arn = make_stream(java, "ending")["StreamARN"]
    consumer = active_consumer(java, stream_arn, "reader")
    java.call("PutRecord", StreamName="ending", PartitionKey="p", Data=b"before")
    java.call("SplitShard", StreamName="ending", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(1 << 127))
    java.call("waitUntilStreamExists", StreamName="ending")
    events = subscribe(java, consumer, "shardId-000000000000", 1_000, Type="TRIM_HORIZON")
    assert [r["Data"] for e in events for r in e["Records"]] == [b"before"]
    end = events[-1]
    assert "ContinuationSequenceNumber" not in end
    assert sorted(c["ShardId"] for c in end["ChildShards"]) == ["shardId-000000000001", "shardId-000000000002"]


def test_records_put_while_subscribed_are_pushed(java: JavaKinesis, boto: Any) -> None:
    stream_arn = make_stream(java, "live")["StreamARN"]
    consumer = active_consumer(java, stream_arn, "reader")
    sent: list[bytes] = []
    stop = threading.Event()

    def feed() -> None:  # puts until the subscription has its records, whenever it started
        while not stop.is_set():
            data = b"live-%d" % len(sent)
            boto.put_record(StreamName="live", PartitionKey="p", Data=data)
            sent.append(data)
            stop.wait(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        events = subscribe(java, consumer, "shardId-000000000000", 3, Type="LATEST")
    finally:
        stop.set()
        feeder.join()
    got = [r["Data"] for e in events for r in e["Records"]]
    assert len(got) >= 3
    first = sent.index(got[0])
    assert got == sent[first : first + len(got)]
