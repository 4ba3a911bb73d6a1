"""Request bodies exactly as the AWS SDK for Java v2 writes them (captured from its sync client, 2.25): Jackson's
CBOR generator writes every map and array with indefinite length (``bf ... ff``, ``9f ... ff``), blobs as byte
strings and timestamps as tag 1 holding an integer of epoch milliseconds (``c1 1b <u64>``)."""

from __future__ import annotations

from _shardline import START_MS

from ._asgi import CBOR_TYPE, Kinesis

# GetShardIterator {StreamName: "s", ShardId: "shardId-000000000000", ShardIteratorType: "AT_TIMESTAMP",
# Timestamp: 1796582097784 ms}
GET_SHARD_ITERATOR_AT_TIMESTAMP = bytes.fromhex(
    "bf6a53747265616d4e616d656173675368617264496474736861726449642d303030303030303030303030"
    "7153686172644974657261746f72547970656c41545f54494d455354414d50"
    "6954696d657374616d70c11b000001a24ca34378ff"
)
JAVA_TIMESTAMP_MS = 1796582097784
# PutRecords {Records: [{Data: 00 ff, ExplicitHashKey: "0", PartitionKey: "k"}], StreamName: "s"}
PUT_RECORDS = bytes.fromhex(
    "bf675265636f7264739fbf64446174614200ff6f4578706c69636974486173684b657961306c506172746974696f6e4b6579616bffff"
    "6a53747265616d4e616d656173ff"
)


async def test_put_records_as_the_java_sdk_writes_it(kinesis: Kinesis) -> None:
    await kinesis.create("s", shards=2)
    r = await kinesis.send("PutRecords", body=PUT_RECORDS, content_type=CBOR_TYPE)
    assert r.status == 200, r.body
    put = r.cbor()
    assert put["FailedRecordCount"] == 0
    assert [e["ShardId"] for e in put["Records"]] == ["shardId-000000000000"]  # ExplicitHashKey "0"
    it = await kinesis.iterator("s")
    got = (await kinesis.send("GetRecords", {"ShardIterator": it}, content_type=CBOR_TYPE)).cbor()["Records"]
    assert [(rec["Data"], rec["PartitionKey"]) for rec in got] == [(b"\x00\xff", "k")]


async def test_an_at_timestamp_iterator_as_the_java_sdk_writes_it(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    kinesis.clock.advance(ms=JAVA_TIMESTAMP_MS - START_MS - 1)
    await kinesis.put("s", b"before")
    kinesis.clock.advance(ms=1)
    await kinesis.put("s", b"at")
    kinesis.clock.advance(ms=1)
    await kinesis.put("s", b"after")
    r = await kinesis.send("GetShardIterator", body=GET_SHARD_ITERATOR_AT_TIMESTAMP, content_type=CBOR_TYPE)
    assert r.status == 200, r.body
    got = await kinesis.send("GetRecords", {"ShardIterator": r.cbor()["ShardIterator"]}, content_type=CBOR_TYPE)
    assert [rec["Data"] for rec in got.cbor()["Records"]] == [b"at", b"after"]
    # and the arrival timestamps go back the same way: tag 1, an unsigned 64-bit integer of milliseconds
    assert bytes.fromhex("c11b000001a24ca34378") in got.body
