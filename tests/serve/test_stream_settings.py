"""UpdateMaxRecordSize, UpdateStreamWarmThroughput and UpdateStreamRecordDistributionStrategy (and the same fields of
CreateStream) through boto3 and a real `shardline serve`, kept across a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from _shardline import kinesis, shardline

MIB = 1024 * 1024


def _error(call: Any, **kw: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kw)
    return dict(err.value.response["Error"])


def _summary(k: Any, name: str) -> dict[str, Any]:
    return dict(k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"])


def _args(tmp_path: Path, *more: str) -> list[str]:
    return ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never", *more]


def test_a_5_mib_record_after_update_max_record_size(tmp_path: Path) -> None:
    big = bytes(range(256)) * (5 * MIB // 256)
    with shardline(*_args(tmp_path)) as running:
        k = kinesis(running.url)
        k.create_stream(StreamName="s", ShardCount=1)
        arn = _summary(k, "s")["StreamARN"]
        assert _summary(k, "s")["MaxRecordSizeInKiB"] == 1024
        assert _error(k.put_record, StreamName="s", Data=big, PartitionKey="k")["Code"] == "ValidationException"
        k.update_max_record_size(StreamARN=arn, MaxRecordSizeInKiB=5 * 1024 + 1)
        assert _summary(k, "s")["MaxRecordSizeInKiB"] == 5 * 1024 + 1
        put = k.put_record(StreamName="s", Data=big, PartitionKey="k")
        # Two 4 MiB records in one PutRecords: over the 5 MiB rule, within the 10 MiB of a large-record stream.
        four = b"4" * (4 * MIB)
        r = k.put_records(
            StreamName="s", Records=[{"Data": four, "PartitionKey": "a"}, {"Data": four, "PartitionKey": "b"}]
        )
        assert r["FailedRecordCount"] == 0
        over = [{"Data": b"3" * (7 * MIB // 2), "PartitionKey": str(i)} for i in range(3)]  # 10.5 MiB
        err = _error(k.put_records, StreamName="s", Records=over)
        assert err == {"Code": "InvalidArgumentException", "Message": "Records size exceeds 10 MB limit"}
        running.proc.terminate()
        running.proc.wait(timeout=30)
    with shardline(*_args(tmp_path)) as running:
        k = kinesis(running.url)
        assert _summary(k, "s")["MaxRecordSizeInKiB"] == 5 * 1024 + 1
        it = k.get_shard_iterator(
            StreamName="s",
            ShardId=put["ShardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=put["SequenceNumber"],
        )["ShardIterator"]
        got = k.get_records(ShardIterator=it)["Records"]
        assert got[0]["Data"] == big
        k.update_max_record_size(StreamARN=arn, MaxRecordSizeInKiB=1024)
        assert _error(k.put_record, StreamName="s", Data=big, PartitionKey="k")["Code"] == "ValidationException"


def test_setting_validation_over_the_wire(tmp_path: Path) -> None:
    with shardline(*_args(tmp_path)) as running:
        k = kinesis(running.url, parameter_validation=False)
        k.create_stream(StreamName="s", ShardCount=1)
        arn = _summary(k, "s")["StreamARN"]
        assert _error(k.update_max_record_size, StreamARN=arn, MaxRecordSizeInKiB=1023) == {
            "Code": "ValidationException",
            "Message": "1 validation error detected: Value '1023' at 'maxRecordSizeInKiB' failed to satisfy "
            "constraint: Member must have value greater than or equal to 1024",
        }
        err = _error(k.update_max_record_size, StreamARN=arn, MaxRecordSizeInKiB=10241)
        assert err["Code"] == "ValidationException"
        assert "Member must have value less than or equal to 10240" in err["Message"]
        err = _error(k.update_max_record_size, StreamARN=arn.replace("stream/s", "stream/t"), MaxRecordSizeInKiB=2048)
        assert err["Code"] == "ResourceNotFoundException"
        err = _error(k.update_stream_record_distribution_strategy, StreamARN=arn, RecordDistributionStrategy="AUTO")
        assert err["Code"] == "InvalidArgumentException"
        assert "only supported for streams in ON_DEMAND mode" in err["Message"]
        err = _error(k.update_stream_record_distribution_strategy, StreamARN=arn, RecordDistributionStrategy="X")
        assert err["Code"] == "ValidationException"
        k.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        err = _error(k.update_stream_warm_throughput, StreamName="od", WarmThroughputMiBps=10)
        assert err["Code"] == "InvalidArgumentException"
        assert "MinimumThroughputBillingCommitment" in err["Message"]
        k.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})
        err = _error(k.update_stream_warm_throughput, StreamName="s", WarmThroughputMiBps=10)
        assert err["Code"] == "InvalidArgumentException"
        err = _error(k.update_stream_warm_throughput, StreamName="od", WarmThroughputMiBps=10241)
        assert err["Code"] == "LimitExceededException"
        err = _error(k.update_stream_warm_throughput, StreamName="od", WarmThroughputMiBps=-1)
        assert err["Code"] == "ValidationException"
        err = _error(k.create_stream, StreamName="p", ShardCount=1, MaxRecordSizeInKiB=99999)
        assert err["Code"] == "ValidationException"


def _wait_active(k: Any, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        s = _summary(k, name)
        if s["StreamStatus"] == "ACTIVE" or time.monotonic() > deadline:
            return s
        time.sleep(0.05)


def test_warm_throughput_and_auto_distribution(tmp_path: Path) -> None:
    args = _args(tmp_path, "--updating-delay", "0.5")
    with shardline(*args) as running:
        k = kinesis(running.url)
        k.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})
        k.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"}, WarmThroughputMiBps=20)
        s = _summary(k, "od")
        assert s["WarmThroughput"] == {"TargetMiBps": 20, "CurrentMiBps": 20}
        assert s["RecordDistributionStrategy"] == "USER_PARTITION_KEY"
        r = k.update_stream_warm_throughput(StreamARN=s["StreamARN"], WarmThroughputMiBps=300)
        assert r == {
            "StreamARN": s["StreamARN"],
            "StreamName": "od",
            "WarmThroughput": {"TargetMiBps": 300, "CurrentMiBps": 20},
            "ResponseMetadata": r["ResponseMetadata"],
        }
        assert _summary(k, "od")["StreamStatus"] == "UPDATING"
        s = _wait_active(k, "od")
        assert (s["StreamStatus"], s["WarmThroughput"]) == ("ACTIVE", {"TargetMiBps": 300, "CurrentMiBps": 300})
        k.update_stream_record_distribution_strategy(StreamARN=s["StreamARN"], RecordDistributionStrategy="AUTO")
        shards = {k.put_record(StreamName="od", Data=b"x", PartitionKey="same")["ShardId"] for _ in range(8)}
        assert len(shards) == s["OpenShardCount"] > 1
        # Without a partition key (optional on an AUTO stream), read back without one.
        put = k.put_record(StreamName="od", Data=b"keyless")
        assert k.put_records(StreamName="od", Records=[{"Data": b"a"}, {"Data": b"b"}])["FailedRecordCount"] == 0
        it = k.get_shard_iterator(
            StreamName="od",
            ShardId=put["ShardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=put["SequenceNumber"],
        )["ShardIterator"]
        rec = k.get_records(ShardIterator=it, Limit=1)["Records"][0]
        assert rec["Data"] == b"keyless"
        assert "PartitionKey" not in rec
        running.proc.terminate()
        running.proc.wait(timeout=30)
    with shardline(*args) as running:
        k = kinesis(running.url)
        s = _summary(k, "od")
        assert s["WarmThroughput"] == {"TargetMiBps": 300, "CurrentMiBps": 300}
        assert s["RecordDistributionStrategy"] == "AUTO"
