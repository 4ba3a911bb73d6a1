"""Event source mappings at run time: shard discovery, lineage, one processor task per shard.

A shard starts only when every parent is settled to SHARD_END (or has expired out of the stream), so per-key order
holds across splits and merges. Shards known when a mapping first runs start at its StartingPosition; shards born
later from resharding start at TRIM_HORIZON (all their records are new to the mapping).

The lease store is called from one thread of the mapping's own (``store_thread``), never from the event loop: its
shard processors' checkpoints and SHARD_ENDs, and the shard syncs' reads and claims. The one exception is a
checkpoint that a SQLite store can write without waiting (``store_checkpoint_now``: no lock of another connection or
process to wait for, no fsync); handing each one to the thread and back cost small batches a third of their speed
(benchmarks/store_thread_bench.py), and one that would wait goes to the thread. The many-worker lease loop
queues its passes on a thread of its own (coordinator.py) and renewals run on a third, on their own timer: none
waits in line behind another's backlog, though all take turns on the store's one connection.

Monitoring never calls the store either: it reads the mapping's lease view (``lease_of``, ``lease_view``,
``stats``), a copy of the mapping's leases that the store thread alone writes. It is read whole at the end of every
shard sync pass (every ``shard_sync_interval_s``, and at once after a shard ends), and each lease this process
writes (a checkpoint, a SHARD_END) is put into it as soon as the store has taken the write, so this process's
checkpoints and finished shards show at once. What changes in the table otherwise (leases created or taken, another
worker's checkpoints, owners and handoffs, leases cleaned up) shows after the next sync pass at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from .._tasks import wait_ended
from ..clock import Clock, SystemClock
from ..errors import KinesisError
from .context import Invoker, RecordMatcher
from .destinations import Destination
from .functions import FunctionPool
from .leases import ChildShard, Lease, LeaseStore, LeaseUnavailable
from .leases.coordinator import LeaseTiming, LeaseWorker
from .leases.thread import StoreThread
from .mapping import MappingConfig, RuntimeTuning
from .position import SHARD_END, TRIM_HORIZON, Position
from .processor import ShardProcessor
from .source import ShardSource, SourceShard
from .stats import COUNTERS, NO_RESULT, ShardStats

__all__ = ["COUNTERS", "Mapping", "MappingStats", "stop_all"]

log = logging.getLogger("shardline.runtime")


@dataclasses.dataclass
class MappingStats:
    state: str
    shards_active: int
    shards_finished: int
    last_processing_result: str
    totals: dict[str, int]
    millis_behind: int  # the largest MillisBehindLatest of its shards' latest reads (its iterator age is per shard)


class Mapping:
    """One running event source mapping (implements processor.MappingContext)."""

    def __init__(
        self,
        config: MappingConfig,
        *,
        function: Invoker,
        function_arn: str,
        role_arn: str,
        source: ShardSource,
        store: LeaseStore,
        destination: Destination | None = None,
        matcher: RecordMatcher | None = None,
        tuning: RuntimeTuning | None = None,
        clock: Clock | None = None,
        region: str = "us-east-1",
        leasing: LeaseTiming | None = None,
    ) -> None:
        self._config = config
        # With ``leasing``, shards are shared with other worker processes through the lease store (a LeaseWorker
        # takes, renews and hands over leases); without, this process holds every lease of the mapping.
        self.leasing = leasing
        self.lease_worker: LeaseWorker | None = None
        self.function = function
        self.function_arn = function_arn
        self.role_arn = role_arn
        self.source = source
        self.store = store
        self.destination = destination
        self.matcher = matcher
        self.tuning = tuning or RuntimeTuning()
        self.clock = clock or SystemClock()
        self.region = region
        self.store_thread = StoreThread(f"store-{config.uuid[:8]}")  # (every store call of the mapping's: see above)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._processors: dict[str, ShardProcessor] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._parents: dict[str, tuple[str, ...]] = {}  # shard -> its parents, as last listed
        self._resync = asyncio.Event()
        self._finished_stats = ShardStats()
        self._syncs_started = 0
        self._syncs_done = 0
        self._synced = asyncio.Event()  # pulsed after every shard sync, and when the mapping stops
        # shard id -> its lease, for monitoring. Written on the store thread only, always as a new dict, so a reader
        # on the event loop iterates the one it took while the next is made (see the module docstring).
        self._lease_view: dict[str, Lease] = {}
        self._view_lock = threading.Lock()  # (written from the store thread and, for checkpoints, the event loop)
        self.recent_failures: deque[dict[str, Any]] = deque(maxlen=50)
        self.state = "Disabled" if not config.enabled else "Creating"

    @property
    def config(self) -> MappingConfig:
        return self._config

    @property
    def uuid(self) -> str:
        return self._config.uuid

    def running(self) -> bool:
        return not self._stopping and self._config.enabled

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"mapping-{self.uuid}")

    async def stop(self) -> None:
        """Stop polling; in-flight invocations finish and their results are checkpointed. Backoffs end at once:
        what they waited to retry stays unsettled and is processed again after a restart.

        With shared leases, every shard first hands over as in a handoff (what was fetched is processed, up to the
        handoff timeout), so the workers that take the leases next redeliver nothing."""
        if self.lease_worker is not None:
            self.lease_worker.stop_taking()  # (it would take the leases the drain below gives back)
        if self.leasing is not None and self._tasks:
            for proc in list(self._processors.values()):
                proc.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*list(self._tasks.values()), return_exceptions=True), self.leasing.handoff_timeout_s
                )
        self._stopping = True
        self._resync.set()
        for shard_id, proc in list(self._processors.items()):
            self.source.wake(shard_id)
            proc.interrupt()
        if self._task is not None:
            await wait_ended(self._task)  # (a cancellation of the caller is forwarded to the task, then raised)
        self._task = None

    async def update(self, **changes: Any) -> None:
        """Change parameters (batch size, window, retries, enabled, ...). Takes effect at the next batch; the
        checkpoint is kept. ParallelizationFactor and Enabled changes drain the shards first."""
        new = dataclasses.replace(self._config, **changes)
        if new.starting_position != self._config.starting_position:
            raise ValueError("StartingPosition cannot be changed by an update")
        restart = (
            new.parallelization_factor != self._config.parallelization_factor or new.enabled != self._config.enabled
        )
        if restart:
            await self.stop()
        self._config = new
        if restart and new.enabled:
            self.start()
        self.state = "Enabled" if new.enabled else "Disabled"

    # ----------------------------------------------------------------- discovery
    async def _run(self) -> None:
        self.state = "Enabled"
        try:
            first_pass = not await self.store_thread.call(self._read_leases)
        except BaseException:
            self.store_thread.close()
            raise
        worker_task: asyncio.Task[None] | None = None
        if self.leasing is not None:
            self.lease_worker = LeaseWorker(self.store, self.uuid, self.leasing, self.clock, self._launch)
        try:
            while self.running():
                # Cleared before the pass, not after: a wake-up that comes during the pass (a stop, a shard's end)
                # starts the next one at once instead of being lost to a whole sync interval.
                self._resync.clear()
                self._syncs_started += 1
                try:
                    await self._sync(first_pass)
                    first_pass = False
                except KinesisError as exc:
                    log.error("mapping %s: cannot list shards of %s: %s", self.uuid, self.source.stream_name, exc)
                except LeaseUnavailable as exc:
                    log.error("mapping %s: cannot record the shards of %s: %s", self.uuid, self.source.stream_name, exc)
                try:
                    await self.store_thread.call(self._read_leases)
                except LeaseUnavailable as exc:  # the view stays as it was until the next pass
                    log.warning("mapping %s: cannot read its leases: %s", self.uuid, exc)
                self._syncs_done = self._syncs_started
                if self.lease_worker is not None and worker_task is None:
                    worker_task = asyncio.create_task(self.lease_worker.run(), name=f"leases-{self.uuid}")
                self._pulse_synced()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._resync.wait(), self.tuning.shard_sync_interval_s)
        finally:
            tasks = list(self._tasks.values())
            for t in tasks:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await t
            self._tasks.clear()
            if self.lease_worker is not None:
                self.lease_worker.stop()
                if worker_task is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await worker_task
                self.lease_worker.close()
            for p in self._processors.values():
                self._absorb(p.stats)
            self._processors.clear()
            self.store_thread.close()
            if not self._config.enabled:
                self.state = "Disabled"
            self._pulse_synced()

    async def child_shards(self, shard_ids: tuple[str, ...]) -> list[ChildShard]:
        """The shards a finished shard ended into, with their parents (listed again when one is not known yet)."""
        if any(sid not in self._parents for sid in shard_ids):
            for s in await self.source.list_shards():
                self._parents[s.shard_id] = s.parent_ids
        return [ChildShard(sid, self._parents.get(sid, ())) for sid in shard_ids]

    async def _sync(self, first_pass: bool) -> None:
        shards = await self.source.list_shards()
        for s in shards:
            self._parents[s.shard_id] = s.parent_ids
        listed = {s.shard_id for s in shards}
        for s in shards:
            if s.shard_id in self._tasks:
                continue
            initial = self._initial_position(s, first_pass)
            if self.lease_worker is not None:
                # Shared: only make sure every shard has a lease; the lease worker decides who runs it.
                await self.store_thread.call(self._ensure_shared, s, shards, initial)
                continue
            lease = await self.store_thread.call(self._claim, s, listed, initial)
            if lease is None:
                continue
            proc = ShardProcessor(self, s.shard_id, lease)
            self._processors[s.shard_id] = proc
            self._tasks[s.shard_id] = asyncio.create_task(self._run_shard(proc), name=f"{self.uuid}-{s.shard_id}")

    def _claim(self, shard: SourceShard, listed: set[str], initial: Position) -> Lease | None:
        """(On the store thread.) This process holds every lease: the lease of ``shard``, taken, when the shard is
        not finished and its parents are; else None."""
        lease = self.store.ensure(self.uuid, self.source.stream_name, shard.shard_id, shard.parent_ids, initial)
        if lease.finished or not self._parents_done(shard, listed):
            return None
        return self.store.take(self.uuid, self.source.stream_name, shard.shard_id)

    def _ensure_shared(self, shard: SourceShard, shards: list[SourceShard], initial: Position) -> None:
        """Create the lease of ``shard`` if it has none, except for a closed shard whose child already has a lease:
        that shard was finished and its lease cleaned up (it must not start over from its beginning). (On the store
        thread.)"""
        stream = self.source.stream_name
        if shard.closed and self.store.get(self.uuid, stream, shard.shard_id) is None:
            children = [c.shard_id for c in shards if shard.shard_id in c.parent_ids]
            if any(self.store.get(self.uuid, stream, c) is not None for c in children):
                return
        self.store.ensure(self.uuid, stream, shard.shard_id, shard.parent_ids, initial)

    # ----------------------------------------------------------------- the store thread's writes and the lease view
    def store_checkpoint(self, lease: Lease, position: Position) -> None:
        """(On the store thread.) ``store.checkpoint``, then the lease view."""
        self.store.checkpoint(lease, position)
        self._note(lease, position=position, owner_switches_since_checkpoint=0)

    def store_checkpoint_now(self, lease: Lease, position: Position) -> bool:
        """(On the event loop.) The checkpoint written at once when the store can do that without waiting
        (``SqliteLeaseStore.checkpoint_now``), then the lease view; False when it cannot (nothing was written: write
        it with ``store_checkpoint`` on the store thread)."""
        now = getattr(self.store, "checkpoint_now", None)
        if now is None or not now(lease, position):
            return False
        self._note(lease, position=position, owner_switches_since_checkpoint=0)
        return True

    def store_finish(self, lease: Lease, children: Sequence[ChildShard]) -> None:
        """(On the store thread.) ``store.finish``, then the lease view (the children's leases show after the
        sync pass the shard's end starts)."""
        self.store.finish(lease, children)
        child_ids = tuple(c.shard_id for c in children)
        self._note(
            lease, position=SHARD_END, finished=True, child_shard_ids=child_ids, owner_switches_since_checkpoint=0
        )

    def _note(self, lease: Lease, **written: Any) -> None:
        """(On the store thread, or the event loop for a checkpoint written at once.) Put a write the store has taken
        into the lease view: the fields written onto the lease as last read, when it was read at the epoch written
        under (else onto the writer's copy)."""
        with self._view_lock:
            seen = self._lease_view.get(lease.shard_id)
            base = seen if seen is not None and (seen.owner, seen.epoch) == (lease.owner, lease.epoch) else lease
            self._lease_view = {**self._lease_view, lease.shard_id: dataclasses.replace(base, **written)}

    def _read_leases(self) -> list[Lease]:
        """(On the store thread.) The mapping's leases, read into the lease view too."""
        rows = self.store.leases(self.uuid)
        with self._view_lock:
            self._lease_view = {lease.shard_id: lease for lease in rows}
        return rows

    async def read_lease_view(self) -> None:
        """Read the lease view once, for a mapping that does not run (created disabled): monitoring then shows the
        checkpoints it kept from its last run instead of nothing. The store thread ends after it (a later start
        makes a new one), so a mapping that never runs keeps no idle thread."""
        try:
            await self.store_thread.call(self._read_leases)
        finally:
            self.store_thread.close()

    def lease_of(self, shard_id: str) -> Lease | None:
        """The lease of ``shard_id`` in the lease view, for monitoring (never calls the store). How stale it can
        be: see the module docstring (this process's checkpoints show at once, other changes within a sync pass).
        None before the mapping first ran (or read it: ``read_lease_view``), or when the shard has no lease."""
        return self._lease_view.get(shard_id)

    def lease_view(self) -> list[Lease]:
        """Every lease of the mapping in the lease view, in the store's order (by lease key), for monitoring; as
        stale as ``lease_of``. Empty before the mapping first ran (or read it: ``read_lease_view``)."""
        return sorted(self._lease_view.values(), key=lambda lease: lease.key)

    def _initial_position(self, shard: SourceShard, first_pass: bool) -> Position:
        cfg = self._config
        if not first_pass and shard.parent_ids:
            return TRIM_HORIZON
        if cfg.starting_position == "AT_TIMESTAMP":
            assert cfg.starting_position_timestamp_ms is not None
            return Position.at_timestamp(cfg.starting_position_timestamp_ms)
        return Position(cfg.starting_position)

    def _parents_done(self, shard: SourceShard, listed: set[str]) -> bool:
        for parent in shard.parent_ids:
            if parent not in listed:
                continue  # expired out of the stream: nothing left to read in it
            lease = self.store.get(self.uuid, self.source.stream_name, parent)
            if lease is None or not lease.finished:
                return False
        return True

    def _launch(self, lease: Lease, deadline: float) -> ShardProcessor:
        """Start processing a lease the lease worker took (many-worker mode)."""
        proc = ShardProcessor(self, lease.shard_id, lease)
        proc.deadline = deadline
        self._processors[lease.shard_id] = proc
        self._tasks[lease.shard_id] = asyncio.create_task(self._run_shard(proc), name=f"{self.uuid}-{lease.shard_id}")
        return proc

    async def _run_shard(self, proc: ShardProcessor) -> None:
        try:
            await proc.run()
        except Exception:
            log.exception(
                "mapping %s %s: shard processor failed; it restarts from its checkpoint", self.uuid, proc.shard_id
            )
            if self.lease_worker is None:
                await asyncio.sleep(self.tuning.throttle_backoff_s)
        finally:
            if self.lease_worker is not None:
                await self.lease_worker.ended(proc.lease, lost=proc.lost)
            self._tasks.pop(proc.shard_id, None)
            done = self._processors.pop(proc.shard_id, None)
            if done is not None:
                self._absorb(done.stats)
            self._resync.set()

    # ----------------------------------------------------------------- the idle signal
    async def idle(self) -> None:
        """Return once the mapping has nothing to do until new records arrive: a shard sync started after the call
        has run, and every shard being processed is idle (``ShardProcessor.idle``). When a shard finishes meanwhile
        (its children may start), it looks again. Returns at once when the mapping is not running.

        For negative checks ("nothing more happens"): wait for this instead of sleeping."""
        while self._alive():
            await self.synced()
            procs = list(self._processors.values())
            await asyncio.gather(*(p.idle() for p in procs))
            if list(self._processors.values()) == procs:
                return

    async def synced(self) -> None:
        """Return once a shard sync started after the call has run (one is started at once): every shard that sync
        would start has been started. Returns at once when the mapping is not running.

        For negative checks ("this shard is not started"): wait for this instead of sleeping."""
        want = self._syncs_started + 1
        while self._syncs_done < want and self._alive():
            self._resync.set()
            await self._synced.wait()

    def processor(self, shard_id: str) -> ShardProcessor | None:
        """The processor of ``shard_id`` while the shard is being processed."""
        return self._processors.get(shard_id)

    def _alive(self) -> bool:
        return self.running() and self._task is not None and not self._task.done()

    def _pulse_synced(self) -> None:
        self._synced.set()
        self._synced.clear()

    # ----------------------------------------------------------------- observation
    def _absorb(self, s: ShardStats) -> None:
        f = self._finished_stats
        for name in COUNTERS:
            setattr(f, name, getattr(f, name) + getattr(s, name))
        if s.last_result != NO_RESULT:
            f.last_result = s.last_result

    def shard_stats(self) -> dict[str, ShardStats]:
        """The live counters of every shard being processed now."""
        return {sid: p.stats for sid, p in self._processors.items()}

    def stats(self) -> MappingStats:
        """The mapping's figures now; ``shards_finished`` is counted in the lease view (see ``lease_of``)."""
        live = list(self._processors.values())
        totals: dict[str, int] = {}
        for name in COUNTERS:
            totals[name] = getattr(self._finished_stats, name) + sum(getattr(p.stats, name) for p in live)
        results = [p.stats.last_result for p in live if p.stats.last_result != NO_RESULT]
        last = results[-1] if results else self._finished_stats.last_result
        finished = sum(1 for lease in self._lease_view.values() if lease.finished)
        return MappingStats(
            state=self.state,
            shards_active=len(live),
            shards_finished=finished,
            last_processing_result=last,
            totals=totals,
            millis_behind=max((p.stats.millis_behind for p in live), default=0),
        )


async def stop_all(mappings: list[Mapping], pools: dict[str, FunctionPool]) -> None:
    """Stop every mapping, then close every pool; each failure is logged and the others still stop."""
    results = await asyncio.gather(*(m.stop() for m in mappings), return_exceptions=True)
    for mapping, result in zip(mappings, results, strict=True):
        if isinstance(result, BaseException):
            log.error("stopping mapping %s failed", mapping.uuid, exc_info=result)
    names = list(pools)
    results = await asyncio.gather(*(pools[n].close() for n in names), return_exceptions=True)
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            log.error("closing function %s failed", name, exc_info=result)
