"""PutRecord(s) routing and limits, and GetRecords: limit, MillisBehindLatest, continuation, closed-shard ends and
lineage."""

from __future__ import annotations

import hashlib

import pytest

from shardline import Engine, ManualClock, PutRecordsRequestEntry
from shardline.errors import (
    InvalidArgumentException,
    KinesisError,
    ValidationException,
)

from ._kit import Kit

ACCOUNT = "000000000000"
MAX_KEY = (1 << 128) - 1
MIB = 1024 * 1024


def md5_key(partition_key: str) -> int:
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


# ----------------------------------------------------------------- routing
async def test_md5_routing_matches_an_independent_computation(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 5)
    shards = (await engine.describe_stream("s")).shards
    keys = [f"key-{i}" for i in range(150)] + ["", "ü-ñicode-键", "x" * 256]
    keys = [k for k in keys if k]
    for k in keys:
        res = await engine.put_record(stream_name="s", data=k.encode(), partition_key=k)
        assert res.shard_id == kit.shard_for_key(shards, md5_key(k)), k
    batch = await engine.put_records([(k.encode(), k) for k in keys], stream_name="s")
    assert batch.failed_record_count == 0
    assert [e.shard_id for e in batch.records] == [kit.shard_for_key(shards, md5_key(k)) for k in keys]
    assert len({e.shard_id for e in batch.records}) == 5  # the sample reaches every shard


@pytest.mark.parametrize("count", [4, 7, 100])  # (7 and 100: boundaries inside the router's table slots)
async def test_explicit_hash_key_routing(kit: Kit, engine: Engine, count: int) -> None:
    await engine.create_stream("s", count)
    shards = (await engine.describe_stream("s")).shards
    probes = [0, MAX_KEY]
    for s in shards:
        start, end = int(s.hash_key_range.starting_hash_key), int(s.hash_key_range.ending_hash_key)
        probes += [start, end, (start + end) // 2]
    for key in probes[:40]:
        res = await engine.put_record(stream_name="s", data=b"x", partition_key="same-key", explicit_hash_key=str(key))
        assert res.shard_id == kit.shard_for_key(shards, key), key
    many = await engine.put_records([PutRecordsRequestEntry(b"x", "same-key", str(k)) for k in probes], stream_name="s")
    assert [e.shard_id for e in many.records] == [kit.shard_for_key(shards, k) for k in probes]
    assert many.records[0].shard_id == "shardId-000000000000"
    assert many.records[1].shard_id == f"shardId-{count - 1:012d}"


async def test_explicit_hash_key_out_of_range(engine: Engine) -> None:
    await engine.create_stream("s", 2)
    too_big = str(1 << 128)
    expected = (
        f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {too_big}"
    )
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key=too_big)
    assert exc.value.message == expected
    # In PutRecords one bad key fails the whole request: nothing is written.
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.put_records(
            [PutRecordsRequestEntry(b"ok", "k"), PutRecordsRequestEntry(b"x", "k", too_big)], stream_name="s"
        )
    assert exc.value.message == expected
    for sid in ("shardId-000000000000", "shardId-000000000001"):
        it = await engine.get_shard_iterator(stream_name="s", shard_id=sid, shard_iterator_type="TRIM_HORIZON")
        assert (await engine.get_records(it)).records == []
    with pytest.raises(ValidationException):
        await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key="-1")
    with pytest.raises(ValidationException):
        await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key="01")


@pytest.mark.parametrize("count", [1, 2, 3, 7, 10])
async def test_new_stream_hash_ranges_cover_the_key_space(kit: Kit, engine: Engine, count: int) -> None:
    await engine.create_stream("s", count)
    shards = (await engine.describe_stream("s")).shards
    assert len(shards) == count
    kit.assert_covers_key_space(shards)
    sizes = [s.hash_key_range.ending_hash_key - s.hash_key_range.starting_hash_key + 1 for s in shards]
    assert max(sizes) - min(sizes) < count


async def test_partition_key_length_limits(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"x", partition_key="k" * 256)
    with pytest.raises(ValidationException):
        await engine.put_record(stream_name="s", data=b"x", partition_key="k" * 257)
    with pytest.raises(ValidationException):
        await engine.put_record(stream_name="s", data=b"x", partition_key="")


