"""Starting positions, durable checkpoints and the mapping lifecycle (spec §3.1, §3.2, §3.10, §3.13): restart,
enable/disable, update, several mappings, iterator expiry, a deleted stream."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from shardline import ManualClock
from shardline.runtime.checkpoints import Lease, LeaseStore
from shardline.runtime.leases import LeaseLost, LeaseUnavailable
from shardline.runtime.mapping import RuntimeTuning
from shardline.runtime.position import Position
from shardline.runtime.source import SourceShard

from ._rig import FAST, Call, Rig, WatchedSource

SHARD0 = "shardId-000000000000"
T0_MS = 1_700_000_000_000


async def test_state_and_last_processing_result(rig: Rig) -> None:
    await rig.stream()
    rec = rig.recorder(fail=lambda c: c.index == 1)
    m = rig.mapping(rec, maximum_retry_attempts=0, batch_size=1)
    assert m.state == "Creating"
    assert m.stats().last_processing_result == "No records processed"
    m.start()
    await rig.wait_for(lambda: m.state == "Enabled", "Enabled")
    await rig.put([b"r1"])
    await rig.wait_for(lambda: m.stats().last_processing_result == "OK", "OK after a success")
    await rig.put([b"r2"])
    await rig.wait_for(
        lambda: m.stats().last_processing_result == "PROBLEM: Function call failed", "PROBLEM after a failure"
    )
    await rig.stop(m)


@pytest.mark.parametrize("offset_ms", [2000, 1500], ids=["exact-arrival", "between-arrivals"])
async def test_at_timestamp_starts_at_the_first_record_at_or_after_it(rig: Rig, offset_ms: int) -> None:
    clock = ManualClock(T0_MS)
    await rig.open(clock=clock)
    await rig.stream()
    for i in range(1, 6):
        await rig.put([f"r{i}".encode()])
        clock.advance(1)
    rec = rig.recorder()
    m = rig.mapping(rec, starting_position="AT_TIMESTAMP", starting_position_timestamp_ms=T0_MS + offset_ms)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 3, "r3..r5")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.delivered() == [b"r3", b"r4", b"r5"]


async def test_latest_skips_existing_records(rig: Rig) -> None:
    await rig.stream()
    await rig.put(rig.numbered(3))
    rec = rig.recorder()
    src = rig.source()
    m = rig.mapping(rec, source=src, starting_position="LATEST")
    m.start()
    await rig.wait_for(lambda: src.polls >= 1, "the mapping to poll its LATEST iterator")
    await rig.put(rig.numbered(3, start=4))
    await rig.wait_for(lambda: len(rec.delivered()) >= 3, "r4..r6")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.delivered() == [b"r4", b"r5", b"r6"]


async def test_latest_survives_a_restart_without_skipping(rig: Rig) -> None:
    """LATEST applies only when no checkpoint exists; a restart resumes after the last settled record."""
    await rig.stream()
    rec = rig.recorder()
    src = rig.source()
    m = rig.mapping(rec, source=src, starting_position="LATEST")
    m.start()
    await rig.wait_for(lambda: src.polls >= 1, "the first poll")
    await rig.put([b"r1"])
    await rig.wait_for(lambda: rec.delivered() == [b"r1"], "r1")
    await rig.stop(m)
    await rig.put([b"r2"])  # written while the mapping is stopped
    again = rig.mapping(rec, uuid=m.uuid, starting_position="LATEST")
    again.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 2, "r2")
    await rig.stop(again)
    assert rec.delivered() == [b"r1", b"r2"]


async def test_restart_resumes_after_the_last_settled_record(rig: Rig) -> None:
    """[DESIGN] Checkpoints are durable: a new process (new lease store connection, same mapping UUID) resumes
    with AFTER_SEQUENCE_NUMBER of the checkpoint and re-delivers nothing."""
    await rig.stream()
    seqs = await rig.put(rig.numbered(50))
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=10)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 50, "r1..r50")
    await rig.stop(m)
    assert rig.checkpoint(m) == seqs[-1]

    rec2 = rig.recorder()
    src = rig.source()
    again = rig.mapping(rec2, uuid=m.uuid, source=src, store=rig.store(), batch_size=10)
    await rig.put(rig.numbered(10, start=51))
    again.start()
    await rig.wait_for(lambda: len(rec2.delivered()) >= 10, "r51..r60")
    await rig.idle(again)
    await rig.stop(again)
    assert rec2.delivered() == rig.numbered(10, start=51)
    assert src.iterator_requests[0] == (SHARD0, "AFTER_SEQUENCE_NUMBER", seqs[-1])


async def test_stop_lets_the_in_flight_batch_finish_and_checkpoints_it(rig: Rig) -> None:
    """[DESIGN] Stop waits for the invocation in flight and records its result: nothing is re-delivered."""
    await rig.stream()
    seqs = await rig.put(rig.numbered(30))
    release = rig.gate()

    async def hold_second(call: Call) -> None:
        if call.index == 1:
            await release.wait()

    rec = rig.recorder(before=hold_second)
    m = rig.mapping(rec, batch_size=10)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) == 2, "the second batch in flight")
    stopping = asyncio.create_task(rig.stop(m))
    await rig.wait_for(lambda: not m.running(), "the stop to begin")
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert len(rec.calls) == 2
    assert rig.checkpoint(m) == seqs[19]

    rec2 = rig.recorder()
    again = rig.mapping(rec2, uuid=m.uuid, batch_size=10)
    again.start()
    await rig.wait_for(lambda: len(rec2.delivered()) >= 10, "r21..r30")
    await rig.idle(again)
    await rig.stop(again)
    assert rec2.delivered() == rig.numbered(10, start=21)


class FlakyCheckpoints(LeaseStore):
    """A lease store whose next ``failing`` checkpoint writes find the store unavailable."""

    failing = 0
    attempts = 0

    def checkpoint(self, lease: Lease, position: Position) -> None:
        self.attempts += 1
        if self.failing > 0:
            self.failing -= 1
            raise LeaseUnavailable("the lease store did not answer in time")
        super().checkpoint(lease, position)


async def test_the_checkpoint_a_stop_leaves_is_retried_when_the_store_does_not_answer(rig: Rig) -> None:
    """The last checkpoint before a stop (or a handoff) is asked again when the store is briefly away, so the next
    owner starts after what was settled instead of repeating it."""
    await rig.stream()
    seqs = await rig.put(rig.numbered(30))
    release = rig.gate()

    async def hold_second(call: Call) -> None:
        if call.index == 1:
            await release.wait()

    store = FlakyCheckpoints(rig.leases_path)
    rec = rig.recorder(before=hold_second)
    m = rig.mapping(rec, batch_size=10, store=store)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) == 2, "the second batch in flight")
    stopping = asyncio.create_task(rig.stop(m))
    await rig.wait_for(lambda: not m.running(), "the stop to begin")
    store.failing, before = 2, store.attempts
    release.set()
    await asyncio.wait_for(stopping, 10)
    try:
        assert store.attempts - before == 3  # two unanswered, the third written
        assert rig.checkpoint(m) == seqs[19]
    finally:
        store.close()


class FencedCheckpoints(LeaseStore):
    """A lease store that, once ``fenced`` is set, finds every lease taken by another worker at its next write."""

    fenced = False

    def checkpoint(self, lease: Lease, position: Position) -> None:
        if self.fenced:
            raise LeaseLost.of(lease)
        super().checkpoint(lease, position)


async def test_a_checkpoint_fenced_after_a_batch_is_a_lost_lease_not_a_failure(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint after a batch finds the lease gone (another worker took it): the shard stops as a lost lease,
    without writing, and is not reported as a failed processor."""
    await rig.stream()
    store = FencedCheckpoints(rig.leases_path)
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=10, store=store)
    m.start()
    try:
        await rig.put(rig.numbered(10))
        await rig.wait_for(lambda: len(rec.calls) == 1, "the first batch")
        await rig.idle(m)
        store.fenced = True
        with caplog.at_level(logging.WARNING, logger="shardline"):
            await rig.put(rig.numbered(10, start=11))
            await rig.wait_for(lambda: "lease lost; stopping without writing" in caplog.text, "the lease reported lost")
        assert "shard processor failed" not in caplog.text
    finally:
        await rig.stop(m)
        store.close()


