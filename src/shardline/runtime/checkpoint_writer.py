"""Writing one shard's checkpoint to the lease store, behind the batches.

The checkpoint is where the settled prefix ends (settling.py). After each batch the shard processor asks for it to
be written (``soon``) and goes on with its next batch at once: the write runs on the mapping's store thread while the
next invocation runs, instead of adding a store round trip (a thread hop, a SQLite commit or a PostgreSQL statement)
to every batch. That is the same at-least-once contract as before: a crash re-delivers what settled after the last
checkpoint that reached the store, whether the write was in flight or not yet started.

One write is in flight per shard. A write loops until nothing newer has settled, so a batch that ends while one is in
flight has its position written by that same write when it returns: writes reach the store in the order of their
positions, and a slow store delays only the checkpoint, never the batches (the lease's local deadline still stops
them, see processor.py). A write the store refuses with ``LeaseLost`` fails the task group the write runs in, which
stops the shard at once, as a refused write always did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
    def __init__(self, ctx: MappingContext, holder: Holder, settler: Settler, returned: Callable[[], None]) -> None:
        """``returned`` is called each time a write started by ``soon`` returns (the processor's idle signal)."""
        self._ctx = ctx
        self._holder = holder
        self._settler = settler
        self._returned = returned
        self._lock = asyncio.Lock()  # one write in flight: they land in order
        self._group: asyncio.TaskGroup | None = None
        self._behind: asyncio.Task[bool] | None = None

    def attach(self, group: asyncio.TaskGroup) -> None:
        """Run the writes that ``soon`` starts in ``group`` (the processor's: a write's failure is the shard's)."""
        self._group = group

    @property
    def busy(self) -> bool:
        """A write started by ``soon`` has not returned yet."""
        return self._behind is not None and not self._behind.done()

    def soon(self) -> None:
        """Write the checkpoint behind the caller, which does not wait: a write is started unless one is in flight
        (that one also writes what settled since it started)."""
        if self._group is None:
            raise RuntimeError("CheckpointWriter.soon outside the shard processor's task group")
        if not self.busy:
            self._behind = self._group.create_task(self._write_behind())

    async def write(self) -> bool:
        """Write the checkpoint if it moved, and what settles meanwhile; False when the store did not answer (the
        checkpoint stays due)."""
        async with self._lock:
            while await self._write_once():
                if self._holder.lost or not self._settler.dirty:
                    return True
            return False

    async def _write_behind(self) -> bool:
        try:
            return await self.write()
        finally:
            self._returned()

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
                await ctx.store_thread.call(ctx.store_checkpoint, holder.lease, Position.sequence(settler.checkpoint))
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
        cp = settler.checkpoint
        holder.stats.lag_records = ctx.source.lag(holder.shard_id, cp if cp is not None else holder.lease.checkpoint)
        return True
