"""On-failure destinations and the Lambda on-failure record.

The record holds pointers, not data: the shard and the first and last sequence numbers of the discarded records
(``KinesisBatchInfo``). ``shardline redrive`` follows those pointers while the stream still retains the records.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..engine import Engine
from ..models import Record

__all__ = [
    "Destination",
    "FileDestination",
    "SnsDestination",
    "SqsDestination",
    "StreamDestination",
    "failure_record",
    "iso_ms",
    "local_stream_for",
]

log = logging.getLogger("shardline.runtime")


def iso_ms(ms: int) -> str:
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def failure_record(
    *,
    condition: str,
    function_arn: str,
    request_id: str | None,
    invoke_count: int,
    function_error: str | None,
    responded: bool,
    shard_id: str,
    stream_arn: str,
    records: list[Record],
    now_ms: int,
) -> dict[str, Any]:
    """The message Lambda sends to an on-failure destination for discarded stream records."""
    msg: dict[str, Any] = {
        "requestContext": {
            "requestId": request_id or str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": max(1, invoke_count),
        }
    }
    # AWS leaves responseContext out when the records aged out (observed); otherwise it describes the last invoke.
    if condition != "RecordAgeExceeded" and responded:
        msg["responseContext"] = {"statusCode": 200, "executedVersion": "$LATEST", "functionError": function_error}
    msg["version"] = "1.0"
    msg["timestamp"] = iso_ms(now_ms)
    msg["KinesisBatchInfo"] = {
        "shardId": shard_id,
        "startSequenceNumber": records[0].sequence_number,
        "endSequenceNumber": records[-1].sequence_number,
        "approximateArrivalOfFirstRecord": iso_ms(records[0].approximate_arrival_ms),
        "approximateArrivalOfLastRecord": iso_ms(records[-1].approximate_arrival_ms),
        "batchSize": len(records),
        "streamArn": stream_arn,
    }
    return msg


class Destination(Protocol):
    description: str

    async def send(self, message: dict[str, Any]) -> None: ...


class FileDestination:
    """Appends one JSON line per message and fsyncs it before the checkpoint may move past the records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file {path}"
        path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def send(self, message: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write, orjson.dumps(message) + b"\n")


class _StreamPut:
    """Puts each message as one record on a stream (partition key: the source shard id); ``_put`` sends it."""

    def __init__(self, stream_name: str) -> None:
        self.stream_name = stream_name
        self.description = f"stream {stream_name}"

    async def send(self, message: dict[str, Any]) -> None:
        await self._put(orjson.dumps(message), str(message["KinesisBatchInfo"]["shardId"]))

    async def _put(self, data: bytes, partition_key: str) -> None:
        raise NotImplementedError


class StreamDestination(_StreamPut):
    """On a shardline stream of the embedded engine."""

    def __init__(self, engine: Engine, stream_name: str) -> None:
        super().__init__(stream_name)
        self.engine = engine

    async def _put(self, data: bytes, partition_key: str) -> None:
        await self.engine.put_record(stream_name=self.stream_name, data=data, partition_key=partition_key)


class KinesisStreamDestination(_StreamPut):
    """On any Kinesis endpoint through boto3."""

    def __init__(self, client: Any, stream_name: str) -> None:
        super().__init__(stream_name)
        self.client = client

    async def _put(self, data: bytes, partition_key: str) -> None:
        await asyncio.to_thread(
            self.client.put_record, StreamName=self.stream_name, Data=data, PartitionKey=partition_key
        )


def local_stream_for(arn: str) -> str:
    """The stream the embedded engine keeps an SQS queue's or SNS topic's on-failure records in: the queue's or
    topic's name (``arn:aws:sqs:us-east-1:123456789012:orders-dlq`` -> ``orders-dlq``; a FIFO queue loses
    ``.fifo``'s dot, which a stream name allows, so it is kept)."""
    return arn.rsplit(":", 1)[-1][:128]


class SqsDestination:
    """Sends each message to an SQS queue (the body is the on-failure record's JSON), as Lambda does."""

    def __init__(self, client: Any, arn: str) -> None:
        self.client = client
        self.arn = arn
        self.description = f"SQS queue {arn}"
        self._url: str | None = None

    def _send(self, body: str) -> None:
        if self._url is None:
            parts = self.arn.split(":")
            self._url = self.client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        kwargs: dict[str, Any] = {"QueueUrl": self._url, "MessageBody": body}
        if self.arn.endswith(".fifo"):
            kwargs["MessageGroupId"] = "shardline"
            kwargs["MessageDeduplicationId"] = str(uuid.uuid4())
        self.client.send_message(**kwargs)

    async def send(self, message: dict[str, Any]) -> None:
        await asyncio.to_thread(self._send, orjson.dumps(message).decode())


class SnsDestination:
    """Publishes each message to an SNS topic (the message is the on-failure record's JSON), as Lambda does."""

    def __init__(self, client: Any, arn: str) -> None:
        self.client = client
        self.arn = arn
        self.description = f"SNS topic {arn}"

    async def send(self, message: dict[str, Any]) -> None:
        await asyncio.to_thread(self.client.publish, TopicArn=self.arn, Message=orjson.dumps(message).decode())
