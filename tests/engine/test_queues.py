"""Kinesis queues in the engine (engine/queues.py): delivery with visibility timeouts, redelivery, dead-letter records
after MaxReceiveCount receives, restore, acknowledgement failures, long polling, and the state across restarts."""

from __future__ import annotations

import asyncio

import pytest

from shardline import Engine, ManualClock
from shardline.engine import QueueInfo, queues
from shardline.errors import (
    InvalidArgumentException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
    ValidationException,
)

from ._kit import Kit


async def _setup(
    engine: Engine, start: str = "TRIM_HORIZON", shards: int = 2, **attrs: object
) -> tuple[str, QueueInfo]:
    await engine.create_stream("s", shards, stream_mode="ON_DEMAND")
    q = await engine.create_queue("q", [(engine.stream_arn("s"), start, None)], **attrs)  # type: ignore[arg-type]
    return q.queue_arn, q


async def _put(engine: Engine, *keys: str) -> None:
    for k in keys:
        await engine.put_record(stream_name="s", data=k.encode(), partition_key=k)


async def test_create_describe_list_update_delete(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(creating_delay_s=5, updating_delay_s=5, deleting_delay_s=5)
    await engine.create_stream("s", 1, stream_mode="ON_DEMAND")
    clock.advance(5)
    q = await engine.create_queue("q", [(engine.stream_arn("s"), "LATEST", None)])
    arn = q.queue_arn
    assert arn.startswith("arn:aws:kinesis:us-east-1:") and ":queue/" in arn and "q" not in arn.rsplit("/", 1)[1]
    assert (q.status, q.visibility_s, q.dead_letter, q.max_receive_count) == ("CREATING", 30, True, 6)
    assert await engine.receive_queue_records(arn, wait_s=0) == []  # (not ACTIVE yet: nothing is delivered)
    clock.advance(5)
    assert (await engine.describe_queue(arn)).status == "ACTIVE"
    with pytest.raises(ResourceInUseException):
        await engine.create_queue("q", [(engine.stream_arn("s"), "LATEST", None)])
    updated = await engine.update_queue(arn, visibility_s=60, dead_letter_target="NONE")
    assert (updated.status, updated.visibility_s, updated.dead_letter) == ("UPDATING", 60, False)
    with pytest.raises(ResourceInUseException):
        await engine.update_queue(arn, visibility_s=61)
    clock.advance(5)
    page, token = await engine.list_queues()
    assert ([x.name for x in page], token) == (["q"], None)
    await engine.delete_queue(arn)
    assert (await engine.describe_queue(arn)).status == "DELETING"
    clock.advance(5)
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_queue(arn)
    assert await engine.list_queues() == ([], None)


async def test_create_refuses_what_aws_refuses(kit: Kit) -> None:
    engine = await kit.open(max_consumers_per_stream=2)
    await engine.create_stream("p", 1)
    with pytest.raises(InvalidArgumentException, match="on-demand"):
        await engine.create_queue("q", [(engine.stream_arn("p"), "LATEST", None)])
    await engine.create_stream("s", 1, stream_mode="ON_DEMAND")
    arn = engine.stream_arn("s")
    with pytest.raises(InvalidArgumentException, match="exactly one"):
        await engine.create_queue("q", [(arn, "LATEST", None), (arn, "LATEST", None)])
    with pytest.raises(ValidationException):
        await engine.create_queue("q", [(arn, "AT_TIMESTAMP", None)])
    with pytest.raises(ValidationException):
        await engine.create_queue("q", [(arn, "LATEST", 1)])
    with pytest.raises(ValidationException):
        await engine.create_queue("q", [(arn, "LATEST", None)], dead_letter_target="BUILT_IN")
    with pytest.raises(ResourceNotFoundException):
        await engine.create_queue("q", [(engine.stream_arn("nope"), "LATEST", None)])
    await engine.register_stream_consumer(arn, "c")
    await engine.create_queue("q1", [(arn, "LATEST", None)])
    with pytest.raises(LimitExceededException):  # (a queue counts as a registered consumer)
        await engine.create_queue("q2", [(arn, "LATEST", None)])
    with pytest.raises(ResourceNotFoundException):
        await engine.describe_queue("arn:aws:kinesis:us-east-1:123456789012:queue/" + "0" * 32)


async def test_visibility_timeout_redelivers_and_ack_ends_delivery(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine)
    await _put(engine, "a", "b", "c")
    first = await engine.receive_queue_records(arn, limit=10, wait_s=1)
    assert sorted(d.record.data for d in first) == [b"a", b"b", b"c"]
    assert {d.receive_count for d in first} == {1}
    assert all(d.first_receive_ms == clock.now_ms() for d in first)
    assert await engine.receive_queue_records(arn, wait_s=0) == []  # (all in flight)
    ok, failed = await engine.acknowledge_queue_records(arn, [first[0].receipt_handle])
    assert (ok, failed) == ([first[0].receipt_handle], [])
    clock.advance(30)
    again = await engine.receive_queue_records(arn, wait_s=0)
    assert sorted(d.record.data for d in again) == sorted(d.record.data for d in first[1:])
    assert {d.receive_count for d in again} == {2}
    assert {d.receipt_handle for d in again}.isdisjoint(d.receipt_handle for d in first)
    # A handle from the first delivery no longer works; an acknowledged record is gone; a foreign text is no handle.
    ok, failed = await engine.acknowledge_queue_records(
        arn, [first[1].receipt_handle, first[0].receipt_handle, "garbage"]
    )
    assert ok == []
    assert [(f[0], f[1]) for f in failed] == [
        (first[1].receipt_handle, "InvalidArgumentException"),
        (first[0].receipt_handle, "ResourceNotFoundException"),
        ("garbage", "InvalidArgumentException"),
    ]
    ok, failed = await engine.acknowledge_queue_records(arn, [d.receipt_handle for d in again])
    assert (len(ok), failed) == (2, [])
    clock.advance(3600)
    assert await engine.receive_queue_records(arn, wait_s=0) == []


async def test_visibility_changes_per_record_and_per_request(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine, shards=1)
    await _put(engine, "a", "b")
    a, b = await engine.receive_queue_records(arn, limit=2, wait_s=1, visibility_s=100)
    ok, failed = await engine.update_queue_records_visibility(arn, [(a.receipt_handle, 0), (b.receipt_handle, 500)])
    assert (len(ok), failed) == (2, [])
    (again,) = await engine.receive_queue_records(arn, wait_s=0, visibility_s=1000)  # a, at once
    assert (again.record.data, again.receive_count) == (b"a", 2)
    clock.advance(100)
    assert await engine.receive_queue_records(arn, wait_s=0) == []  # b was extended
    clock.advance(400)
    (late,) = await engine.receive_queue_records(arn, wait_s=0)
    assert late.record.data == b"b"
    # Once its timeout has passed a record is not in flight: its visibility cannot be changed.
    clock.advance(30)
    ok, failed = await engine.update_queue_records_visibility(arn, [(late.receipt_handle, 10)])
    assert ok == [] and failed[0][1] == "InvalidArgumentException"


async def test_dead_letter_after_max_receives_then_restore(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine, shards=1, dead_letter_target="BUILT_IN", max_receive_count=2)
    await _put(engine, "poison", "fine")
    for count in (1, 2):
        got = await engine.receive_queue_records(arn, limit=1, wait_s=1)
        assert [(d.record.data, d.receive_count) for d in got] == [(b"poison", count)]
        if count == 1:
            (fine,) = await engine.receive_queue_records(arn, limit=1, wait_s=1)
            await engine.acknowledge_queue_records(arn, [fine.receipt_handle])
        clock.advance(30)
    assert await engine.receive_queue_records(arn, wait_s=0) == []  # received twice: now a dead-letter record
    (dead,) = await engine.receive_queue_records(arn, wait_s=0, dead_letter=True)
    assert (dead.record.data, dead.receive_count) == (b"poison", 2)
    ok, failed = await engine.acknowledge_queue_records(arn, [dead.receipt_handle])  # (not on the normal path)
    assert ok == [] and failed[0][1] == "InvalidArgumentException"
    ok, _ = await engine.update_queue_records_visibility(arn, [(dead.receipt_handle, 0)], dead_letter=True)
    assert ok == [dead.receipt_handle]
    (dead,) = await engine.receive_queue_records(arn, wait_s=0, dead_letter=True)
    ok, failed = await engine.restore_dead_letter_queue_records(arn, [dead.receipt_handle])
    assert (ok, failed) == ([dead.receipt_handle], [])
    (back,) = await engine.receive_queue_records(arn, wait_s=0)
    assert (back.record.data, back.receive_count) == (b"poison", 1)  # (its receive count was reset)
    clock.advance(30)
    (second,) = await engine.receive_queue_records(arn, wait_s=0)
    clock.advance(30)
    (dead,) = await engine.receive_queue_records(arn, wait_s=0, dead_letter=True)
    ok, _ = await engine.acknowledge_queue_records(arn, [dead.receipt_handle], dead_letter=True)
    assert ok == [dead.receipt_handle]
    clock.advance(3600)
    assert await engine.receive_queue_records(arn, wait_s=0, dead_letter=True) == []
    assert await engine.receive_queue_records(arn, wait_s=0) == []
    assert second.record.data == b"poison"


async def test_without_dead_letter_handling_a_record_comes_back_forever(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine, shards=1, dead_letter_target="NONE")
    await _put(engine, "x")
    for count in range(1, 10):
        (d,) = await engine.receive_queue_records(arn, wait_s=1, visibility_s=1)
        assert d.receive_count == count
        clock.advance(1)


async def test_latest_and_at_timestamp_start_where_asked(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1, stream_mode="ON_DEMAND")
    await _put(engine, "old")
    clock.advance(10)
    cut = clock.now_ms()
    await _put(engine, "mid")
    latest = await engine.create_queue("l", [(engine.stream_arn("s"), "LATEST", None)])
    at = await engine.create_queue("t", [(engine.stream_arn("s"), "AT_TIMESTAMP", cut)])
    await _put(engine, "new")
    got_l = await engine.receive_queue_records(latest.queue_arn, wait_s=1)
    got_t = await engine.receive_queue_records(at.queue_arn, wait_s=1)
    assert [d.record.data for d in got_l] == [b"new"]
    assert [d.record.data for d in got_t] == [b"mid", b"new"]
    assert (await engine.describe_queue(latest.queue_arn)).start_ms == cut
    assert (await engine.describe_queue(at.queue_arn)).start_ms == cut


async def test_long_poll_wakes_when_a_record_arrives(kit: Kit, loop: asyncio.AbstractEventLoop) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine, start="LATEST")
    waiting = asyncio.ensure_future(engine.receive_queue_records(arn, wait_s=20))
    await asyncio.sleep(0)
    assert not waiting.done()
    await _put(engine, "hello")
    got = await asyncio.wait_for(waiting, 60)
    assert [d.record.data for d in got] == [b"hello"]


