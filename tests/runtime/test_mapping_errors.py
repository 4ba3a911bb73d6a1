"""The error path (spec §3.5, §3.6): retries, record age, bisect, throttles and the exact
on-failure message."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid

import orjson
import pytest

from shardline import ManualClock
from shardline.models import Record

from ._rig import Call, Rig

SHARD0 = "shardId-000000000000"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def test_record_too_old_before_any_invocation(rig: Rig) -> None:
    await rig.open(clock=ManualClock(rig.now_ms() - 65_000))
    arn = await rig.stream()
    [seq] = await rig.put([b"r1"])
    rec = rig.recorder()
    fn = rig.fn(rec)
    m = rig.mapping(fn, maximum_retry_attempts=0, maximum_record_age_s=60)
    m.start()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    await rig.wait_for(lambda: rig.checkpoint(m) == seq, "the checkpoint to pass r1")
    await rig.stop(m)
    assert rec.calls == []
    [msg] = rig.dlq()
    assert set(msg) == {"requestContext", "version", "timestamp", "KinesisBatchInfo"}  # no responseContext
    ctx = msg["requestContext"]
    assert ctx["condition"] == "RecordAgeExceeded"
    assert ctx["approximateInvokeCount"] == 1
    assert ctx["functionArn"] == fn.arn
    assert is_uuid(ctx["requestId"])
    assert msg["version"] == "1.0"
    assert ISO_MS.match(msg["timestamp"])
    info = msg["KinesisBatchInfo"]
    assert (info["batchSize"], info["startSequenceNumber"], info["endSequenceNumber"]) == (1, seq, seq)
    assert info["streamArn"] == arn
    assert m.stats().totals["discarded"] == 1


async def test_unlimited_retries_end_when_the_record_is_too_old(rig: Rig) -> None:
    """Each failing call moves time 25 s on: before the fourth try r1 is 75 s old, so it is discarded after 3."""
    clock = rig.offset_clock()
    await rig.open(clock=clock)
    await rig.stream()
    await rig.put([b"r1"])

    def fail_and_age(call: Call) -> bool:
        clock.advance(25)
        return call.datas == [b"r1"]

    rec = rig.recorder(fail=fail_and_age)
    m = rig.mapping(rec, clock=clock, maximum_retry_attempts=-1, maximum_record_age_s=60, batch_size=1)
    m.start()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    [r2] = await rig.put([b"r2"])
    await rig.wait_for(lambda: rig.checkpoint(m) == r2, "r2 to be delivered")
    await rig.stop(m)
    assert rec.batches() == [[b"r1"]] * 3 + [[b"r2"]]
    [msg] = rig.dlq()
    assert "responseContext" not in msg
    assert msg["requestContext"]["condition"] == "RecordAgeExceeded"
    assert msg["requestContext"]["approximateInvokeCount"] == 3
    assert msg["requestContext"]["requestId"] == rec.calls[2].request_id


async def test_retry_attempts_exhausted_message_fields_exactly(rig: Rig) -> None:
    clock = ManualClock(T0_MS)
    await rig.open(clock=clock)
    arn = await rig.stream()
    [s1] = await rig.put([b"r1"])
    clock.advance(ms=1_234)
    [s2] = await rig.put([b"r2"])
    rec = rig.recorder(fail=lambda c: True)
    fn = rig.fn(rec)
    m = rig.mapping(fn, maximum_retry_attempts=1, batch_size=2)
    m.start()
    before = rig.now_ms()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    after = rig.now_ms()
    await rig.wait_for(lambda: rig.checkpoint(m) == s2, "the checkpoint to pass r2")
    await rig.stop(m)
    assert rec.batches() == [[b"r1", b"r2"]] * 2
    [msg] = rig.dlq()
    stamp = msg.pop("timestamp")
    assert msg == {
        "requestContext": {
            "requestId": rec.calls[-1].request_id,
            "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:fn",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 2,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "KinesisBatchInfo": {
            "shardId": SHARD0,
            "startSequenceNumber": s1,
            "endSequenceNumber": s2,
            "approximateArrivalOfFirstRecord": "2023-11-14T22:13:20.000Z",
            "approximateArrivalOfLastRecord": "2023-11-14T22:13:21.234Z",
            "batchSize": 2,
            "streamArn": arn,
        },
    }
    assert ISO_MS.match(stamp)
    # The discard time, on the mapping's clock.
    assert before - 1000 <= _epoch_ms(stamp) <= after + 1000
    assert m.stats().last_processing_result == "PROBLEM: Function call failed"


def _epoch_ms(iso: str) -> int:
    t = dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return round(t.timestamp() * 1000)


async def test_stream_destination_gets_the_same_message(rig: Rig) -> None:
    arn = await rig.stream()
    await rig.eng.create_stream("dlq", 1)
    [s1] = await rig.put([b"r1"])
    rec = rig.recorder(fail=lambda c: True)
    m = rig.mapping(rec, destination="dlq", maximum_retry_attempts=1, batch_size=1)
    m.start()
    it: str | None = await rig.eng.get_shard_iterator(
        stream_name="dlq", shard_id=SHARD0, shard_iterator_type="TRIM_HORIZON"
    )
    got: list[Record] = []

    async def poll() -> None:
        nonlocal it
        assert it is not None
        res = await rig.eng.get_records(it)
        it = res.next_shard_iterator
        got.extend(res.records)

    deadline = time.monotonic() + 15
    while not got:
        assert time.monotonic() < deadline, "timed out waiting for the on-failure record in dlq"
        await asyncio.sleep(0.01)
        await poll()
    await rig.stop(m)
    [record] = got
    assert record.partition_key == SHARD0
    msg = orjson.loads(record.data)
    assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert msg["requestContext"]["approximateInvokeCount"] == 2
    assert msg["responseContext"]["functionError"] == "Unhandled"
    assert msg["KinesisBatchInfo"]["startSequenceNumber"] == msg["KinesisBatchInfo"]["endSequenceNumber"] == s1
    assert msg["KinesisBatchInfo"]["streamArn"] == arn
    assert len(rec.calls) == 2


@pytest.mark.parametrize("retries", [0, 2, 3])
async def test_max_retry_attempts_n_gives_n_plus_one_invocations(rig: Rig, retries: int) -> None:
    await rig.stream()
    seqs = await rig.put([b"poison", b"ok"])
    rec = rig.recorder(fail=lambda c: b"poison" in c.datas)
    m = rig.mapping(rec, maximum_retry_attempts=retries, batch_size=1)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[1], "the shard to move past the poison")
    await rig.stop(m)
    assert rec.batches() == [[b"poison"]] * (retries + 1) + [[b"ok"]]
    [msg] = rig.dlq()
    assert msg["requestContext"]["approximateInvokeCount"] == retries + 1


async def test_throttles_do_not_use_up_retries(rig: Rig) -> None:
    await rig.stream()
    [seq] = await rig.put([b"r1"])
    rec = rig.recorder()
    fn = rig.fn(rec, throttle=5)
    m = rig.mapping(fn, maximum_retry_attempts=0)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seq, "r1 to be handled")
    await rig.stop(m)
    assert fn.throttled == 5
    assert rec.batches() == [[b"r1"]]
    assert rig.dlq() == []
    totals = m.stats().totals
    assert (totals["throttles"], totals["invocations"], totals["function_errors"]) == (5, 1, 0)


async def test_throttles_between_function_errors_are_not_counted(rig: Rig) -> None:
    await rig.stream()
    await rig.put([b"r1"])
    rec = rig.recorder(fail=lambda c: True)
    fn = rig.fn(rec, throttle=3)
    m = rig.mapping(fn, maximum_retry_attempts=1)
    m.start()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    await rig.stop(m)
    assert len(rec.calls) == 2
    assert rig.dlq()[0]["requestContext"]["approximateInvokeCount"] == 2


async def test_bisect_isolates_the_poison_record(rig: Rig) -> None:
    """[DESIGN] Halves run first-then-second, the first is ceil(n/2), and retries are charged only once the
    failing batch is down to one record."""
    await rig.stream()
    sent = rig.numbered(100)
    seqs = await rig.put(sent)
    rec = rig.recorder(fail=lambda c: b"r1" in c.datas)
    m = rig.mapping(rec, bisect_batch_on_function_error=True, maximum_retry_attempts=2, batch_size=100)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to reach r100")
    await rig.stop(m)
    assert rec.sizes() == [100, 50, 25, 13, 7, 4, 2, 1, 1, 1, 1, 2, 3, 6, 12, 25, 50]
    assert rec.batches()[10:] == [
        sent[1:2],
        sent[2:4],
        sent[4:7],
        sent[7:13],
        sent[13:25],
        sent[25:50],
        sent[50:100],
    ]
    ok = [d for c in rec.calls if b"r1" not in c.datas for d in c.datas]
    assert ok == sent[1:]
    [msg] = rig.dlq()
    info = msg["KinesisBatchInfo"]
    assert (info["batchSize"], info["startSequenceNumber"], info["endSequenceNumber"]) == (1, seqs[0], seqs[0])
    assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert msg["requestContext"]["approximateInvokeCount"] == 3


async def test_bisect_halves_have_their_own_retry_budget(rig: Rig) -> None:
    """[DESIGN] A pushed half starts with no retries used: two poison records in different halves are each
    tried 1 + MaximumRetryAttempts times alone."""
    await rig.stream()
    sent = rig.numbered(4)
    seqs = await rig.put(sent)
    rec = rig.recorder(fail=lambda c: b"r1" in c.datas or b"r4" in c.datas)
    m = rig.mapping(rec, bisect_batch_on_function_error=True, maximum_retry_attempts=1, batch_size=4)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to reach r4")
    await rig.stop(m)
    assert rec.batches() == [sent, sent[:2], [b"r1"], [b"r1"], [b"r2"], sent[2:], [b"r3"], [b"r4"], [b"r4"]]
    assert [(d["KinesisBatchInfo"]["startSequenceNumber"], d["KinesisBatchInfo"]["batchSize"]) for d in rig.dlq()] == [
        (seqs[0], 1),
        (seqs[3], 1),
    ]


async def test_settled_halves_are_checkpointed_while_the_poison_is_retried(rig: Rig) -> None:
    """[DESIGN] §3.1: the durable checkpoint follows the settled prefix. With bisect, [r1 r2] and [r3] succeed
    while r4 keeps failing (unlimited retries): a restart now must not re-deliver r1..r3."""
    await rig.stream()
    sent = rig.numbered(4)
    seqs = await rig.put(sent)
    rec = rig.recorder(fail=lambda c: b"r4" in c.datas)
    m = rig.mapping(rec, bisect_batch_on_function_error=True, batch_size=4)
    m.start()
    await rig.wait_for(lambda: sum(c.datas == [b"r4"] for c in rec.calls) >= 3, "r4 retried alone")
    assert rec.batches()[:5] == [sent, sent[:2], sent[2:], [b"r3"], [b"r4"]]
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[2], "the checkpoint at r3")
    await rig.stop(m)


async def test_without_bisect_the_whole_batch_is_retried_and_discarded(rig: Rig) -> None:
    await rig.stream()
    sent = rig.numbered(110)
    seqs = await rig.put(sent)
    rec = rig.recorder(fail=lambda c: b"r1" in c.datas)
    m = rig.mapping(rec, maximum_retry_attempts=2, batch_size=100)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the shard to move on to r101..")
    await rig.stop(m)
    assert rec.batches() == [sent[:100]] * 3 + [sent[100:]]
    [msg] = rig.dlq()
    info = msg["KinesisBatchInfo"]
    assert (info["batchSize"], info["startSequenceNumber"], info["endSequenceNumber"]) == (100, seqs[0], seqs[99])
    assert msg["requestContext"]["approximateInvokeCount"] == 3
    # The mapping's counters agree: three failed invocations, then the batch after the discarded one.
    totals = m.stats().totals
    assert totals["function_errors"] == 3
    assert totals["invocations"] == 4
    assert totals["discarded"] == 100
    assert totals["dead_lettered"] == 100


async def test_no_destination_drops_records_and_the_checkpoint_advances(rig: Rig) -> None:
    await rig.stream()
    seqs = await rig.put([b"poison", b"ok"])
    rec = rig.recorder(fail=lambda c: b"poison" in c.datas)
    m = rig.mapping(rec, destination=None, maximum_retry_attempts=0, batch_size=1)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[1], "the shard to move past the poison")
    await rig.stop(m)
    assert rec.batches() == [[b"poison"], [b"ok"]]
    assert not rig.dlq_path.exists()
    totals = m.stats().totals
    assert (totals["discarded"], totals["dead_lettered"]) == (1, 0)


async def test_default_retries_block_the_shard_behind_a_poison_record(rig: Rig) -> None:
    """MaximumRetryAttempts -1 and no record age: the poison is retried and nothing after it is delivered."""
    await rig.stream()
    seqs = await rig.put([b"poison", b"ok"])
    rec = rig.recorder(fail=lambda c: b"poison" in c.datas)
    m = rig.mapping(rec, batch_size=1)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) >= 20, "many retries")
    await rig.stop(m)
    assert all(c.datas == [b"poison"] for c in rec.calls)
    assert rig.checkpoint(m) == "TRIM_HORIZON"
    assert rig.dlq() == []
    assert seqs
