"""SplitShard, MergeShards and UpdateShardCount: key-range rules, adjacency, closed shards, scaling limits, lineage."""

from __future__ import annotations

import pytest

from shardline import Engine, ManualClock, Shard
from shardline.errors import (
    InvalidArgumentException,
    LimitExceededException,
    ResourceNotFoundException,
    ValidationException,
)

from ._kit import Kit

ACCOUNT = "000000000000"
MAX_KEY = (1 << 128) - 1
S0, S1, S2, S3 = (f"shardId-{i:012d}" for i in range(4))


def split_message(key: int, shard: str, start: int, end: int) -> str:
    return (
        f"NewStartingHashKey {key} used in SplitShard() on shard {shard} in stream s under account {ACCOUNT} "
        f"is not both greater than one plus the shard's StartingHashKey {start} and less than the shard's "
        f"EndingHashKey {end}."
    )


def resharded_message(shard: str) -> str:
    return (
        f"Shard {shard} in stream s under account {ACCOUNT} has already been merged or split, and thus is not "
        "eligible for merging or splitting."
    )


def rng(s: Shard) -> tuple[int, int]:
    return s.hash_key_range.starting_hash_key, s.hash_key_range.ending_hash_key


def assert_lineage_is_valid(shards: list[Shard]) -> None:
    """Every parent exists, is older and closed; a split child lies inside its parent; a merge child is exactly the
    union of two adjacent parents."""
    by_id = {s.shard_id: s for s in shards}
    for s in shards:
        parents = [p for p in (s.parent_shard_id, s.adjacent_parent_shard_id) if p is not None]
        if not parents:
            continue
        for p in parents:
            assert p in by_id, (s.shard_id, p)
            assert p < s.shard_id
            assert by_id[p].sequence_number_range.ending_sequence_number is not None
        lo, hi = rng(s)
        if len(parents) == 1:
            plo, phi = rng(by_id[parents[0]])
            assert plo <= lo <= hi <= phi
        else:
            (alo, ahi), (blo, bhi) = rng(by_id[parents[0]]), rng(by_id[parents[1]])
            assert ahi + 1 == blo
            assert (lo, hi) == (alo, bhi)


# ----------------------------------------------------------------- split
async def test_split_key_rules(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    for bad in (0, 1, MAX_KEY, MAX_KEY + 1):
        with pytest.raises(InvalidArgumentException) as exc:
            await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(bad))
        assert exc.value.message == split_message(bad, S0, 0, MAX_KEY)
    # The lowest key the rule allows gives a two-key low child.
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key="2")
    shards = (await engine.describe_stream("s")).shards
    assert [rng(s) for s in shards[1:]] == [(0, 1), (2, MAX_KEY)]
    # And the highest key on the child gives a one-key high child.
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.split_shard(stream_name="s", shard_to_split=S2, new_starting_hash_key=str(MAX_KEY))
    assert exc.value.message == split_message(MAX_KEY, S2, 2, MAX_KEY)
    await engine.split_shard(stream_name="s", shard_to_split=S2, new_starting_hash_key=str(MAX_KEY - 1))
    shards = (await engine.describe_stream("s")).shards
    assert [rng(s) for s in shards[3:]] == [(2, MAX_KEY - 2), (MAX_KEY - 1, MAX_KEY)]


async def test_split_creates_two_children(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 2)
    mid = 1 << 127
    key = 1 << 125
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(key))
    shards = await kit.all_shards(engine, "s")
    assert [s.shard_id for s in shards] == [S0, S1, S2, S3]
    parent, _, low, high = shards
    assert parent.sequence_number_range.ending_sequence_number is not None
    assert rng(low) == (0, key - 1) and rng(high) == (key, mid - 1)
    assert low.parent_shard_id == high.parent_shard_id == S0
    assert low.adjacent_parent_shard_id is None and high.adjacent_parent_shard_id is None
    kit.assert_covers_key_space(shards)
    assert_lineage_is_valid(shards)
    for k, expected in ((0, S2), (key - 1, S2), (key, S3), (mid - 1, S3), (mid, S1)):
        res = await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key=str(k))
        assert res.shard_id == expected


async def test_split_shard_lookup_errors(engine: Engine) -> None:
    await engine.create_stream("s", 1)
    with pytest.raises(ResourceNotFoundException) as gone:
        await engine.split_shard(stream_name="s", shard_to_split="shardId-000000000007", new_starting_hash_key="5")
    assert gone.value.message == f"Could not find shard shardId-000000000007 in stream s under account {ACCOUNT}."
    with pytest.raises(ResourceNotFoundException) as gone:
        await engine.split_shard(stream_name="s", shard_to_split="ABKLFD8", new_starting_hash_key="5")
    assert gone.value.message == f"Could not find shard ABKLFD8 in stream s under account {ACCOUNT}."
    with pytest.raises(ResourceNotFoundException) as gone:
        await engine.split_shard(stream_name="nope", shard_to_split=S0, new_starting_hash_key="5")
    assert gone.value.message == f"Stream nope under account {ACCOUNT} not found."


