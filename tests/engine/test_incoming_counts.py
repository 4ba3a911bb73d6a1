"""Per-shard IncomingRecords / IncomingBytes: a record count is how far the shard's log moved since counting
started, bytes are counted per record. Both must match what was put, shard by shard, through staging,
materialising, a failed journal write, resharding and a clean reopen; OutgoingBytes counts the same UTF-8 bytes."""

from __future__ import annotations

import errno
import random

import pytest

import shardline.storage.journal as journal_module
from shardline import Engine, PutRecordsEntry, PutRecordsRequestEntry

from ._kit import Kit


def _expected(results: list[PutRecordsEntry], entries: list[PutRecordsRequestEntry]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r, e in zip(results, entries, strict=True):
        if r.error_code is None:
            assert r.shard_id is not None
            n, b = out.get(r.shard_id, (0, 0))
            out[r.shard_id] = (n + 1, b + len(e.data) + len(e.partition_key.encode()))
    return out


def _counts(engine: Engine, stream: str) -> dict[str, tuple[int, int]]:
    return {
        sh.shard_id: (sh.counters.incoming_records, sh.counters.incoming_bytes)
        for sh in engine.streams[stream].shards
        if sh.counters.incoming_records or sh.counters.incoming_bytes
    }


def _add(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    out = dict(a)
    for k, (n, nb) in b.items():
        n0, b0 = out.get(k, (0, 0))
        out[k] = (n0 + n, b0 + nb)
    return out


async def test_counts_match_what_each_shard_took_through_staging_and_materialising(kit: Kit) -> None:
    engine = await kit.open(shard_limit=200)
    await engine.create_stream("s", 100)
    rng = random.Random(7)
    want: dict[str, tuple[int, int]] = {}
    for round_ in range(6):
        entries = [PutRecordsRequestEntry(rng.randbytes(rng.randrange(0, 80)), f"k{round_}-{i}-é") for i in range(400)]
        res = await engine.put_records(entries, stream_name="s")
        want = _add(want, _expected(res.records, entries))
        assert _counts(engine, "s") == want
        if round_ % 2:
            await engine.checkpoint()  # every staged batch goes to its segment: the counts stay
            assert _counts(engine, "s") == want


async def test_records_of_a_failed_journal_write_are_not_counted(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 8)
    ok = [PutRecordsRequestEntry(b"x" * 10, f"a{i}") for i in range(50)]
    want = _expected((await engine.put_records(ok, stream_name="s")).records, ok)

    def full_disk(fd: int, data: bytes, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "append_all", full_disk)
    bad = [PutRecordsRequestEntry(b"y" * 10, f"b{i}") for i in range(50)]
    res = await engine.put_records(bad, stream_name="s")
    assert res.failed_record_count == 50
    assert _counts(engine, "s") == want
    monkeypatch.undo()
    again = await engine.put_records(bad, stream_name="s")
    assert _counts(engine, "s") == _add(want, _expected(again.records, bad))


async def test_parents_keep_their_counts_after_a_split_and_children_count_from_zero(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1)
    first = [PutRecordsRequestEntry(b"p" * 5, f"k{i}") for i in range(30)]
    want = _expected((await engine.put_records(first, stream_name="s")).records, first)
    assert want == {"shardId-000000000000": (30, sum(5 + len(f"k{i}") for i in range(30)))}
    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 127)
    )
    later = [PutRecordsRequestEntry(b"c" * 7, f"k{i}") for i in range(30)]
    res = await engine.put_records(later, stream_name="s")
    assert {r.shard_id for r in res.records} == {"shardId-000000000001", "shardId-000000000002"}
    assert _counts(engine, "s") == _add(want, _expected(res.records, later))


async def test_a_clean_reopen_counts_from_zero(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 4)
    await engine.put_records([PutRecordsRequestEntry(b"z", f"k{i}") for i in range(40)], stream_name="s")
    assert sum(n for n, _ in _counts(engine, "s").values()) == 40
    engine = await kit.reopen(engine)
    assert _counts(engine, "s") == {}
    entries = [PutRecordsRequestEntry(b"zz", f"k{i}") for i in range(12)]
    res = await engine.put_records(entries, stream_name="s")
    assert _counts(engine, "s") == _expected(res.records, entries)


async def test_outgoing_counts_match_incoming_ones_in_utf8_bytes(kit: Kit) -> None:
    engine = await kit.open()
    await engine.create_stream("s", 1)
    entries = [PutRecordsRequestEntry(b"d" * (i % 7), f"ключ-{i}-é") for i in range(60)]
    await engine.put_records(entries, stream_name="s")
    got = await kit.read_all(engine, "s", "shardId-000000000000")
    assert [r.data for r in got] == [e.data for e in entries]
    c = engine.streams["s"].shards[0].counters
    assert c.outgoing_records == c.incoming_records == 60
    assert c.outgoing_bytes == c.incoming_bytes == sum(len(e.data) + len(e.partition_key.encode()) for e in entries)
