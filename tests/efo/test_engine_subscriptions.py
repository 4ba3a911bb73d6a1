"""Engine.subscribe_to_shard on a ManualClock: positions, continuation, pushes, heartbeats, lifetime, takeover,
consumer status, deletion, shard end and the per-consumer rate limit. Nobody sleeps: waits end on a put, an engine
call or ``clock.advance``; ``asyncio.wait_for`` deadlines only turn a hang into a failure."""

from __future__ import annotations

import asyncio

import pytest

from engine._kit import Kit
from shardline import Engine, ManualClock
from shardline.engine import ShardEvent, Subscription
from shardline.engine.subscriptions import HEARTBEAT_MS, MAX_EVENT_RECORDS, TAKEOVER_MS
from shardline.errors import (
    DryRunOperationException,
    InvalidArgumentException,
    ResourceInUseException,
    ResourceNotFoundException,
)

ACCOUNT = "000000000000"
ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/s"
S0, S1, S2 = (f"shardId-{i:012d}" for i in range(3))
DEADLINE_S = 10.0  # only turns a hang into a failure


async def setup(engine: Engine, shards: int = 1, consumer: str = "c") -> str:
    """Stream ``s`` with an ACTIVE consumer; returns its ARN."""
    await engine.create_stream("s", shards)
    return (await engine.register_stream_consumer(ARN, consumer)).consumer_arn


async def put(engine: Engine, data: bytes, key: str = "k") -> str:
    return (await engine.put_record(stream_name="s", data=data, partition_key=key)).sequence_number


async def subscribe(
    engine: Engine,
    arn: str,
    kind: str = "TRIM_HORIZON",
    shard: str = S0,
    *,
    sequence_number: str | None = None,
    timestamp_ms: int | None = None,
    dry_run: bool = False,
) -> Subscription:
    return await engine.subscribe_to_shard(
        consumer_arn=arn,
        shard_id=shard,
        starting_position=kind,
        sequence_number=sequence_number,
        timestamp_ms=timestamp_ms,
        dry_run=dry_run,
    )


async def settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def event(sub: Subscription) -> ShardEvent:
    ev = await asyncio.wait_for(sub.next_event(), DEADLINE_S)
    assert ev is not None
    return ev


async def records_until(sub: Subscription, count: int) -> list[str]:
    """Sequence numbers of the next ``count`` records, over as many events as it takes (without the clock moving)."""
    out: list[str] = []
    while len(out) < count:
        out += [r.sequence_number for r in (await event(sub)).records]
    return out


# ----------------------------------------------------------------- records and positions
async def test_records_already_there_then_each_put_pushed_without_the_clock_moving(engine: Engine) -> None:
    arn = await setup(engine)
    first = [await put(engine, bytes([0, i, 0])) for i in range(3)]
    sub = await subscribe(engine, arn)
    ev = await event(sub)
    assert [r.sequence_number for r in ev.records] == first
    assert [r.data for r in ev.records] == [bytes([0, i, 0]) for i in range(3)]
    assert ev.continuation_sequence_number == first[-1]
    assert ev.millis_behind_latest == 0 and ev.child_shards == ()

    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    assert not waiting.done()  # nothing new: it waits for a put, not for a poll
    later = await put(engine, b"later")
    ev2 = await asyncio.wait_for(waiting, DEADLINE_S)
    assert ev2 is not None
    assert [r.sequence_number for r in ev2.records] == [later]
    assert ev2.continuation_sequence_number == later
    sub.close()


async def test_another_reader_of_the_shard_clearing_its_signal_swallows_no_push(engine: Engine) -> None:
    arn = await setup(engine)
    sub = await subscribe(engine, arn)
    await event(sub)
    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    shared = engine.data_signal("s", S0)
    assert shared is not None
    put = engine.put_record(stream_name="s", data=b"x", partition_key="k")
    # A polling reader arms the shard's shared signal for its next read right after the put set it, before the
    # subscription ran: the subscription is woken all the same.
    seq = (await put).sequence_number
    shared.clear()
    ev = await asyncio.wait_for(waiting, DEADLINE_S)
    assert ev is not None and [r.sequence_number for r in ev.records] == [seq]
    sub.close()