async def test_closed_shard_cannot_be_split_or_merged(engine: Engine) -> None:
    await engine.create_stream("s", 3)
    third = MAX_KEY // 3
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(third // 2))
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(third // 3))
    assert exc.value.message == resharded_message(S0)
    await engine.merge_shards(stream_name="s", shard_to_merge=S1, adjacent_shard_to_merge=S2)
    # Shard 4 (the high child of shard 0) ends where shard 1 started: adjacent, but shard 1 is closed now.
    with pytest.raises(InvalidArgumentException) as exc:
        await engine.merge_shards(stream_name="s", shard_to_merge="shardId-000000000004", adjacent_shard_to_merge=S1)
    assert exc.value.message == resharded_message(S1)


# ----------------------------------------------------------------- merge
async def test_merge_adjacent_shards(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 3)
    before = (await engine.describe_stream("s")).shards
    await engine.merge_shards(stream_name="s", shard_to_merge=S1, adjacent_shard_to_merge=S2)
    shards = await kit.all_shards(engine, "s")
    child = shards[-1]
    assert child.shard_id == S3
    assert (child.parent_shard_id, child.adjacent_parent_shard_id) == (S1, S2)
    assert rng(child) == (rng(before[1])[0], MAX_KEY)
    assert [s.shard_id for s in kit.open_shards(shards)] == [S0, S3]
    kit.assert_covers_key_space(shards)
    assert_lineage_is_valid(shards)


async def test_merge_requires_an_adjacent_pair_in_order(engine: Engine) -> None:
    await engine.create_stream("s", 3)
    for a, b in ((S0, S2), (S1, S0), (S2, S0)):
        with pytest.raises(InvalidArgumentException) as exc:
            await engine.merge_shards(stream_name="s", shard_to_merge=a, adjacent_shard_to_merge=b)
        assert exc.value.message == (
            f"Shards {a} and {b} in stream s under account {ACCOUNT} are not an adjacent pair of shards "
            "eligible for merging"
        )
    with pytest.raises(ResourceNotFoundException) as gone:
        await engine.merge_shards(stream_name="s", shard_to_merge=S0, adjacent_shard_to_merge="shardId-000000000009")
    assert gone.value.message == f"Could not find shard shardId-000000000009 in stream s under account {ACCOUNT}."
    assert len((await engine.describe_stream("s")).shards) == 3


# ----------------------------------------------------------------- update_shard_count
@pytest.mark.parametrize(("start", "target"), [(2, 4), (4, 2), (3, 5), (5, 3), (3, 6), (6, 3), (1, 2), (2, 1), (4, 7)])
async def test_update_shard_count_scales_evenly(kit: Kit, engine: Engine, start: int, target: int) -> None:
    await engine.create_stream("s", start)
    res = await engine.put_records([(b"%d" % i, f"k{i}") for i in range(100)], stream_name="s")
    assert await engine.update_shard_count(stream_name="s", target_shard_count=target) == (start, target)
    shards = await kit.all_shards(engine, "s")
    opened = kit.open_shards(shards)
    assert len(opened) == target
    kit.assert_covers_key_space(shards)
    sizes = [e - s + 1 for s, e in map(rng, opened)]
    assert max(sizes) - min(sizes) < target  # even, up to the remainder of 2^128 / target
    assert_lineage_is_valid(shards)
    assert (await engine.describe_stream_summary("s")).open_shard_count == target
    # Nothing written before is lost, and new writes land on open shards only.
    seen = set()
    for s in shards:
        seen |= {r.sequence_number for r in await kit.read_all(engine, "s", s.shard_id)}
    assert seen == {e.sequence_number for e in res.records}
    after = await engine.put_records([(b"x", f"k{i}") for i in range(100)], stream_name="s")
    assert {e.shard_id for e in after.records} <= {s.shard_id for s in opened}


async def test_update_shard_count_to_the_same_count_evens_out_the_ranges(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 2)
    await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 120))
    uneven = kit.open_shards(await kit.all_shards(engine, "s"))
    assert len(uneven) == 3
    assert await engine.update_shard_count(stream_name="s", target_shard_count=3) == (3, 3)
    shards = await kit.all_shards(engine, "s")
    opened = kit.open_shards(shards)
    assert len(opened) == 3
    sizes = [e - s + 1 for s, e in map(rng, opened)]
    assert max(sizes) - min(sizes) < 3
    assert_lineage_is_valid(shards)
    # Already even: nothing to do, no new shards.
    count = len(shards)
    await engine.update_shard_count(stream_name="s", target_shard_count=3)
    assert len(await kit.all_shards(engine, "s")) == count


