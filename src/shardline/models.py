"""Plain typed values the engine returns. Wire casing never appears here; times are epoch milliseconds."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, TypedDict

__all__ = [
    "NO_RECORDS_PROCESSED",
    "ChildShard",
    "Consumer",
    "ConsumerRef",
    "GetRecordsResult",
    "HashKeyRange",
    "Limits",
    "ListShardsResult",
    "ListStreamsResult",
    "PutRecordResult",
    "PutRecordsEntry",
    "PutRecordsRequestEntry",
    "PutRecordsResult",
    "Record",
    "SequenceNumberRange",
    "Shard",
    "ShardFilterType",
    "ShardIteratorType",
    "StreamDescription",
    "StreamDescriptionSummary",
    "StreamMode",
    "StreamStatus",
    "StreamSummary",
    "Tag",
]

# Lambda's LastProcessingResult of a mapping before its first batch (the runtime sets it, monitoring shows it).
NO_RECORDS_PROCESSED = "No records processed"


class StreamStatus(StrEnum):
    CREATING = "CREATING"
    DELETING = "DELETING"
    ACTIVE = "ACTIVE"
    UPDATING = "UPDATING"


class StreamMode(StrEnum):
    PROVISIONED = "PROVISIONED"
    ON_DEMAND = "ON_DEMAND"


class ShardIteratorType(StrEnum):
    AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"
    AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class ShardFilterType(StrEnum):
    AFTER_SHARD_ID = "AFTER_SHARD_ID"
    AT_TRIM_HORIZON = "AT_TRIM_HORIZON"
    FROM_TRIM_HORIZON = "FROM_TRIM_HORIZON"
    AT_LATEST = "AT_LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"
    FROM_TIMESTAMP = "FROM_TIMESTAMP"


@dataclass(frozen=True, slots=True)
class HashKeyRange:
    """Inclusive range of 128-bit hash keys."""

    starting_hash_key: int
    ending_hash_key: int

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.starting_hash_key <= key <= self.ending_hash_key


@dataclass(frozen=True, slots=True)
class SequenceNumberRange:
    starting_sequence_number: str
    ending_sequence_number: str | None = None


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    hash_key_range: HashKeyRange
    sequence_number_range: SequenceNumberRange
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChildShard:
    """A shard made from this one by a reshard, as GetRecords names it at the shard's end."""

    shard_id: str
    parent_shards: tuple[str, ...]
    hash_key_range: HashKeyRange


class Record(NamedTuple):
    """A record as GetRecords returns it. A NamedTuple: reads create many of these."""

    sequence_number: str
    approximate_arrival_ms: int
    data: bytes
    partition_key: str
    encryption_type: str | None = None


class PutRecordsRequestEntry(NamedTuple):
    data: bytes
    partition_key: str
    explicit_hash_key: str | None = None


class PutRecordsEntry(NamedTuple):
    """One PutRecords result, in request order: either shard id + sequence number, or an error."""

    shard_id: str | None
    sequence_number: str | None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class PutRecordResult:
    shard_id: str
    sequence_number: str
    encryption_type: str = "NONE"


@dataclass(frozen=True, slots=True)
class PutRecordsResult:
    failed_record_count: int
    records: list[PutRecordsEntry]
    encryption_type: str = "NONE"


@dataclass(frozen=True, slots=True)
class GetRecordsResult:
    records: list[Record]
    next_shard_iterator: str | None
    millis_behind_latest: int
    child_shards: tuple[ChildShard, ...] | None = None


@dataclass(frozen=True, slots=True)
class Consumer:
    consumer_name: str
    consumer_arn: str
    consumer_status: str
    consumer_creation_timestamp_ms: int
    stream_arn: str


class ConsumerRef(TypedDict, total=False):
    """How DeregisterStreamConsumer and DescribeStreamConsumer name a consumer: its ARN, or its stream's ARN and its
    name (the engine checks that one of the two is given)."""

    stream_arn: str | None
    consumer_name: str | None
    consumer_arn: str | None


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class StreamDescription:
    stream_name: str
    stream_arn: str
    stream_status: StreamStatus
    stream_mode: StreamMode
    shards: list[Shard]
    has_more_shards: bool
    retention_period_hours: int
    stream_creation_timestamp_ms: int
    shard_level_metrics: tuple[str, ...]
    encryption_type: str
    key_id: str | None


@dataclass(frozen=True, slots=True)
class StreamDescriptionSummary:
    stream_name: str
    stream_arn: str
    stream_status: StreamStatus
    stream_mode: StreamMode
    retention_period_hours: int
    stream_creation_timestamp_ms: int
    shard_level_metrics: tuple[str, ...]
    encryption_type: str
    key_id: str | None
    open_shard_count: int
    consumer_count: int
    max_record_size_kib: int
    warm_throughput: tuple[int, int] | None = None  # (target, current) MiB/s, when one was set
    record_distribution_strategy: str = "USER_PARTITION_KEY"


@dataclass(frozen=True, slots=True)
class StreamSummary:
    stream_name: str
    stream_arn: str
    stream_status: StreamStatus
    stream_mode: StreamMode
    stream_creation_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class ListStreamsResult:
    stream_names: list[str]
    has_more_streams: bool
    stream_summaries: list[StreamSummary]
    next_token: str | None


@dataclass(frozen=True, slots=True)
class ListShardsResult:
    shards: list[Shard]
    next_token: str | None


@dataclass(frozen=True, slots=True)
class Limits:
    shard_limit: int
    open_shard_count: int
    on_demand_stream_count: int
    on_demand_stream_count_limit: int
