"""Batching (spec §3.3) and the event shape: what one invocation holds, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import os

import orjson

from shardline import ManualClock

from ._rig import Rig

MAX_PAYLOAD = 6 * 1024 * 1024
SHARD0 = "shardId-000000000000"


async def test_batch_size_caps_every_batch_in_order_without_gaps(rig: Rig) -> None:
    await rig.stream()
    sent = rig.numbered(250)
    await rig.put(sent)
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=100)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 250, "250 records")
    await rig.stop(m)
    assert rec.sizes() == [100, 100, 50]
    assert rec.delivered() == sent
    for call in rec.calls:
        assert [int(s) for s in call.seqs] == sorted(int(s) for s in call.seqs)


async def test_batch_size_count_trigger_on_a_live_stream(rig: Rig) -> None:
    """Records that arrive while the mapping runs: every batch holds at most BatchSize, none is lost or repeated."""
    await rig.stream()
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=7)
    m.start()
    sent: list[bytes] = []
    for chunk in range(5):
        batch = rig.numbered(13, start=chunk * 13 + 1)
        await rig.put(batch)
        sent.extend(batch)
        await rig.wait_for(lambda: len(rec.delivered()) >= len(sent), "chunk")
    await rig.stop(m)
    assert all(1 <= n <= 7 for n in rec.sizes())
    assert rec.delivered() == sent


async def test_window_invokes_with_fewer_records_once_the_window_has_passed(rig: Rig) -> None:
    await rig.stream()
    rec = rig.recorder()
    clock = ManualClock()
    m = rig.mapping(rec, batch_size=10, maximum_batching_window_s=1, clock=clock)
    sent = rig.numbered(3)
    await rig.put(sent)
    m.start()
    await rig.fetched(m)
    assert rec.calls == []  # the three records wait for their window (the mapping's clock has not moved)
    clock.advance(1)
    await rig.wait_for(lambda: len(rec.calls) >= 1, "the window to close")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.batches() == [sent]


async def test_full_batch_does_not_wait_for_the_window(rig: Rig) -> None:
    await rig.stream()
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=10, maximum_batching_window_s=300)
    sent = rig.numbered(10)
    await rig.put(sent)
    m.start()
    # Well under the 300 s window: only the count trigger can explain the invocation.
    await rig.wait_for(lambda: len(rec.calls) >= 1, "the count trigger", timeout=10)
    await rig.stop(m)
    assert rec.batches() == [sent]


async def test_window_zero_invokes_as_soon_as_records_exist(rig: Rig) -> None:
    """With no window, one GetRecords result becomes one invocation (split only by BatchSize and the size cap)."""
    await rig.stream()
    rec = rig.recorder()
    m = rig.mapping(rec, batch_size=100, maximum_batching_window_s=0)
    first = rig.numbered(7)
    await rig.put(first)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) >= 1, "first invocation")
    one = [b"late-1"]
    await rig.put(one)
    await rig.wait_for(lambda: len(rec.calls) >= 2, "second invocation")
    await rig.stop(m)
    assert rec.batches() == [first, one]


async def test_payload_cap_splits_batches_of_1mib_records(rig: Rig) -> None:
    """Every request body stays within 6 MiB; four records of 1,000,000 bytes fit, a fifth does not."""
    await rig.stream()
    blobs = [os.urandom(1_000_000) for _ in range(10)]
    for b in blobs:
        await rig.eng.put_record(stream_name="s", data=b, partition_key="pk")
    rec = rig.recorder()
    fn = rig.fn(rec, keep_events=False)
    m = rig.mapping(fn, batch_size=10_000, maximum_batching_window_s=1)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 10, "10 large records")
    await rig.stop(m)
    assert rec.delivered() == blobs
    assert rec.sizes() == [4, 4, 2]
    assert all(size <= MAX_PAYLOAD for size in fn.event_sizes)
    # Not driven by BatchSize: a fifth record (about half of the two-record event) would pass the cap.
    one_record = (fn.event_sizes[2] - len(b'{"Records":[]}')) // 2
    assert fn.event_sizes[0] + one_record > MAX_PAYLOAD


async def test_an_empty_poll_never_invokes(rig: Rig) -> None:
    await rig.stream()
    rec0, rec1 = rig.recorder(), rig.recorder()
    src0, src1 = rig.source(), rig.source()
    clock = ManualClock()
    m0 = rig.mapping(rec0, source=src0, maximum_batching_window_s=0)
    m1 = rig.mapping(rec1, source=src1, maximum_batching_window_s=1, clock=clock)
    m0.start()
    m1.start()
    await rig.idle(m0)
    await rig.idle(m1)
    # A batching window closes with nothing in it.
    clock.advance(2)
    await rig.idle(m1)
    assert src0.polls >= 1 and src1.polls >= 2
    await rig.stop(m0)
    await rig.stop(m1)
    assert rec0.calls == [] and rec1.calls == []
    assert m0.stats().totals["invocations"] == 0
    assert m0.stats().last_processing_result == "No records processed"


async def test_event_shape_byte_for_byte(rig: Rig) -> None:
    arrival_ms = 1_700_000_000_987
    await rig.open(clock=ManualClock(arrival_ms))
    arn = await rig.stream()
    res = await rig.eng.put_record(stream_name="s", data=b"hello", partition_key="p")
    seq = res.sequence_number
    rec = rig.recorder()
    fn = rig.fn(rec)
    m = rig.mapping(fn)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) >= 1, "one invocation")
    await rig.stop(m)
    expected = (
        b'{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"p","sequenceNumber":"'
        + seq.encode()
        + b'","data":"aGVsbG8=","approximateArrivalTimestamp":1700000000.987},'
        b'"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"'
        + f"{SHARD0}:{seq}".encode()
        + b'","eventName":"aws:kinesis:record",'
        b'"invokeIdentityArn":"arn:aws:iam::000000000000:role/fn-role","awsRegion":"us-east-1",'
        b'"eventSourceARN":"' + arn.encode() + b'"}]}'
    )
    assert fn.events == [expected]
    record = orjson.loads(fn.events[0])["Records"][0]
    assert record["kinesis"]["approximateArrivalTimestamp"] == arrival_ms / 1000
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
    assert arn == "arn:aws:kinesis:us-east-1:000000000000:stream/s"


async def test_binary_data_is_base64_of_the_stored_bytes(rig: Rig) -> None:
    await rig.stream()
    blobs = [bytes(range(256)), b"\x00", b"\xff\xfe not utf-8 \x80", "ünïcode ✓".encode(), b'{"a":  1 }']
    await rig.put(blobs)
    rec = rig.recorder()
    m = rig.mapping(rec)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= len(blobs), "all records")
    await rig.stop(m)
    assert rec.delivered() == blobs
    for r, b in zip(rec.calls[0].records, blobs, strict=True):
        assert r["kinesis"]["data"] == base64.b64encode(b).decode()
        assert r["eventID"] == f"{SHARD0}:{r['kinesis']['sequenceNumber']}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _kpl_aggregate(sub_records: list[bytes], key: str) -> bytes:
    body = _field(1, key.encode())
    for data in sub_records:
        body += _field(3, _varint(1 << 3 | 0) + _varint(0) + _field(3, data))
    return b"\xf3\x89\x9a\xc2" + body + hashlib.md5(body).digest()


async def test_kpl_aggregated_record_is_delivered_as_one_record(rig: Rig) -> None:
    await rig.stream()
    agg = _kpl_aggregate([f"sub-{i}".encode() for i in range(5)], "user-key")
    corrupt = agg[:-1] + bytes([agg[-1] ^ 0xFF])
    await rig.put([agg, corrupt])
    rec = rig.recorder()
    m = rig.mapping(rec)
    m.start()
    await rig.wait_for(lambda: len(rec.delivered()) >= 2, "two records")
    await rig.stop(m)
    assert rec.delivered() == [agg, corrupt]
    assert [r["kinesis"]["partitionKey"] for r in rec.calls[0].records] == ["pk", "pk"]


async def test_consumer_arn_as_event_source(rig: Rig) -> None:
    arn = await rig.stream()
    consumer = await rig.eng.register_stream_consumer(arn, "c")
    assert "/consumer/c:" in consumer.consumer_arn
    await rig.put([b"r1", b"poison"])
    rec = rig.recorder(fail=lambda c: b"poison" in c.datas)
    m = rig.mapping(rec, event_source_arn=consumer.consumer_arn, maximum_retry_attempts=0, batch_size=1)
    assert m.config.stream_name == "s"
    m.start()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    await rig.stop(m)
    assert rec.calls[0].datas == [b"r1"]
    assert rec.calls[0].records[0]["eventSourceARN"] == arn
    assert rig.dlq()[0]["KinesisBatchInfo"]["streamArn"] == arn
