"""shardline: self-hosted streams with Kinesis semantics and Lambda-style stream functions."""

from . import errors
from .clock import Clock, ManualClock, SystemClock
from .engine import Engine
from .models import (
    ChildShard,
    Consumer,
    GetRecordsResult,
    HashKeyRange,
    PutRecordResult,
    PutRecordsEntry,
    PutRecordsRequestEntry,
    PutRecordsResult,
    Record,
    SequenceNumberRange,
    Shard,
    ShardIteratorType,
    StreamDescription,
    StreamDescriptionSummary,
    StreamMode,
    StreamStatus,
)
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ChildShard",
    "Clock",
    "Consumer",
    "Engine",
    "GetRecordsResult",
    "HashKeyRange",
    "ManualClock",
    "PutRecordResult",
    "PutRecordsEntry",
    "PutRecordsRequestEntry",
    "PutRecordsResult",
    "Record",
    "SequenceNumberRange",
    "Settings",
    "Shard",
    "ShardIteratorType",
    "StreamDescription",
    "StreamDescriptionSummary",
    "StreamMode",
    "StreamStatus",
    "SystemClock",
    "__version__",
    "errors",
]
