"""An on-failure destination that refuses records: the shard waits with its checkpoint before the discarded batch,
retries with capped backoff, shows it in a metric and an alarm, and moves on only once the record is stored.

The destination is a real stream that does not exist yet, created later. The mapping runs on a ManualClock, so each
backoff lasts until the test advances the clock: every retry happens exactly when the test allows it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from shardline import ManualClock
from shardline.metrics.alarms import ALARM, OK, AlarmManager, MappingInfo, default_rules
from shardline.metrics.collect import Collector
from shardline.metrics.series import SeriesStore
from shardline.runtime.mapping import RuntimeTuning

from ._rig import Rig

SHARD0 = "shardId-000000000000"
BACKOFF = RuntimeTuning(poll_interval_s=0.01, throttle_backoff_s=1.0, throttle_backoff_max_s=30.0)


async def dlq_messages(rig: Any) -> list[dict[str, Any]]:
    it = await rig.eng.get_shard_iterator(stream_name="dlq", shard_id=SHARD0, shard_iterator_type="TRIM_HORIZON")
    page = await rig.eng.get_records(shard_iterator=it, limit=100)
    return [orjson.loads(r.data) for r in page.records]


async def poisoned(rig: Any) -> tuple[list[str], Any]:
    """A stream whose first record always fails, and a mapping that gives up on it at once, to stream ``dlq``."""
    await rig.stream()
    seqs = await rig.put([b"poison", b"ok1", b"ok2"])
    rec = rig.recorder(fail=lambda c: b"poison" in c.datas)
    return seqs, rec


async def test_the_checkpoint_never_passes_a_batch_whose_record_is_refused(rig: Rig) -> None:
    """On the system clock and the test rig's short backoffs: many tries, and still nothing moves."""
    seqs, rec = await poisoned(rig)
    m = rig.mapping(rec, destination="dlq", maximum_retry_attempts=0, batch_size=1)
    m.start()
    await rig.wait_for(lambda: m.stats().totals["destination_failures"] >= 1, "the first refused on-failure record")
    assert rec.batches() == [[b"poison"]]
    assert rig.checkpoint(m) == "TRIM_HORIZON"
    await rig.wait_for(lambda: m.stats().totals["destination_failures"] >= 10, "ten refused tries")
    assert rec.batches() == [[b"poison"]]
    assert rig.checkpoint(m) == "TRIM_HORIZON"
    await rig.eng.create_stream("dlq", 1)
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the shard to move on once the record is stored")
    await rig.stop(m)
    assert rec.batches() == [[b"poison"], [b"ok1"], [b"ok2"]]
    assert len(await dlq_messages(rig)) == 1


async def test_the_shard_waits_for_the_destination_and_then_moves_on(rig: Rig) -> None:
    seqs, rec = await poisoned(rig)
    clock = ManualClock()
    m = rig.mapping(rec, destination="dlq", clock=clock, tuning=BACKOFF, maximum_retry_attempts=0, batch_size=1)

    def failures() -> int:
        return m.stats().totals["destination_failures"]

    m.start()
    await rig.wait_for(lambda: failures() == 1, "the first refused on-failure record")
    await rig.fetched(m)
    # Nothing after the poison is processed, the checkpoint has not moved, and nothing counts as dropped.
    assert rec.batches() == [[b"poison"]]
    assert rig.checkpoint(m) == "TRIM_HORIZON"
    assert failures() == 1  # the next try waits for the backoff
    assert m.shard_stats()[SHARD0].destination_pending == 1
    totals = m.stats().totals
    assert (totals["discarded"], totals["dead_lettered"]) == (0, 0)
    assert m.stats().last_processing_result == "PROBLEM: on-failure destination stream dlq failed"

    # The wait doubles up to 30 s: from then on, one try per 30 s, however long the outage lasts.
    for n in range(2, 9):
        clock.advance(30)
        await rig.wait_for(lambda: failures() == n, f"try {n}")  # noqa: B023 (awaited here)
    assert rec.batches() == [[b"poison"]]
    assert rig.checkpoint(m) == "TRIM_HORIZON"

    await rig.eng.create_stream("dlq", 1)
    clock.advance(30)
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the shard to move on once the record is stored")
    await rig.stop(m)
    assert rec.batches() == [[b"poison"], [b"ok1"], [b"ok2"]]
    [msg] = await dlq_messages(rig)
    info = msg["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (seqs[0], seqs[0], 1)
    totals = m.stats().totals
    assert (totals["discarded"], totals["dead_lettered"], totals["destination_failures"]) == (1, 1, 8)


async def test_stop_ends_the_backoff_and_a_restart_delivers_the_batch_again(rig: Rig) -> None:
    seqs, rec = await poisoned(rig)
    m = rig.mapping(rec, destination="dlq", clock=ManualClock(), tuning=BACKOFF, maximum_retry_attempts=0, batch_size=1)
    m.start()
    await rig.wait_for(lambda: m.stats().totals["destination_failures"] == 1, "the first refused on-failure record")
    await rig.stop(m)  # the clock never moves: only the stop ends the backoff
    assert rig.checkpoint(m) == "TRIM_HORIZON"

    await rig.eng.create_stream("dlq", 1)
    again = rig.mapping(rec, uuid=m.uuid, destination="dlq", tuning=BACKOFF, maximum_retry_attempts=0, batch_size=1)
    again.start()
    await rig.wait_for(lambda: rig.checkpoint(again) == seqs[-1], "the restarted shard to settle everything")
    await rig.stop(again)
    assert rec.batches() == [[b"poison"], [b"poison"], [b"ok1"], [b"ok2"]]
    [msg] = await dlq_messages(rig)
    assert msg["KinesisBatchInfo"]["startSequenceNumber"] == seqs[0]


async def test_a_refused_record_raises_the_destination_stuck_alarm_until_it_is_stored(rig: Rig) -> None:
    seqs, rec = await poisoned(rig)
    clock = ManualClock()
    m = rig.mapping(rec, destination="dlq", clock=clock, tuning=BACKOFF, maximum_retry_attempts=0, batch_size=1)
    collector = Collector(rig.eng, project=SimpleNamespace(pools={}, mappings=[m]))
    [rule] = [
        r
        for r in default_rules([], [MappingInfo(m.uuid, "fn", "s", 86_400)])
        if r.name.endswith(":on-failure-destination-stuck")
    ]
    store = SeriesStore(None)
    alarm_clock = ManualClock(1_699_999_980_000)  # a whole minute: periods start with it
    alarms = AlarmManager(store, [rule], [], alarm_clock)

    def sample(seconds: int) -> str:
        for _ in range(seconds):
            now = alarm_clock.now_ms()
            store.record(now, collector.collect(now).series())
            alarms.evaluate(now)
            alarm_clock.advance(1)
        return str(alarms.states()[0]["state"])

    m.start()
    await rig.wait_for(lambda: m.stats().totals["destination_failures"] == 1, "the first refused on-failure record")
    assert sample(61) == ALARM
    await rig.eng.create_stream("dlq", 1)
    clock.advance(30)
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the shard to move on once the record is stored")
    assert sample(120) == OK
    await rig.stop(m)
