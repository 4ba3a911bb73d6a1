"""ReportBatchItemFailures (spec §3.7): every row of the response table, and the rewind to the
lowest reported sequence number."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from shardline.models import Record
from shardline.runtime.source import Page, SourceShard

from ._rig import Call, Rig

SHARD0 = "shardId-000000000000"
RBIF = ("ReportBatchItemFailures",)


def failures(*ids: object) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}


SUCCESS_BODIES: dict[str, Callable[[Call], Any]] = {
    "null": lambda c: None,
    "empty-string": lambda c: "",
    "empty-list": lambda c: [],
    "empty-object": lambda c: {},
    "empty-failure-list": lambda c: {"batchItemFailures": []},
    "null-failure-list": lambda c: {"batchItemFailures": None},
    "other-keys-only": lambda c: {"status": "fine"},
}

FAILURE_BODIES: dict[str, Callable[[Call], Any]] = {
    "empty-identifier": lambda c: failures(""),
    "null-identifier": lambda c: failures(None),
    "missing-key": lambda c: {"batchItemFailures": [{"foo": 123}]},
    "missing-key-null": lambda c: {"batchItemFailures": [{"foo": None}]},
    "unknown-identifier": lambda c: failures("123"),
    "non-string-identifier": lambda c: failures(123),
    "valid-then-invalid": lambda c: failures(c.seqs[1], ""),
    "number-body": lambda c: 42,
    "failures-not-a-list": lambda c: {"batchItemFailures": "oops"},
    "item-not-an-object": lambda c: {"batchItemFailures": [c.seqs[1]]},
}


@pytest.mark.parametrize("body", SUCCESS_BODIES.values(), ids=SUCCESS_BODIES.keys())
async def test_rbif_table_full_success(rig: Rig, body: Any) -> None:
    """§3.7: these responses settle the whole batch; nothing is retried and nothing is discarded."""
    await rig.stream()
    seqs = await rig.put(rig.numbered(3))
    rec = rig.recorder(respond=body)
    m = rig.mapping(rec, function_response_types=RBIF, maximum_retry_attempts=1, batch_size=3)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to pass r3")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.batches() == [rig.numbered(3)]
    assert rig.dlq() == []
    assert m.stats().last_processing_result == "OK"


@pytest.mark.parametrize("body", FAILURE_BODIES.values(), ids=FAILURE_BODIES.keys())
async def test_rbif_table_full_failure(rig: Rig, body: Any) -> None:
    """§3.7: an invalid partial response fails the whole batch: retried, then discarded whole, with HTTP 200 and
    a null functionError in the destination message."""
    await rig.stream()
    seqs = await rig.put(rig.numbered(3))
    rec = rig.recorder(respond=body)
    m = rig.mapping(rec, function_response_types=RBIF, maximum_retry_attempts=1, batch_size=3)
    m.start()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "the checkpoint to pass r3")
    await rig.stop(m)
    assert rec.batches() == [rig.numbered(3)] * 2
    [msg] = rig.dlq()
    assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert msg["requestContext"]["approximateInvokeCount"] == 2
    assert msg["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": None}
    info = msg["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (seqs[0], seqs[2], 3)


async def test_rbif_table_identifier_as_a_json_number_is_full_failure(rig: Rig) -> None:
    """§3.7 (OBS: {"itemIdentifier": 123}): a number is not an identifier, even one equal to a record's sequence
    number. Ours have 41 digits, so the handler returns an integer wider than 64 bits, which Python's json (and so
    Lambda's Python runtime) serializes without complaint."""
    await rig.stream()
    seqs = await rig.put(rig.numbered(3))
    rec = rig.recorder(respond=lambda c: failures(int(c.seqs[1])))
    m = rig.mapping(rec, function_response_types=RBIF, maximum_retry_attempts=1, batch_size=3)
    m.start()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    await rig.stop(m)
    assert len(rec.calls) == 2
    [msg] = rig.dlq()
    # A function error here would mean the response never reached the verdict: it must be judged, not crash.
    assert msg["responseContext"]["functionError"] is None
    assert msg["KinesisBatchInfo"]["batchSize"] == 3 and msg["KinesisBatchInfo"]["endSequenceNumber"] == seqs[2]


async def test_rbif_rewinds_to_lowest_sequence_number(rig: Rig) -> None:
    await rig.stream()
    sent = rig.numbered(10)
    seqs = await rig.put(sent)
    # Reported out of order: the lowest one wins, wherever it is in the list.
    rec = rig.recorder(respond=lambda c: failures(seqs[6], seqs[3]) if c.index == 0 else None)
    m = rig.mapping(rec, function_response_types=RBIF, batch_size=10)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) >= 2, "the retry")
    more = await rig.put([b"r11"])
    await rig.wait_for(lambda: rig.checkpoint(m) == more[0], "the shard to move on")
    await rig.stop(m)
    assert rec.batches() == [sent, sent[3:], [b"r11"]]
    assert rig.dlq() == []


