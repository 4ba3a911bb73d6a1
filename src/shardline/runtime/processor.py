"""One shard of one mapping: fetch, filter, batch, invoke through the error path, checkpoint.

A fetcher reads the shard into a bounded buffer and deals records to ``ParallelizationFactor`` sub-shards by the
MD5 of their partition key (so per-key order holds; batching.py). Each sub-shard forms batches (count, batching window,
6 MiB payload), invokes one batch at a time and settles it: success, filtered out, or discarded to the
on-failure destination after retries or record age. What happens after each invocation is the error policy's
decision (policy.py); on-failure records are stored by onfailure.py and tumbling windows kept by windows.py. The
checkpoint is the highest sequence number below which every record is settled (settling.py), written durably
after each batch.

Every lease-store call that can wait runs on the mapping's store thread (``MappingContext.store_thread``), never
on the event loop (a checkpoint that a local SQLite file takes without waiting is written at once): a slow store
holds up only the sub-shard waiting for its checkpoint (checkpoint_writer.py), which starts no
next batch until the checkpoint is written. One checkpoint write per shard is in flight at a time, so a shard's
checkpoints reach the store in order; a store that hangs leaves at most one batch per sub-shard processed and not
checkpointed.

A discarded batch is settled only once its on-failure record is stored, so while the destination refuses it the
shard waits and keeps its checkpoint before the batch.

``idle()`` tells a caller (a test's negative check) when the processor has read to the end of the records available
and has nothing queued or in flight, so "nothing more happens" can be waited for instead of slept on; ``fetched()``
only when it has read to that end (for a shard held back from settling, which is never idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections import deque
from typing import cast

from .._tasks import first_of
from ..errors import (
    ExpiredIteratorException,
    InvalidArgumentException,
    ProvisionedThroughputExceededException,
    ResourceNotFoundException,
)
from ..models import Record
from . import onfailure
from .batching import SubShard, payload_full, sub_index, take_batch
from .checkpoint_writer import CheckpointWriter
from .context import EpochInvoker, MappingContext
from .event import MAX_PAYLOAD_BYTES, EventContext, encode_event, record_json
from .functions import InvocationResult, Throttled
from .leases import Lease, LeaseLost
from .policy import ErrorPolicy
from .position import Position
from .settling import Entry, Settler
from .stats import ShardStats
from .verdict import judge
from .windows import Window

__all__ = ["MappingContext", "ShardProcessor", "ShardStats"]

log = logging.getLogger("shardline.runtime")


class ShardProcessor:
    def __init__(self, ctx: MappingContext, shard_id: str, lease: Lease) -> None:
        self.ctx = ctx
        self.shard_id = shard_id
        self.lease = lease
        self.stats = ShardStats()
        self.finished = False
        self.children: tuple[str, ...] = ()
        self._settler = Settler()
        self._ended = False
        self._fetch_done = False
        self._event_ctx = EventContext(
            region=ctx.region, stream_arn=ctx.source.stream_arn, role_arn=ctx.role_arn, shard_id=shard_id
        )
        self._subs = [SubShard() for _ in range(max(1, ctx.config.parallelization_factor))]
        self._space = asyncio.Event()
        self._space.set()
        self._stopped = asyncio.Event()
        self._reads = 0  # GetRecords calls started
        self._caught_up_at = 0  # the number of the latest read, if it found no new record
        self._idle_waiters: list[tuple[int, bool, asyncio.Future[None]]] = []  # (read number, settled too, future)
        self._done = False
        # Lease hooks (many workers): a local deadline (monotonic) past which no batch starts until a renew moves
        # it; ``drain`` (a handoff) ends processing after the in-flight sub-batches; ``lose`` ends it at once.
        self.deadline: float | None = None
        self.lost = False
        self._halted = False
        self._renewed = asyncio.Event()
        self._checkpoint = CheckpointWriter(ctx, self, self._settler)

    def interrupt(self) -> None:
        """The mapping is stopping: end any backoff now (what it waited to retry stays unsettled)."""
        self._stopped.set()

    # ----------------------------------------------------------------- lease hooks
    @property
    def epoch(self) -> int:
        """The lease epoch this processor runs under (the fencing token)."""
        return self.lease.epoch

    def drain(self) -> None:
        """Hand the shard over: stop reading; every sub-shard (ParallelizationFactor > 1 has several) processes
        what it already fetched and checkpoints, then ``run`` returns and the owner releases the lease. Records are
        fetched in order and dealt to sub-shards, so only a drained buffer leaves a checkpoint with nothing
        processed after it (no duplicate for the next owner)."""
        self._halted = True
        self._wake_all()

    def lose(self) -> None:
        """The lease is gone: stop at once; nothing more is written (a write would be fenced anyway)."""
        self.lost = True
        self._halted = True
        self._stopped.set()
        self._wake_all()

    def _wake_all(self) -> None:
        self.ctx.source.wake(self.shard_id)
        self._space.set()
        self._renewed.set()
        for sub in self._subs:
            sub.wakeup.set()

    def _reading(self) -> bool:
        return self.ctx.running() and not self._halted

    def _active(self) -> bool:
        return self.ctx.running() and not self.lost

    def _may_dispatch(self) -> bool:
        """A batch may start now: the lease is held and its local deadline has not passed."""
        return self._active() and (self.deadline is None or self.ctx.clock.monotonic() < self.deadline)

    # ----------------------------------------------------------------- main loop
    async def run(self) -> None:
        """Process the shard until it is settled to its end, the mapping stops, or the lease is lost."""
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    fetcher = tg.create_task(self._fetch_loop())
                    workers = [tg.create_task(self._sub_loop(sub)) for sub in self._subs]
                    await fetcher
                    for sub in self._subs:
                        sub.wakeup.set()
                    for w in workers:
                        await w
            except BaseExceptionGroup as group:
                # A fenced write found the lease gone (a checkpoint after a batch): the lease is lost, not failed.
                if (lost := _lease_lost(group)) is None:
                    raise
                raise lost from None
            if self.lost:
                pass
            elif self._ended and self.ctx.running() and self._settler.outstanding == 0:
                await self._checkpoint.write()
                children = await self.ctx.child_shards(self.children)
                await self.ctx.store_thread.call(self.ctx.store_finish, self.lease, children)
                self.finished = True
                log.info("mapping %s %s: settled to SHARD_END", self.ctx.config.uuid, self.shard_id)
            else:
                await self._checkpoint.write_last()
        except LeaseLost:
            self.lose()
            log.warning("mapping %s %s: lease lost; stopping without writing", self.ctx.config.uuid, self.shard_id)
        finally:
            self._done = True
            self._poke()

    # ----------------------------------------------------------------- the idle signal
    async def idle(self, *, settled: bool = True) -> None:
        """Return once this processor has read to the end of the records available when called (a read started
        after the call found no new record, or reading ended) and has nothing queued or in flight: no batch waiting
        for its batching window, being invoked, retried, backing off or discarded, and no window being closed. An
        open tumbling window waiting for its end is idle. Returns at once when the processor has stopped.

        For negative checks ("nothing more happens"): wait for this instead of sleeping."""
        if self._done:
            return
        fut = asyncio.get_running_loop().create_future()
        self._idle_waiters.append((self._reads + 1, settled, fut))
        self.ctx.source.wake(self.shard_id)  # end a wait for data at once, so that the fresh read happens now
        self._poke()
        await fut

    async def fetched(self) -> None:
        """``idle`` without "nothing queued or in flight", for a shard held back from settling (its batch retried or
        its on-failure record refused), which is never idle: whatever the fetcher had to read, it has read."""
        await self.idle(settled=False)

    def _poke(self) -> None:
        """Release the ``idle()`` and ``fetched()`` callers whose condition holds now."""
        if not self._idle_waiters:
            return
        busy = not self._done and any(s.busy or s.closing or s.queue for s in self._subs)
        waiting: list[tuple[int, bool, asyncio.Future[None]]] = []
        for want, settled, fut in self._idle_waiters:
            if (self._done or self._fetch_done or self._caught_up_at >= want) and not (settled and busy):
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((want, settled, fut))
        self._idle_waiters = waiting

    def _buffered(self) -> int:
        return sum(len(s.queue) for s in self._subs)

    # ----------------------------------------------------------------- fetching
    async def _start_iterator(self) -> str:
        pos = self.lease.position
        src = self.ctx.source
        if pos.kind == "LATEST":
            # Pin LATEST to a concrete position at once and keep it: an iterator that expires before the first
            # record arrives must never be replaced by a later LATEST (that would skip what came in between).
            tip = src.tip(self.shard_id)
            pos = Position.parse(tip) if tip is not None else Position.at_timestamp(self.ctx.clock.now_ms())
            await self.ctx.store_thread.call(self.ctx.store_checkpoint, self.lease, pos)
            self.lease = dataclasses.replace(self.lease, position=pos)
        kind, sequence_number, timestamp_ms = pos.iterator()
        return await src.get_iterator(self.shard_id, kind, sequence_number=sequence_number, timestamp_ms=timestamp_ms)

    async def _fetch_loop(self) -> None:
        try:
            await self._fetch()
        finally:
            self._fetch_done = True
            for sub in self._subs:
                sub.wakeup.set()
            self._poke()

    async def _fetch(self) -> None:
        ctx = self.ctx
        tuning = ctx.tuning
        iterator: str | None = await self._start_iterator()
        last_fetched: str | None = None
        throttle_delay = tuning.throttle_backoff_s
        cap = max(2 * ctx.config.batch_size, tuning.read_limit)
        while self._reading() and iterator is not None:
            room = cap - self._buffered()
            if room <= 0:
                self._space.clear()
                await self._wait(self._space, 0.5)
                continue
            try:
                ctx.source.arm(self.shard_id)
                self._reads += 1
                read = self._reads
                page = await ctx.source.get_records(iterator, min(room, tuning.read_limit))
            except ExpiredIteratorException:
                # Resume exactly where reading stopped: never from the starting position.
                anchor = last_fetched or self._settler.checkpoint
                if anchor is not None:
                    iterator = await ctx.source.get_iterator(
                        self.shard_id, "AFTER_SEQUENCE_NUMBER", sequence_number=anchor
                    )
                else:
                    iterator = await self._start_iterator()
                continue
            except ProvisionedThroughputExceededException:
                self.stats.throttles += 1
                await self._sleep(throttle_delay * (0.5 + random.random()))
                throttle_delay = min(throttle_delay * 2, tuning.throttle_backoff_max_s)
                continue
            except (ResourceNotFoundException, InvalidArgumentException) as exc:
                self.stats.last_result = f"PROBLEM: {exc.message or type(exc).__name__}"
                log.error("mapping %s %s: stopped reading: %s", ctx.config.uuid, self.shard_id, exc)
                return
            throttle_delay = tuning.throttle_backoff_s
            self.stats.millis_behind = page.millis_behind
            if page.records:
                self._caught_up_at = 0
                if self._accept(page.records):
                    await self._checkpoint.write()
                last_fetched = page.records[-1].sequence_number
            else:
                self._caught_up_at = read
                self._poke()
            iterator = page.next_iterator
            if iterator is None:
                self._ended = True
                self.children = page.child_shard_ids or ()
            elif not page.records:
                # In-process sources wake this as soon as records arrive; remote ones are polled at this interval.
                await ctx.source.wait_for_data(self.shard_id, tuning.poll_interval_s)
        self._ended = iterator is None

    def _accept(self, records: list[Record]) -> bool:
        """Deal ``records`` to the sub-shards; True when filtered records moved the checkpoint with nothing in
        flight (the caller writes it)."""
        matcher = self.ctx.matcher
        pf = len(self._subs)
        self.stats.polled += len(records)
        filtered: list[Entry] = []
        for rec in records:
            keep = (
                matcher is None
                or not matcher.active
                or matcher.matches(rec.partition_key, rec.sequence_number, rec.approximate_arrival_ms, rec.data)
            )
            entry = Entry(rec, record_json(self._event_ctx, rec) if keep else None)
            self._settler.fetched(entry)
            if not keep:
                self.stats.filtered_out += 1
                filtered.append(entry)
                continue
            sub = self._subs[0] if pf == 1 else self._subs[sub_index(rec.partition_key, pf)]
            sub.queue.append(entry)
            sub.wakeup.set()
        if filtered:
            # Filtered records are settled at once; the checkpoint passes them once everything before is settled.
            self._settler.settle(filtered)
        self.stats.outstanding = self._settler.outstanding
        return bool(filtered) and not any(s.busy or s.queue for s in self._subs)

    # ----------------------------------------------------------------- batching
    async def _sub_loop(self, sub: SubShard) -> None:
        ctx = self.ctx
        window_opened = ctx.clock.monotonic()
        while self._active():
            if not self._may_dispatch():
                # Past the lease's local deadline: wait for a renew (or the lease's loss) before any batch.
                self._renewed.clear()
                await self._wait(self._renewed, 0.1)
                continue
            cfg = ctx.config
            tumbling_ms = cfg.tumbling_window_s * 1000
            if sub.window is not None and self._window_over(sub, sub.window):
                sub.closing = True
                try:
                    await self._close_window(sub)
                    if ctx.running():
                        await self._checkpoint.write()
                finally:
                    sub.closing = False
                self._poke()
                continue
            if not sub.queue:
                if self._fetch_done:
                    return
                sub.wakeup.clear()
                await self._wait(sub.wakeup, 0.5 if sub.window is None else 0.05)
                continue
            window_s = cfg.maximum_batching_window_s
            full = len(sub.queue) >= cfg.batch_size or payload_full(sub.queue, cfg.batch_size)
            waited = ctx.clock.monotonic() - window_opened
            if window_s and not full and not self._fetch_done and waited < window_s:
                sub.wakeup.clear()
                await self._wait(sub.wakeup, window_s - waited)
                continue
            window: Window | None = None
            if tumbling_ms:
                if sub.window is None:
                    sub.window = Window.of(sub.queue[0].record.approximate_arrival_ms, tumbling_ms)
                window = sub.window
            batch = take_batch(sub.queue, cfg.batch_size, window)
            self._space.set()
            sub.busy = True  # until the checkpoint is written too: idle() must not see the batch done before
            try:
                await self._process(batch, window)
                if window is not None and window.terminated_early:
                    await self._close_window(sub)
                window_opened = ctx.clock.monotonic()
                if ctx.running():
                    await self._checkpoint.write()
            finally:
                sub.busy = False
            self._poke()

    # ----------------------------------------------------------------- tumbling windows
    def _window_over(self, sub: SubShard, window: Window) -> bool:
        head = sub.queue[0].record.approximate_arrival_ms if sub.queue else None
        return window.over(
            head,
            fetch_done=self._fetch_done,
            now_ms=self.ctx.clock.now_ms(),
            batching_window_s=self.ctx.config.maximum_batching_window_s,
        )

    async def _close_window(self, sub: SubShard) -> None:
        """The final invocation (no records, the final state). Its records settle only once it succeeds; until
        then the shard waits, retrying under the mapping's retry policy."""
        window = sub.window
        assert window is not None
        ctx = self.ctx
        retries = 0
        delay = ctx.tuning.retry_backoff_s
        attempts = 0
        while ctx.running():
            event = encode_event([], window.extra(self.shard_id, ctx.source.stream_arn, final=True))
            try:
                last = await self._invoke(event)
            except Throttled:
                self.stats.throttles += 1
                await self._sleep(ctx.tuning.throttle_backoff_s)
                continue
            attempts += 1
            self.stats.invocations += 1
            verdict = judge(last, [], rbif=False, window=True)
            if verdict.function_error:
                self.stats.function_errors += 1
            step = ErrorPolicy.of(ctx.config).after(verdict, size=0, retries=retries)
            if step.kind == "settle":
                await self._settle(window.held)
                sub.window = None
                return
            if step.kind == "retry":
                retries += 1
                delay = await self._retry_backoff(delay)
                continue
            if window.held:
                await self._discard(window.held, "RetryAttemptsExhausted", attempts, last, verdict.function_error)
            sub.window = None
            return

    # ----------------------------------------------------------------- the error path
    async def _process(self, batch: list[Entry], window: Window | None = None) -> None:
        """Settle every record of ``batch``: handled, or discarded after retries / record age, as the error policy
        decides. In a tumbling window, handled records are held until the window's final invocation succeeds."""
        ctx = self.ctx
        work: deque[tuple[list[Entry], int]] = deque([(batch, 0)])
        while work and self._active():
            cur, attempts = work.popleft()
            retries = 0
            delay = ctx.tuning.retry_backoff_s
            last: InvocationResult | None = None
            throttle_delay = ctx.tuning.throttle_backoff_s
            while cur and self._active():
                cfg = ctx.config
                policy = ErrorPolicy.of(cfg)
                expired = policy.expired((e.record.approximate_arrival_ms for e in cur), ctx.clock.now_ms())
                if expired:
                    if not await self._discard(cur[:expired], "RecordAgeExceeded", attempts, last, None):
                        break
                    cur = cur[expired:]
                    if not cur:
                        break
                extra = window.extra(self.shard_id, ctx.source.stream_arn, final=False) if window else None
                event_bytes = encode_event([e.body for e in cur if e.body is not None], extra)
                if len(event_bytes) > MAX_PAYLOAD_BYTES:
                    await self._discard(cur, "RetryAttemptsExhausted", 0, None, None)
                    break
                try:
                    last = await self._invoke(event_bytes)
                except Throttled:
                    self.stats.throttles += 1
                    await self._sleep(throttle_delay * (0.5 + random.random()))
                    throttle_delay = min(throttle_delay * 2, ctx.tuning.throttle_backoff_max_s)
                    continue
                attempts += 1
                self._invoked(cur)
                records = [e.record for e in cur]
                verdict = judge(last, records, rbif=cfg.report_batch_item_failures, window=cfg.tumbling_window_s > 0)
                step = policy.after(verdict, size=len(cur), retries=retries)
                self.stats.last_result = "OK" if verdict.kind == "success" else "PROBLEM: Function call failed"
                if verdict.kind == "failure" and verdict.function_error:
                    self.stats.function_errors += 1
                if verdict.kind != "failure":  # a success, or a partial one: the records before the lowest failure
                    done, cur = cur[: step.settled], cur[step.settled :]
                    if window is not None:
                        window.handled(done, verdict.state)
                    else:
                        await self._settle(done)
                    self.stats.succeeded += len(done)
                if step.kind == "settle":
                    break
                if step.kind == "bisect":
                    # Halves run in sequence order. Each half counts its own invocations (approximateInvokeCount of
                    # a poison record isolated by bisecting is 1 + its retries, as AWS reports it).
                    work.appendleft((cur[step.split :], 0))
                    cur = cur[: step.split]
                    attempts = 0
                    continue
                if step.kind == "retry":
                    retries += 1
                    self._checkpoint.refresh_lag()  # (a batch retried for hours writes no checkpoint that would)
                    delay = await self._retry_backoff(delay)
                    continue
                await self._discard(cur, "RetryAttemptsExhausted", attempts, last, verdict.function_error)
                break

    async def _invoke(self, event: bytes) -> InvocationResult:
        if self.deadline is None:  # this process holds every lease: no epoch to hand over
            return await self.ctx.function.invoke(event)
        return await cast(EpochInvoker, self.ctx.function).invoke(event, lease_epoch=self.lease.epoch)

    def _invoked(self, batch: list[Entry]) -> None:
        stats = self.stats
        stats.invocations += 1
        stats.invoked_records += len(batch)
        stats.iterator_age_ms = max(0, self.ctx.clock.now_ms() - batch[-1].record.approximate_arrival_ms)
        stats.batch_sizes.append(len(batch))
        if len(stats.batch_sizes) > 1024:
            del stats.batch_sizes[:512]

    async def _discard(
        self,
        entries: list[Entry],
        condition: str,
        attempts: int,
        last: InvocationResult | None,
        function_error: str | None,
    ) -> bool:
        """Give up on ``entries``: store their on-failure record, then settle them. False when the mapping stopped
        before the record was stored: they stay unsettled, so a restart processes them again."""
        records = [e.record for e in entries]
        stored = await onfailure.discard(
            self.ctx,
            self.shard_id,
            self.stats,
            self._sleep,
            records,
            condition=condition,
            attempts=attempts,
            last=last,
            function_error=function_error,
        )
        if stored:
            await self._settle(entries)
        return stored

    async def _settle(self, entries: list[Entry]) -> None:
        self._settler.settle(entries)
        self.stats.outstanding = self._settler.outstanding
        # Persist as soon as the settled prefix moves (a poison record retried for hours must not hold back the
        # saved checkpoint of records already handled before it).
        if self._settler.dirty and self.ctx.running():
            await self._checkpoint.write()

    # ----------------------------------------------------------------- waiting
    async def _retry_backoff(self, delay: float) -> float:
        """Wait ``delay`` before a retry; the next wait doubles, up to the cap."""
        await self._sleep(delay)
        return min(delay * 2, self.ctx.tuning.retry_backoff_max_s)

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the mapping's clock, or less when the mapping stops (shutdown never waits out a backoff)."""
        if self._stopped.is_set():
            return
        await first_of(self.ctx.clock.sleep(seconds), self._stopped.wait())

    async def _wait(self, event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def _lease_lost(group: BaseExceptionGroup[BaseException]) -> LeaseLost | None:
    """The LeaseLost a task group failed with, when it failed with nothing else."""
    lost, rest = group.split(LeaseLost)
    if lost is None or rest is not None:
        return None
    exc: BaseException = lost
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc if isinstance(exc, LeaseLost) else None
