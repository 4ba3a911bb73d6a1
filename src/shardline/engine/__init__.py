"""Kinesis semantics over storage: streams, shards, hash ranges, sequence numbers, iterators, retention,
resharding, limits and consumers."""

from ..storage.catalog import DataDirLocked
from .engine import Engine
from .queues import EntryFailure, QueueDelivery, QueueInfo
from .view import EngineView, ShardView, StreamView

__all__ = [
    "DataDirLocked",
    "Engine",
    "EngineView",
    "EntryFailure",
    "QueueDelivery",
    "QueueInfo",
    "ShardView",
    "StreamView",
]
