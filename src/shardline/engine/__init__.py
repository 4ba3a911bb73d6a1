"""Kinesis semantics over storage: streams, shards, hash ranges, sequence numbers, iterators, retention,
resharding, limits and consumers."""

from ..storage.catalog import DataDirLocked
from .engine import Engine

__all__ = ["DataDirLocked", "Engine"]