async def test_every_starting_position(engine: Engine, clock: ManualClock) -> None:
    arn = await setup(engine)
    seqs = []
    for i in range(4):
        seqs.append(await put(engine, b"%d" % i))
        clock.advance(1)
    arrival_2 = clock.now_ms() - 2000  # records arrived at t0, t0+1 s, ...

    async def first_records(
        kind: str, sequence_number: str | None = None, timestamp_ms: int | None = None
    ) -> list[str]:
        sub = await subscribe(engine, arn, kind, sequence_number=sequence_number, timestamp_ms=timestamp_ms)
        try:
            return [r.sequence_number for r in (await event(sub)).records]
        finally:
            sub.close()

    assert await first_records("TRIM_HORIZON") == seqs
    assert await first_records("AT_SEQUENCE_NUMBER", sequence_number=seqs[1]) == seqs[1:]
    assert await first_records("AFTER_SEQUENCE_NUMBER", sequence_number=seqs[1]) == seqs[2:]
    assert await first_records("LATEST") == []
    assert await first_records("AT_TIMESTAMP", timestamp_ms=arrival_2) == seqs[2:]
    assert await first_records("AT_TIMESTAMP", timestamp_ms=clock.now_ms() - 3_600_000) == seqs
    # Members that do not go with the type are ignored.
    assert await first_records("TRIM_HORIZON", sequence_number=seqs[2]) == seqs


async def test_latest_starts_after_what_is_there_at_subscribe_time(engine: Engine) -> None:
    arn = await setup(engine)
    await put(engine, b"old")
    sub = await subscribe(engine, arn, "LATEST")
    new = await put(engine, b"new")
    assert await records_until(sub, 1) == [new]
    sub.close()


async def test_continuation_resumes_exactly_even_before_the_first_record(engine: Engine) -> None:
    arn = await setup(engine)
    sub = await subscribe(engine, arn)
    empty = await event(sub)  # the first event goes out at once, records or not
    assert empty.records == []
    sub.close()
    # Nothing delivered from an empty shard: the continuation is "before the first record", no record's number.
    seqs = [await put(engine, b"%d" % i) for i in range(5)]
    assert empty.continuation_sequence_number is not None
    assert int(empty.continuation_sequence_number) == int(seqs[0]) - 1

    sub = await subscribe(engine, arn, "AFTER_SEQUENCE_NUMBER", sequence_number=empty.continuation_sequence_number)
    got = await event(sub)
    assert [r.sequence_number for r in got.records] == seqs
    sub.close()

    # Read part, stop, resume after the continuation: the rest, no gap, no duplicate.
    sub = await subscribe(engine, arn, "AT_SEQUENCE_NUMBER", sequence_number=seqs[2])
    part = await event(sub)
    sub.close()
    more = [await put(engine, b"m%d" % i) for i in range(2)]
    assert part.continuation_sequence_number == seqs[-1]
    sub = await subscribe(engine, arn, "AFTER_SEQUENCE_NUMBER", sequence_number=part.continuation_sequence_number)
    assert await records_until(sub, 2) == more
    sub.close()


async def test_an_event_holds_at_most_ten_thousand_records(engine: Engine) -> None:
    arn = await setup(engine)
    for _ in range(21):
        await engine.put_records([(b"x", "k")] * 500, stream_name="s")
    sub = await subscribe(engine, arn)
    first = await event(sub)
    assert len(first.records) == MAX_EVENT_RECORDS
    assert first.millis_behind_latest >= 0
    second = await event(sub)
    assert len(second.records) == 21 * 500 - MAX_EVENT_RECORDS
    assert int(second.records[0].sequence_number) == int(first.records[-1].sequence_number) + 1
    sub.close()


