"""Giving up on records: their on-failure record is stored before they settle (spec §3.6).

The on-failure record is the only pointer to the discarded data, so while the destination refuses it the shard waits
(retrying with capped, jittered backoff) and keeps its checkpoint before the records. Delivery is at least once:
after a stop or a crash between the store and the checkpoint, the batch is processed again and its on-failure
record may be stored twice.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..models import Record
from .destinations import failure_record
from .functions import InvocationResult
from .stats import ShardStats

if TYPE_CHECKING:
    from .context import MappingContext

__all__ = ["discard"]

log = logging.getLogger("shardline.runtime")


async def discard(
    ctx: MappingContext,
    shard_id: str,
    stats: ShardStats,
    sleep: Callable[[float], Awaitable[None]],
    records: list[Record],
    *,
    condition: str,
    attempts: int,
    last: InvocationResult | None,
    function_error: str | None,
) -> bool:
    """Store the on-failure record of ``records`` (when the mapping has a destination) and count them discarded.
    False when the mapping stopped before the record was stored: the caller leaves them unsettled, so a restart
    processes them again."""
    log.warning(
        "mapping %s %s: discarding %d records %s..%s (%s after %d invocations)",
        ctx.config.uuid,
        shard_id,
        len(records),
        records[0].sequence_number,
        records[-1].sequence_number,
        condition,
        attempts,
    )
    message = failure_record(
        condition=condition,
        function_arn=ctx.function_arn,
        request_id=last.request_id if last else None,
        invoke_count=attempts,
        function_error=function_error,
        responded=last is not None,
        shard_id=shard_id,
        stream_arn=ctx.source.stream_arn,
        records=records,
        now_ms=ctx.clock.now_ms(),
    )
    if ctx.destination is not None and not await _deliver(
        ctx, shard_id, stats, sleep, message=message, count=len(records)
    ):
        return False
    stats.discarded += len(records)
    ctx.recent_failures.append(message)
    return True


async def _deliver(
    ctx: MappingContext,
    shard_id: str,
    stats: ShardStats,
    sleep: Callable[[float], Awaitable[None]],
    *,
    message: dict[str, Any],
    count: int,
) -> bool:
    """Store the on-failure record, retrying for as long as the destination refuses it: the wait doubles from the
    service-error backoff up to its cap (a minute by default), jittered to between half and all of it. False when
    the mapping stops first."""
    destination = ctx.destination
    assert destination is not None
    delay = ctx.tuning.throttle_backoff_s
    failures = 0
    stats.destination_pending += count
    try:
        while ctx.running():
            try:
                await destination.send(message)
            except Exception as exc:  # any outage: the record must be stored before the shard moves on
                failures += 1
                stats.destination_failures += 1
                stats.last_result = f"PROBLEM: on-failure destination {destination.description} failed"
                log.error(
                    "mapping %s %s: storing the on-failure record of %s..%s in %s failed (attempt %d; the shard "
                    "waits and retries): %s",
                    ctx.config.uuid,
                    shard_id,
                    message["KinesisBatchInfo"]["startSequenceNumber"],
                    message["KinesisBatchInfo"]["endSequenceNumber"],
                    destination.description,
                    failures,
                    exc,
                )
                await sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, ctx.tuning.throttle_backoff_max_s)
                continue
            stats.dead_lettered += count
            if failures:
                log.warning(
                    "mapping %s %s: on-failure record stored in %s after %d failed attempts",
                    ctx.config.uuid,
                    shard_id,
                    destination.description,
                    failures,
                )
            return True
        return False
    finally:
        stats.destination_pending -= count
