"""What one shard processor counts; the mapping sums the counters over its shards, and monitoring reads both."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..models import NO_RECORDS_PROCESSED

__all__ = ["COUNTERS", "NO_RESULT", "ShardStats"]

NO_RESULT = NO_RECORDS_PROCESSED  # Lambda's LastProcessingResult before the first batch


def _counter() -> Any:
    return field(default=0, metadata={"counter": True})


@dataclass
class ShardStats:
    """Counters (summed over shards, finished ones included) and gauges (the shard's latest state)."""

    polled: int = _counter()
    filtered_out: int = _counter()
    invoked_records: int = _counter()
    invocations: int = _counter()
    function_errors: int = _counter()
    throttles: int = _counter()
    succeeded: int = _counter()
    discarded: int = _counter()
    dead_lettered: int = _counter()
    destination_failures: int = _counter()  # failed attempts to store an on-failure record (each is retried)
    destination_pending: int = 0  # records held until the destination accepts their on-failure record
    batch_sizes: list[int] = field(default_factory=list)
    iterator_age_ms: int = 0  # Lambda IteratorAge: age of the last record of the latest invoked batch
    millis_behind: int = 0  # MillisBehindLatest of the latest GetRecords
    lag_records: int | None = None  # records between the checkpoint and the tip (when the source can tell)
    outstanding: int = 0  # records fetched and not settled yet: batched, in flight, retried, or waiting their turn
    checkpoint_moved_ms: int = 0  # when the checkpoint last advanced (a stuck shard stops moving it)
    last_result: str = NO_RESULT


# The counters a mapping sums over its shards, in declaration order.
COUNTERS = tuple(f.name for f in fields(ShardStats) if f.metadata.get("counter"))
