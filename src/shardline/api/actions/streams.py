"""Stream lifecycle and settings: create, delete, describe, list, retention, mode, monitoring, encryption, tags."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ...engine import Engine
from ...errors import ResourceNotFoundException
from ...models import StreamMode
from ..shapes import Timestamp
from ._registry import Params, Response, action, mode_out, shard_out, stream_ref, with_stream


@action("CreateStream")
async def create_stream(engine: Engine, p: Params) -> Response:
    mode = p.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
    await engine.create_stream(
        p["StreamName"],
        p.get("ShardCount"),
        stream_mode=mode,
        tags=p.get("Tags"),
        max_record_size_kib=p.get("MaxRecordSizeInKiB"),
        warm_throughput_mibps=p.get("WarmThroughputMiBps"),
        record_distribution_strategy=p.get("RecordDistributionStrategy"),
    )
    return {}


@action("DeleteStream")
async def delete_stream(engine: Engine, p: Params) -> Response:
    await engine.delete_stream(
        p.get("StreamName"),
        stream_arn=p.get("StreamARN"),
        enforce_consumer_deletion=bool(p.get("EnforceConsumerDeletion", False)),
    )
    return {}


def _monitoring(metrics: tuple[str, ...]) -> list[Response]:
    return [{"ShardLevelMetrics": list(metrics)}]


@action("DescribeStream")
async def describe_stream(engine: Engine, p: Params) -> Response:
    d = await engine.describe_stream(
        p.get("StreamName"),
        stream_arn=p.get("StreamARN"),
        limit=p.get("Limit", 100),
        exclusive_start_shard_id=p.get("ExclusiveStartShardId"),
    )
    out: Response = {
        "StreamName": d.stream_name,
        "StreamARN": d.stream_arn,
        "StreamStatus": d.stream_status.value,
        "StreamModeDetails": mode_out(d.stream_mode),
        "Shards": [shard_out(s) for s in d.shards],
        "HasMoreShards": d.has_more_shards,
        "RetentionPeriodHours": d.retention_period_hours,
        "StreamCreationTimestamp": Timestamp(d.stream_creation_timestamp_ms),
        "EnhancedMonitoring": _monitoring(d.shard_level_metrics),
        "EncryptionType": d.encryption_type,
    }
    if d.key_id:
        out["KeyId"] = d.key_id
    return {"StreamDescription": out}


@action("DescribeStreamSummary")
async def describe_stream_summary(engine: Engine, p: Params) -> Response:
    d = await engine.describe_stream_summary(p.get("StreamName"), stream_arn=p.get("StreamARN"))
    # Never a StreamId: botocore routes requests that carry one to the real AWS endpoint.
    out: Response = {
        "StreamName": d.stream_name,
        "StreamARN": d.stream_arn,
        "StreamStatus": d.stream_status.value,
        "StreamModeDetails": mode_out(d.stream_mode),
        "RetentionPeriodHours": d.retention_period_hours,
        "StreamCreationTimestamp": Timestamp(d.stream_creation_timestamp_ms),
        "EnhancedMonitoring": _monitoring(d.shard_level_metrics),
        "EncryptionType": d.encryption_type,
        "OpenShardCount": d.open_shard_count,
        "ConsumerCount": d.consumer_count,
        "MaxRecordSizeInKiB": d.max_record_size_kib,
    }
    if d.stream_mode is StreamMode.ON_DEMAND:  # (the strategy is a setting of on-demand streams only)
        out["RecordDistributionStrategy"] = d.record_distribution_strategy
    if d.warm_throughput is not None:
        out["WarmThroughput"] = {"TargetMiBps": d.warm_throughput[0], "CurrentMiBps": d.warm_throughput[1]}
    if d.key_id:
        out["KeyId"] = d.key_id
    return {"StreamDescriptionSummary": out}


@action("ListStreams")
async def list_streams(engine: Engine, p: Params) -> Response:
    r = await engine.list_streams(
        limit=p.get("Limit", 100),
        exclusive_start_stream_name=p.get("ExclusiveStartStreamName"),
        next_token=p.get("NextToken"),
    )
    out: Response = {
        "StreamNames": r.stream_names,
        "HasMoreStreams": r.has_more_streams,
        "StreamSummaries": [
            {
                "StreamName": s.stream_name,
                "StreamARN": s.stream_arn,
                "StreamStatus": s.stream_status.value,
                "StreamModeDetails": mode_out(s.stream_mode),
                "StreamCreationTimestamp": Timestamp(s.stream_creation_timestamp_ms),
            }
            for s in r.stream_summaries
        ],
    }
    if r.next_token:
        out["NextToken"] = r.next_token
    return out


@action("DescribeLimits")
async def describe_limits(engine: Engine, p: Params) -> Response:
    lim = await engine.describe_limits()
    return {
        "ShardLimit": lim.shard_limit,
        "OpenShardCount": lim.open_shard_count,
        "OnDemandStreamCount": lim.on_demand_stream_count,
        "OnDemandStreamCountLimit": lim.on_demand_stream_count_limit,
    }


@action("UpdateStreamMode")
async def update_stream_mode(engine: Engine, p: Params) -> Response:
    await engine.update_stream_mode(p["StreamARN"], p["StreamModeDetails"]["StreamMode"])
    return {}


async def _monitoring_change(engine: Engine, p: Params, *, enable: bool) -> Response:
    fn = engine.enable_enhanced_monitoring if enable else engine.disable_enhanced_monitoring
    current, desired = await fn(p["ShardLevelMetrics"], **stream_ref(p))
    return await with_stream(engine, p, {"CurrentShardLevelMetrics": current, "DesiredShardLevelMetrics": desired})


@action("EnableEnhancedMonitoring")
async def enable_monitoring(engine: Engine, p: Params) -> Response:
    return await _monitoring_change(engine, p, enable=True)


@action("DisableEnhancedMonitoring")
async def disable_monitoring(engine: Engine, p: Params) -> Response:
    return await _monitoring_change(engine, p, enable=False)


def _stream_change(name: str, method: Callable[..., Awaitable[None]], members: tuple[str, ...]) -> None:
    """Register an action that passes ``members`` and the stream to the engine ``method`` and answers nothing."""

    async def change(engine: Engine, p: Params) -> Response:
        await method(engine, *(p[k] for k in members), **stream_ref(p))
        return {}

    action(name)(change)


for _name, _method, _members in (
    ("IncreaseStreamRetentionPeriod", Engine.increase_stream_retention_period, ("RetentionPeriodHours",)),
    ("DecreaseStreamRetentionPeriod", Engine.decrease_stream_retention_period, ("RetentionPeriodHours",)),
    ("StartStreamEncryption", Engine.start_stream_encryption, ("EncryptionType", "KeyId")),
    ("StopStreamEncryption", Engine.stop_stream_encryption, ("EncryptionType", "KeyId")),
    ("AddTagsToStream", Engine.add_tags_to_stream, ("Tags",)),
    ("RemoveTagsFromStream", Engine.remove_tags_from_stream, ("TagKeys",)),
):
    _stream_change(_name, _method, _members)


@action("ListTagsForStream")
async def list_tags(engine: Engine, p: Params) -> Response:
    tags, more = await engine.list_tags_for_stream(
        **stream_ref(p), exclusive_start_tag_key=p.get("ExclusiveStartTagKey"), limit=p.get("Limit", 50)
    )
    return {"Tags": [{"Key": t.key, "Value": t.value or ""} for t in tags], "HasMoreTags": more}


def _resource_stream(arn: str) -> str:
    if "/consumer/" in arn:
        raise ResourceNotFoundException(f"Tagging consumers is not supported: {arn}")
    return arn


@action("TagResource")
async def tag_resource(engine: Engine, p: Params) -> Response:
    await engine.add_tags_to_stream(p["Tags"], stream_arn=_resource_stream(p["ResourceARN"]))
    return {}


@action("UntagResource")
async def untag_resource(engine: Engine, p: Params) -> Response:
    await engine.remove_tags_from_stream(p["TagKeys"], stream_arn=_resource_stream(p["ResourceARN"]))
    return {}


@action("ListTagsForResource")
async def list_tags_for_resource(engine: Engine, p: Params) -> Response:
    tags, _ = await engine.list_tags_for_stream(stream_arn=_resource_stream(p["ResourceARN"]))
    return {"Tags": [{"Key": t.key, "Value": t.value or ""} for t in tags]}
