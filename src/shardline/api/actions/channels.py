"""Kinesis channels (engine/channels.py keeps them; they deliver nothing here): create, describe, list, update,
delete."""

from __future__ import annotations

from typing import Any

from ...engine import ChannelInfo, Engine
from ..shapes import Timestamp
from ._registry import Params, Response, action, attached_actions, attached_out, stream_out

DATA_FRESHNESS_S = 300  # (documented default)
ERROR_PREFIX = "error/"  # AWS documents "the destination bucket with an error prefix", not the prefix: shardline's


def _s3_with_defaults(s3: dict[str, Any]) -> dict[str, Any]:
    """An S3 destination as DescribeChannel shows it: the documented defaults filled in."""
    out = {"DataFreshnessInSeconds": DATA_FRESHNESS_S} | s3
    if "DeadLetterQueueS3Configuration" not in out:
        storage = s3["StorageConfiguration"]
        out["DeadLetterQueueS3Configuration"] = {
            "BucketARN": storage["BucketARN"],
            "ExpectedBucketOwner": storage["ExpectedBucketOwner"],
            "ErrorOutputPrefix": ERROR_PREFIX,
        }
    return out


def _description(c: ChannelInfo) -> Response:
    out: Response = {
        **_head(c),
        "ServiceExecutionRoleARN": c.role_arn,
        "StreamConfigurationList": [
            {
                "StreamARN": c.stream_arn,
                "StreamCreationTimestamp": Timestamp(c.stream_created_ms),
                "RecordConfiguration": c.record_configuration,
            }
        ],
        "LoggingConfiguration": c.logging,
    }
    key = "S3DestinationConfiguration" if c.destination_type == "S3" else "S3TablesDestinationConfiguration"
    out[key] = c.destination
    if c.encryption is not None:
        out["EncryptionConfiguration"] = c.encryption
    return out


@action("CreateChannel")
async def create_channel(engine: Engine, p: Params) -> Response:
    s3 = p.get("S3DestinationConfiguration")
    tables = p.get("S3TablesDestinationConfiguration")
    c = await engine.create_channel(
        p["ChannelName"],
        p["ServiceExecutionRoleARN"],
        [(s["StreamARN"], s["RecordConfiguration"]) for s in p["StreamConfigurationList"]],
        s3=None if s3 is None else _s3_with_defaults(s3),
        s3_tables=None if tables is None else {"DataFreshnessInSeconds": DATA_FRESHNESS_S} | tables,
        encryption=p.get("EncryptionConfiguration"),
        logging_config=p.get("LoggingConfiguration"),
        tags=p.get("Tags"),
    )
    return {"ChannelDescription": _description(c)}


def _summary(c: ChannelInfo) -> Response:
    return {
        **_head(c),
        "ChannelDestinationType": c.destination_type,
        "Streams": [stream_out(c.stream_arn, c.stream_created_ms)],
    }


def _head(c: ChannelInfo) -> Response:
    return {**attached_out("Channel", c.name, c.channel_arn, c.status, c.created_ms), "ChannelId": c.channel_id}


@action("UpdateChannel")
async def update_channel(engine: Engine, p: Params) -> Response:
    c = await engine.update_channel(
        p["ChannelARN"],
        s3=p.get("S3DestinationConfiguration"),
        s3_tables=p.get("S3TablesDestinationConfiguration"),
        logging_config=p.get("LoggingConfiguration"),
    )
    return {"ChannelDescription": _description(c)}


attached_actions("Channel", _description, _summary)
