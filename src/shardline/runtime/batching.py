"""A shard processor's sub-shards and how they form batches: records are dealt to ``ParallelizationFactor``
sub-shards by the MD5 of their partition key (so per-key order holds), and a batch is cut at the batch size, at
Lambda's 6 MiB payload and, with tumbling windows, at the window's end (a batch never mixes two windows)."""

from __future__ import annotations

import asyncio
from collections import deque

from ..engine.hashing import md5
from .event import EMPTY_EVENT_BYTES, MAX_PAYLOAD_BYTES
from .settling import Entry
from .windows import Window

__all__ = ["SubShard", "payload_full", "sub_index", "take_batch"]


class SubShard:
    def __init__(self) -> None:
        self.queue: deque[Entry] = deque()
        self.wakeup = asyncio.Event()
        self.busy = False  # a batch is being invoked, retried or discarded
        self.closing = False  # a window's final invocation is under way
        self.window: Window | None = None


def payload_full(queue: deque[Entry], batch_size: int) -> bool:
    """Whether the queued records already fill a batch: the batch size, or more than one payload's bytes."""
    size = EMPTY_EVENT_BYTES
    for i, e in enumerate(queue):
        if i >= batch_size:
            return True
        assert e.body is not None
        size += len(e.body) + (1 if i else 0)
        if size > MAX_PAYLOAD_BYTES:
            return True
    return False


def take_batch(queue: deque[Entry], batch_size: int, window: Window | None = None) -> list[Entry]:
    """Take the next batch off the head of ``queue``: at most ``batch_size`` records in one payload, one window."""
    batch: list[Entry] = []
    size = EMPTY_EVENT_BYTES
    while queue and len(batch) < batch_size:
        e = queue[0]
        if window is not None and not window.holds(e.record.approximate_arrival_ms):
            break  # a batch never mixes two windows
        assert e.body is not None
        add = len(e.body) + (1 if batch else 0)
        if batch and size + add > MAX_PAYLOAD_BYTES:
            break
        batch.append(queue.popleft())
        size += add
    return batch


def sub_index(partition_key: str, n: int) -> int:
    """The sub-shard (of ``n``) a partition key's records go to."""
    return int.from_bytes(md5(partition_key.encode()).digest()[:8], "big") % n