async def test_disabled_never_invokes_and_enable_resumes_from_the_checkpoint(rig: Rig) -> None:
    await rig.stream()
    seqs = await rig.put(rig.numbered(10))
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=10)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 10, "r1..r10")
    await rig.update(m, enabled=False)
    assert m.state == "Disabled"
    calls = len(rec.calls)
    await rig.put(rig.numbered(10, start=11))
    await rig.wait_for(lambda: not m.running(), "the disabled mapping to be stopped")
    assert len(rec.calls) == calls
    assert rig.checkpoint(m) == seqs[-1]
    await rig.update(m, enabled=True)
    assert m.state == "Enabled"
    await rig.wait_for(lambda: len(rec.delivered()) >= 20, "r11..r20")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.delivered() == rig.numbered(20)


async def test_created_disabled_never_invokes(rig: Rig) -> None:
    await rig.stream()
    await rig.put(rig.numbered(5))
    rec = rig.recorder()
    src = rig.source()
    m = rig.mapping(rec, source=src, enabled=False)
    assert m.state == "Disabled"
    m.start()
    await rig.wait_for(lambda: m._task is not None and m._task.done(), "the disabled mapping's task to end")
    assert rec.calls == [] and src.polls == 0
    assert m.state == "Disabled"
    await rig.update(m, enabled=True)
    await rig.wait_for(lambda: len(rec.delivered()) >= 5, "r1..r5")
    await rig.stop(m)
    assert rec.delivered() == rig.numbered(5)