async def test_every_consumer_gets_every_record(engine: Engine) -> None:
    arn_a = await setup(engine, consumer="a")
    arn_b = (await engine.register_stream_consumer(ARN, "b")).consumer_arn
    sub_a, sub_b = await subscribe(engine, arn_a, "LATEST"), await subscribe(engine, arn_b, "LATEST")
    seqs = [await put(engine, b"%d" % i) for i in range(3)]
    assert await records_until(sub_a, 3) == seqs
    assert await records_until(sub_b, 3) == seqs
    sub_a.close()
    sub_b.close()


# ----------------------------------------------------------------- time: heartbeats and lifetime
async def test_an_idle_subscription_sends_an_empty_event_every_five_seconds(engine: Engine, clock: ManualClock) -> None:
    arn = await setup(engine)
    seq = await put(engine, b"x")
    sub = await subscribe(engine, arn)
    assert (await event(sub)).continuation_sequence_number == seq
    for _ in range(3):
        waiting = asyncio.ensure_future(sub.next_event())
        await settle()
        clock.advance(ms=HEARTBEAT_MS - 1)
        await settle()
        assert not waiting.done()
        clock.advance(ms=1)
        beat = await asyncio.wait_for(waiting, DEADLINE_S)
        assert beat == ShardEvent([], seq, 0)
    sub.close()


async def test_the_subscription_ends_after_its_lifetime_and_a_resubscribe_loses_nothing(
    kit: Kit, clock: ManualClock
) -> None:
    engine = await kit.open(subscription_lifetime_s=12)
    arn = await setup(engine)
    sub = await subscribe(engine, arn)
    last = (await event(sub)).continuation_sequence_number
    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    for _ in range(2):  # heartbeats at 5 s and 10 s
        clock.advance(5)
        beat = await asyncio.wait_for(waiting, DEADLINE_S)
        assert beat is not None and beat.records == []
        waiting = asyncio.ensure_future(sub.next_event())
        await settle()
    clock.advance(2)
    assert await asyncio.wait_for(waiting, DEADLINE_S) is None  # a normal end, no error
    assert await sub.next_event() is None
    gap = [await put(engine, b"%d" % i) for i in range(3)]  # written while no subscription is open
    sub = await subscribe(engine, arn, "AFTER_SEQUENCE_NUMBER", sequence_number=last)
    assert await records_until(sub, 3) == gap
    sub.close()


# ----------------------------------------------------------------- one subscription per consumer and shard
async def test_a_second_subscribe_within_five_seconds_is_refused_a_later_one_takes_over(
    engine: Engine, clock: ManualClock
) -> None:
    arn = await setup(engine)
    first = await subscribe(engine, arn)
    await event(first)
    in_use = f"Another active subscription exists for this consumer: {ACCOUNT}:s:{S0}:c"
    clock.advance(ms=TAKEOVER_MS - 1)
    with pytest.raises(ResourceInUseException) as refused:
        await subscribe(engine, arn)
    assert refused.value.message == in_use
    waiting = asyncio.ensure_future(first.next_event())
    await settle()
    clock.advance(ms=1)
    second = await subscribe(engine, arn)
    with pytest.raises(ResourceInUseException) as taken:
        await asyncio.wait_for(waiting, DEADLINE_S)
    assert taken.value.message == in_use
    assert await first.next_event() is None
    assert (await event(second)).records == []
    second.close()
    # A closed subscription frees its consumer and shard at once.
    third = await subscribe(engine, arn)
    third.close()


async def test_subscriptions_of_one_consumer_on_different_shards_are_independent(engine: Engine) -> None:
    arn = await setup(engine, shards=2)
    a, b = await subscribe(engine, arn, shard=S0), await subscribe(engine, arn, shard=S1)
    await event(a)
    await event(b)
    a.close()
    b.close()


async def test_dry_run_checks_everything_and_holds_nothing(engine: Engine) -> None:
    arn = await setup(engine)
    with pytest.raises(DryRunOperationException):
        await subscribe(engine, arn, dry_run=True)
    with pytest.raises(ResourceNotFoundException):
        await subscribe(engine, arn, shard=S2, dry_run=True)
    sub = await subscribe(engine, arn)
    sub.close()


