"""Checkpoints are written off the event loop, yet a shard's checkpoints reach the store in order.

With ParallelizationFactor 4, four sub-shards of one shard settle batches concurrently and each writes the shard's
checkpoint after its batch. A store whose writes are slow (each holds the store thread a moment) lets later batches
settle while a write is in flight: the writes must still arrive one at a time, each after the one before, and the
last one must be the shard's last record (what settled during a write is written before the write returns).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from shardline.runtime.checkpoints import Lease, LeaseStore
from shardline.runtime.position import Position

from ._rig import Rig


class SlowCheckpoints(LeaseStore):
    """A lease store noting every checkpoint it is sent, in arrival order, and how many were in flight at once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sent: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._count = threading.Lock()

    def checkpoint(self, lease: Lease, position: Position) -> None:
        with self._count:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.sent.append(str(position))
        try:
            time.sleep(0.005)  # a slow store: batches settle meanwhile (no assertion depends on this duration)
            super().checkpoint(lease, position)
        finally:
            with self._count:
                self.in_flight -= 1


async def test_concurrent_sub_shards_write_the_checkpoint_in_order(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await rig.stream()
    seqs = await rig.put(rig.numbered(400), pk=lambda i: f"k{i}")
    store = SlowCheckpoints(rig.leases_path)
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=5, parallelization_factor=4, store=store)
    try:
        with caplog.at_level(logging.WARNING, logger="shardline"):
            m.start()
            await rig.wait_for(lambda: len(rec.delivered()) >= 400, "every record delivered")
            await rig.idle(m)
            assert rig.checkpoint(m) == seqs[-1]
            await rig.stop(m)
        assert sorted(rec.delivered()) == sorted(rig.numbered(400))
        assert store.max_in_flight == 1
        assert [int(s) for s in store.sent] == sorted({int(s) for s in store.sent})  # strictly increasing
        assert store.sent[-1] == seqs[-1]
        assert "lease lost" not in caplog.text and "checkpoint not written" not in caplog.text
    finally:
        store.close()