async def test_a_new_mapping_starts_at_its_own_starting_position(rig: Rig) -> None:
    await rig.stream()
    await rig.put(rig.numbered(20))
    rec = rig.recorder()
    m = rig.mapping(rec)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 20, "r1..r20")
    await rig.stop(m)
    rec2 = rig.recorder()
    fresh = rig.mapping(rec2)  # same store, another UUID
    assert fresh.uuid != m.uuid
    fresh.start()
    await rig.wait_for(lambda: len(rec2.delivered()) >= 20, "r1..r20 again")
    await rig.stop(fresh)
    assert rec2.delivered() == rig.numbered(20)


async def test_batch_size_update_applies_at_the_next_batch(rig: Rig) -> None:
    await rig.stream()
    await rig.put(rig.numbered(10))
    release = rig.gate()

    async def hold_first(call: Call) -> None:
        if call.index == 0:
            await release.wait()

    rec = rig.recorder(before=hold_first)
    m = rig.mapping(rec, batch_size=100)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) == 1, "the first batch in flight")
    await rig.put(rig.numbered(20, start=11))
    await m.update(batch_size=2)
    release.set()
    await rig.wait_for(lambda: len(rec.delivered()) >= 30, "r1..r30")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.sizes()[0] == 10
    assert all(n <= 2 for n in rec.sizes()[1:])
    assert rec.delivered() == rig.numbered(30)


async def test_several_mappings_on_one_stream_keep_independent_checkpoints(rig: Rig) -> None:
    await rig.stream()
    seqs = await rig.put(rig.numbered(10))
    healthy = rig.recorder()
    stuck_on_r5 = {"on": True}
    blocked = rig.recorder(fail=lambda c: stuck_on_r5["on"] and b"r5" in c.datas)
    a = rig.mapping(healthy, batch_size=1)
    b = rig.mapping(blocked, batch_size=1)
    a.start()
    b.start()
    await rig.wait_for(lambda: rig.checkpoint(a) == seqs[-1], "mapping a to finish")
    await rig.wait_for(lambda: len(blocked.calls) >= 8, "mapping b to retry r5")
    assert rig.checkpoint(b) == seqs[3]
    stuck_on_r5["on"] = False
    await rig.wait_for(lambda: rig.checkpoint(b) == seqs[-1], "mapping b to finish")
    await rig.stop(a)
    await rig.stop(b)
    assert healthy.delivered() == rig.numbered(10)
    # r5 is retried until it succeeds; apart from those retries every record arrives once, in order.
    assert blocked.delivered() == rig.numbered(4) + [b"r5"] * len(blocked.calls[4:-5]) + rig.numbered(5, start=6)


async def test_iterators_expiring_during_a_slow_invocation_neither_skip_nor_replay(rig: Rig) -> None:
    """[DESIGN] The first call takes "longer" than an iterator lives (the engine clock jumps past the TTL while it
    runs). Reading resumes after the last record fetched, never from the starting position."""
    clock = ManualClock(T0_MS)
    await rig.open(clock=clock, iterator_ttl_ms=1000)
    await rig.stream()
    sent = rig.numbered(20)
    await rig.put(sent)

    async def slow_first(call: Call) -> None:
        if call.index == 0:
            clock.advance(5)
            await asyncio.sleep(0.1)

    rec = rig.recorder(before=slow_first)
    src = rig.source()
    tuning = replace(RuntimeTuning(), poll_interval_s=0.01, retry_backoff_s=0.001, read_limit=5)
    m = rig.mapping(rec, source=src, batch_size=5, tuning=tuning)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 20, "r1..r20")
    await rig.idle(m)
    await rig.stop(m)
    assert src.expired >= 1
    assert rec.batches() == [sent[0:5], sent[5:10], sent[10:15], sent[15:20]]
    kinds = [k for _, k, _ in src.iterator_requests]
    assert kinds[0] == "TRIM_HORIZON"
    assert set(kinds[1:]) == {"AFTER_SEQUENCE_NUMBER"}


