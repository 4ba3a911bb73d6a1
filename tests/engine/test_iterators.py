"""GetShardIterator: the five iterator types, sequence-number checks, and the life of an iterator (expiry,
tampering, a recreated stream, a restart)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine, ManualClock
from shardline.errors import (
    ExpiredIteratorException,
    InvalidArgumentException,
    ResourceNotFoundException,
)

from ._kit import Kit

ACCOUNT = "000000000000"
S0 = "shardId-000000000000"
S1 = "shardId-000000000001"


async def put_three_a_second_apart(engine: Engine, clock: ManualClock, stream: str = "s") -> list[tuple[str, int]]:
    """Records r0, r1, r2 arriving at t, t+1 s, t+2 s on shard 0; returns (sequence number, arrival ms)."""
    out = []
    for i in range(3):
        if i:
            clock.advance(1)
        res = await engine.put_record(stream_name=stream, data=b"r%d" % i, partition_key="k", explicit_hash_key="0")
        assert res.shard_id == S0
        out.append((res.sequence_number, clock.now_ms()))
    return out


async def data_from(kit: Kit, engine: Engine, **kw: Any) -> list[bytes]:
    return [r.data for r in await kit.read_all(engine, "s", S0, **kw)]


# ----------------------------------------------------------------- the five types
async def test_trim_horizon_and_latest(kit: Kit, engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    await put_three_a_second_apart(engine, clock)
    latest = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="LATEST")
    assert await data_from(kit, engine, iterator_type="TRIM_HORIZON") == [b"r0", b"r1", b"r2"]
    assert (await engine.get_records(latest)).records == []
    await engine.put_record(stream_name="s", data=b"new", partition_key="k")
    assert [r.data for r in (await engine.get_records(latest)).records] == [b"new"]


async def test_at_and_after_sequence_number_are_exact(kit: Kit, engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    seqs = [s for s, _ in await put_three_a_second_apart(engine, clock)]
    for i, seq in enumerate(seqs):
        at = await data_from(kit, engine, iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=seq)
        after = await data_from(kit, engine, iterator_type="AFTER_SEQUENCE_NUMBER", starting_sequence_number=seq)
        assert at == [b"r0", b"r1", b"r2"][i:]
        assert after == [b"r0", b"r1", b"r2"][i + 1 :]
    # The shard's StartingSequenceNumber is a valid position before the first record.
    start = (await engine.describe_stream("s")).shards[0].sequence_number_range.starting_sequence_number
    assert await data_from(kit, engine, iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=start) == [
        b"r0",
        b"r1",
        b"r2",
    ]


async def test_at_timestamp(kit: Kit, engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    (_, t0), (_, t1), (_, t2) = await put_three_a_second_apart(engine, clock)
    clock.advance(5)

    async def at(ts: int) -> list[bytes]:
        return await data_from(kit, engine, iterator_type="AT_TIMESTAMP", timestamp_ms=ts)

    assert await at(t0 - 60_000) == [b"r0", b"r1", b"r2"]
    assert await at(t0) == [b"r0", b"r1", b"r2"]
    assert await at(t0 + 1) == [b"r1", b"r2"]  # no exact match: the next later record
    assert await at(t1) == [b"r1", b"r2"]
    assert await at(t2) == [b"r2"]
    assert await at(t2 + 1) == []
    assert await at(clock.now_ms()) == []
    # An AT_TIMESTAMP iterator past the newest record sees later writes.
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id=S0, shard_iterator_type="AT_TIMESTAMP", timestamp_ms=clock.now_ms()
    )
    await engine.put_record(stream_name="s", data=b"later", partition_key="k")
    assert [r.data for r in (await engine.get_records(it)).records] == [b"later"]


async def test_at_timestamp_errors(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    now = clock.now_ms()
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AT_TIMESTAMP", timestamp_ms=now + 1
        )
    assert exc.value.message == (
        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. "
        f"timestampInMillis: {now + 1}, currentTimestampInMillis: {now}"
    )
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="AT_TIMESTAMP")
    assert exc.value.message == (
        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
        "Current request has no timestamp parameter."
    )


async def test_at_timestamp_before_the_trim_horizon_acts_as_trim_horizon(
    kit: Kit, engine: Engine, clock: ManualClock
) -> None:
    engine = await kit.reopen(engine, segment_bytes=4096, segment_max_age_s=60)
    await engine.create_stream("s", 1)
    t0 = clock.now_ms()
    for i in range(4):
        await engine.put_record(stream_name="s", data=b"r%d" % i, partition_key="k")
        clock.advance(3600 * 10)  # 10 h apart, each record in its own segment
    # now = t0 + 40 h: r0 (t0) and r1 (t0 + 10 h) are older than 24 h.
    assert engine.enforce_retention() == 2
    for ts in (0, t0, t0 + 3600_000):
        assert await data_from(kit, engine, iterator_type="AT_TIMESTAMP", timestamp_ms=ts) == [b"r2", b"r3"]
    assert await data_from(kit, engine, iterator_type="TRIM_HORIZON") == [b"r2", b"r3"]


# ----------------------------------------------------------------- argument checks
async def test_sequence_number_and_type_must_agree(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    seq = (await engine.put_record(stream_name="s", data=b"x", partition_key="k")).sequence_number
    for kind in ("TRIM_HORIZON", "LATEST"):
        with pytest.raises(InvalidArgumentException) as exc:
            await engine.get_shard_iterator(
                stream_name="s", shard_id=S0, shard_iterator_type=kind, starting_sequence_number=seq
            )
        assert exc.value.message == (
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
            f"(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and also a "
            "StartingSequenceNumber."
        )
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        with pytest.raises(InvalidArgumentException) as exc:
            await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type=kind)
        assert exc.value.message == (
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
            f"(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and no "
            "StartingSequenceNumber."
        )


async def test_sequence_number_of_another_shard(engine: Engine) -> None:
    await engine.create_stream("s", 2)
    seq1 = (
        await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key=str((1 << 128) - 1))
    ).sequence_number
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=seq1
        )
    assert exc.value.message == (
        f"Invalid StartingSequenceNumber. It encodes {S1}, while it was used in a call to a shard with {S0}"
    )
    start1 = (await engine.describe_stream("s")).shards[1].sequence_number_range.starting_sequence_number
    with pytest.raises(InvalidArgumentException):
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AFTER_SEQUENCE_NUMBER", starting_sequence_number=start1
        )


async def test_sequence_number_of_another_stream(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("a", 1)
    clock.advance(2)
    await engine.create_stream("s", 1)
    seq = (await engine.put_record(stream_name="a", data=b"x", partition_key="k")).sequence_number
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=seq
        )
    assert exc.value.message == (
        f"StartingSequenceNumber {seq} used in GetShardIterator on shard {S0} in stream s under account {ACCOUNT} "
        "is invalid because it did not come from this stream."
    )


async def test_sequence_number_of_a_deleted_stream_with_the_same_name(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    seq = (await engine.put_record(stream_name="s", data=b"x", partition_key="k")).sequence_number
    await engine.delete_stream("s")
    clock.advance(2)
    await engine.create_stream("s", 1)
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=seq
        )
    assert exc.value.message.endswith("is invalid because it did not come from this stream.")


@pytest.mark.parametrize("garbage", ["abc", "123", "0", "1" * 130, "-5", "12.5", "９９", "²", " 1"])
async def test_garbage_sequence_number(engine: Engine, garbage: str) -> None:
    await engine.create_stream("s", 1)
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=garbage
        )
    assert exc.value.message == (
        f"StartingSequenceNumber {garbage} used in GetShardIterator on shard {S0} in stream s "
        f"under account {ACCOUNT} is invalid."
    )


async def test_sequence_number_in_non_ascii_digits_is_invalid(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    seq = (await engine.put_record(stream_name="s", data=b"x", partition_key="k")).sequence_number
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in seq)
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=full_width
        )
    assert exc.value.message.startswith(f"StartingSequenceNumber {full_width} used in GetShardIterator")


async def test_after_the_end_of_a_closed_shard(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    parent = (await engine.describe_stream("s")).shards[0]
    end = parent.sequence_number_range.ending_sequence_number
    assert end is not None
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AFTER_SEQUENCE_NUMBER", starting_sequence_number=end
        )
    assert exc.value.message == (
        "Invalid SequenceNumber for ShardIteratorType AFTER_SEQUENCE_NUMBER, SequenceNumber has reached max possible "
        "value for the shard."
    )
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=end
    )
    res = await engine.get_records(it)
    assert res.records == [] and res.next_shard_iterator is None


async def test_shard_and_stream_lookup_messages(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.get_shard_iterator(stream_name="s", shard_id="shardId-000000000009", shard_iterator_type="LATEST")
    assert exc.value.message == f"Shard shardId-000000000009 in stream s under account {ACCOUNT} does not exist"
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.get_shard_iterator(stream_name="s", shard_id="ABKLFD8", shard_iterator_type="LATEST")
    assert exc.value.message == f"Could not find shard ABKLFD8 in stream s under account {ACCOUNT}."
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.get_shard_iterator(stream_name="nope", shard_id="shard-0", shard_iterator_type="LATEST")
    assert exc.value.message == f"Shard {S0} in stream nope under account {ACCOUNT} does not exist"
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.get_shard_iterator(stream_name="s", shard_id="2147483648", shard_iterator_type="LATEST")
    assert exc.value.message == f"Could not find shard 2147483648 in stream s under account {ACCOUNT}."
    # Any prefix before the first '-' names the same shard.
    await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    for alias in ("shard-0", "0", "anything-000", S0):
        it = await engine.get_shard_iterator(stream_name="s", shard_id=alias, shard_iterator_type="TRIM_HORIZON")
        assert [r.data for r in (await engine.get_records(it)).records] == [b"x"]


# ----------------------------------------------------------------- iterator life
async def test_iterator_expires_after_300_seconds(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"x", partition_key="k")
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    clock.advance(300)
    res = await engine.get_records(it)  # exactly 300 s old: still valid
    assert [r.data for r in res.records] == [b"x"]
    fresh = res.next_shard_iterator
    clock.advance(ms=1)
    with pytest.raises(ExpiredIteratorException) as exc:
        await engine.get_records(it)
    assert exc.value.message.startswith("Iterator expired.")
    assert exc.value.message == (
        "Iterator expired. The iterator was created at time Tue Nov 14 22:13:20 UTC 2023 while right now it is "
        "Tue Nov 14 22:18:20 UTC 2023 which is further in the future than the tolerated delay of 300000 "
        "milliseconds."
    )
    # NextShardIterator is issued fresh by each GetRecords.
    assert fresh is not None
    await engine.put_record(stream_name="s", data=b"y", partition_key="k")
    assert [r.data for r in (await engine.get_records(fresh)).records] == [b"y"]


@pytest.mark.parametrize("token", ["", "garbage", "AAAA", "!!!!", "a" * 400])
async def test_garbage_iterator(engine: Engine, token: str) -> None:
    await engine.create_stream("s", 1)
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_records(token)
    assert exc.value.message == "Invalid ShardIterator."


async def test_tampered_iterator(engine: Engine) -> None:
    await engine.create_stream("s", 2)
    await engine.put_records([(b"x", "k", "0"), (b"y", "k", str((1 << 128) - 1))], stream_name="s")
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    raw = bytearray(base64.b64decode(it))
    for pos in range(len(raw)):
        forged = bytearray(raw)
        forged[pos] ^= 0x01
        with pytest.raises(InvalidArgumentException) as exc:
            await engine.get_records(base64.b64encode(bytes(forged)).decode())
        assert exc.value.message == "Invalid ShardIterator."
    with pytest.raises(InvalidArgumentException):
        await engine.get_records(it[:-4])
    with pytest.raises(InvalidArgumentException):
        await engine.get_records(it + "AAAA")


async def test_iterator_from_another_data_directory_is_invalid(kit: Kit, engine: Engine, tmp_path: Path) -> None:
    await engine.create_stream("s", 1)
    other = await kit.open(data_dir=tmp_path / "other")
    await other.create_stream("s", 1)
    foreign = await other.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.get_records(foreign)
    assert exc.value.message == "Invalid ShardIterator."


async def test_iterator_of_a_deleted_stream(engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"old", partition_key="k")
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    await engine.delete_stream("s")
    with pytest.raises(ResourceNotFoundException) as exc:
        await engine.get_records(it)
    assert exc.value.message == f"Shard {S0} in stream s under account {ACCOUNT} does not exist"
    clock.advance(1)
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"new", partition_key="k")
    with pytest.raises(ResourceNotFoundException):
        await engine.get_records(it)


async def test_iterator_never_works_on_a_stream_recreated_in_the_same_millisecond(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"old", partition_key="k")
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    await engine.delete_stream("s")
    await engine.create_stream("s", 1)  # the clock has not moved: same creation millisecond
    await engine.put_record(stream_name="s", data=b"new", partition_key="k")
    with pytest.raises(ResourceNotFoundException):
        await engine.get_records(it)


async def test_sequence_number_never_works_on_a_stream_recreated_in_the_same_second(
    engine: Engine, clock: ManualClock
) -> None:
    await engine.create_stream("s", 1)
    seq = (await engine.put_record(stream_name="s", data=b"old", partition_key="k")).sequence_number
    await engine.delete_stream("s")
    clock.advance(ms=10)
    await engine.create_stream("s", 1)
    await engine.put_record(stream_name="s", data=b"new", partition_key="k")
    with pytest.raises(InvalidArgumentException):
        await engine.get_shard_iterator(
            stream_name="s", shard_id=S0, shard_iterator_type="AT_SEQUENCE_NUMBER", starting_sequence_number=seq
        )


async def test_iterators_survive_close_and_reopen(kit: Kit, engine: Engine, clock: ManualClock) -> None:
    await engine.create_stream("s", 1)
    await engine.put_records([(b"%d" % i, "k") for i in range(6)], stream_name="s")
    it = await engine.get_shard_iterator(stream_name="s", shard_id=S0, shard_iterator_type="TRIM_HORIZON")
    mid = (await engine.get_records(it, limit=2)).next_shard_iterator
    engine = await kit.reopen(engine)
    clock.advance(10)
    assert [r.data for r in (await engine.get_records(it)).records] == [b"%d" % i for i in range(6)]
    assert mid is not None
    assert [r.data for r in (await engine.get_records(mid)).records] == [b"%d" % i for i in range(2, 6)]
    # Expiry still counts from when the iterator was issued, not from the restart.
    clock.advance(300)
    with pytest.raises(ExpiredIteratorException):
        await engine.get_records(it)


async def test_closed_shard_iterator_is_positioned_by_the_request(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    res = await engine.put_records([(b"%d" % i, "k") for i in range(4)], stream_name="s")
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 127))
    seq2 = res.records[2].sequence_number
    it = await engine.get_shard_iterator(
        stream_name="s", shard_id=S0, shard_iterator_type="AFTER_SEQUENCE_NUMBER", starting_sequence_number=seq2
    )
    out = await engine.get_records(it)
    assert [r.data for r in out.records] == [b"3"]
    assert out.next_shard_iterator is None and out.child_shards is not None