async def test_long_poll_wakes_when_a_timeout_passes_or_time_is_up(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine, shards=1)
    await _put(engine, "a")
    (first,) = await engine.receive_queue_records(arn, wait_s=1, visibility_s=5)
    waiting = asyncio.ensure_future(engine.receive_queue_records(arn, wait_s=20))
    await asyncio.sleep(0)
    clock.advance(5)
    (again,) = await asyncio.wait_for(waiting, 60)
    assert again.record.data == b"a" and again.receive_count == 2
    empty = asyncio.ensure_future(engine.receive_queue_records(arn, wait_s=2))
    await asyncio.sleep(0)
    clock.advance(2)
    assert await asyncio.wait_for(empty, 60) == []
    assert first.receipt_handle != again.receipt_handle


async def test_state_survives_a_restart(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine, shards=1, dead_letter_target="BUILT_IN", max_receive_count=1)
    await _put(engine, "a", "b", "c")
    a, b, _ = await engine.receive_queue_records(arn, limit=3, wait_s=1)
    await engine.acknowledge_queue_records(arn, [a.receipt_handle])
    await engine.update_queue_records_visibility(arn, [(b.receipt_handle, 300)])
    engine = await kit.reopen(engine)
    q = await engine.describe_queue(arn)
    assert (q.name, q.status, q.max_receive_count) == ("q", "ACTIVE", 1)
    ok, _ = await engine.acknowledge_queue_records(arn, [a.receipt_handle])
    assert ok == []  # (acknowledged before the restart: still acknowledged)
    clock.advance(30)
    assert await engine.receive_queue_records(arn, wait_s=0) == []  # c is dead-lettered, b in flight
    (dead,) = await engine.receive_queue_records(arn, wait_s=0, dead_letter=True)
    assert dead.record.data == b"c"
    ok, _ = await engine.acknowledge_queue_records(arn, [b.receipt_handle])  # its handle outlived the restart
    assert ok == [b.receipt_handle]
    await _put(engine, "d")
    (d,) = await engine.receive_queue_records(arn, wait_s=1)
    assert d.record.data == b"d"  # (the cursor kept its place: nothing acknowledged came back)


async def test_pending_state_stays_bounded(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queues, "MAX_PENDING", 3)
    engine = await kit.open()
    arn, _ = await _setup(engine, shards=1)
    await _put(engine, *"abcdef")
    got = await engine.receive_queue_records(arn, wait_s=1)
    assert len(got) == 3
    assert await engine.receive_queue_records(arn, wait_s=0) == []  # three outstanding: nothing new
    await engine.acknowledge_queue_records(arn, [got[0].receipt_handle])
    (nxt,) = await engine.receive_queue_records(arn, wait_s=0)
    assert nxt.record.data == b"d"
    q = await engine.describe_queue(arn)
    assert q.pending == 3


async def test_a_stream_with_queues_is_neither_deleted_nor_made_provisioned(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open()
    arn, _ = await _setup(engine)
    with pytest.raises(ResourceInUseException, match="has queues"):
        await engine.delete_stream("s")
    with pytest.raises(ResourceInUseException, match="has queues"):
        await engine.update_stream_mode(engine.stream_arn("s"), "PROVISIONED")
    await engine.delete_queue(arn)
    await engine.delete_stream("s")
    clock.advance(1)
    assert await engine.list_queues() == ([], None)
