"""The stream settings' wire details (engine/stream_settings.py): key-less records of an AUTO distribution stream in
JSON and CBOR, and the actions' answers."""

from __future__ import annotations

from ._asgi import CBOR_TYPE, Kinesis


async def test_a_record_without_a_key_is_read_without_one_in_json_and_cbor(kinesis: Kinesis) -> None:
    await kinesis.ok(
        "CreateStream",
        {"StreamName": "od", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}, "RecordDistributionStrategy": "AUTO"},
    )
    summary = (await kinesis.ok("DescribeStreamSummary", {"StreamName": "od"}))["StreamDescriptionSummary"]
    assert summary["RecordDistributionStrategy"] == "AUTO"
    assert "WarmThroughput" not in summary  # (none was set)
    put = await kinesis.ok("PutRecord", {"StreamName": "od", "Data": "a2V5bGVzcw=="})
    keyed = await kinesis.ok("PutRecord", {"StreamName": "od", "Data": "a2V5", "PartitionKey": "k"})
    for shard, seq, key in (
        (put["ShardId"], put["SequenceNumber"], None),
        (keyed["ShardId"], keyed["SequenceNumber"], "k"),
    ):
        payload = {
            "StreamName": "od",
            "ShardId": shard,
            "ShardIteratorType": "AT_SEQUENCE_NUMBER",
            "StartingSequenceNumber": seq,
        }
        it = (await kinesis.ok("GetShardIterator", payload))["ShardIterator"]
        rec = (await kinesis.ok("GetRecords", {"ShardIterator": it, "Limit": 1}))["Records"][0]
        assert rec.get("PartitionKey") == key
        r = await kinesis.send("GetRecords", {"ShardIterator": it, "Limit": 1}, content_type=CBOR_TYPE)
        assert r.status == 200
        assert r.cbor()["Records"][0].get("PartitionKey") == key


async def test_update_max_record_size_answers_an_empty_body(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    r = await kinesis.send("UpdateMaxRecordSize", {"StreamARN": kinesis.arn("s"), "MaxRecordSizeInKiB": 2048})
    assert (r.status, r.body) == (200, b"")
    summary = (await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"}))["StreamDescriptionSummary"]
    assert summary["MaxRecordSizeInKiB"] == 2048
    assert "RecordDistributionStrategy" not in summary  # (a setting of on-demand streams)
    r = await kinesis.send(
        "UpdateStreamRecordDistributionStrategy",
        {"StreamARN": kinesis.arn("s"), "RecordDistributionStrategy": "USER_PARTITION_KEY"},
    )
    assert (r.status, r.body) == (200, b"")
