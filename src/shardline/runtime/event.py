"""The Lambda Kinesis event, byte for byte, and its size accounting.

Each record is serialized once; a batch is the records joined, so the payload size of any candidate batch is known
exactly before it is built (the 6 MiB synchronous-invocation limit).
"""

from __future__ import annotations

import binascii
import datetime as dt
from typing import Any

import orjson

from ..models import Record

__all__ = ["MAX_PAYLOAD_BYTES", "EventContext", "encode_event", "iso_seconds", "record_json"]

# AWS documents 6 MB for a synchronous invocation payload; read as binary.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_HEAD = b'{"Records":['
_TAIL = b"]}"
EMPTY_EVENT_BYTES = len(_HEAD) + len(_TAIL)


class EventContext:
    """The per-mapping constant fields of every record."""

    __slots__ = ("region", "role_arn", "shard_id", "stream_arn")

    def __init__(self, *, region: str, stream_arn: str, role_arn: str, shard_id: str) -> None:
        self.region = region
        self.stream_arn = stream_arn
        self.role_arn = role_arn
        self.shard_id = shard_id


def record_json(ctx: EventContext, rec: Record) -> bytes:
    return orjson.dumps(
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": rec.partition_key,
                "sequenceNumber": rec.sequence_number,
                "data": binascii.b2a_base64(rec.data, newline=False).decode("ascii"),
                "approximateArrivalTimestamp": rec.approximate_arrival_ms / 1000,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{ctx.shard_id}:{rec.sequence_number}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": ctx.role_arn,
            "awsRegion": ctx.region,
            "eventSourceARN": ctx.stream_arn,
        }
    )


def encode_event(records: list[bytes], extra: dict[str, Any] | None = None) -> bytes:
    """``{"Records":[...]}`` plus, for tumbling windows, the extra top-level fields."""
    body = _HEAD + b",".join(records) + b"]"
    if extra:
        body += b"," + orjson.dumps(extra)[1:-1]
    return body + b"}"


def iso_seconds(ms: int) -> str:
    """A tumbling window bound as Lambda writes it: whole seconds, ``2020-12-09T07:04:00Z``. Windows are whole
    seconds long and aligned to the epoch, so nothing is cut off."""
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def batch_bytes(record_sizes_sum: int, count: int) -> int:
    """Exact size of ``encode_event`` for records whose serialized sizes add up to ``record_sizes_sum``."""
    return EMPTY_EVENT_BYTES + record_sizes_sum + max(0, count - 1)
