"""The idle signal (``Mapping.idle``, ``ShardProcessor.idle``): a negative check waits for it instead of sleeping.

Idle means: a read started after the call found no new record, and nothing is queued or in flight. Each test here
asserts what must already have happened when ``idle()`` returns, so a signal that came too early fails it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._rig import Rig

SHARD0 = "shardId-000000000000"
BOUND_S = 15.0  # only keeps a regression from hanging the suite


async def idle(m: Any) -> None:
    await asyncio.wait_for(m.idle(), BOUND_S)


async def test_idle_returns_after_the_records_put_before_the_call_are_settled(rig: Rig) -> None:
    await rig.stream()
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=2)
    m.start()
    await idle(m)
    assert rec.calls == []
    seqs = await rig.put(rig.numbered(5))
    await idle(m)
    assert rec.delivered() == rig.numbered(5)
    assert rig.checkpoint(m) == seqs[-1]
    await idle(m)  # nothing new: nothing more happens
    assert rec.delivered() == rig.numbered(5)


async def test_idle_waits_out_retries_and_the_discard(rig: Rig) -> None:
    await rig.stream()
    seqs = await rig.put(rig.numbered(3))
    rec = rig.recorder(fail=lambda c: True)
    m = rig.mapping(rec, batch_size=3, maximum_retry_attempts=2)
    m.start()
    await idle(m)
    assert rec.batches() == [rig.numbered(3)] * 3
    assert [msg["requestContext"]["approximateInvokeCount"] for msg in rig.dlq()] == [3]
    assert rig.checkpoint(m) == seqs[-1]


async def test_idle_negative_check_filtered_records_are_never_invoked(rig: Rig) -> None:
    await rig.stream()
    seqs = await rig.put([b'{"type": "drop"}'] * 4)
    rec = rig.recorder()
    m = rig.mapping(rec, filters=['{"data": {"type": ["keep"]}}'])
    m.start()
    await idle(m)
    assert rig.checkpoint(m) == seqs[-1]
    assert rec.calls == []
    assert m.stats().totals["filtered_out"] == 4


async def test_idle_waits_for_a_batching_window(rig: Rig) -> None:
    await rig.stream()
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=100, maximum_batching_window_s=1)
    m.start()
    await idle(m)
    await rig.put(rig.numbered(3))
    await idle(m)
    assert rec.batches() == [rig.numbered(3)]


async def test_idle_of_a_shard_processor_and_of_a_stopped_mapping(rig: Rig) -> None:
    await rig.stream()
    rec = rig.recorder()
    m = rig.mapping(rec)
    m.start()
    await idle(m)
    proc = m.processor(SHARD0)
    assert proc is not None
    await rig.put(rig.numbered(2))
    await asyncio.wait_for(proc.idle(), BOUND_S)
    assert rec.delivered() == rig.numbered(2)
    await rig.stop(m)
    await asyncio.wait_for(proc.idle(), BOUND_S)
    await asyncio.wait_for(m.idle(), BOUND_S)


async def test_fetched_returns_while_a_batch_is_held_in_flight(rig: Rig) -> None:
    """A shard held back from settling is never idle; ``fetched`` still says that every record has been read."""
    await rig.stream()
    release = rig.gate()

    async def hold(call: Any) -> None:
        await release.wait()

    rec = rig.recorder(before=hold)
    m = rig.mapping(rec, batch_size=1)
    m.start()
    await rig.put(rig.numbered(3))
    await rig.fetched(m)
    assert m.stats().totals["polled"] == 3
    assert rig.checkpoint(m) == "TRIM_HORIZON"  # the first batch is still in flight
    release.set()
    await idle(m)
    assert rec.delivered() == rig.numbered(3)


async def test_synced_returns_once_a_shard_sync_has_started_the_shards(rig: Rig) -> None:
    await rig.stream(shards=2)
    m = rig.mapping(rig.recorder())
    m.start()
    await asyncio.wait_for(m.synced(), BOUND_S)
    assert m.processor(SHARD0) is not None and m.processor("shardId-000000000001") is not None
    await rig.stop(m)
    await asyncio.wait_for(m.synced(), BOUND_S)  # not running: at once
