"""Kinesis queues through boto3 and a real `shardline serve`: every queue operation, its validation, long polling
woken by a put, dead-letter records, and the queue's state across a restart of the server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from _shardline import kinesis, shardline


def _wait_for(predicate: Any, what: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    e = err.value.response["Error"]
    return e["Code"], e["Message"]


def test_queue_operations_over_the_wire(tmp_path: Path) -> None:
    args = ["serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "always"]
    with shardline(*args) as running:
        k = kinesis(running.url)
        k.create_stream(StreamName="s", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        k.get_waiter("stream_exists").wait(StreamName="s", WaiterConfig={"Delay": 0.1})
        stream_arn = k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamARN"]

        # Shape checks come from the model; the semantic ones from the engine.
        with pytest.raises(ClientError) as err:
            k.create_queue(QueueName="bad name", StreamConfigurationList=[{"StreamARN": stream_arn}])
        assert _error(err) == (
            "ValidationException",
            "1 validation error detected: Value 'bad name' at 'queueName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        )
        with pytest.raises(ClientError) as err:
            k.create_queue(
                QueueName="q",
                StreamConfigurationList=[{"StreamARN": stream_arn}],
                QueueAttributes={"VisibilityTimeoutSeconds": 43201},
            )
        assert _error(err)[0] == "ValidationException"
        assert "less than or equal to 43200" in _error(err)[1]

        created = k.create_queue(
            QueueName="q",
            StreamConfigurationList=[{"StreamARN": stream_arn, "StartingPosition": {"Type": "TRIM_HORIZON"}}],
            QueueAttributes={"DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 2}},
            Tags={"team": "a"},
        )["QueueDescription"]
        arn = created["QueueARN"]
        assert created["QueueName"] == "q" and created["QueueStatus"] in ("CREATING", "ACTIVE")
        assert created["QueueAttributes"] == {
            "VisibilityTimeoutSeconds": 30,
            "DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 2},
        }
        desc = _wait_for(
            lambda: (d := k.describe_queue(QueueARN=arn)["QueueDescription"])["QueueStatus"] == "ACTIVE" and d,
            "ACTIVE",
        )
        assert desc["StreamConfigurationList"][0]["StreamARN"] == stream_arn
        assert desc["StreamConfigurationList"][0]["StartingPosition"]["Type"] == "TRIM_HORIZON"
        assert "Timestamp" in desc["StreamConfigurationList"][0]["StartingPosition"]
        with pytest.raises(ClientError) as err:
            k.create_queue(QueueName="q", StreamConfigurationList=[{"StreamARN": stream_arn}])
        assert _error(err)[0] == "ResourceInUseException"

        summaries = list(k.get_paginator("list_queues").paginate(StreamFilter=[{"StreamARN": stream_arn}]))
        assert [s["QueueARN"] for page in summaries for s in page["QueueSummaries"]] == [arn]
        assert summaries[0]["QueueSummaries"][0]["Streams"][0]["StreamARN"] == stream_arn

        # Long polling: a receive that waits is answered when a record is put.
        received: list[dict[str, Any]] = []
        waiter = threading.Thread(
            target=lambda: received.extend(k.receive_queue_records(QueueARN=arn, WaitTimeSeconds=20)["QueueRecords"])
        )
        waiter.start()
        k.put_record(StreamName="s", Data=b"first", PartitionKey="a")
        waiter.join(timeout=60)
        assert [r["Data"] for r in received] == [b"first"]
        r = received[0]
        assert r["ReceiveCount"] == 1 and r["PartitionKey"] == "a" and r["RecordId"].isdigit()

        # Visibility: made visible at once, received again with a new handle.
        vis = k.update_queue_records_visibility(
            QueueARN=arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}]
        )
        assert vis == {
            "Successful": [{"ReceiptHandle": r["ReceiptHandle"]}],
            "Failed": [],
            "ResponseMetadata": vis["ResponseMetadata"],
        }
        (again,) = k.receive_queue_records(QueueARN=arn, WaitTimeSeconds=1, VisibilityTimeoutSeconds=1)["QueueRecords"]
        assert again["ReceiveCount"] == 2 and again["RecordId"] == r["RecordId"]
        acked = k.acknowledge_queue_records(
            QueueARN=arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"]}, {"ReceiptHandle": "not-a-handle"}]
        )
        assert acked["Successful"] == []
        assert [f["ErrorCode"] for f in acked["Failed"]] == ["InvalidArgumentException", "InvalidArgumentException"]

        # Received twice and left to time out: a dead-letter record.
        dead = _wait_for(
            lambda: k.receive_dead_letter_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"],
            "the dead-letter record",
        )
        assert [d["Data"] for d in dead] == [b"first"]
        assert k.receive_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"] == []
        moved = k.update_dead_letter_queue_records_visibility(
            QueueARN=arn, Entries=[{"ReceiptHandle": dead[0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}]
        )
        assert len(moved["Successful"]) == 1
        (dead2,) = k.receive_dead_letter_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"]
        restored = k.restore_dead_letter_queue_records(
            QueueARN=arn, Entries=[{"ReceiptHandle": dead2["ReceiptHandle"]}]
        )
        assert len(restored["Successful"]) == 1
        (back,) = k.receive_queue_records(QueueARN=arn, WaitTimeSeconds=1, VisibilityTimeoutSeconds=600)["QueueRecords"]
        assert back["ReceiveCount"] == 1 and back["Data"] == b"first"

        updated = k.update_queue(QueueARN=arn, QueueAttributes={"VisibilityTimeoutSeconds": 45})["QueueDescription"]
        assert updated["QueueAttributes"]["VisibilityTimeoutSeconds"] == 45
        k.put_record(StreamName="s", Data=b"second", PartitionKey="b")
        (second,) = k.receive_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"]
        assert second["Data"] == b"second"
        ack = k.acknowledge_queue_records(QueueARN=arn, Entries=[{"ReceiptHandle": second["ReceiptHandle"]}])
        assert len(ack["Successful"]) == 1
        running.proc.terminate()
        running.proc.wait(timeout=30)

    with shardline(*args) as running:
        k = kinesis(running.url)
        desc = k.describe_queue(QueueARN=arn)["QueueDescription"]
        assert desc["QueueAttributes"]["VisibilityTimeoutSeconds"] == 45
        # "first" is in flight for 600 s and "second" acknowledged: nothing to receive after the restart.
        assert k.receive_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"] == []
        ack = k.acknowledge_queue_records(QueueARN=arn, Entries=[{"ReceiptHandle": back["ReceiptHandle"]}])
        assert len(ack["Successful"]) == 1
        k.delete_queue(QueueARN=arn)
        _wait_for(lambda: not k.list_queues()["QueueSummaries"], "the queue to go")
        with pytest.raises(ClientError) as err:
            k.describe_queue(QueueARN=arn)
        assert _error(err)[0] == "ResourceNotFoundException"