async def test_latest_iterator_expiring_before_any_record_does_not_skip(rig: Rig) -> None:
    """[DESIGN] Never go back to the starting position: a LATEST mapping whose iterator expires before it saw a
    record must still deliver a record written after it started polling."""
    clock = ManualClock(T0_MS)
    await rig.open(clock=clock, iterator_ttl_ms=1000)
    await rig.stream()
    rec = rig.recorder()
    src = rig.source()
    tuning = replace(RuntimeTuning(), poll_interval_s=0.05)
    m = rig.mapping(rec, source=src, starting_position="LATEST", tuning=tuning)
    m.start()
    await rig.wait_for(lambda: src.polls >= 1, "the mapping to poll")
    clock.advance(5)
    await rig.put([b"r1"])
    await rig.wait_for(lambda: src.expired >= 1, "the iterator to expire")
    await rig.wait_for(lambda: rec.delivered() == [b"r1"], f"r1 (iterators asked for: {src.iterator_requests})", 2)
    await rig.stop(m)


async def test_deleted_stream_reports_a_problem_without_crashing(rig: Rig) -> None:
    """[DESIGN] §3.2.7: the stream is gone; polling stops and LastProcessingResult says PROBLEM."""
    await rig.stream()
    await rig.put([b"r1"])
    rec = rig.recorder()
    m = rig.mapping(rec)
    m.start()
    await rig.wait_for(lambda: rec.delivered() == [b"r1"], "r1")
    await rig.eng.delete_stream("s")
    await rig.wait_for(lambda: m.stats().last_processing_result.startswith("PROBLEM:"), "a PROBLEM result")
    await rig.synced(m, passes=2)
    assert m._task is not None and not m._task.done()
    await rig.stop(m)
    assert m.stats().last_processing_result.startswith("PROBLEM:")
    assert rec.delivered() == [b"r1"]


class HeldListing(WatchedSource):
    """A source whose first shard listing (the mapping's first sync pass) waits until ``go`` is set."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.listing = asyncio.Event()
        self.go = asyncio.Event()

    async def list_shards(self) -> list[SourceShard]:
        if not self.go.is_set():
            self.listing.set()
            await self.go.wait()
        return await super().list_shards()


async def test_a_stop_during_a_shard_sync_pass_ends_the_mapping_at_once(rig: Rig) -> None:
    """The stop's wake-up comes while the sync pass is listing shards; it must end the mapping when the pass is
    over, not after a whole sync interval (an hour here)."""
    await rig.stream()
    source = HeldListing(rig.eng, "s")
    m = rig.mapping(rig.recorder(), source=source, tuning=replace(FAST, shard_sync_interval_s=3600.0))
    m.start()
    await asyncio.wait_for(source.listing.wait(), 60)
    stopping = asyncio.ensure_future(m.stop())
    await rig.wait_for(lambda: not m.running(), "the stop to begin")
    source.go.set()
    # (asyncio.wait, not wait_for: a stop cancelled by wait_for would swallow the cancellation and look done)
    done, _ = await asyncio.wait({stopping}, timeout=60)
    assert stopping in done, "the mapping did not stop after its sync pass"


async def test_a_stop_given_a_time_limit_ends_in_a_timeout_when_the_limit_passes(rig: Rig) -> None:
    """``asyncio.wait_for(mapping.stop(), limit)`` while an invocation is held past the limit: the wait ends in
    TimeoutError, as for any other coroutine, instead of returning as if the stop had completed. The mapping has
    stopped either way (the time limit cancelled it)."""
    await rig.stream()
    release = rig.gate()
    rec = rig.recorder(before=lambda call: release.wait())  # (every invocation held until the teardown)
    m = rig.mapping(rec, batch_size=10)
    m.start()
    await rig.put(rig.numbered(10))
    await rig.wait_for(lambda: len(rec.calls) == 1, "the batch in flight")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(m.stop(), 0.2)
    assert not m.running()
