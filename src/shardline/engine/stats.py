"""Counters the engine keeps for monitoring (CloudWatch's AWS/Kinesis metrics). Plain integers bumped on the hot
paths; the metrics layer samples them, the engine never pushes anywhere."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS_MS", "Histogram", "ShardCounters", "StreamCounters"]

LATENCY_BUCKETS_MS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)


@dataclass(slots=True)
class Histogram:
    """Cumulative-friendly fixed buckets (upper bounds in ms) plus an overflow bucket, a count and a sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    total: int = 0
    sum_ms: float = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.total += 1
        self.sum_ms += ms


@dataclass(slots=True)
class ShardCounters:
    incoming_records: int = 0
    incoming_bytes: int = 0
    write_throttled_records: int = 0
    outgoing_records: int = 0
    outgoing_bytes: int = 0
    get_records_calls: int = 0
    read_throttled_calls: int = 0
    iterator_age_ms: int = 0  # MillisBehindLatest of the latest GetRecords on this shard
    last_read_ms: int = -1


@dataclass(slots=True)
class StreamCounters:
    put_record_calls: int = 0
    put_records_calls: int = 0
    put_records_failed_records: int = 0
    put_errors: int = 0  # both APIs; the two below split it
    put_record_errors: int = 0
    put_records_errors: int = 0
    put_record_throttled: int = 0  # PutRecord calls refused for throughput
    put_records_throttled_records: int = 0  # PutRecords entries refused for throughput
    get_records_errors: int = 0
    last_incoming_ms: int = -1
    put_latency: Histogram = field(default_factory=Histogram)
    get_latency: Histogram = field(default_factory=Histogram)
