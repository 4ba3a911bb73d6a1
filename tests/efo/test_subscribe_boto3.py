"""SubscribeToShard with boto3 (its ``subscribe_to_shard`` reads the event stream over HTTP/1.1) against a real
``shardline serve``: the handshake and the raw frames, records, every starting position, continuation, one
subscriber per consumer and shard, modeled errors, resharding, fan-out, a consumer deleted mid-subscription, and
the lifetime with its idle heartbeats."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from _shardline import UNVERIFIED_SIGNATURE, kinesis

from ._rig import DEADLINE_S, S0, S1, S2, Rig, serving


@pytest.fixture(scope="module")
def client(endpoint: str) -> Any:
    return kinesis(endpoint)


@pytest.fixture
def rig(client: Any) -> Iterator[Rig]:
    r = Rig(client)
    yield r
    r.delete()


@contextmanager
def subscription(
    client: Any, consumer_arn: str, kind: str = "TRIM_HORIZON", shard: str = S0, **position: Any
) -> Iterator[Any]:
    """An open subscription's EventStream, closed at the end. A subscription the test just closed may still hold the
    consumer and shard until the server has seen the connection close: that answer is waited out."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            resp = client.subscribe_to_shard(
                ConsumerARN=consumer_arn, ShardId=shard, StartingPosition={"Type": kind, **position}
            )
            break
        except client.exceptions.ResourceInUseException:
            assert time.monotonic() < deadline, "the consumer and shard stayed held"
            time.sleep(0.02)
    stream = resp["EventStream"]
    try:
        yield stream
    finally:
        stream.close()


def read_records(stream: Any, count: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The next ``count`` records (over as many events as it takes) and the last event."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE_S
    for ev in stream:
        event = ev["SubscribeToShardEvent"]
        out += event["Records"]
        if len(out) >= count:
            return out, event
        assert time.monotonic() < deadline, f"{len(out)} of {count} records"
    raise AssertionError(f"the stream ended after {len(out)} of {count} records")


def seqs(records: list[dict[str, Any]]) -> list[str]:
    return [r["SequenceNumber"] for r in records]


# ----------------------------------------------------------------- the wire
def test_handshake_and_frames_read_raw(endpoint: str, rig: Rig) -> None:
    arn = rig.consumer()
    put = rig.put(b"raw")
    url = urllib.parse.urlparse(endpoint)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=DEADLINE_S)
    body = json.dumps({"ConsumerARN": arn, "ShardId": S0, "StartingPosition": {"Type": "TRIM_HORIZON"}})
    conn.request(
        "POST",
        "/",
        body,
        {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "Kinesis_20131202.SubscribeToShard",
            **UNVERIFIED_SIGNATURE,
        },
    )
    resp = conn.getresponse()
    try:
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/vnd.amazon.eventstream"
        assert resp.getheader("Transfer-Encoding") == "chunked"
        raw = b""
        whole = EventStreamBuffer()
        messages: list[Any] = []
        while len(messages) < 2:  # the initial response and the first event
            chunk = resp.read1(65536)
            assert chunk, "the body ended early"
            raw += chunk
            whole.add_data(chunk)
            messages += list(whole)
    finally:
        conn.close()
    first, second = messages[0], messages[1]
    assert first.headers == {
        ":message-type": "event",
        ":event-type": "initial-response",
        ":content-type": "application/json",
    }
    assert second.headers[":event-type"] == "SubscribeToShardEvent"
    assert seqs(json.loads(second.payload)["Records"]) == [put]
    # The same bytes fed one at a time decode to the same messages (CRCs checked by botocore each time).
    bytewise = EventStreamBuffer()
    again: list[Any] = []
    for i in range(len(raw)):
        bytewise.add_data(raw[i : i + 1])
        again += list(bytewise)
    assert [(m.headers, m.payload) for m in again[:2]] == [(m.headers, m.payload) for m in messages[:2]]


