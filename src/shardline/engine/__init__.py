"""Kinesis semantics over storage: streams, shards, hash ranges, sequence numbers, iterators, retention,
resharding, limits and consumers."""

from ..storage.catalog import DataDirLocked
from .channels import ChannelInfo
from .engine import Engine
from .queues import EntryFailure, QueueDelivery, QueueInfo
from .view import EngineView, ShardView, StreamView

__all__ = [
    "ChannelInfo",
    "DataDirLocked",
    "Engine",
    "EngineView",
    "EntryFailure",
    "QueueDelivery",
    "QueueInfo",
    "ShardView",
    "StreamView",
]
