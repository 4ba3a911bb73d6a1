"""Kinesis channels in the engine (engine/channels.py): kept and answered through their lifecycle, checked as AWS
documents, and kept across restarts. They deliver nothing here."""

from __future__ import annotations

import pytest

from shardline import ManualClock
from shardline.errors import InvalidArgumentException, ResourceInUseException, ResourceNotFoundException

from ._kit import Kit

ROLE = "arn:aws:iam::123456789012:role/channel"
S3 = {
    "DataFreshnessInSeconds": 300,
    "StorageConfiguration": {
        "BucketARN": "arn:aws:s3:::bucket",
        "ExpectedBucketOwner": "123456789012",
        "CompressionType": "GZIP",
    },
}
TABLES = {
    "DataFreshnessInSeconds": 300,
    "DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::dlq", "ExpectedBucketOwner": "123456789012"},
    "S3TablesConfigurationList": [
        {
            "TableBucketARN": "arn:aws:s3tables:us-east-1:123456789012:bucket/tb",
            "Namespace": "ns",
            "TableName": "t",
            "CompressionType": "ZSTD",
        }
    ],
}
GSR = "arn:aws:glue:us-east-1:123456789012:schema/registry/schema"


async def test_channel_lifecycle_and_restart(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(creating_delay_s=1, updating_delay_s=1, deleting_delay_s=1)
    await engine.create_stream("s", 1, stream_mode="ON_DEMAND")
    clock.advance(1)
    arn = engine.stream_arn("s")
    c = await engine.create_channel("c", ROLE, [(arn, {"RecordFormatType": "JSON"})], s3=S3, tags={"k": "v"})
    assert (c.status, c.destination_type, c.destination, c.tags) == ("CREATING", "S3", S3, {"k": "v"})
    assert c.logging == {"CloudWatchLogs": {"Enabled": False}}
    with pytest.raises(ResourceInUseException):
        await engine.create_channel("c", ROLE, [(arn, {"RecordFormatType": "JSON"})], s3=S3)
    clock.advance(1)
    assert (await engine.describe_channel(c.channel_arn)).status == "ACTIVE"
    with pytest.raises(ResourceInUseException, match="has channels"):
        await engine.delete_stream("s")
    updated = await engine.update_channel(
        c.channel_arn, s3={"DataFreshnessInSeconds": 60}, logging_config={"CloudWatchLogs": {"Enabled": True}}
    )
    assert updated.status == "UPDATING" and updated.destination["DataFreshnessInSeconds"] == 60
    assert updated.logging["CloudWatchLogs"]["LogStreamName"] == "DestinationDelivery"
    with pytest.raises(ResourceInUseException):
        await engine.update_channel(c.channel_arn, s3={"DataFreshnessInSeconds": 61})
    clock.advance(1)
    with pytest.raises(InvalidArgumentException, match="delivers to S3"):
        await engine.update_channel(c.channel_arn, s3_tables={"DataFreshnessInSeconds": 61})
    engine = await kit.reopen(engine)
    again = await engine.describe_channel(c.channel_arn)
    assert (again.status, again.destination["DataFreshnessInSeconds"]) == ("ACTIVE", 60)
    page, token = await engine.list_channels(stream_filter=[(arn, None)])
    assert ([x.name for x in page], token) == (["c"], None)
    await engine.delete_channel(c.channel_arn)
    assert (await engine.describe_channel(c.channel_arn)).status == "DELETING"
    clock.advance(1)
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_channel(c.channel_arn)
    await engine.delete_stream("s")


async def test_channel_checks(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("p", 1)
    await engine.create_stream("s", 1, stream_mode="ON_DEMAND")
    arn = engine.stream_arn("s")
    json_ = {"RecordFormatType": "JSON"}
    with pytest.raises(InvalidArgumentException, match="but not both"):
        await engine.create_channel("c", ROLE, [(arn, json_)])
    with pytest.raises(InvalidArgumentException, match="but not both"):
        await engine.create_channel("c", ROLE, [(arn, json_)], s3=S3, s3_tables=TABLES)
    with pytest.raises(InvalidArgumentException, match="one stream"):
        await engine.create_channel("c", ROLE, [(arn, json_), (arn, json_)], s3=S3)
    with pytest.raises(InvalidArgumentException, match="GSR_JSON is not supported for S3"):
        await engine.create_channel("c", ROLE, [(arn, {"RecordFormatType": "GSR_JSON"})], s3=S3)
    with pytest.raises(InvalidArgumentException, match="BYTE_ARRAY is not supported for S3_TABLES"):
        await engine.create_channel("c", ROLE, [(arn, {"RecordFormatType": "BYTE_ARRAY"})], s3_tables=TABLES)
    with pytest.raises(InvalidArgumentException, match="GSRSchemaARN is required"):
        await engine.create_channel("c", ROLE, [(arn, json_)], s3_tables=TABLES)
    with pytest.raises(InvalidArgumentException, match="on-demand"):
        await engine.create_channel("c", ROLE, [(engine.stream_arn("p"), json_)], s3=S3)
    with pytest.raises(ResourceNotFoundException):
        await engine.create_channel("c", ROLE, [(engine.stream_arn("x"), json_)], s3=S3)
    t = await engine.create_channel("t", ROLE, [(arn, json_ | {"GSRSchemaARN": GSR})], s3_tables=TABLES)
    assert t.destination_type == "S3_TABLES"
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_channel(t.channel_arn + "0")
