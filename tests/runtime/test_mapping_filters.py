"""FilterCriteria inside a running mapping (spec §3.9): filtered records are settled, never
invoked, and the checkpoint passes them; kept records reach the function with their original bytes."""

from __future__ import annotations

import json

from ._rig import Rig

KEEP = '{"data": {"type": ["keep"]}}'


def alternating(n: int) -> list[bytes]:
    # Odd spacing on purpose: a kept record must arrive byte-identical, not re-encoded.
    return [
        (f'{{"type": "keep",  "i":{i}}}' if i % 2 else f'{{"type":"drop", "i": {i} }}').encode()
        for i in range(1, n + 1)
    ]


async def test_only_matching_records_are_delivered_with_their_bytes(rig: Rig) -> None:
    await rig.stream()
    sent = alternating(20)
    seqs = await rig.put(sent)
    rec = rig.recorder()
    m = rig.mapping(rec, filters=[KEEP], batch_size=10)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to pass r20")
    await rig.idle(m)
    await rig.stop(m)
    kept = sent[0::2]
    assert rec.delivered() == kept
    assert rec.sizes() == [10]
    assert all(json.loads(d)["type"] == "keep" for d in rec.delivered())
    assert rig.dlq() == []
    # The mapping's counters agree: half the records were filtered out, half invoked.
    totals = m.stats().totals
    assert (totals["filtered_out"], totals["invoked_records"], totals["polled"]) == (10, 10, 20)


async def test_batch_size_counts_matching_records(rig: Rig) -> None:
    await rig.stream()
    sent = alternating(30)
    seqs = await rig.put(sent)
    rec = rig.recorder()
    m = rig.mapping(rec, filters=[KEEP], batch_size=5)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to pass r30")
    await rig.stop(m)
    assert rec.sizes() == [5, 5, 5]
    assert rec.delivered() == sent[0::2]


async def test_filtered_records_are_not_retried_after_a_failure(rig: Rig) -> None:
    """A failing kept record is retried alone; the dropped ones around it are never part of a batch."""
    await rig.stream()
    sent = alternating(6)
    seqs = await rig.put(sent)
    rec = rig.recorder(fail=lambda c: c.index == 0)
    m = rig.mapping(rec, filters=[KEEP], batch_size=10, maximum_retry_attempts=1)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to pass r6")
    await rig.stop(m)
    assert rec.batches() == [sent[0::2], sent[0::2]]
    assert rig.dlq() == []


async def test_all_filtered_out_no_invocation_and_a_restart_does_not_redeliver(rig: Rig) -> None:
    await rig.stream()
    drops = [f'{{"type":"drop","i":{i}}}'.encode() for i in range(50)]
    seqs = await rig.put(drops)
    rec = rig.recorder()
    m = rig.mapping(rec, filters=[KEEP])
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to pass every record")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.calls == []

    rec2 = rig.recorder()
    src = rig.source()
    again = rig.mapping(rec2, uuid=m.uuid, filters=[KEEP], source=src)
    again.start()
    await rig.wait_for(lambda: src.polls >= 1, "the restarted mapping to poll")
    [keep] = await rig.put([b'{"type":"keep"}'])
    await rig.wait_for(lambda: rig.checkpoint(again) == keep, "the matching record")
    await rig.stop(again)
    assert src.iterator_requests[0] == ("shardId-000000000000", "AFTER_SEQUENCE_NUMBER", seqs[-1])
    assert rec2.delivered() == [b'{"type":"keep"}']
    assert again.stats().totals["polled"] == 1


async def test_filter_on_data_drops_records_that_are_not_json(rig: Rig) -> None:
    await rig.stream()
    sent = [b"\xff\xfe binary", b"not json", b'{"type": "keep"}']
    seqs = await rig.put(sent)
    rec = rig.recorder()
    m = rig.mapping(rec, filters=[KEEP])
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint")
    await rig.stop(m)
    assert rec.delivered() == [b'{"type": "keep"}']


async def test_filter_on_metadata_keeps_records_that_are_not_json(rig: Rig) -> None:
    await rig.stream()
    sent = [b"\xff\xfe binary", b"not json", b"{}"]
    seqs = await rig.put(sent, pk=lambda i: "a" if i < 2 else "b")
    rec = rig.recorder()
    m = rig.mapping(rec, filters=['{"partitionKey": ["a"]}'])
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint")
    await rig.stop(m)
    assert rec.delivered() == sent[:2]