# ----------------------------------------------------------------- consumer status and deletion
async def test_the_consumer_must_be_active(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(status_delay_s=2)
    await engine.create_stream("s", 1)
    clock.advance(2)
    c = await engine.register_stream_consumer(ARN, "c")
    with pytest.raises(ResourceInUseException) as creating:
        await subscribe(engine, c.consumer_arn)
    assert creating.value.message == (
        f"Consumer c with creation timestamp {c.consumer_creation_timestamp_ms // 1000} under stream: s , account "
        f"{ACCOUNT} is not in ACTIVE status."
    )
    clock.advance(2)
    sub = await subscribe(engine, c.consumer_arn)
    sub.close()
    await engine.deregister_stream_consumer(consumer_arn=c.consumer_arn)
    with pytest.raises(ResourceInUseException):  # DELETING
        await subscribe(engine, c.consumer_arn)
    clock.advance(2)
    with pytest.raises(ResourceNotFoundException):  # gone
        await subscribe(engine, c.consumer_arn)


async def test_deregistering_the_consumer_ends_its_subscription(engine: Engine) -> None:
    arn = await setup(engine)
    sub = await subscribe(engine, arn)
    await event(sub)
    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    await engine.deregister_stream_consumer(consumer_arn=arn)
    with pytest.raises(ResourceNotFoundException) as gone:
        await asyncio.wait_for(waiting, DEADLINE_S)
    assert gone.value.message == f"Consumer c under stream s not found for account {ACCOUNT}."
    assert await sub.next_event() is None


async def test_deleting_the_stream_ends_its_subscriptions(engine: Engine) -> None:
    arn = await setup(engine)
    sub = await subscribe(engine, arn)
    await event(sub)
    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    await engine.delete_stream("s", enforce_consumer_deletion=True)
    with pytest.raises(ResourceNotFoundException) as gone:
        await asyncio.wait_for(waiting, DEADLINE_S)
    assert gone.value.message == f"Stream s under account {ACCOUNT} not found."


async def test_closing_the_engine_ends_subscriptions_normally(kit: Kit) -> None:
    engine = await kit.open()
    arn = await setup(engine)
    sub = await subscribe(engine, arn)
    await event(sub)
    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    await engine.close()
    assert await asyncio.wait_for(waiting, DEADLINE_S) is None


# ----------------------------------------------------------------- errors before the stream
async def test_errors_before_the_stream_starts(engine: Engine, clock: ManualClock) -> None:
    arn = await setup(engine)
    with pytest.raises(ResourceNotFoundException) as no_consumer:
        await subscribe(engine, arn.replace("consumer/c:", "consumer/nobody:"))
    assert no_consumer.value.message == f"Consumer nobody under stream s not found for account {ACCOUNT}."
    with pytest.raises(ResourceNotFoundException) as no_shard:
        await subscribe(engine, arn, shard=S2)
    assert no_shard.value.message == f"Shard {S2} in stream s under account {ACCOUNT} does not exist"
    with pytest.raises(InvalidArgumentException) as no_seq:
        await subscribe(engine, arn, "AT_SEQUENCE_NUMBER")
    assert no_seq.value.message == "StartingPosition of type AT_SEQUENCE_NUMBER needs a SequenceNumber."
    with pytest.raises(InvalidArgumentException) as bad_seq:
        await subscribe(engine, arn, "AFTER_SEQUENCE_NUMBER", sequence_number="12345")
    assert bad_seq.value.message == (
        f"StartingSequenceNumber 12345 used in SubscribeToShard on shard {S0} in stream s under account {ACCOUNT} "
        "is invalid."
    )
    with pytest.raises(InvalidArgumentException):
        await subscribe(engine, arn, "AT_TIMESTAMP")
    with pytest.raises(InvalidArgumentException):
        await subscribe(engine, arn, "AT_TIMESTAMP", timestamp_ms=clock.now_ms() + 1000)
    # Another stream's number.
    await engine.create_stream("t", 1)
    other = (await engine.put_record(stream_name="t", data=b"x", partition_key="k")).sequence_number
    with pytest.raises(InvalidArgumentException) as foreign:
        await subscribe(engine, arn, "AT_SEQUENCE_NUMBER", sequence_number=other)
    assert foreign.value.message is not None and "did not come from this stream" in foreign.value.message


# ----------------------------------------------------------------- resharding
async def test_a_split_parent_delivers_its_records_then_its_children_and_ends(engine: Engine) -> None:
    arn = await setup(engine)
    before = [await put(engine, b"%d" % i) for i in range(3)]
    sub = await subscribe(engine, arn)
    assert await records_until(sub, 3) == before
    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=1 << 127)
    last = await asyncio.wait_for(waiting, DEADLINE_S)
    assert last is not None
    assert last.records == [] and last.continuation_sequence_number is None
    assert [(c.shard_id, c.parent_shards) for c in last.child_shards] == [(S1, (S0,)), (S2, (S0,))]
    assert [c.hash_key_range.starting_hash_key for c in last.child_shards] == [0, 1 << 127]
    assert await sub.next_event() is None

    # Subscribing to the closed parent later: its records, then the same final event.
    again = await subscribe(engine, arn, "LATEST")
    final = await event(again)
    assert final.continuation_sequence_number is None and final.child_shards == last.child_shards
    assert await again.next_event() is None
    again = await subscribe(engine, arn, "AT_SEQUENCE_NUMBER", sequence_number=before[1])
    assert [r.sequence_number for r in (await event(again)).records] == before[1:]
    assert (await event(again)).child_shards == last.child_shards
    assert await again.next_event() is None


