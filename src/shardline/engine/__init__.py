"""Kinesis semantics over storage: streams, shards, hash ranges, sequence numbers, iterators, retention,
resharding, limits and consumers."""

from ..storage.catalog import DataDirLocked
from .engine import Engine
from .subscriptions import ShardEvent, Subscription
from .view import EngineView, ShardView, StreamView

__all__ = ["DataDirLocked", "Engine", "EngineView", "ShardEvent", "ShardView", "StreamView", "Subscription"]
