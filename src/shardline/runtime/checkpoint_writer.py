"""Writing one shard's checkpoint to the lease store.

The checkpoint is where the settled prefix ends (settling.py). The shard processor writes it after each batch and
waits for the write before its next batch (at once when the store can write it without waiting, a local SQLite
file that no other connection holds locked; else on the mapping's store thread, never on the event loop): a store that
hangs then leaves at most one batch per sub-shard processed and not checkpointed, which bounds what is delivered
again after an outage. One write is in flight per shard: a write loops until nothing newer has settled, so checkpoints
reach the store in the order of their positions. A write the store refuses with ``LeaseLost`` raises it, which
stops the shard at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from .context import MappingContext
from .leases import Lease, LeaseUnavailable
from .position import Position
from .settling import Settler
from .stats import ShardStats

__all__ = ["CheckpointWriter"]

log = logging.getLogger("shardline.runtime")


class Holder(Protocol):
    """What the writer reads of its shard processor: the lease it writes under, and whether it still holds it."""

    shard_id: str
    lease: Lease
    lost: bool
    deadline: float | None  # the lease's local deadline (monotonic), None when one process holds every lease
    stats: ShardStats


class CheckpointWriter:
    def __init__(self, ctx: MappingContext, holder: Holder, settler: Settler) -> None:
        self._ctx = ctx
        self._holder = holder
        self._settler = settler
        self._lock = asyncio.Lock()  # one write in flight: they land in order

    async def write(self) -> bool:
        """Write the checkpoint if it moved, and what settles meanwhile; False when the store did not answer (the
        checkpoint stays due)."""
        async with self._lock:
            while await self._write_once():
                if self._holder.lost or not self._settler.dirty:
                    return True
            return False

    async def write_last(self) -> None:
        """The checkpoint the lease is released with (the mapping stops, or the lease is handed over): a store that
        did not answer in time is asked again while the lease is still this worker's (its local deadline; three
        tries when one process holds every lease), so that the next owner starts after what was settled here
        instead of repeating it."""
        tries = 0
        clock = self._ctx.clock
        while not await self.write():
            tries += 1
            deadline = self._holder.deadline
            if deadline is None and tries >= 3:
                return
            if deadline is not None and clock.monotonic() >= deadline:
                return
            await asyncio.sleep(min(0.1 * 2**tries, 1.0))

    async def _write_once(self) -> bool:
        settler, holder, ctx = self._settler, self._holder, self._ctx
        if holder.lost:
            return True
        if settler.dirty and settler.checkpoint is not None:
            # Due again if the write fails, or if records settle meanwhile (Settler.settle sets it).
            settler.dirty = False
            try:
                position = Position.sequence(settler.checkpoint)
                if not ctx.store_checkpoint_now(holder.lease, position):
                    await ctx.store_thread.call(ctx.store_checkpoint, holder.lease, position)
            except LeaseUnavailable as exc:
                # Nothing was written: the checkpoint stays due and the next batch writes it (the lease's local
                # deadline stops the batches if the store stays away).
                settler.dirty = True
                log.warning("mapping %s %s: checkpoint not written: %s", ctx.config.uuid, holder.shard_id, exc)
                return False
            except BaseException:
                settler.dirty = True
                raise
            holder.stats.checkpoint_moved_ms = ctx.clock.now_ms()
        self.refresh_lag()
        return True

    def refresh_lag(self) -> None:
        """The shard's records after its settled prefix, up to the tip (``ShardStats.lag_records``)."""
        cp, holder = self._settler.checkpoint, self._holder
        holder.stats.lag_records = self._ctx.source.lag(
            holder.shard_id, cp if cp is not None else holder.lease.checkpoint
        )
