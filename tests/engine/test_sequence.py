"""Sequence numbers: growth within a shard, children after parents, the describe ranges, and the encoding."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shardline import Engine, ManualClock
from shardline.engine import sequence
from shardline.errors import InvalidArgumentException

from ._kit import Kit

SEQ_PATTERN = re.compile(r"0|([1-9]\d{0,128})")
S0 = "shardId-000000000000"


async def test_strictly_increasing_within_a_shard(kit: Kit, engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 2)
    seqs: dict[str, list[str]] = {}
    for round_ in range(5):
        res = await engine.put_records([(b"x", f"k{round_}-{i}") for i in range(30)], stream_name="s")
        for e in res.records:
            assert e.shard_id is not None and e.sequence_number is not None
            seqs.setdefault(e.shard_id, []).append(e.sequence_number)
        single = await engine.put_record(stream_name="s", data=b"y", partition_key=f"single-{round_}")
        seqs.setdefault(single.shard_id, []).append(single.sequence_number)
        clock.advance(ms=round_ * 7)  # time may stand still or move; numbers grow anyway
    assert len(seqs) == 2
    for numbers in seqs.values():
        assert all(SEQ_PATTERN.fullmatch(s) for s in numbers)
        ints = [int(s) for s in numbers]
        assert all(a < b for a, b in itertools.pairwise(ints))
    # And what GetRecords returns is the same numbers, in the same order.
    for sid, numbers in seqs.items():
        assert [r.sequence_number for r in await kit.read_all(engine, "s", sid)] == numbers


async def test_numbers_keep_growing_across_a_restart(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    before = [
        (await engine.put_record(stream_name="s", data=b"x", partition_key="k")).sequence_number for _ in range(3)
    ]
    engine = await kit.reopen(engine)
    after = [(await engine.put_record(stream_name="s", data=b"x", partition_key="k")).sequence_number for _ in range(3)]
    ints = [int(s) for s in before + after]
    assert ints == sorted(ints) and len(set(ints)) == 6


async def test_children_numbers_exceed_every_parent_number(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 2)
    await engine.put_records([(b"x", f"k{i}") for i in range(100)], stream_name="s")
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 126))
    await engine.put_records([(b"y", f"k{i}") for i in range(100)], stream_name="s")
    await engine.merge_shards(
        stream_name="s", shard_to_merge="shardId-000000000003", adjacent_shard_to_merge="shardId-000000000001"
    )
    await engine.put_records([(b"z", f"k{i}") for i in range(100)], stream_name="s")
    shards = {s.shard_id: s for s in await kit.all_shards(engine, "s")}
    numbers = {sid: [int(r.sequence_number) for r in await kit.read_all(engine, "s", sid)] for sid in shards}
    for sid, sh in shards.items():
        for parent in (sh.parent_shard_id, sh.adjacent_parent_shard_id):
            if parent is None:
                continue
            parent_range = shards[parent].sequence_number_range
            assert parent_range.ending_sequence_number is not None
            parent_max = max([*numbers[parent], int(parent_range.ending_sequence_number)])
            child_min = min([*numbers[sid], int(sh.sequence_number_range.starting_sequence_number)])
            assert child_min > parent_max, (sid, parent)
    assert shards["shardId-000000000004"].adjacent_parent_shard_id == "shardId-000000000001"


async def test_describe_sequence_number_ranges(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 1)
    res = await engine.put_records([(b"x", f"k{i}") for i in range(10)], stream_name="s")
    first, last = int(res.records[0].sequence_number or 0), int(res.records[-1].sequence_number or 0)
    (shard,) = (await engine.describe_stream("s")).shards
    start = shard.sequence_number_range.starting_sequence_number
    assert SEQ_PATTERN.fullmatch(start)
    assert int(start) <= first
    assert shard.sequence_number_range.ending_sequence_number is None
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    shards = await kit.all_shards(engine, "s")
    parent = shards[0]
    assert parent.sequence_number_range.starting_sequence_number == start
    end = parent.sequence_number_range.ending_sequence_number
    assert end is not None and SEQ_PATTERN.fullmatch(end)
    assert int(end) >= last
    for child in shards[1:]:
        assert child.sequence_number_range.ending_sequence_number is None
        assert int(child.sequence_number_range.starting_sequence_number) > int(end)


async def test_sequence_numbers_must_be_compared_as_integers(engine: Engine) -> None:
    """Every number is a canonical decimal (no leading zeros), so int order is the only order that matters; this
    pins that the encoding never produces a form whose int value disagrees with its decoded fields."""
    await engine.create_stream("s", 3)
    res = await engine.put_records([(b"x", f"k{i}") for i in range(60)], stream_name="s")
    for e in res.records:
        assert e.sequence_number is not None and e.shard_id is not None
        decoded = sequence.decode(e.sequence_number)
        assert decoded is not None
        assert decoded.shard_index == int(e.shard_id.split("-")[1])
        assert str(int(e.sequence_number)) == e.sequence_number


# ----------------------------------------------------------------- the encoding
created = st.integers(min_value=0, max_value=(1 << 36) - 1)
index = st.integers(min_value=0, max_value=(1 << 32) - 1)
offset = st.integers(min_value=0, max_value=sequence.MAX_OFFSET)


@given(created, index, offset)
def test_encode_decode_round_trip(created_s: int, shard_index: int, off: int) -> None:
    text = sequence.encode(created_s, shard_index, off)
    assert SEQ_PATTERN.fullmatch(text)
    assert sequence.decode(text) == (created_s, shard_index, off)


@given(created, index, offset, offset)
def test_encoding_grows_with_the_offset(created_s: int, shard_index: int, a: int, b: int) -> None:
    ea, eb = int(sequence.encode(created_s, shard_index, a)), int(sequence.encode(created_s, shard_index, b))
    assert (ea < eb) == (a < b)
    assert (ea == eb) == (a == b)


@given(created, index, index, offset, offset)
def test_higher_shard_index_sorts_after(created_s: int, i: int, j: int, a: int, b: int) -> None:
    if i == j:
        return
    lo, hi = min(i, j), max(i, j)
    assert int(sequence.encode(created_s, lo, a)) < int(sequence.encode(created_s, hi, b))


@given(st.text(max_size=60))
@example("²")  # str.isdigit() says yes, int() says no
@example("".join(chr(ord(c) + 0xFEE0) for c in sequence.encode(1_700_000_000, 0, 5)))  # full-width digits
def test_decode_never_crashes(text: str) -> None:
    """Only canonical ASCII decimals of our own layout decode; anything else is None, never an exception."""
    decoded = sequence.decode(text)
    if decoded is not None:
        assert sequence.encode(*decoded) == text


@given(st.integers(min_value=0, max_value=(1 << 140)))
def test_decode_accepts_only_numbers_of_our_version(n: int) -> None:
    decoded = sequence.decode(str(n))
    assert (decoded is not None) == (n >> 132 == sequence.VERSION)


# ----------------------------------------------------------------- SequenceNumberForOrdering
async def test_sequence_number_for_ordering(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    first = await engine.put_record(stream_name="s", data=b"a", partition_key="k")
    second = await engine.put_record(
        stream_name="s", data=b"b", partition_key="k", sequence_number_for_ordering=first.sequence_number
    )
    assert int(second.sequence_number) > int(first.sequence_number)
    for bad in ("abc", "12", "²"):
        with pytest.raises(InvalidArgumentException) as exc:
            await engine.put_record(stream_name="s", data=b"c", partition_key="k", sequence_number_for_ordering=bad)
        assert exc.value.message == (
            f"ExclusiveMinimumSequenceNumber {bad} used in PutRecord on stream s under account 000000000000 is invalid."
        )