async def test_update_shard_count_limits(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(max_scaling_ops_per_day=3, shard_limit=20)
    await engine.create_stream("s", 4)
    with pytest.raises(LimitExceededException) as exc:
        await engine.update_shard_count(stream_name="s", target_shard_count=9)
    assert exc.value.message == (
        "UpdateShardCount cannot scale up over double your current open shard count. "
        "Current open shard count: 4, Target shard count: 9"
    )
    with pytest.raises(LimitExceededException) as exc:
        await engine.update_shard_count(stream_name="s", target_shard_count=1)
    assert exc.value.message == (
        "UpdateShardCount cannot scale down below half your current open shard count. "
        "Current open shard count: 4, Target shard count: 1"
    )
    await engine.update_shard_count(stream_name="s", target_shard_count=8)
    await engine.update_shard_count(stream_name="s", target_shard_count=4)
    # Half of an odd count is not rounded: 3 -> 1 is below half.
    await engine.update_shard_count(stream_name="s", target_shard_count=3)
    clock.advance(24 * 3600)
    with pytest.raises(LimitExceededException) as exc:
        await engine.update_shard_count(stream_name="s", target_shard_count=1)
    assert exc.value.message == (
        "UpdateShardCount cannot scale down below half your current open shard count. "
        "Current open shard count: 3, Target shard count: 1"
    )
    # The account quota bounds the target.
    await engine.create_stream("other", 16)
    with pytest.raises(LimitExceededException) as exc:
        await engine.update_shard_count(stream_name="s", target_shard_count=5)
    assert exc.value.message == (
        "Target shard count or number of open shards cannot be greater than 4. "
        "Current open shard count: 3, Target shard count: 5"
    )


async def test_scaling_operations_per_day(kit: Kit, clock: ManualClock) -> None:
    engine = await kit.open(max_scaling_ops_per_day=2)
    await engine.create_stream("s", 2)
    await engine.update_shard_count(stream_name="s", target_shard_count=3)
    clock.advance(3600)
    await engine.update_shard_count(stream_name="s", target_shard_count=2)
    with pytest.raises(LimitExceededException):
        await engine.update_shard_count(stream_name="s", target_shard_count=4)
    # The count of recent operations survives a restart.
    engine = await kit.reopen(engine)
    with pytest.raises(LimitExceededException) as exc:
        await engine.update_shard_count(stream_name="s", target_shard_count=4)
    assert exc.value.message == (
        f"Exceeded the limit of 2 UpdateShardCount operations in a rolling 24-hour period for stream s "
        f"under account {ACCOUNT}."
    )
    clock.advance(23 * 3600 + 1)  # the first operation leaves the rolling 24 h window
    await engine.update_shard_count(stream_name="s", target_shard_count=4)
    assert len(kit.open_shards(await kit.all_shards(engine, "s"))) == 4


async def test_resharding_an_on_demand_stream_is_invalid(engine: Engine) -> None:
    await engine.create_stream("s", stream_mode="ON_DEMAND")
    message = f"Request is invalid. Stream s under account {ACCOUNT} is in On-Demand mode."
    with pytest.raises(ValidationException) as exc:
        await engine.split_shard(stream_name="s", shard_to_split=S0, new_starting_hash_key=str(1 << 60))
    assert exc.value.message == message
    with pytest.raises(ValidationException) as exc:
        await engine.merge_shards(stream_name="s", shard_to_merge=S0, adjacent_shard_to_merge=S1)
    assert exc.value.message == message
    with pytest.raises(ValidationException) as exc:
        await engine.update_shard_count(stream_name="s", target_shard_count=5)
    assert exc.value.message == message
    assert len((await engine.describe_stream("s")).shards) == 4


async def test_switching_to_provisioned_allows_resharding(engine: Engine) -> None:
    await engine.create_stream("s", stream_mode="ON_DEMAND")
    arn = (await engine.describe_stream("s")).stream_arn
    await engine.update_stream_mode(arn, "PROVISIONED")
    await engine.update_shard_count(stream_name="s", target_shard_count=2)
    assert (await engine.describe_stream_summary("s")).open_shard_count == 2


async def test_resharding_survives_reopen(kit: Kit, engine: Engine) -> None:
    await engine.create_stream("s", 2)
    await engine.put_records([(b"%d" % i, f"k{i}") for i in range(50)], stream_name="s")
    await engine.update_shard_count(stream_name="s", target_shard_count=3)
    before = await kit.all_shards(engine, "s")
    engine = await kit.reopen(engine)
    after = await kit.all_shards(engine, "s")
    assert after == before
    assert_lineage_is_valid(after)
    # New writes route by the reopened ranges.
    for k in (0, MAX_KEY // 2, MAX_KEY):
        res = await engine.put_record(stream_name="s", data=b"x", partition_key="k", explicit_hash_key=str(k))
        assert res.shard_id == kit.shard_for_key(after, k)
