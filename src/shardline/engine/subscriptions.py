"""Enhanced fan-out: SubscribeToShard as engine semantics, behind a small async interface.

``Engine.subscribe_to_shard`` checks the request (consumer ACTIVE, shard, starting position) and returns a
``Subscription``; the API turns its events into event-stream messages. A subscription:

- reads when asked (``next_event``) and never ahead, so a client that reads slowly holds one event at most;
- waits on the shard's data signal (set by every put that makes records readable, and by the shard's close), not on
  a poll, and returns an event with no records after ``HEARTBEAT_MS`` of silence (clients time out without one);
- carries a ``ContinuationSequenceNumber`` in every event while the shard is open, usable as AFTER_SEQUENCE_NUMBER
  to resume exactly; at the end of a closed shard it sends one event with the child shards and no continuation,
  then ends;
- ends after ``settings.subscription_lifetime_s`` (AWS: 5 minutes), read from the engine's clock;
- is the only one for its consumer and shard: a second subscribe within ``TAKEOVER_MS`` of the first is refused with
  ResourceInUseException, a later one takes over and the first ends with that error;
- ends with ResourceNotFoundException when its consumer is deregistered or its stream deleted;
- under ``enforce_limits``, reads at most ``settings.subscription_bytes_per_s`` per consumer and shard.

Position before the first record: a shard's numbers are ``prefix + offset`` with nothing below offset 0, so a
subscription that has delivered nothing from an empty shard reports ``prefix - 1`` as its continuation, and
SubscribeToShard reads that number as "before the first record" (it is no record's number; GetShardIterator does
not accept it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..clock import SystemClock
from ..errors import (
    DryRunOperationException,
    InternalFailureException,
    KinesisError,
    ResourceInUseException,
    ResourceNotFoundException,
)
from ..models import ChildShard, ConsumerRef, Record, ShardIteratorType, StreamStatus
from ..storage import unwritten
from . import messages as m
from ._base import EngineBase
from .data import parse_shard_id
from .limits import TokenBucket
from .streams import ConsumerState, ShardSignal, ShardState, StreamState, shard_id_of

__all__ = ["HEARTBEAT_MS", "MAX_EVENT_BYTES", "MAX_EVENT_RECORDS", "TAKEOVER_MS", "ShardEvent", "Subscription"]

log = logging.getLogger("shardline.engine")

HEARTBEAT_MS = 5_000  # AWS: at least one event every 5 s, records or not
TAKEOVER_MS = 5_000  # AWS: a subscription holds its consumer and shard for 5 s before another may take over
MAX_EVENT_RECORDS = 10_000
MAX_EVENT_BYTES = 2 * 1024 * 1024  # partition keys + data of one event: a second's worth at AWS's per-shard rate

_Key = tuple[int, str, int, int]  # stream tag, consumer name, consumer creation ms, shard index


@dataclass(frozen=True, slots=True)
class ShardEvent:
    """One SubscribeToShardEvent. ``continuation_sequence_number`` is None only in the last event of a closed shard,
    which carries ``child_shards``."""

    records: list[Record]
    continuation_sequence_number: str | None
    millis_behind_latest: int
    child_shards: tuple[ChildShard, ...] = ()


class Subscription:
    """One SubscribeToShard. ``next_event`` returns the next event to send, or None once the subscription has ended
    normally (its lifetime, the shard's end delivered, the engine closed, ``close``). It raises the in-stream errors:
    ResourceInUseException (another subscription took over), ResourceNotFoundException (consumer or stream
    deleted), InternalFailureException (a read failed). ``close`` frees the consumer and shard at once."""

    def __init__(
        self,
        owner: Subscriptions,
        *,
        key: _Key,
        st: StreamState,
        shard: ShardState,
        consumer: ConsumerState,
        offset: int,
        bucket: TokenBucket | None,
    ) -> None:
        self._owner = owner
        self.key = key
        self._st = st
        self._shard = shard
        self._consumer = consumer
        self._offset = offset
        self._bucket = bucket
        now = owner.clock.now_ms()
        self.started_ms = now
        self.expires_ms = now + round(owner.settings.subscription_lifetime_s * 1000)
        self._heartbeat_due = now  # the first event goes out at once, records or not
        self._ended = False
        self._error: KinesisError | None = None
        # Woken by the shard's signal (every put that makes records readable, the shard's close) and by ``end``;
        # an event of its own, so other readers of the shard clearing theirs never swallow a wake-up.
        self._wake = asyncio.Event()
        signal = st.signals.get(shard.index)
        if signal is None:
            signal = st.signals[shard.index] = ShardSignal()
        self._signal = signal
        signal.listeners.add(self._wake)

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def shard_id(self) -> str:
        return self._shard.shard_id

    @property
    def continuation(self) -> str:
        """The number to resubscribe from (AFTER_SEQUENCE_NUMBER): the last record delivered, or just before the
        position the subscription started from."""
        return str(self._shard.seq_prefix + self._offset - 1)

    def close(self) -> None:
        """End it (the client went away); the consumer and shard are free for another subscription at once."""
        self.end(None)

    def end(self, error: KinesisError | None) -> None:
        """End it, with ``error`` for its reader (None: a normal end), and wake a reader waiting for records."""
        if self._ended:
            return
        self._ended, self._error = True, error
        self._owner._forget_subscription(self)
        self._signal.listeners.discard(self._wake)
        self._wake.set()

    async def next_event(self) -> ShardEvent | None:
        clock = self._owner.clock
        while True:
            # Transitions are applied lazily, by whoever looks (engine/_base.py): a subscription looks too, so a
            # reshard that completes while nobody calls the engine still closes its shard, and its deletion ends it.
            self._owner._tick()
            self._check()
            if self._ended:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return None
            now = clock.now_ms()
            if now >= self.expires_ms:
                self.end(None)
                return None
            sh = self._shard
            lg = sh.log
            if lg is None:  # (the closed shard expired under retention)
                self.end(None)
                raise ResourceNotFoundException(
                    self._owner._fmt(m.SHARD_NOT_EXIST, self._st.name, shard=self._shard.shard_id)
                )
            self._wake.clear()  # before reading: a put from here on wakes the wait below
            end = lg.visible_offset
            wait_ms = max(0, min(self._heartbeat_due, self.expires_ms, self._owner._next_transition_ms) - now)
            if self._offset < end:
                throttled_s = self._throttled_s()
                if throttled_s:
                    wait_ms = min(wait_ms, max(1, round(throttled_s * 1000)))
                else:
                    before = self._offset
                    event = self._read(now, end)
                    if event is not None:
                        return event
                    if self._ended or self._offset > before:
                        continue  # (a failed read, or a range that held no readable record: look again at once)
            elif not sh.is_open:
                self.end(None)
                return ShardEvent([], None, 0, self._st.children_of(sh))
            if now >= self._heartbeat_due:
                self._heartbeat_due = now + HEARTBEAT_MS
                return ShardEvent([], self.continuation, 0)
            await self._wait(wait_ms)

    def _check(self) -> None:
        """End the subscription when its engine closed, or its stream or consumer went away."""
        if self._ended:
            return
        owner = self._owner
        if owner._closed:
            self.end(None)
            return
        st = self._st
        if owner.streams.get(st.name) is not st or st.status is StreamStatus.DELETING:
            self.end(ResourceNotFoundException(owner._fmt(m.STREAM_NOT_FOUND, st.name)))
            return
        c = self._consumer
        if st.consumers.get(c.name) is not c or c.status != "ACTIVE":
            self.end(ResourceNotFoundException(owner._fmt(m.CONSUMER_NOT_FOUND, st.name, consumer=c.name)))

    def _throttled_s(self) -> float:
        bucket = self._bucket
        if bucket is None:
            return 0.0
        return bucket.seconds_until(1, self._owner.clock.monotonic())

    def _read(self, now: int, end: int) -> ShardEvent | None:
        st, sh = self._st, self._shard
        lg = sh.log
        assert lg is not None
        max_bytes = MAX_EVENT_BYTES
        bucket = self._bucket
        if bucket is not None:
            max_bytes = max(1, min(max_bytes, int(bucket.level(self._owner.clock.monotonic()))))
        enc = None if st.encryption_type == "NONE" else st.encryption_type
        try:
            records, nxt, nbytes = unwritten.read_counted(
                lg, self._offset, MAX_EVENT_RECORDS, max_bytes, id_base=sh.seq_prefix, encryption=enc
            )
            arrival = unwritten.arrival_of(lg, nxt) if nxt < end else None
        except OSError as exc:
            log.error("stream %s %s: subscription read failed: %s", st.name, sh.shard_id, exc)
            self.end(InternalFailureException("Internal Service Failure"))
            return None
        if bucket is not None:
            bucket.spend(nbytes, self._owner.clock.monotonic())
        self._offset = max(self._offset, nxt)
        if not records:
            return None
        self._heartbeat_due = now + HEARTBEAT_MS
        behind = max(0, now - arrival) if arrival is not None else 0
        return ShardEvent(records, self.continuation, behind)

    async def _wait(self, timeout_ms: int) -> None:
        """Until woken (new records, the shard's close, ``end``) or ``timeout_ms`` passes on the engine's clock."""
        clock = self._owner.clock
        if type(clock) is SystemClock:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_ms / 1000):
                    await self._wake.wait()
            return
        waiter = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(clock.sleep(timeout_ms / 1000))
        try:
            await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()


class Subscriptions(EngineBase):
    """The engine's SubscribeToShard: who holds each consumer and shard, and the start of a subscription."""

    _subscriptions: dict[_Key, Subscription]
    _subscription_buckets: dict[_Key, TokenBucket]

    if TYPE_CHECKING:  # (Admin's, mixed into the same Engine)

        def _find_consumer(self, ref: ConsumerRef) -> tuple[StreamState, ConsumerState]: ...

    async def subscribe_to_shard(
        self,
        *,
        consumer_arn: str,
        shard_id: str,
        starting_position: ShardIteratorType | str,
        sequence_number: str | None = None,
        timestamp_ms: int | None = None,
        dry_run: bool = False,
    ) -> Subscription:
        """Start a subscription (see the module docstring); raises what SubscribeToShard answers before its stream
        starts. With ``dry_run``, raises DryRunOperationException where it would have started one."""
        st, c = self._find_consumer({"consumer_arn": consumer_arn})
        if st.status is StreamStatus.DELETING:
            raise ResourceNotFoundException(self._fmt(m.CONSUMER_NOT_FOUND, st.name, consumer=c.name))
        if c.status != "ACTIVE":
            raise ResourceInUseException(
                self._fmt(m.CONSUMER_NOT_ACTIVE, st.name, consumer=c.name, created=c.created_ms // 1000)
            )
        index = parse_shard_id(shard_id)
        shard = st.shard(index) if index is not None else None
        if shard is None or shard.log is None:
            shown = shard_id_of(index) if index is not None else shard_id
            raise ResourceNotFoundException(self._fmt(m.SHARD_NOT_EXIST, st.name, shard=shown))
        # Members that do not go with the type are ignored (GetShardIterator refuses a sequence number with
        # TRIM_HORIZON or LATEST; AWS documents no such check here).
        kind = ShardIteratorType(starting_position)
        if _continues_from_start(kind, sequence_number, shard):
            offset = 0
        else:
            offset = self._start_offset(st, shard, kind, sequence_number, timestamp_ms, seq_texts=m.SUBSCRIBE_SEQ_TEXTS)
        if dry_run:
            raise DryRunOperationException("The request was rejected because the DryRun parameter was specified.")
        key: _Key = (st.tag, c.name, c.created_ms, shard.index)
        held = self._subscriptions.get(key)
        if held is not None:
            in_use = self._fmt(m.SUBSCRIPTION_IN_USE, st.name, shard=shard.shard_id, consumer=c.name)
            if self.clock.now_ms() - held.started_ms < TAKEOVER_MS:
                raise ResourceInUseException(in_use)
            held.end(ResourceInUseException(in_use))
        bucket: TokenBucket | None = None
        if self.settings.enforce_limits:
            bucket = self._subscription_buckets.get(key)
            if bucket is None:
                bucket = TokenBucket(self.settings.subscription_bytes_per_s, self.clock.monotonic())
                self._subscription_buckets[key] = bucket
        sub = Subscription(self, key=key, st=st, shard=shard, consumer=c, offset=offset, bucket=bucket)
        self._subscriptions[key] = sub
        return sub

    def _forget_subscription(self, sub: Subscription) -> None:
        if self._subscriptions.get(sub.key) is sub:
            del self._subscriptions[sub.key]

    def _end_subscriptions(self, st: StreamState, consumer: str | None = None) -> None:
        """The stream (or one of its consumers) is going away: its subscriptions end with ResourceNotFoundException."""
        for key, sub in list(self._subscriptions.items()):
            if key[0] == st.tag and (consumer is None or key[1] == consumer):
                if consumer is None:
                    sub.end(ResourceNotFoundException(self._fmt(m.STREAM_NOT_FOUND, st.name)))
                else:
                    sub.end(ResourceNotFoundException(self._fmt(m.CONSUMER_NOT_FOUND, st.name, consumer=consumer)))
        for key in [k for k in self._subscription_buckets if k[0] == st.tag and consumer in (None, k[1])]:
            del self._subscription_buckets[key]

    def _end_all_subscriptions(self) -> None:
        for sub in list(self._subscriptions.values()):
            sub.end(None)


def _continues_from_start(kind: ShardIteratorType, seq: str | None, shard: ShardState) -> bool:
    """Whether ``seq`` is the continuation of a subscription that delivered nothing from offset 0 (module docstring)."""
    at_seq = kind in (ShardIteratorType.AT_SEQUENCE_NUMBER, ShardIteratorType.AFTER_SEQUENCE_NUMBER)
    return at_seq and seq is not None and seq.isascii() and seq.isdigit() and int(seq) == shard.seq_prefix - 1