def test_boto3_subscription_and_records_round_trip(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    data = [b"\x00", b"a\x00b", bytes(range(256)), b"\xff" * 10, b"last\x00"]
    put = [rig.put(d, key=f"key-{i}") for i, d in enumerate(data)]
    resp = client.subscribe_to_shard(ConsumerARN=arn, ShardId=S0, StartingPosition={"Type": "TRIM_HORIZON"})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    stream = resp["EventStream"]
    try:
        records, last = read_records(stream, 5)
    finally:
        stream.close()
    assert seqs(records) == put
    assert [r["Data"] for r in records] == data
    assert [r["PartitionKey"] for r in records] == [f"key-{i}" for i in range(5)]
    assert all(isinstance(r["ApproximateArrivalTimestamp"], dt.datetime) for r in records)
    assert last["ContinuationSequenceNumber"] == put[-1]
    assert last["MillisBehindLatest"] == 0


def test_a_put_is_pushed_to_an_open_subscription(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    rig.put(b"before")
    with subscription(client, arn, "LATEST") as stream:
        put = rig.put(b"after")
        records, _ = read_records(stream, 1)
    assert seqs(records) == [put]


def test_every_starting_position(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    put = [rig.put(b"%d" % i) for i in range(4)]
    arrivals = {r["SequenceNumber"]: r["ApproximateArrivalTimestamp"] for r in rig_read(client, rig)}

    def first(kind: str, **position: Any) -> list[str]:
        with subscription(client, arn, kind, **position) as stream:
            return seqs(next(iter(stream))["SubscribeToShardEvent"]["Records"])

    assert first("TRIM_HORIZON") == put
    assert first("AT_SEQUENCE_NUMBER", SequenceNumber=put[1]) == put[1:]
    assert first("AFTER_SEQUENCE_NUMBER", SequenceNumber=put[1]) == put[2:]
    assert first("LATEST") == []
    # AT_TIMESTAMP starts at the first record that arrived at or after the time (millisecond arrival times).
    at = arrivals[put[2]]
    assert first("AT_TIMESTAMP", Timestamp=at) == [p for p in put if arrivals[p] >= at]
    assert first("AT_TIMESTAMP", Timestamp=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == put


def rig_read(client: Any, rig: Rig) -> list[dict[str, Any]]:
    it = client.get_shard_iterator(StreamName=rig.name, ShardId=S0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return client.get_records(ShardIterator=it)["Records"]  # type: ignore[no-any-return]


def test_continuation_resumes_exactly(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    with subscription(client, arn) as stream:
        nothing = next(iter(stream))["SubscribeToShardEvent"]  # an empty shard: no record seen yet
    assert nothing["Records"] == []
    put = [rig.put(b"%d" % i) for i in range(6)]
    with subscription(client, arn, "AFTER_SEQUENCE_NUMBER", SequenceNumber=nothing["ContinuationSequenceNumber"]) as s:
        records, _ = read_records(s, 6)
    assert seqs(records) == put
    with subscription(client, arn, "AT_SEQUENCE_NUMBER", SequenceNumber=put[3]) as s:
        records, last = read_records(s, 1)
    more = [rig.put(b"m%d" % i) for i in range(2)]
    with subscription(client, arn, "AFTER_SEQUENCE_NUMBER", SequenceNumber=last["ContinuationSequenceNumber"]) as s:
        rest, _ = read_records(s, len(put) - 3 - len(records) + 2)
    assert seqs(records) + seqs(rest) == put[3:] + more


# ----------------------------------------------------------------- errors
def test_a_second_subscriber_is_refused(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    with subscription(client, arn), pytest.raises(client.exceptions.ResourceInUseException) as refused:
        client.subscribe_to_shard(ConsumerARN=arn, ShardId=S0, StartingPosition={"Type": "LATEST"})
    err = refused.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    account = rig.arn.split(":")[4]
    assert err["Error"]["Message"] == (
        f"Another active subscription exists for this consumer: {account}:{rig.name}:{S0}:c"
    )


def test_errors_before_the_stream_are_modeled(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.subscribe_to_shard(
            ConsumerARN=arn.replace("/consumer/c:", "/consumer/nobody:"),
            ShardId=S0,
            StartingPosition={"Type": "LATEST"},
        )
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.subscribe_to_shard(ConsumerARN=arn, ShardId=S2, StartingPosition={"Type": "LATEST"})
    with pytest.raises(client.exceptions.InvalidArgumentException):
        client.subscribe_to_shard(ConsumerARN=arn, ShardId=S0, StartingPosition={"Type": "AT_SEQUENCE_NUMBER"})


def test_a_consumer_deregistered_mid_subscription_ends_it_with_an_error(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    with subscription(client, arn) as stream:
        events = iter(stream)
        next(events)
        client.deregister_stream_consumer(ConsumerARN=arn)
        with pytest.raises(EventStreamError) as gone:
            for _ in events:
                pass
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ----------------------------------------------------------------- resharding and fan-out
def test_a_split_parent_ends_with_its_children(client: Any, rig: Rig) -> None:
    arn = rig.consumer()
    before = rig.put(b"before")
    with subscription(client, arn) as stream:
        events = iter(stream)
        records, _ = read_records(events, 1)
        assert seqs(records) == [before]
        client.split_shard(StreamName=rig.name, ShardToSplit=S0, NewStartingHashKey=str(1 << 127))
        final = None
        for ev in events:  # ends by itself after the children
            final = ev["SubscribeToShardEvent"]
            assert final["Records"] == []
    assert final is not None and "ContinuationSequenceNumber" not in final
    children = final["ChildShards"]
    assert [c["ShardId"] for c in children] == [S1, S2]
    assert all(c["ParentShards"] == [S0] for c in children)
    assert [c["HashKeyRange"]["StartingHashKey"] for c in children] == ["0", str(1 << 127)]
    # The closed parent later: the same final event at once, then the end.
    rig.until(lambda: rig.summary()["StreamStatus"] == "ACTIVE")
    with subscription(client, arn, "LATEST") as stream:
        assert [ev["SubscribeToShardEvent"]["ChildShards"] for ev in stream] == [children]


def test_every_consumer_receives_every_record(client: Any, rig: Rig) -> None:
    a, b = rig.consumer("a"), rig.consumer("b")
    with subscription(client, a, "LATEST") as sa, subscription(client, b, "LATEST") as sb:
        put = [rig.put(b"%d" % i) for i in range(5)]
        assert seqs(read_records(sa, 5)[0]) == put
        assert seqs(read_records(sb, 5)[0]) == put


# ----------------------------------------------------------------- lifetime and heartbeats
def test_the_lifetime_ends_the_stream_normally_with_heartbeats_while_idle(tmp_path: Path) -> None:
    """A server whose subscriptions last 7 s: an idle one sends events with no records (the first at once, then
    every 5 s, so a client that times out after 10 s of silence never does) and then ends without an error; a
    resubscribe from its continuation gets what was written in between."""
    with serving(tmp_path / "data", "--subscription-lifetime", "7") as url:
        client = kinesis(url, read_timeout=10)
        rig = Rig(client)
        arn = rig.consumer()
        seen = []
        with subscription(client, arn, "LATEST") as stream:
            for ev in stream:  # ends after 7 s
                seen.append(ev["SubscribeToShardEvent"])
        assert len(seen) >= 2
        assert all(e["Records"] == [] for e in seen)
        assert len({e["ContinuationSequenceNumber"] for e in seen}) == 1
        gap = [rig.put(b"%d" % i) for i in range(3)]
        after = seen[-1]["ContinuationSequenceNumber"]
        with subscription(client, arn, "AFTER_SEQUENCE_NUMBER", SequenceNumber=after) as stream:
            assert seqs(read_records(stream, 3)[0]) == gap


def test_no_client_error_escapes_as_a_parser_error(client: Any, rig: Rig) -> None:
    """Every refusal is a modeled ClientError with its code (never botocore's ResponseParserError)."""
    arn = rig.consumer()
    with pytest.raises(ClientError) as err:
        client.subscribe_to_shard(ConsumerARN=arn, ShardId="shardId-000000000009", StartingPosition={"Type": "LATEST"})
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
