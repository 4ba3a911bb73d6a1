"""Kinesis channels through boto3 and a real `shardline serve`: every channel operation, its shape checks, the
documented defaults in DescribeChannel, and the channel kept across a restart of the server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from _shardline import kinesis, shardline

ROLE = "arn:aws:iam::123456789012:role/channel"
STORAGE = {"BucketARN": "arn:aws:s3:::bucket", "ExpectedBucketOwner": "123456789012", "CompressionType": "GZIP"}


def _status(k: Any, arn: str) -> str:
    return str(k.describe_channel(ChannelARN=arn)["ChannelDescription"]["ChannelStatus"])


def _wait_status(k: Any, arn: str, want: str) -> None:
    deadline = time.monotonic() + 60
    while _status(k, arn) != want:
        assert time.monotonic() < deadline, f"channel never became {want}"
        time.sleep(0.05)


def test_channel_operations_over_the_wire(tmp_path: Path) -> None:
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never"]
    with shardline(*args) as running:
        k = kinesis(running.url)
        k.create_stream(StreamName="s", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        k.get_waiter("stream_exists").wait(StreamName="s", WaiterConfig={"Delay": 0.1})
        stream_arn = k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamARN"]
        config = [{"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": "JSON"}}]
        with pytest.raises(ClientError) as err:
            k.create_channel(
                ChannelName="c",
                ServiceExecutionRoleARN="not-a-role",
                StreamConfigurationList=config,
                S3DestinationConfiguration={"StorageConfiguration": STORAGE},
            )
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert "serviceExecutionRoleARN" in err.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as err:
            k.create_channel(ChannelName="c", ServiceExecutionRoleARN=ROLE, StreamConfigurationList=config)
        assert err.value.response["Error"]["Code"] == "InvalidArgumentException"

        created = k.create_channel(
            ChannelName="c",
            ServiceExecutionRoleARN=ROLE,
            StreamConfigurationList=config,
            S3DestinationConfiguration={"StorageConfiguration": STORAGE},
        )["ChannelDescription"]
        arn = created["ChannelARN"]
        assert created["ChannelName"] == "c" and created["ChannelStatus"] in ("CREATING", "ACTIVE")
        dest = created["S3DestinationConfiguration"]
        assert dest["DataFreshnessInSeconds"] == 300  # (the documented default)
        assert dest["DeadLetterQueueS3Configuration"]["BucketARN"] == STORAGE["BucketARN"]
        assert created["LoggingConfiguration"] == {"CloudWatchLogs": {"Enabled": False}}
        assert created["StreamConfigurationList"][0]["RecordConfiguration"] == {"RecordFormatType": "JSON"}
        _wait_status(k, arn, "ACTIVE")

        pages = list(k.get_paginator("list_channels").paginate(StreamFilter=[{"StreamARN": stream_arn}]))
        (summary,) = [s for page in pages for s in page["ChannelSummaries"]]
        assert (summary["ChannelARN"], summary["ChannelDestinationType"]) == (arn, "S3")
        with pytest.raises(ClientError) as err:
            k.delete_stream(StreamName="s")
        assert err.value.response["Error"]["Code"] == "ResourceInUseException"

        updated = k.update_channel(ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 60})
        assert updated["ChannelDescription"]["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 60
        _wait_status(k, arn, "ACTIVE")
        running.proc.terminate()
        running.proc.wait(timeout=30)

    with shardline(*args) as running:
        k = kinesis(running.url)
        desc = k.describe_channel(ChannelARN=arn)["ChannelDescription"]
        assert desc["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 60
        k.delete_channel(ChannelARN=arn)
        deadline = time.monotonic() + 60
        while k.list_channels()["ChannelSummaries"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(ClientError) as err:
            k.describe_channel(ChannelARN=arn)
        assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
        k.delete_stream(StreamName="s")
