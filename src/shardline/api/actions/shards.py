"""Shards: ListShards, SplitShard, MergeShards, UpdateShardCount."""

from __future__ import annotations

from ...engine import Engine
from ._registry import Params, Response, action, shard_out, stream_ref, with_stream


@action("ListShards")
async def list_shards(engine: Engine, p: Params) -> Response:
    f = p.get("ShardFilter") or {}
    r = await engine.list_shards(
        p.get("StreamName"),
        stream_arn=p.get("StreamARN"),
        next_token=p.get("NextToken"),
        exclusive_start_shard_id=p.get("ExclusiveStartShardId"),
        max_results=p.get("MaxResults"),
        stream_creation_timestamp_ms=p.get("StreamCreationTimestamp"),
        shard_filter_type=f.get("Type"),
        shard_filter_shard_id=f.get("ShardId"),
        shard_filter_timestamp_ms=f.get("Timestamp"),
    )
    out: Response = {"Shards": [shard_out(s) for s in r.shards]}
    if r.next_token:
        out["NextToken"] = r.next_token
    return out


@action("SplitShard")
async def split_shard(engine: Engine, p: Params) -> Response:
    await engine.split_shard(
        shard_to_split=p["ShardToSplit"], new_starting_hash_key=p["NewStartingHashKey"], **stream_ref(p)
    )
    return {}


@action("MergeShards")
async def merge_shards(engine: Engine, p: Params) -> Response:
    await engine.merge_shards(
        shard_to_merge=p["ShardToMerge"], adjacent_shard_to_merge=p["AdjacentShardToMerge"], **stream_ref(p)
    )
    return {}


@action("UpdateShardCount")
async def update_shard_count(engine: Engine, p: Params) -> Response:
    current, target = await engine.update_shard_count(
        target_shard_count=p["TargetShardCount"], scaling_type=p["ScalingType"], **stream_ref(p)
    )
    return await with_stream(engine, p, {"CurrentShardCount": current, "TargetShardCount": target})