async def test_a_merge_child_names_both_parents(engine: Engine) -> None:
    arn = await setup(engine, shards=2)
    sub = await subscribe(engine, arn, shard=S1)
    await event(sub)
    await engine.merge_shards(stream_name="s", shard_to_merge=S0, adjacent_shard_to_merge=S1)
    final = await event(sub)
    assert [(c.shard_id, c.parent_shards) for c in final.child_shards] == [(S2, (S0, S1))]
    assert await sub.next_event() is None


# ----------------------------------------------------------------- throughput limit
async def test_under_enforce_limits_a_consumer_reads_a_shard_at_the_configured_rate(
    kit: Kit, clock: ManualClock
) -> None:
    engine = await kit.open(enforce_limits=True, subscription_bytes_per_s=1000)
    arn = await setup(engine)
    seqs = [await put(engine, b"x" * 399, key="k") for _ in range(6)]  # 400 bytes each with the key
    sub = await subscribe(engine, arn)
    got: list[str] = []
    seconds = 0
    while len(got) < len(seqs):
        waiting = asyncio.ensure_future(sub.next_event())
        await settle()
        if not waiting.done():  # past the budget: the rest waits for it, it is not refused
            clock.advance(1)
            seconds += 1
        ev = await asyncio.wait_for(waiting, DEADLINE_S)
        assert ev is not None
        got += [r.sequence_number for r in ev.records]
        # At most a second's budget more than the time passed, plus the one record that crosses it.
        assert 400 * len(got) <= 1000 * (seconds + 1) + 400
    assert got == seqs
    assert seconds >= 1
    sub.close()


async def test_a_reshard_that_completes_while_nobody_calls_the_engine_still_ends_the_parent(
    kit: Kit, clock: ManualClock
) -> None:
    """The shard map changes when UPDATING ends, applied by whoever looks next: a subscription looks itself."""
    engine = await kit.open(status_delay_s=1)
    await engine.create_stream("s", 1)
    clock.advance(1)
    arn = (await engine.register_stream_consumer(ARN, "c")).consumer_arn
    clock.advance(1)
    sub = await subscribe(engine, arn)
    await event(sub)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=1 << 127)
    waiting = asyncio.ensure_future(sub.next_event())
    await settle()
    assert not waiting.done()  # UPDATING: the parent is still open
    clock.advance(1)
    final = await asyncio.wait_for(waiting, DEADLINE_S)
    assert final is not None and final.continuation_sequence_number is None
    assert [c.shard_id for c in final.child_shards] == [S1, S2]
