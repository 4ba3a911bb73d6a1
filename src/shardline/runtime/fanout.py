"""Reading a shard through an enhanced fan-out consumer (SubscribeToShard), behind the same ``ShardSource`` seam.

``FanoutSource`` wraps a polling source (for the shard list, the tip and the lag) and replaces its reads: an
"iterator" is a cursor (a shard and a starting position), and ``get_records`` returns the next event of a
subscription opened at that cursor. Each page's next iterator resumes after the event's
ContinuationSequenceNumber, so the processor (batching, retries, bisection, checkpoints) works as it does with
polling. A subscription that ends (its lifetime, 5 minutes on AWS) is reopened at once at its continuation; a
ResourceInUseException (the previous subscription still holds the consumer and shard) is retried after a backoff.
The last event of a closed shard has no continuation and carries the child shards: the page has no next iterator.

Two ways to subscribe: ``EngineSubscriber`` (the embedded engine's subscription interface, in-process) and
``KinesisSubscriber`` (boto3's ``subscribe_to_shard`` against any endpoint; its event stream is read in a worker
thread).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from ..engine import Engine, Subscription
from ..errors import ExpiredIteratorException, ResourceInUseException
from .source import Page, ShardSource, SourceShard, in_thread, record_from_api

__all__ = ["EngineSubscriber", "FanoutSource", "KinesisSubscriber", "ShardEvents", "Subscriber"]

log = logging.getLogger("shardline.runtime")

RETRY_BACKOFF_S = 1.0  # after ResourceInUseException: AWS lets a subscription hold its consumer and shard for 5 s
RETRY_BACKOFF_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class _Cursor:
    shard_id: str
    kind: str
    sequence_number: str | None = None
    timestamp_ms: int | None = None


class ShardEvents(Protocol):
    """One open subscription."""

    async def next(self) -> Page | None:
        """The next event as a page whose ``next_iterator`` is the continuation (None at the end of a closed shard);
        None once the subscription has ended normally."""
        ...

    def close(self) -> None: ...


class Subscriber(Protocol):
    async def subscribe(self, cursor: _Cursor) -> ShardEvents: ...


class FanoutSource:
    """A ``ShardSource`` that reads records through SubscribeToShard (see the module docstring)."""

    def __init__(self, base: ShardSource, subscriber: Subscriber) -> None:
        self.base = base
        self.subscriber = subscriber
        self.stream_name = base.stream_name
        self.stream_arn = base.stream_arn
        self._tokens = itertools.count(1)
        self._cursors: dict[str, _Cursor] = {}
        self._live: dict[str, tuple[ShardEvents, str]] = {}  # shard -> open subscription, the token it serves
        self._reading: dict[str, ShardEvents] = {}  # shard -> the subscription a ``get_records`` waits on
        self._woken: dict[str, asyncio.Event] = {}
        self.subscriptions: collections.Counter[str] = collections.Counter()  # shard -> subscriptions opened

    async def list_shards(self) -> list[SourceShard]:
        return await self.base.list_shards()

    def tip(self, shard_id: str) -> str | None:
        return self.base.tip(shard_id)

    def lag(self, shard_id: str, checkpoint: str) -> int | None:
        return self.base.lag(shard_id, checkpoint)

    def arm(self, shard_id: str) -> None:
        pass  # a subscription pushes records: nothing to arm

    def wake(self, shard_id: str) -> None:
        """End the current read at once (the mapping is stopping, or wants a fresh read)."""
        self._wake_event(shard_id).set()
        live = self._live.pop(shard_id, None)
        if live is not None:
            live[0].close()
        reading = self._reading.get(shard_id)
        if reading is not None:
            reading.close()

    async def wait_for_data(self, shard_id: str, timeout_s: float) -> None:
        return  # ``get_records`` itself waits for the next pushed event

    def _wake_event(self, shard_id: str) -> asyncio.Event:
        event = self._woken.get(shard_id)
        if event is None:
            event = self._woken[shard_id] = asyncio.Event()
        return event

    def _token(self, cursor: _Cursor) -> str:
        token = f"fanout-{next(self._tokens)}"
        self._cursors[token] = cursor
        return token

    async def get_iterator(
        self, shard_id: str, kind: str, *, sequence_number: str | None = None, timestamp_ms: int | None = None
    ) -> str:
        return self._token(_Cursor(shard_id, kind, sequence_number, timestamp_ms))

    async def get_records(self, iterator: str, limit: int) -> Page:
        """The next event at the cursor ``iterator`` (all its records: an event holds at most 10,000, 2 MiB)."""
        cursor = self._cursors.pop(iterator, None)
        if cursor is None:
            raise ExpiredIteratorException(f"Iterator {iterator} is not one this source handed out, or was used")
        shard = cursor.shard_id
        woken = self._wake_event(shard)
        woken.clear()
        live = self._live.pop(shard, None)
        events: ShardEvents | None = None
        if live is not None:
            if live[1] == iterator:
                events = live[0]
            else:
                live[0].close()
        backoff = RETRY_BACKOFF_S
        while True:
            if events is None:
                try:
                    events = await self.subscriber.subscribe(cursor)
                    self.subscriptions[shard] += 1
                except ResourceInUseException as exc:
                    log.info("%s %s: subscription refused (%s); retrying", self.stream_name, shard, exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), backoff)
                    backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
                    if woken.is_set():
                        return Page([], self._token(cursor), 0, None)
                    continue
            if woken.is_set():  # woken while subscribing
                events.close()
                return Page([], self._token(cursor), 0, None)
            self._reading[shard] = events
            try:
                page = await events.next()
            except ResourceInUseException:  # another subscription took the consumer and shard over
                events.close()
                events = None
                continue
            except BaseException:
                events.close()
                raise
            finally:
                self._reading.pop(shard, None)
            if page is None:  # ended: its lifetime, or closed by ``wake``
                events.close()
                events = None
                if woken.is_set():
                    return Page([], self._token(cursor), 0, None)
                continue
            if page.next_iterator is None:  # the end of a closed shard
                events.close()
                return page
            after = _Cursor(shard, "AFTER_SEQUENCE_NUMBER", page.next_iterator)
            token = self._token(after)
            self._live[shard] = (events, token)
            return page._replace(next_iterator=token)


# ------------------------------------------------------------------------------------------------------- engine


class _EngineEvents:
    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    async def next(self) -> Page | None:
        ev = await self.sub.next_event()
        if ev is None:
            return None
        children = tuple(c.shard_id for c in ev.child_shards) if ev.continuation_sequence_number is None else None
        return Page(ev.records, ev.continuation_sequence_number, ev.millis_behind_latest, children)

    def close(self) -> None:
        self.sub.close()


class _ConsumerSubscriber:
    """Subscribes through the consumer ``consumer_name`` of the stream ``stream_arn``; the consumer's ARN is looked
    up on the first subscription."""

    def __init__(self, stream_arn: str, consumer_name: str) -> None:
        self.stream_arn = stream_arn
        self.consumer_name = consumer_name
        self._arn: str | None = None

    async def subscribe(self, cursor: _Cursor) -> ShardEvents:
        if self._arn is None:
            self._arn = await self._consumer_arn()
        return await self._open(self._arn, cursor)

    async def _consumer_arn(self) -> str:
        raise NotImplementedError

    async def _open(self, consumer_arn: str, cursor: _Cursor) -> ShardEvents:
        raise NotImplementedError


class EngineSubscriber(_ConsumerSubscriber):
    """Subscriptions of the embedded engine, through the consumer ``consumer_name`` of the source's stream."""

    def __init__(self, engine: Engine, stream_arn: str, consumer_name: str) -> None:
        super().__init__(stream_arn, consumer_name)
        self.engine = engine

    async def _consumer_arn(self) -> str:
        c = await self.engine.describe_stream_consumer(stream_arn=self.stream_arn, consumer_name=self.consumer_name)
        return c.consumer_arn

    async def _open(self, consumer_arn: str, cursor: _Cursor) -> ShardEvents:
        sub = await self.engine.subscribe_to_shard(
            consumer_arn=consumer_arn,
            shard_id=cursor.shard_id,
            starting_position=cursor.kind,
            sequence_number=cursor.sequence_number,
            timestamp_ms=cursor.timestamp_ms,
        )
        return _EngineEvents(sub)


