"""One shard of one mapping: fetch, filter, batch, invoke through the error path, checkpoint.

A fetcher reads the shard into a bounded buffer and deals records to ``ParallelizationFactor`` sub-shards by the
MD5 of their partition key (so per-key order holds). Each sub-shard forms batches (count, batching window,
6 MiB payload), invokes one batch at a time and settles it: success, filtered out, or discarded to the
on-failure destination after retries or record age. The checkpoint is the highest sequence number below which
every record is settled, written durably after each batch.

A discarded batch is settled only once its on-failure record is stored: the record is the only pointer to the data,
so while the destination refuses it the shard waits (retrying with capped, jittered backoff) and keeps its
checkpoint before the batch. Delivery is at least once: after a stop or a crash between the store and the
checkpoint, the batch is processed again and its on-failure record may be stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..clock import Clock
from ..engine.hashing import md5
from ..errors import (
    ExpiredIteratorException,
    InvalidArgumentException,
    ProvisionedThroughputExceededException,
    ResourceNotFoundException,
)
from ..models import Record
from .checkpoints import Lease, LeaseLost, LeaseStore
from .destinations import Destination, failure_record
from .event import EMPTY_EVENT_BYTES, MAX_PAYLOAD_BYTES, EventContext, encode_event, iso_seconds, record_json
from .functions import InvocationResult, Throttled
from .mapping import MappingConfig, RuntimeTuning
from .source import ShardSource
from .verdict import judge

__all__ = ["MappingContext", "ShardProcessor", "ShardStats"]

log = logging.getLogger("shardline.runtime")


class Invoker(Protocol):
    async def invoke(self, event: bytes) -> InvocationResult: ...


class RecordMatcher(Protocol):
    @property
    def active(self) -> bool: ...

    def matches(self, partition_key: str, sequence_number: str, arrival_ms: int, data: bytes) -> bool: ...


class MappingContext(Protocol):
    """What a shard processor needs from its mapping (see supervisor.Mapping)."""

    @property
    def config(self) -> MappingConfig: ...

    tuning: RuntimeTuning
    clock: Clock
    source: ShardSource
    store: LeaseStore
    function: Invoker
    function_arn: str
    role_arn: str
    region: str
    destination: Destination | None
    matcher: RecordMatcher | None
    recent_failures: deque[dict[str, Any]]  # the latest on-failure records, for monitoring

    def running(self) -> bool: ...


@dataclass
class ShardStats:
    """Counters one shard keeps; the mapping sums them (and monitoring reads them)."""

    polled: int = 0
    filtered_out: int = 0
    invoked_records: int = 0
    invocations: int = 0
    function_errors: int = 0
    throttles: int = 0
    succeeded: int = 0
    discarded: int = 0
    dead_lettered: int = 0
    destination_failures: int = 0  # failed attempts to store an on-failure record (each is retried)
    destination_pending: int = 0  # records held until the destination accepts their on-failure record
    batch_sizes: list[int] = field(default_factory=list)
    iterator_age_ms: int = 0  # Lambda IteratorAge: age of the last record of the latest invoked batch
    millis_behind: int = 0  # MillisBehindLatest of the latest GetRecords
    lag_records: int | None = None  # records between the checkpoint and the tip (when the source can tell)
    checkpoint_moved_ms: int = 0  # when the checkpoint last advanced (a stuck shard stops moving it)
    last_result: str = "No records processed"


@dataclass(slots=True)
class _Entry:
    record: Record
    body: bytes | None  # serialized event record; None when filtered out
    settled: bool = False


class _Settler:
    """Tracks fetched records in order; the checkpoint is the last record of the settled prefix."""

    def __init__(self) -> None:
        self._pending: deque[_Entry] = deque()
        self.checkpoint: str | None = None
        self.dirty = False

    def fetched(self, entry: _Entry) -> None:
        self._pending.append(entry)

    def settle(self, entries: list[_Entry]) -> None:
        for e in entries:
            e.settled = True
        while self._pending and self._pending[0].settled:
            self.checkpoint = self._pending.popleft().record.sequence_number
            self.dirty = True

    @property
    def outstanding(self) -> int:
        return len(self._pending)


class _SubShard:
    def __init__(self) -> None:
        self.queue: deque[_Entry] = deque()
        self.wakeup = asyncio.Event()
        self.busy = False
        self.window: _Window | None = None


MAX_WINDOW_STATE_BYTES = 1024 * 1024


@dataclass
class _Window:
    """An open tumbling window of one shard: its state, and the records that only settle when it closes."""

    start_ms: int
    end_ms: int
    state: Any = field(default_factory=dict)
    held: list[_Entry] = field(default_factory=list)
    terminated_early: bool = False

    def extra(self, shard_id: str, stream_arn: str, *, final: bool) -> dict[str, Any]:
        return {
            # AWS quirk: the window bounds carry whole seconds (2020-12-09T07:04:00Z), unlike the millisecond
            # timestamps of the on-failure record.
            "window": {"start": iso_seconds(self.start_ms), "end": iso_seconds(self.end_ms)},
            "state": self.state if self.state is not None else {},
            "shardId": shard_id,
            "eventSourceARN": stream_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": final and self.terminated_early,
        }


class ShardProcessor:
    def __init__(self, ctx: MappingContext, shard_id: str, lease: Lease) -> None:
        self.ctx = ctx
        self.shard_id = shard_id
        self.lease = lease
        self.stats = ShardStats()
        self.finished = False
        self.children: tuple[str, ...] = ()
        self._settler = _Settler()
        self._ended = False
        self._fetch_done = False
        self._event_ctx = EventContext(
            region=ctx.region, stream_arn=ctx.source.stream_arn, role_arn=ctx.role_arn, shard_id=shard_id
        )
        self._subs = [_SubShard() for _ in range(max(1, ctx.config.parallelization_factor))]
        self._space = asyncio.Event()
        self._space.set()
        self._stopped = asyncio.Event()

    def interrupt(self) -> None:
        """The mapping is stopping: end any backoff now (what it waited to retry stays unsettled)."""
        self._stopped.set()

    # ----------------------------------------------------------------- main loop
    async def run(self) -> None:
        """Process the shard until it is settled to its end, the mapping stops, or the lease is lost."""
        try:
            async with asyncio.TaskGroup() as tg:
                fetcher = tg.create_task(self._fetch_loop())
                workers = [tg.create_task(self._sub_loop(sub)) for sub in self._subs]
                await fetcher
                for sub in self._subs:
                    sub.wakeup.set()
                for w in workers:
                    await w
            if self._ended and self.ctx.running() and self._settler.outstanding == 0:
                self._write_checkpoint()
                self.ctx.store.finish(self.lease, self.children)
                self.finished = True
                log.info("mapping %s %s: settled to SHARD_END", self.ctx.config.uuid, self.shard_id)
            else:
                self._write_checkpoint()
        except LeaseLost:
            log.warning("mapping %s %s: lease lost; stopping without writing", self.ctx.config.uuid, self.shard_id)

    def _write_checkpoint(self) -> None:
        if self._settler.dirty and self._settler.checkpoint is not None:
            self.ctx.store.checkpoint(self.lease, self._settler.checkpoint)
            self._settler.dirty = False
            self.stats.checkpoint_moved_ms = self.ctx.clock.now_ms()
        self.stats.lag_records = self.ctx.source.lag(self.shard_id, self._settler.checkpoint or self.lease.checkpoint)

    def _buffered(self) -> int:
        return sum(len(s.queue) for s in self._subs)

    # ----------------------------------------------------------------- fetching
    async def _start_iterator(self) -> str:
        cp = self.lease.checkpoint
        src = self.ctx.source
        if cp == "LATEST":
            # Pin LATEST to a concrete position at once and keep it: an iterator that expires before the first
            # record arrives must never be replaced by a later LATEST (that would skip what came in between).
            cp = src.tip(self.shard_id) or f"AT_TIMESTAMP:{self.ctx.clock.now_ms()}"
            self.ctx.store.checkpoint(self.lease, cp)
            self.lease = dataclasses.replace(self.lease, checkpoint=cp)
        if cp.isdigit():
            return await src.get_iterator(self.shard_id, "AFTER_SEQUENCE_NUMBER", sequence_number=cp)
        if cp.startswith("AT_TIMESTAMP:"):
            return await src.get_iterator(self.shard_id, "AT_TIMESTAMP", timestamp_ms=int(cp.split(":", 1)[1]))
        return await src.get_iterator(self.shard_id, cp)

    async def _fetch_loop(self) -> None:
        try:
            await self._fetch()
        finally:
            self._fetch_done = True
            for sub in self._subs:
                sub.wakeup.set()

    async def _fetch(self) -> None:
        ctx = self.ctx
        tuning = ctx.tuning
        iterator: str | None = await self._start_iterator()
        last_fetched: str | None = None
        throttle_delay = tuning.throttle_backoff_s
        cap = max(2 * ctx.config.batch_size, tuning.read_limit)
        while ctx.running() and iterator is not None:
            room = cap - self._buffered()
            if room <= 0:
                self._space.clear()
                await self._wait(self._space, 0.5)
                continue
            try:
                ctx.source.arm(self.shard_id)
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
                self._accept(page.records)
                last_fetched = page.records[-1].sequence_number
            iterator = page.next_iterator
            if iterator is None:
                self._ended = True
                self.children = page.child_shard_ids or ()
            elif not page.records:
                # In-process sources wake this as soon as records arrive; remote ones are polled at this interval.
                await ctx.source.wait_for_data(self.shard_id, tuning.poll_interval_s)
        self._ended = iterator is None

    def _accept(self, records: list[Record]) -> None:
        matcher = self.ctx.matcher
        pf = len(self._subs)
        self.stats.polled += len(records)
        filtered: list[_Entry] = []
        for rec in records:
            keep = (
                matcher is None
                or not matcher.active
                or matcher.matches(rec.partition_key, rec.sequence_number, rec.approximate_arrival_ms, rec.data)
            )
            entry = _Entry(rec, record_json(self._event_ctx, rec) if keep else None)
            self._settler.fetched(entry)
            if not keep:
                self.stats.filtered_out += 1
                filtered.append(entry)
                continue
            sub = self._subs[0] if pf == 1 else self._subs[_sub_index(rec.partition_key, pf)]
            sub.queue.append(entry)
            sub.wakeup.set()
        if filtered:
            # Filtered records are settled at once; the checkpoint passes them once everything before is settled.
            self._settler.settle(filtered)
            if not any(s.busy or s.queue for s in self._subs):
                self._write_checkpoint()

    # ----------------------------------------------------------------- batching
    async def _sub_loop(self, sub: _SubShard) -> None:
        ctx = self.ctx
        window_opened = ctx.clock.monotonic()
        while ctx.running():
            cfg = ctx.config
            tumbling_ms = cfg.tumbling_window_s * 1000
            if sub.window is not None and self._window_over(sub, sub.window, cfg.maximum_batching_window_s):
                await self._close_window(sub)
                if ctx.running():
                    self._write_checkpoint()
                continue
            if not sub.queue:
                if self._fetch_done:
                    return
                sub.wakeup.clear()
                await self._wait(sub.wakeup, 0.5 if sub.window is None else 0.05)
                continue
            window_s = cfg.maximum_batching_window_s
            full = len(sub.queue) >= cfg.batch_size or self._payload_full(sub, cfg.batch_size)
            waited = ctx.clock.monotonic() - window_opened
            if window_s and not full and not self._fetch_done and waited < window_s:
                sub.wakeup.clear()
                await self._wait(sub.wakeup, window_s - waited)
                continue
            window: _Window | None = None
            if tumbling_ms:
                start = sub.queue[0].record.approximate_arrival_ms // tumbling_ms * tumbling_ms
                if sub.window is None:
                    sub.window = _Window(start, start + tumbling_ms)
                window = sub.window
            batch = self._take_batch(sub, cfg.batch_size, window)
            self._space.set()
            sub.busy = True
            try:
                await self._process(batch, window)
                if window is not None and window.terminated_early:
                    await self._close_window(sub)
            finally:
                sub.busy = False
            window_opened = ctx.clock.monotonic()
            if ctx.running():
                self._write_checkpoint()

    def _payload_full(self, sub: _SubShard, batch_size: int) -> bool:
        size = EMPTY_EVENT_BYTES
        for i, e in enumerate(sub.queue):
            if i >= batch_size:
                return True
            assert e.body is not None
            size += len(e.body) + (1 if i else 0)
            if size > MAX_PAYLOAD_BYTES:
                return True
        return False

    def _take_batch(self, sub: _SubShard, batch_size: int, window: _Window | None = None) -> list[_Entry]:
        batch: list[_Entry] = []
        size = EMPTY_EVENT_BYTES
        while sub.queue and len(batch) < batch_size:
            e = sub.queue[0]
            if window is not None and not window.start_ms <= e.record.approximate_arrival_ms < window.end_ms:
                break  # a batch never mixes two windows
            assert e.body is not None
            add = len(e.body) + (1 if batch else 0)
            if batch and size + add > MAX_PAYLOAD_BYTES:
                break
            batch.append(sub.queue.popleft())
            size += add
        return batch

    # ----------------------------------------------------------------- the error path
    # ----------------------------------------------------------------- tumbling windows
    def _window_over(self, sub: _SubShard, window: _Window, batching_window_s: int) -> bool:
        """A window closes when a later window's record arrives, the shard ends, or it sits idle past its end."""
        if sub.queue:
            return not window.start_ms <= sub.queue[0].record.approximate_arrival_ms < window.end_ms
        if self._fetch_done:
            return True
        return self.ctx.clock.now_ms() >= window.end_ms + batching_window_s * 1000

    async def _close_window(self, sub: _SubShard) -> None:
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
                last = await ctx.function.invoke(event)
            except Throttled:
                self.stats.throttles += 1
                await self._sleep(ctx.tuning.throttle_backoff_s)
                continue
            attempts += 1
            self.stats.invocations += 1
            verdict = judge(last, [], rbif=False, window=True)
            if verdict.kind == "success":
                self._settle(window.held)
                sub.window = None
                return
            if verdict.function_error:
                self.stats.function_errors += 1
            cfg = ctx.config
            if cfg.maximum_retry_attempts == -1 or retries < cfg.maximum_retry_attempts:
                retries += 1
                await self._sleep(delay)
                delay = min(delay * 2, ctx.tuning.retry_backoff_max_s)
                continue
            if window.held:
                await self._discard(window.held, "RetryAttemptsExhausted", attempts, last, verdict.function_error)
            sub.window = None
            return

    def _window_success(self, window: _Window, entries: list[_Entry], state: Any) -> None:
        window.held.extend(entries)
        window.state = state
        if len(orjson.dumps(state)) > MAX_WINDOW_STATE_BYTES:
            window.terminated_early = True

    # ----------------------------------------------------------------- the error path
    async def _process(self, batch: list[_Entry], window: _Window | None = None) -> None:
        """Settle every record of ``batch``: handled, or discarded after retries / record age. In a tumbling
        window, handled records are held until the window's final invocation succeeds."""
        ctx = self.ctx
        work: deque[tuple[list[_Entry], int]] = deque([(batch, 0)])
        while work and ctx.running():
            cur, attempts = work.popleft()
            retries = 0
            delay = ctx.tuning.retry_backoff_s
            last: InvocationResult | None = None
            throttle_delay = ctx.tuning.throttle_backoff_s
            while cur and ctx.running():
                cfg = ctx.config
                cur = await self._expire(cur, attempts, last)
                if not cur:
                    break
                extra = window.extra(self.shard_id, ctx.source.stream_arn, final=False) if window else None
                event_bytes = encode_event([e.body for e in cur if e.body is not None], extra)
                if len(event_bytes) > MAX_PAYLOAD_BYTES:
                    await self._discard(cur, "RetryAttemptsExhausted", 0, None, None)
                    break
                try:
                    last = await ctx.function.invoke(event_bytes)
                except Throttled:
                    self.stats.throttles += 1
                    await self._sleep(throttle_delay * (0.5 + random.random()))
                    throttle_delay = min(throttle_delay * 2, ctx.tuning.throttle_backoff_max_s)
                    continue
                attempts += 1
                self.stats.invocations += 1
                self.stats.invoked_records += len(cur)
                self.stats.iterator_age_ms = max(0, ctx.clock.now_ms() - cur[-1].record.approximate_arrival_ms)
                self.stats.batch_sizes.append(len(cur))
                if len(self.stats.batch_sizes) > 1024:
                    del self.stats.batch_sizes[:512]
                records = [e.record for e in cur]
                verdict = judge(last, records, rbif=cfg.report_batch_item_failures, window=cfg.tumbling_window_s > 0)
                if verdict.kind == "success":
                    if window is not None:
                        self._window_success(window, cur, verdict.state)
                    else:
                        self._settle(cur)
                    self.stats.succeeded += len(cur)
                    self.stats.last_result = "OK"
                    break
                self.stats.last_result = "PROBLEM: Function call failed"
                if verdict.kind == "failure" and verdict.function_error:
                    self.stats.function_errors += 1
                if verdict.kind == "partial":
                    done, cur = cur[: verdict.first_failed], cur[verdict.first_failed :]
                    if window is not None:
                        self._window_success(window, done, verdict.state)
                    else:
                        self._settle(done)
                    self.stats.succeeded += len(done)
                elif cfg.bisect_batch_on_function_error and len(cur) > 1:
                    # Splitting does not use up retries; halves run in sequence order, the larger first.
                    # Each half counts its own invocations (approximateInvokeCount of a poison record isolated by
                    # bisecting is 1 + its retries, as AWS reports it).
                    half = (len(cur) + 1) // 2
                    work.appendleft((cur[half:], 0))
                    cur = cur[:half]
                    attempts = 0
                    continue
                if cfg.maximum_retry_attempts == -1 or retries < cfg.maximum_retry_attempts:
                    retries += 1
                    await self._sleep(delay)
                    delay = min(delay * 2, ctx.tuning.retry_backoff_max_s)
                    continue
                await self._discard(cur, "RetryAttemptsExhausted", attempts, last, verdict.function_error)
                break

    async def _expire(self, cur: list[_Entry], attempts: int, last: InvocationResult | None) -> list[_Entry]:
        max_age = self.ctx.config.maximum_record_age_s
        if max_age == -1:
            return cur
        cutoff = self.ctx.clock.now_ms() - max_age * 1000
        n = 0
        while n < len(cur) and cur[n].record.approximate_arrival_ms <= cutoff:
            n += 1
        if n and not await self._discard(cur[:n], "RecordAgeExceeded", attempts, last, None):
            return []
        return cur[n:]

    async def _discard(
        self,
        entries: list[_Entry],
        condition: str,
        attempts: int,
        last: InvocationResult | None,
        function_error: str | None,
    ) -> bool:
        """Give up on ``entries``: store their on-failure record, then settle them. False when the mapping stopped
        before the record was stored: they stay unsettled, so a restart processes them again."""
        ctx = self.ctx
        records = [e.record for e in entries]
        log.warning(
            "mapping %s %s: discarding %d records %s..%s (%s after %d invocations)",
            ctx.config.uuid,
            self.shard_id,
            len(records),
            records[0].sequence_number,
            records[-1].sequence_number,
            condition,
            attempts,
        )
        message = failure_record(
            condition=condition,
            function_arn=ctx.function_arn,
            request_id=last.request_id if last else None,
            invoke_count=attempts,
            function_error=function_error,
            responded=last is not None,
            shard_id=self.shard_id,
            stream_arn=ctx.source.stream_arn,
            records=records,
            now_ms=ctx.clock.now_ms(),
        )
        if ctx.destination is not None and not await self._deliver(message, len(entries)):
            return False
        self.stats.discarded += len(entries)
        ctx.recent_failures.append(message)
        self._settle(entries)
        return True

    async def _deliver(self, message: dict[str, Any], count: int) -> bool:
        """Store the on-failure record, retrying for as long as the destination refuses it: the wait doubles from
        the service-error backoff up to its cap (a minute by default), jittered to between half and all of it.
        False when the mapping stops first."""
        ctx = self.ctx
        assert ctx.destination is not None
        delay = ctx.tuning.throttle_backoff_s
        failures = 0
        self.stats.destination_pending += count
        try:
            while ctx.running():
                try:
                    await ctx.destination.send(message)
                except Exception as exc:  # any outage: the record must be stored before the shard moves on
                    failures += 1
                    self.stats.destination_failures += 1
                    self.stats.last_result = f"PROBLEM: on-failure destination {ctx.destination.description} failed"
                    log.error(
                        "mapping %s %s: storing the on-failure record of %s..%s in %s failed (attempt %d; the shard "
                        "waits and retries): %s",
                        ctx.config.uuid,
                        self.shard_id,
                        message["KinesisBatchInfo"]["startSequenceNumber"],
                        message["KinesisBatchInfo"]["endSequenceNumber"],
                        ctx.destination.description,
                        failures,
                        exc,
                    )
                    await self._sleep(delay * (0.5 + random.random() / 2))
                    delay = min(delay * 2, ctx.tuning.throttle_backoff_max_s)
                    continue
                self.stats.dead_lettered += count
                if failures:
                    log.warning(
                        "mapping %s %s: on-failure record stored in %s after %d failed attempts",
                        ctx.config.uuid,
                        self.shard_id,
                        ctx.destination.description,
                        failures,
                    )
                return True
            return False
        finally:
            self.stats.destination_pending -= count

    def _settle(self, entries: list[_Entry]) -> None:
        self._settler.settle(entries)
        # Persist as soon as the settled prefix moves (a poison record retried for hours must not hold back the
        # saved checkpoint of records already handled before it).
        if self._settler.dirty and self.ctx.running():
            self._write_checkpoint()

    # ----------------------------------------------------------------- waiting
    async def _sleep(self, seconds: float) -> None:
        """Sleep on the mapping's clock, or less when the mapping stops (shutdown never waits out a backoff)."""
        if self._stopped.is_set():
            return
        waits = [asyncio.ensure_future(self.ctx.clock.sleep(seconds)), asyncio.ensure_future(self._stopped.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _wait(self, event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def _sub_index(partition_key: str, n: int) -> int:
    return int.from_bytes(md5(partition_key.encode()).digest()[:8], "big") % n