# ----------------------------------------------------------------- PutRecords
async def test_put_records_results_are_in_request_order(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 3)
    entries = [(b"d%03d" % i, f"pk-{i % 17}") for i in range(120)]
    res = await engine.put_records(entries, stream_name="s")
    assert res.failed_record_count == 0
    assert len(res.records) == len(entries)
    for (data, pk), e in zip(entries, res.records, strict=True):
        assert e.error_code is None
        assert e.shard_id is not None and e.sequence_number is not None
        it = await engine.get_shard_iterator(
            stream_name="s",
            shard_id=e.shard_id,
            shard_iterator_type="AT_SEQUENCE_NUMBER",
            starting_sequence_number=e.sequence_number,
        )
        first = (await engine.get_records(it, limit=1)).records[0]
        assert (first.sequence_number, first.data, first.partition_key) == (e.sequence_number, data, pk)
    # Per shard, request order is sequence order.
    by_shard: dict[str, list[int]] = {}
    for e in res.records:
        assert e.shard_id is not None and e.sequence_number is not None
        by_shard.setdefault(e.shard_id, []).append(int(e.sequence_number))
    for seqs in by_shard.values():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_put_records_count_limits(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    ok = await engine.put_records([(b"x", "k")] * 500, stream_name="s")
    assert len(ok.records) == 500 and ok.failed_record_count == 0
    with pytest.raises(ValidationException) as exc:
        await engine.put_records([(b"x", "k")] * 501, stream_name="s")
    assert "Member must have length less than or equal to 500" in exc.value.message
    with pytest.raises(ValidationException) as exc:
        await engine.put_records([], stream_name="s")
    assert "Member must have length greater than or equal to 1" in exc.value.message


async def test_put_records_total_size_limit(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    # Exactly 5 MiB of key + data is accepted.
    exact = [(b"\x00" * (MIB - 1), "k")] * 5
    res = await engine.put_records(exact, stream_name="s")
    assert res.failed_record_count == 0
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.put_records([*exact, (b"", "k")], stream_name="s")
    assert exc.value.message == "Records size exceeds 5 MB limit"
    assert len(await kit.read_all(engine, "s", "shardId-000000000000")) == 5


async def test_record_size_limit(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    # 1 MiB counts the partition key and the data together.
    await engine.put_record(stream_name="s", data=b"\x00" * (MIB - 1), partition_key="k")
    with pytest.raises(KinesisError):
        await engine.put_record(stream_name="s", data=b"\x00" * (MIB + 1), partition_key="k")
    with pytest.raises(KinesisError):
        await engine.put_record(stream_name="s", data=b"\x00" * MIB, partition_key="k")
    with pytest.raises(KinesisError):
        await engine.put_records([(b"x", "k"), (b"\x00" * MIB, "kk")], stream_name="s")


async def test_data_round_trips_byte_for_byte(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    blobs = [b"", bytes(range(256)), b"\x00\xff" * 1000, "ü€😀".encode()]
    for i, blob in enumerate(blobs):
        await engine.put_record(stream_name="s", data=blob, partition_key=f"ключ-{i}")
    got = await kit.read_all(engine, "s", "shardId-000000000000")
    assert [(r.data, r.partition_key) for r in got] == [(b, f"ключ-{i}") for i, b in enumerate(blobs)]


async def test_put_and_get_with_durable_acks(kit: Kit) -> None:
    engine = await kit.open(fsync="always")
    await engine.create_stream("s", 2)
    res = await engine.put_records([(b"d%d" % i, f"k{i}") for i in range(50)], stream_name="s")
    single = await engine.put_record(stream_name="s", data=b"one", partition_key="k0")
    got = []
    for sid in ("shardId-000000000000", "shardId-000000000001"):
        got += await kit.read_all(engine, "s", sid)
    assert sorted(r.sequence_number for r in got) == sorted(
        [e.sequence_number for e in res.records if e.sequence_number] + [single.sequence_number]
    )


async def test_put_records_throttling_fails_entries_in_place(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(enforce_limits=True)
    await engine.create_stream("s", 2)
    low, high = "0", str(MAX_KEY)  # shard 0 and shard 1
    for _ in range(2):  # use up shard 0's 1000 records for this second
        res = await engine.put_records([PutRecordsRequestEntry(b"x", "k", low)] * 500, stream_name="s")
        assert res.failed_record_count == 0
    mixed = [
        PutRecordsRequestEntry(b"a", "k", low),
        PutRecordsRequestEntry(b"b", "k", high),
        PutRecordsRequestEntry(b"c", "k", low),
        PutRecordsRequestEntry(b"d", "k", high),
    ]
    res = await engine.put_records(mixed, stream_name="s")
    assert res.failed_record_count == 2
    codes = [e.error_code for e in res.records]
    assert codes == [
        "ProvisionedThroughputExceededException",
        None,
        "ProvisionedThroughputExceededException",
        None,
    ]
    assert res.records[0].error_message == (
        f"Rate exceeded for shard shardId-000000000000 in stream s under account {ACCOUNT}."
    )
    assert res.records[0].shard_id is None and res.records[0].sequence_number is None
    assert [e.shard_id for e in res.records[1::2]] == ["shardId-000000000001"] * 2
    got = await kit.read_all(engine, "s", "shardId-000000000001")
    assert [r.data for r in got] == [b"b", b"d"]
    # The next second has capacity again.
    clock.advance(1)
    res = await engine.put_records(mixed, stream_name="s")
    assert res.failed_record_count == 0


# ----------------------------------------------------------------- GetRecords
async def test_get_records_limit(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.put_records([(b"%d" % i, "k") for i in range(10)], stream_name="s")
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id="shardId-000000000000", shard_iterator_type="TRIM_HORIZON"
    )
    for bad in (0, 10001):
        with pytest.raises(ValidationException):
            await engine.get_records(it, limit=bad)
    res = await engine.get_records(it, limit=3)
    assert [r.data for r in res.records] == [b"0", b"1", b"2"]
    assert res.next_shard_iterator is not None
    res = await engine.get_records(res.next_shard_iterator, limit=3)
    assert [r.data for r in res.records] == [b"3", b"4", b"5"]
    assert res.next_shard_iterator is not None
    res = await engine.get_records(res.next_shard_iterator, limit=10000)
    assert [r.data for r in res.records] == [b"6", b"7", b"8", b"9"]
    assert res.next_shard_iterator is not None
    res = await engine.get_records(res.next_shard_iterator, limit=1)
    assert res.records == [] and res.next_shard_iterator is not None and res.millis_behind_latest == 0
    # The same iterator can be read twice: it is a position, not a cursor.
    again = await engine.get_records(it, limit=1)
    assert [r.data for r in again.records] == [b"0"]


async def test_next_iterator_continues_exactly_with_new_writes(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    it: str | None = await engine.get_shard_iterator(
        stream_name="s", shard_id="shardId-000000000000", shard_iterator_type="LATEST"
    )
    seen: list[bytes] = []
    for round_ in range(5):
        await engine.put_records([(b"%d-%d" % (round_, i), "k") for i in range(7)], stream_name="s")
        assert it is not None
        res = await engine.get_records(it, limit=4)
        seen += [r.data for r in res.records]
        assert res.next_shard_iterator is not None
        res = await engine.get_records(res.next_shard_iterator)
        seen += [r.data for r in res.records]
        it = res.next_shard_iterator
    assert seen == [b"%d-%d" % (r, i) for r in range(5) for i in range(7)]


async def test_millis_behind_latest(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    it = await engine.get_shard_iterator(stream_name="s", shard_id="shardId-000000000000", shard_iterator_type="LATEST")
    arrivals = []
    for i in range(3):
        arrivals.append(clock.now_ms())
        await engine.put_record(stream_name="s", data=b"%d" % i, partition_key="k")
        clock.advance(1)
    clock.advance(10)
    res = await engine.get_records(it, limit=1)
    assert [r.data for r in res.records] == [b"0"]
    assert res.records[0].approximate_arrival_ms == arrivals[0]
    # Behind by the age of the oldest record not yet returned.
    assert res.millis_behind_latest == clock.now_ms() - arrivals[1] > 0
    assert res.next_shard_iterator is not None
    res = await engine.get_records(res.next_shard_iterator)
    assert [r.data for r in res.records] == [b"1", b"2"]
    assert res.millis_behind_latest == 0
    assert res.next_shard_iterator is not None
    empty = await engine.get_records(res.next_shard_iterator)
    assert empty.records == [] and empty.millis_behind_latest == 0


async def test_end_of_closed_shard(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.put_records([(b"%d" % i, "k") for i in range(5)], stream_name="s")
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id="shardId-000000000000", shard_iterator_type="TRIM_HORIZON"
    )
    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 127)
    )
    res = await engine.get_records(it, limit=3)
    assert len(res.records) == 3
    assert res.next_shard_iterator is not None and res.child_shards is None
    res = await engine.get_records(res.next_shard_iterator)
    assert [r.data for r in res.records] == [b"3", b"4"]
    assert res.next_shard_iterator is None
    assert res.millis_behind_latest == 0
    assert res.child_shards is not None
    children = sorted(res.child_shards, key=lambda c: c.shard_id)
    assert [c.shard_id for c in children] == ["shardId-000000000001", "shardId-000000000002"]
    assert all(c.parent_shards == ("shardId-000000000000",) for c in children)
    assert (children[0].hash_key_range.starting_hash_key, children[0].hash_key_range.ending_hash_key) == (
        0,
        (1 << 127) - 1,
    )
    assert (children[1].hash_key_range.starting_hash_key, children[1].hash_key_range.ending_hash_key) == (
        1 << 127,
        MAX_KEY,
    )
    # An iterator taken after the end of a closed shard ends at once, with the children.
    latest = await engine.get_shard_iterator(
        stream_name="s", shard_id="shardId-000000000000", shard_iterator_type="LATEST"
    )
    res = await engine.get_records(latest)
    assert res.records == [] and res.next_shard_iterator is None and res.child_shards is not None


async def test_empty_closed_shard_ends_at_once(engine: Engine) -> None:
    await engine.create_stream("s", 2)
    await engine.merge_shards(
        stream_name="s", shard_to_merge="shardId-000000000000", adjacent_shard_to_merge="shardId-000000000001"
    )
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id="shardId-000000000001", shard_iterator_type="TRIM_HORIZON"
    )
    res = await engine.get_records(it)
    assert res.records == [] and res.next_shard_iterator is None
    assert res.child_shards is not None
    (child,) = res.child_shards
    assert child.shard_id == "shardId-000000000002"
    assert child.parent_shards == ("shardId-000000000000", "shardId-000000000001")
    assert (child.hash_key_range.starting_hash_key, child.hash_key_range.ending_hash_key) == (0, MAX_KEY)


async def test_reading_parents_then_children_returns_every_record_once(
    kit: Kit, engine: Engine, clock: ManualClock
) -> None:
    await engine.create_stream("s", 2)
    written: dict[str, bytes] = {}

    async def write(tag: str, n: int) -> None:
        res = await engine.put_records([(b"%s-%d" % (tag.encode(), i), f"{tag}{i}") for i in range(n)], stream_name="s")
        for i, e in enumerate(res.records):
            assert e.sequence_number is not None
            written[e.sequence_number] = b"%s-%d" % (tag.encode(), i)

    await write("a", 40)
    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 126)
    )
    await write("b", 40)
    await engine.merge_shards(
        stream_name="s", shard_to_merge="shardId-000000000002", adjacent_shard_to_merge="shardId-000000000003"
    )
    await write("c", 40)
    await engine.update_shard_count(stream_name="s", target_shard_count=3)
    await write("d", 40)

    shards = {s.shard_id: s for s in await kit.all_shards(engine, "s")}
    done: set[str] = set()
    read: list[tuple[str, bytes]] = []
    frontier = [sid for sid, s in shards.items() if s.parent_shard_id is None]
    while frontier:
        sid = frontier.pop(0)
        sh = shards[sid]
        parents = {p for p in (sh.parent_shard_id, sh.adjacent_parent_shard_id) if p is not None}
        assert parents <= done, f"{sid} read before its parents"
        it: str | None = await engine.get_shard_iterator(
            stream_name="s", shard_id=sid, shard_iterator_type="TRIM_HORIZON"
        )
        while it is not None:
            res = await engine.get_records(it, limit=7)
            read += [(r.sequence_number, r.data) for r in res.records]
            if res.next_shard_iterator is None:
                assert res.child_shards is not None
                for c in res.child_shards:
                    ready = set(c.parent_shards) <= done | {sid}
                    if ready and c.shard_id not in frontier:
                        frontier.append(c.shard_id)
            elif not res.records and res.millis_behind_latest == 0:
                break  # an open shard, read up to now
            it = res.next_shard_iterator
        done.add(sid)
    assert done == set(shards)
    assert len(read) == len(written) == 160
    assert dict(read) == written


async def test_writes_after_a_split_go_to_the_children(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.split_shard(
        stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 127)
    )
    shards = await kit.all_shards(engine, "s")
    for k in range(50):
        res = await engine.put_record(stream_name="s", data=b"x", partition_key=f"k{k}")
        assert res.shard_id == kit.shard_for_key(shards, md5_key(f"k{k}"))
        assert res.shard_id != "shardId-000000000000"
    assert await kit.read_all(engine, "s", "shardId-000000000000") == []


async def test_positions_are_exact_across_many_segments(kit: Kit, clock: ManualClock) -> None:
    """Small segments and a dense sparse index: every AT_SEQUENCE_NUMBER and AT_TIMESTAMP lands on its record."""
    # journal_staged_bytes=0: every put reaches its segment at once, one frame per put as this test needs.
    engine = await kit.open(segment_bytes=4096, segment_max_age_s=0.05, index_interval_bytes=64, journal_staged_bytes=0)
    await engine.create_stream("s", 1)
    written: list[tuple[str, int, bytes]] = []
    for batch in range(40):
        entries = [(b"b%02d-%d" % (batch, i) + b"." * (37 * i), f"k{i}") for i in range(batch % 4 + 1)]
        res = await engine.put_records(entries, stream_name="s")
        written += [
            (e.sequence_number or "", clock.now_ms(), d) for e, (d, _) in zip(res.records, entries, strict=True)
        ]
        clock.advance(ms=10 + batch % 3 * 20)
    assert len(list((kit.data_dir / "streams").rglob("*.log"))) > 5  # the data really spans many segments
    all_data = [d for _, _, d in written]
    for i, (seq, arrival, _) in enumerate(written):
        at = await kit.read_all(engine, "s", "shardId-000000000000", "AT_SEQUENCE_NUMBER", starting_sequence_number=seq)
        assert [r.data for r in at] == all_data[i:]
        first_of_batch = next(j for j, (_, a, _) in enumerate(written) if a == arrival)
        ts = await kit.read_all(engine, "s", "shardId-000000000000", "AT_TIMESTAMP", timestamp_ms=arrival)
        assert [r.data for r in ts] == all_data[first_of_batch:]
        assert at[0].approximate_arrival_ms == arrival
    # The same after a restart, with the indexes read back from disk.
    engine = await kit.reopen(engine)
    for i in range(0, len(written), 7):
        seq, arrival, _ = written[i]
        at = await kit.read_all(engine, "s", "shardId-000000000000", "AT_SEQUENCE_NUMBER", starting_sequence_number=seq)
        assert [r.data for r in at] == all_data[i:]


async def test_get_records_returns_at_most_10_mib(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    blob = b"\x07" * (MIB - 16)
    for _ in range(3):
        await engine.put_records([(blob, "k")] * 4, stream_name="s")
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id="shardId-000000000000", shard_iterator_type="TRIM_HORIZON"
    )
    res = await engine.get_records(it)
    assert 0 < len(res.records) < 12
    assert sum(len(r.data) + len(r.partition_key) for r in res.records) <= 10 * MIB
    rest = await kit.drain(engine, res.next_shard_iterator)
    assert len(res.records) + len(rest) == 12