# ------------------------------------------------------------------------------------------------------- boto3

_BODY = "shardline:body"  # where ``_keep_body`` puts the HTTP response in boto3's SubscribeToShard answer


def _keep_body(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
    """botocore's ``after-call`` event of SubscribeToShard: the answer carries the HTTP response its event stream is
    read from, so that ``_KinesisEvents.close`` can shut that response down."""
    if "EventStream" in parsed:
        parsed[_BODY] = http_response.raw


class _KinesisEvents:
    def __init__(self, stream: Any, body: Any) -> None:
        self.stream = stream
        self.body = body  # the urllib3 response the event stream reads
        self.events = iter(stream)
        self.closed = False

    def _read(self) -> Page | None:
        for item in self.events:
            ev = item.get("SubscribeToShardEvent")
            if ev is None:
                continue  # the initial-response event
            records = [record_from_api(x) for x in ev.get("Records", [])]
            cont = ev.get("ContinuationSequenceNumber")
            children = tuple(c["ShardId"] for c in ev.get("ChildShards", [])) if cont is None else None
            return Page(records, cont, int(ev.get("MillisBehindLatest", 0)), children)
        return None

    async def next(self) -> Page | None:
        try:
            return await in_thread(self._read)
        except Exception:
            if self.closed:
                return None  # closed under the reading thread
            raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # Closing the stream waits for a read blocked in another thread, which waits for the next event (up to
            # a 5 s heartbeat): the response's shutdown() (urllib3 2.3 and later) ends that read at once.
            with contextlib.suppress(Exception):
                self.body.shutdown()
            with contextlib.suppress(Exception):
                self.stream.close()


class KinesisSubscriber(_ConsumerSubscriber):
    """Subscriptions over boto3's ``subscribe_to_shard`` (an HTTP/1.1 event stream) of any Kinesis endpoint."""

    def __init__(self, client: Any, stream_arn: str, consumer_name: str) -> None:
        super().__init__(stream_arn, consumer_name)
        self.client = client
        client.meta.events.register("after-call.kinesis.SubscribeToShard", _keep_body, unique_id=_BODY)

    async def _consumer_arn(self) -> str:
        r = await in_thread(
            self.client.describe_stream_consumer, StreamARN=self.stream_arn, ConsumerName=self.consumer_name
        )
        return str(r["ConsumerDescription"]["ConsumerARN"])

    async def _open(self, consumer_arn: str, cursor: _Cursor) -> ShardEvents:
        start: dict[str, Any] = {"Type": cursor.kind}
        if cursor.sequence_number is not None:
            start["SequenceNumber"] = cursor.sequence_number
        if cursor.timestamp_ms is not None:
            start["Timestamp"] = cursor.timestamp_ms / 1000
        r = await in_thread(
            self.client.subscribe_to_shard, ConsumerARN=consumer_arn, ShardId=cursor.shard_id, StartingPosition=start
        )
        return _KinesisEvents(r["EventStream"], r.get(_BODY))