async def test_records_before_the_lowest_failure_are_settled(rig: Rig) -> None:
    """The checkpoint moves to just before the reported record while the rest is still being retried."""
    await rig.stream()
    seqs = await rig.put(rig.numbered(10))
    release = rig.gate()

    async def hold_retries(call: Call) -> None:
        if call.index > 0:
            await release.wait()

    rec = rig.recorder(respond=lambda c: failures(seqs[4]) if c.index == 0 else None, before=hold_retries)
    m = rig.mapping(rec, function_response_types=RBIF, batch_size=10)
    m.start()
    # The checkpoint is written before the retry is invoked: wait for both, then check the retry is still held.
    await rig.wait_for(
        lambda: rig.checkpoint(m) == seqs[3] and len(rec.calls) >= 2, "checkpoint at r4 while r5.. is retried"
    )
    assert len(rec.calls) == 2 and not rec.calls[1].done
    release.set()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[9], "checkpoint at r10")
    await rig.stop(m)
    assert rec.calls[1].seqs == seqs[4:]


class ListSource:
    """A one-shard source over a fixed list of records whose sequence numbers a test chooses (the engine's all
    have 41 digits). Iterators are positions in the list."""

    stream_name = "fixed"
    stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/fixed"

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    async def list_shards(self) -> list[SourceShard]:
        return [SourceShard(SHARD0, (), False)]

    async def get_iterator(
        self, shard_id: str, kind: str, *, sequence_number: str | None = None, timestamp_ms: int | None = None
    ) -> str:
        if kind == "TRIM_HORIZON":
            return "0"
        assert kind == "AFTER_SEQUENCE_NUMBER" and sequence_number is not None
        return str(1 + [r.sequence_number for r in self.records].index(sequence_number))

    async def get_records(self, iterator: str, limit: int) -> Page:
        pos = int(iterator)
        page = self.records[pos : pos + limit]
        return Page(page, str(pos + len(page)), 0, None)

    def arm(self, shard_id: str) -> None:
        pass

    async def wait_for_data(self, shard_id: str, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)

    def wake(self, shard_id: str) -> None:
        pass

    def tip(self, shard_id: str) -> str | None:
        return None

    def lag(self, shard_id: str, checkpoint: str) -> int | None:
        return None


async def test_lowest_identifier_is_compared_as_an_integer(rig: Rig) -> None:
    """ "9" < "10" as numbers, though not as strings: the retry starts at 9."""
    await rig.open()
    numbers = ["8", "9", "10", "11"]
    source = ListSource([Record(n, rig.now_ms(), f"r{n}".encode(), "pk") for n in numbers])
    rec = rig.recorder(respond=lambda c: failures("10", "9") if c.index == 0 else None)
    m = rig.mapping(rec, source=source, function_response_types=RBIF, batch_size=10)
    m.start()
    await rig.wait_for(lambda: len(rec.calls) >= 2, "the retry")
    await rig.wait_for(lambda: rig.checkpoint(m) == "11", "checkpoint at 11")
    await rig.stop(m)
    assert [c.seqs for c in rec.calls] == [numbers, ["9", "10", "11"]]


async def test_rbif_retries_only_the_failed_tail_then_discards_it(rig: Rig) -> None:
    await rig.stream()
    sent = rig.numbered(6)
    seqs = await rig.put(sent, pk=lambda i: f"test_{i}")
    rec = rig.recorder(respond=lambda c: failures(seqs[5]) if seqs[5] in c.seqs else None)
    m = rig.mapping(rec, function_response_types=RBIF, maximum_retry_attempts=3, batch_size=3)
    m.start()
    await rig.wait_for(lambda: len(rig.dlq()) >= 1, "the failure message")
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[5], "the checkpoint to pass r6")
    await rig.stop(m)
    assert rec.batches() == [sent[:3], sent[3:], [b"r6"], [b"r6"], [b"r6"]]
    [msg] = rig.dlq()
    assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert msg["requestContext"]["approximateInvokeCount"] == 4
    assert msg["responseContext"]["statusCode"] == 200
    assert msg["responseContext"]["functionError"] is None
    info = msg["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == seqs[5]
    assert info["shardId"] == SHARD0


async def test_without_rbif_a_failure_list_is_ignored(rig: Rig) -> None:
    await rig.stream()
    seqs = await rig.put(rig.numbered(3))
    rec = rig.recorder(respond=lambda c: failures(seqs[0]))
    m = rig.mapping(rec, batch_size=10, maximum_retry_attempts=2)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "checkpoint at r3")
    await rig.idle(m)
    await rig.stop(m)
    assert rec.batches() == [rig.numbered(3)]
    assert rig.dlq() == []


async def test_partial_failure_with_bisect_splits_at_the_reported_record(rig: Rig) -> None:
    await rig.stream()
    sent = rig.numbered(10)
    seqs = await rig.put(sent)
    rec = rig.recorder(respond=lambda c: failures(seqs[5]) if c.index == 0 else None)
    m = rig.mapping(rec, function_response_types=RBIF, bisect_batch_on_function_error=True, batch_size=10)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "checkpoint at r10")
    await rig.stop(m)
    assert rec.batches() == [sent, sent[5:]]


async def test_function_error_with_rbif_is_still_bisected(rig: Rig) -> None:
    """A real exception is a function error whatever RBIF says: it is bisected, not rewound."""
    await rig.stream()
    sent = rig.numbered(4)
    seqs = await rig.put(sent)
    rec = rig.recorder(fail=lambda c: c.index == 0)
    m = rig.mapping(rec, function_response_types=RBIF, bisect_batch_on_function_error=True, batch_size=10)
    m.start()
    await rig.wait_for(lambda: rig.checkpoint(m) == seqs[-1], "checkpoint at r4")
    await rig.stop(m)
    assert rec.batches() == [sent, sent[:2], sent[2:]]
