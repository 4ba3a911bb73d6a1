"""UpdateMaxRecordSize, UpdateStreamWarmThroughput and UpdateStreamRecordDistributionStrategy
(engine/stream_settings.py)."""

from __future__ import annotations

from ...engine import Engine
from ._registry import Params, Response, action


@action("UpdateMaxRecordSize")
async def update_max_record_size(engine: Engine, p: Params) -> Response:
    await engine.update_max_record_size(p["MaxRecordSizeInKiB"], stream_arn=p.get("StreamARN"))
    return {}


@action("UpdateStreamWarmThroughput")
async def update_stream_warm_throughput(engine: Engine, p: Params) -> Response:
    w = await engine.update_stream_warm_throughput(
        p["WarmThroughputMiBps"], stream_name=p.get("StreamName"), stream_arn=p.get("StreamARN")
    )
    return {
        "StreamARN": w.stream_arn,
        "StreamName": w.stream_name,
        "WarmThroughput": {"TargetMiBps": w.target_mibps, "CurrentMiBps": w.current_mibps},
    }


@action("UpdateStreamRecordDistributionStrategy")
async def update_stream_record_distribution_strategy(engine: Engine, p: Params) -> Response:
    await engine.update_stream_record_distribution_strategy(p["StreamARN"], p["RecordDistributionStrategy"])
    return {}
