"""The rest of the control plane through the Java SDK v2 sync client with its defaults (CBOR), and throughput
limits: the SDK's view of every answer shardline gives to the calls it makes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from _shardline import shardline

from ._java import JavaKinesis, JavaServiceError, java_kinesis
from .test_client import CBOR, make_stream, records_of


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's server applies Kinesis's per-shard throughput limits."""
    data = tmp_path_factory.mktemp("data")
    with shardline("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never", "--enforce-limits") as running:
        yield running.url


@pytest.fixture(scope="module")
def java(endpoint: str) -> Iterator[JavaKinesis]:
    """The sync client only: the async one makes the same calls through the same marshallers (test_client.py)."""
    with java_kinesis(endpoint, "sync") as client:
        yield client


def test_describe_limits(java: JavaKinesis) -> None:
    limits = java.call("DescribeLimits")
    assert java.last_wire == CBOR
    assert limits["ShardLimit"] == 500
    assert limits["OnDemandStreamCountLimit"] == 50
    assert limits["OpenShardCount"] >= 0
    assert limits["OnDemandStreamCount"] >= 0


def test_shard_count_and_stream_mode(java: JavaKinesis) -> None:
    make_stream(java, "scaled", shards=2)
    updated = java.call("UpdateShardCount", StreamName="scaled", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert (updated["StreamName"], updated["CurrentShardCount"], updated["TargetShardCount"]) == ("scaled", 2, 4)
    java.call("waitUntilStreamExists", StreamName="scaled")
    assert java.call("DescribeStreamSummary", StreamName="scaled")["StreamDescriptionSummary"]["OpenShardCount"] == 4

    arn = java.call("DescribeStreamSummary", StreamName="scaled")["StreamDescriptionSummary"]["StreamARN"]
    java.call("UpdateStreamMode", StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    java.call("waitUntilStreamExists", StreamName="scaled")
    summary = java.call("DescribeStreamSummary", StreamName="scaled")["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}


def test_enhanced_monitoring(java: JavaKinesis) -> None:
    make_stream(java, "monitored")
    on = java.call(
        "EnableEnhancedMonitoring", StreamName="monitored", ShardLevelMetrics=["IncomingBytes", "OutgoingBytes"]
    )
    assert on["CurrentShardLevelMetrics"] == []
    assert sorted(on["DesiredShardLevelMetrics"]) == ["IncomingBytes", "OutgoingBytes"]
    off = java.call("DisableEnhancedMonitoring", StreamName="monitored", ShardLevelMetrics=["OutgoingBytes"])
    assert off["DesiredShardLevelMetrics"] == ["IncomingBytes"]
    summary = java.call("DescribeStreamSummary", StreamName="monitored")["StreamDescriptionSummary"]
    assert summary["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["IncomingBytes"]}]


def test_encryption_marks_records(java: JavaKinesis) -> None:
    make_stream(java, "sealed")
    java.call("PutRecord", StreamName="sealed", PartitionKey="p", Data=b"plain")
    java.call("StartStreamEncryption", StreamName="sealed", EncryptionType="KMS", KeyId="alias/aws/kinesis")
    java.call("waitUntilStreamExists", StreamName="sealed")
    summary = java.call("DescribeStreamSummary", StreamName="sealed")["StreamDescriptionSummary"]
    assert (summary["EncryptionType"], summary["KeyId"]) == ("KMS", "alias/aws/kinesis")
    java.call("PutRecord", StreamName="sealed", PartitionKey="p", Data=b"sealed")
    got = records_of(java, "sealed", "shardId-000000000000")["Records"]
    assert [r["Data"] for r in got] == [b"plain", b"sealed"]
    assert got[1]["EncryptionType"] == "KMS"
    java.call("StopStreamEncryption", StreamName="sealed", EncryptionType="KMS", KeyId="alias/aws/kinesis")
    java.call("waitUntilStreamExists", StreamName="sealed")
    assert (
        java.call("DescribeStreamSummary", StreamName="sealed")["StreamDescriptionSummary"]["EncryptionType"] == "NONE"
    )


def test_delete_stream_with_consumers(java: JavaKinesis) -> None:
    arn = make_stream(java, "doomed")["StreamARN"]
    java.call("RegisterStreamConsumer", StreamARN=arn, ConsumerName="c")
    with pytest.raises(JavaServiceError) as refused:
        java.call("DeleteStream", StreamName="doomed")
    assert refused.value.simple_name == "ResourceInUseException"
    java.call("DeleteStream", StreamName="doomed", EnforceConsumerDeletion=True)

    def gone() -> bool:
        try:
            java.call("DescribeStreamSummary", StreamName="doomed")
        except JavaServiceError as exc:
            assert exc.simple_name == "ResourceNotFoundException"
            return True
        return False

    assert wait_for(gone)


def wait_for(condition: Any, attempts: int = 600) -> bool:
    """Polls ``condition`` (each poll is a round trip through the SDK) until it holds or the attempts run out."""
    return any(condition() for _ in range(attempts))


def test_put_records_over_the_shard_limit_report_per_record_failures(java: JavaKinesis) -> None:
    make_stream(java, "throttled")
    # 2 MiB into one shard at once: past its 1 MiB/s, so part of the batch fails, each failure reported per record.
    records = [{"Data": bytes([i % 256]) * 4096, "PartitionKey": "p"} for i in range(500)]
    put = java.call("PutRecords", StreamName="throttled", Records=records)
    assert java.last_wire == CBOR
    failed = [r for r in put["Records"] if "ErrorCode" in r]
    assert put["FailedRecordCount"] == len(failed) > 0
    assert {r["ErrorCode"] for r in failed} == {"ProvisionedThroughputExceededException"}
    assert all("SequenceNumber" not in r and r["ErrorMessage"] for r in failed)
    assert all(r["ShardId"] == "shardId-000000000000" for r in put["Records"] if "ErrorCode" not in r)
