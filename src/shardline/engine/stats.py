"""Counters the engine keeps for monitoring (CloudWatch's AWS/Kinesis metrics). Plain integers bumped on the hot
paths; the metrics layer samples them, the engine never pushes anywhere."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..storage.log import LogTable

__all__ = ["LATENCY_BUCKETS_MS", "Histogram", "IncomingCounts", "ShardCounters", "StreamCounters"]

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


class IncomingCounts:
    """Records and bytes put into each shard of a stream, indexed by shard index, with nothing counted on the put
    path (its cost stays flat at 1,000 shards): a shard's record count is how far its log's next offset moved since
    counting started, its bytes how far its stage table slot's ``put_bytes`` moved."""

    __slots__ = ("bytes_base", "records_base", "table")

    def __init__(self, table: LogTable) -> None:
        self.table = table  # the stream's shard logs
        self.records_base: list[int] = []  # each log's next offset when counting started
        self.bytes_base: list[int] = []  # each slot's put bytes then

    def start(self, slot: int) -> None:
        """Count the shard at ``slot`` from zero, from its log's current next offset."""
        grow = slot + 1 - len(self.records_base)
        if grow > 0:
            self.records_base.extend([0] * grow)
            self.bytes_base.extend([0] * grow)
        self.records_base[slot] = self.table.next_offset(slot)  # (the log is attached first)
        self.bytes_base[slot] = self.table.staged.put_bytes(slot)

    def restart(self) -> None:
        """Count every shard from zero (after the journal replay at open: replayed records are not incoming)."""
        for slot in range(len(self.records_base)):
            self.start(slot)

    def records(self, slot: int) -> int:
        return self.table.next_offset(slot) - self.records_base[slot]

    def bytes(self, slot: int) -> int:
        return self.table.staged.put_bytes(slot) - self.bytes_base[slot]


@dataclass(slots=True)
class ShardCounters:
    # incoming_records / incoming_bytes (properties below) are kept by the stream's IncomingCounts, at ``slot``,
    # once the shard's log is open.
    incoming: IncomingCounts | None = None
    slot: int = 0
    write_throttled_records: int = 0
    outgoing_records: int = 0
    outgoing_bytes: int = 0
    get_records_calls: int = 0
    read_throttled_calls: int = 0
    iterator_age_ms: int = 0  # MillisBehindLatest of the latest GetRecords on this shard
    last_read_ms: int = -1

    @property
    def incoming_records(self) -> int:
        return self.incoming.records(self.slot) if self.incoming is not None else 0

    @property
    def incoming_bytes(self) -> int:
        return self.incoming.bytes(self.slot) if self.incoming is not None else 0


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
