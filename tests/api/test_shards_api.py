"""Shards over the wire: ListShards (pagination, filters), SplitShard, MergeShards, UpdateShardCount."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from _shardline import START_MS

from ._asgi import Kinesis
from ._wire_cases import INTEGER, STRING, STRUCTURE, nest, one_error

ACCOUNT = "000000000000"
ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/"
HALF = 1 << 127
MAX_KEY = (1 << 128) - 1
THIRD = (1 << 128) // 3
HASH_KEY_PATTERN = r"^(0|([1-9]\d{0,38}))$"
FILTER_TYPES = "[FROM_TIMESTAMP, FROM_TRIM_HORIZON, AT_LATEST, AT_TRIM_HORIZON, AT_TIMESTAMP, AFTER_SHARD_ID]"


def sid(i: int) -> str:
    return f"shardId-{i:012d}"


def _cases(op: str, member: str, table: list[tuple[Any, str]], **base: Any) -> list[Any]:
    return [pytest.param(op, {**base, **nest(member, v)}, msg, id=f"{op}.{member}={v!r}") for v, msg in table]


# ======================================================================== 1. serialization
SERIALIZATION = [
    *_cases("ListShards", "StreamName", STRING),
    *_cases("ListShards", "NextToken", STRING),
    *_cases("ListShards", "ExclusiveStartShardId", STRING, StreamName="s"),
    *_cases("ListShards", "MaxResults", INTEGER, StreamName="s"),
    *_cases("ListShards", "ShardFilter", STRUCTURE, StreamName="s"),
    *_cases("ListShards", "ShardFilter.Type", STRING, StreamName="s"),
    *_cases("ListShards", "ShardFilter.ShardId", STRING, StreamName="s"),
    *_cases("ListShards", "StreamARN", STRING),
    *_cases("SplitShard", "ShardToSplit", STRING, StreamName="s", NewStartingHashKey="1"),
    *_cases("SplitShard", "NewStartingHashKey", STRING, StreamName="s", ShardToSplit="0"),
    *_cases("MergeShards", "ShardToMerge", STRING, StreamName="s", AdjacentShardToMerge="1"),
    *_cases("MergeShards", "AdjacentShardToMerge", STRING, StreamName="s", ShardToMerge="0"),
    *_cases("UpdateShardCount", "TargetShardCount", INTEGER, StreamName="s", ScalingType="UNIFORM_SCALING"),
    *_cases("UpdateShardCount", "ScalingType", STRING, StreamName="s", TargetShardCount=2),
]


@pytest.mark.parametrize(("op", "payload", "message"), SERIALIZATION)
async def test_wrong_json_type_is_a_serialization_exception(
    kinesis: Kinesis, op: str, payload: Any, message: str
) -> None:
    assert await kinesis.serialization(op, payload) == message


async def test_a_filter_timestamp_that_is_no_time(kinesis: Kinesis) -> None:
    payload = {"StreamName": "s", "ShardFilter": {"Type": "AT_TIMESTAMP", "Timestamp": False}}
    assert await kinesis.serialization("ListShards", payload) == (
        "class java.lang.Boolean can not be converted to milliseconds since epoch"
    )


# ======================================================================== 2. validation
SHARD_VALIDATION = [
    ("ListShards", {"StreamName": "s", "MaxResults": 0}, 0, "maxResults",
     "Member must have value greater than or equal to 1"),
    ("ListShards", {"StreamName": "s", "MaxResults": 10001}, 10001, "maxResults",
     "Member must have value less than or equal to 10000"),
    ("ListShards", {"NextToken": ""}, "", "nextToken", "Member must have length greater than or equal to 1"),
    ("ListShards", {"StreamName": "s", "ShardFilter": {}}, None, "shardFilter.type", "Member must not be null"),
    ("ListShards", {"StreamName": "s", "ShardFilter": {"Type": "NEWEST"}}, "NEWEST", "shardFilter.type",
     f"Member must satisfy enum value set: {FILTER_TYPES}"),
    ("ListShards", {"StreamName": "s", "ShardFilter": {"Type": "AFTER_SHARD_ID", "ShardId": "x" * 129}}, "x" * 129,
     "shardFilter.shardId", "Member must have length less than or equal to 128"),
    ("ListShards", {"StreamName": "s", "ExclusiveStartShardId": "shard/1"}, "shard/1", "exclusiveStartShardId",
     "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
    ("SplitShard", {"StreamName": "s", "ShardToSplit": "0", "NewStartingHashKey": "0x10"}, "0x10",
     "newStartingHashKey", f"Member must satisfy regular expression pattern: {HASH_KEY_PATTERN}"),
    ("SplitShard", {"StreamName": "s", "ShardToSplit": "0", "NewStartingHashKey": "1\u0661\u0662"},
     "1\u0661\u0662", "newStartingHashKey", f"Member must satisfy regular expression pattern: {HASH_KEY_PATTERN}"),
    ("SplitShard", {"StreamName": "s", "ShardToSplit": "0"}, None, "newStartingHashKey", "Member must not be null"),
    ("MergeShards", {"StreamName": "s", "ShardToMerge": "0"}, None, "adjacentShardToMerge",
     "Member must not be null"),
    ("UpdateShardCount", {"StreamName": "s", "TargetShardCount": 0, "ScalingType": "UNIFORM_SCALING"}, 0,
     "targetShardCount", "Member must have value greater than or equal to 1"),
    ("UpdateShardCount", {"StreamName": "s", "TargetShardCount": 2, "ScalingType": "RANDOM"}, "RANDOM",
     "scalingType", "Member must satisfy enum value set: [UNIFORM_SCALING]"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "payload", "value", "path", "rule"), SHARD_VALIDATION)
async def test_one_constraint_violation(
    kinesis: Kinesis, op: str, payload: Any, *, value: Any, path: str, rule: Any
) -> None:
    assert await kinesis.validation(op, payload) == one_error(value, path, rule)


async def test_split_shard_needs_both_members(kinesis: Kinesis) -> None:
    assert await kinesis.validation("SplitShard", {"StreamName": "s"}) == (
        "2 validation errors detected: "
        "Value null at 'newStartingHashKey' failed to satisfy constraint: Member must not be null; "
        "Value null at 'shardToSplit' failed to satisfy constraint: Member must not be null"
    )


async def test_merge_shards_needs_both_members(kinesis: Kinesis) -> None:
    assert await kinesis.validation("MergeShards", {"StreamName": "s"}) == (
        "2 validation errors detected: "
        "Value null at 'adjacentShardToMerge' failed to satisfy constraint: Member must not be null; "
        "Value null at 'shardToMerge' failed to satisfy constraint: Member must not be null"
    )


async def test_update_shard_count_needs_both_members(kinesis: Kinesis) -> None:
    assert await kinesis.validation("UpdateShardCount", {"StreamName": "s"}) == (
        "2 validation errors detected: "
        "Value null at 'scalingType' failed to satisfy constraint: Member must not be null; "
        "Value null at 'targetShardCount' failed to satisfy constraint: Member must not be null"
    )


# ======================================================================== 3. behaviour
# ----------------------------------------------------------------- ListShards
async def test_list_shards(kinesis: Kinesis) -> None:
    await kinesis.create("s", 3)
    out = await kinesis.ok("ListShards", {"StreamName": "s"})
    assert "NextToken" not in out
    starts = [s["SequenceNumberRange"].pop("StartingSequenceNumber") for s in out["Shards"]]
    assert all(x.isdigit() for x in starts)
    assert out["Shards"] == [
        {
            "ShardId": sid(0),
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "113427455640312821154458202477256070484"},
            "SequenceNumberRange": {},
        },
        {
            "ShardId": sid(1),
            "HashKeyRange": {
                "StartingHashKey": "113427455640312821154458202477256070485",
                "EndingHashKey": "226854911280625642308916404954512140969",
            },
            "SequenceNumberRange": {},
        },
        {
            "ShardId": sid(2),
            "HashKeyRange": {
                "StartingHashKey": "226854911280625642308916404954512140970",
                "EndingHashKey": "340282366920938463463374607431768211455",
            },
            "SequenceNumberRange": {},
        },
    ]
    assert await kinesis.ok("ListShards", {"StreamARN": ARN + "s"}) == await kinesis.ok(
        "ListShards", {"StreamName": "s"}
    )


async def test_list_shards_pages_with_next_token(kinesis: Kinesis) -> None:
    await kinesis.create("s", 5)
    seen: list[str] = []
    page = await kinesis.ok("ListShards", {"StreamName": "s", "MaxResults": 2})
    pages = 1
    seen += [s["ShardId"] for s in page["Shards"]]
    while "NextToken" in page:
        page = await kinesis.ok("ListShards", {"NextToken": page["NextToken"], "MaxResults": 2})
        seen += [s["ShardId"] for s in page["Shards"]]
        pages += 1
    assert seen == [sid(i) for i in range(5)]
    assert pages == 3


async def test_list_shards_after_a_shard(kinesis: Kinesis) -> None:
    await kinesis.create("s", 4)
    out = await kinesis.ok("ListShards", {"StreamName": "s", "ExclusiveStartShardId": sid(1)})
    assert [s["ShardId"] for s in out["Shards"]] == [sid(2), sid(3)]


async def test_list_shards_argument_errors(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    token = (await kinesis.ok("ListShards", {"StreamName": "s", "MaxResults": 1}))["NextToken"]
    assert await kinesis.fail("ListShards", {}) == (
        "InvalidArgumentException",
        "Either NextToken or StreamName should be provided.",
    )
    assert await kinesis.fail("ListShards", {"StreamName": "s", "NextToken": token}) == (
        "InvalidArgumentException",
        "NextToken and StreamName cannot be provided together.",
    )
    assert await kinesis.fail("ListShards", {"NextToken": "bm9wZQ=="}) == (
        "InvalidArgumentException",
        "Invalid NextToken.",
    )
    assert await kinesis.fail("ListShards", {"StreamName": "gone"}) == kinesis.not_found("gone")
    kinesis.clock.advance(301)
    assert await kinesis.fail("ListShards", {"NextToken": token}) == (
        "ExpiredNextTokenException",
        "The timestamp of the NextToken has expired.",
    )


async def test_list_shards_checks_the_creation_timestamp(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    created = START_MS / 1000
    out = await kinesis.ok("ListShards", {"StreamName": "s", "StreamCreationTimestamp": created})
    assert len(out["Shards"]) == 1
    payload = {"StreamName": "s", "StreamCreationTimestamp": created - 60}
    assert await kinesis.fail("ListShards", payload) == kinesis.not_found("s")


async def _split_at_ten_seconds(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    kinesis.clock.advance(10)
    await kinesis.ok("SplitShard", {"StreamName": "s", "ShardToSplit": sid(0), "NewStartingHashKey": str(HALF)})
    kinesis.clock.advance(10)


FILTERS = [
    ({"Type": "AT_LATEST"}, [1, 2]),
    ({"Type": "AT_TRIM_HORIZON"}, [0]),
    ({"Type": "FROM_TRIM_HORIZON"}, [0, 1, 2]),
    ({"Type": "AFTER_SHARD_ID", "ShardId": sid(0)}, [1, 2]),
    ({"Type": "AT_TIMESTAMP", "Timestamp": (START_MS + 5000) / 1000}, [0]),
    ({"Type": "AT_TIMESTAMP", "Timestamp": (START_MS + 15000) / 1000}, [1, 2]),
    ({"Type": "FROM_TIMESTAMP", "Timestamp": (START_MS + 5000) / 1000}, [0, 1, 2]),
    ({"Type": "FROM_TIMESTAMP", "Timestamp": (START_MS + 15000) / 1000}, [1, 2]),
]


@pytest.mark.parametrize(("shard_filter", "expected"), FILTERS, ids=str)
async def test_list_shards_filters(kinesis: Kinesis, shard_filter: Any, expected: Any) -> None:
    await _split_at_ten_seconds(kinesis)
    out = await kinesis.ok("ListShards", {"StreamName": "s", "ShardFilter": shard_filter})
    assert [s["ShardId"] for s in out["Shards"]] == [sid(i) for i in expected]


async def test_a_filter_survives_pagination(kinesis: Kinesis) -> None:
    await _split_at_ten_seconds(kinesis)
    first = await kinesis.ok("ListShards", {"StreamName": "s", "ShardFilter": {"Type": "AT_LATEST"}, "MaxResults": 1})
    assert [s["ShardId"] for s in first["Shards"]] == [sid(1)]
    second = await kinesis.ok("ListShards", {"NextToken": first["NextToken"]})
    assert [s["ShardId"] for s in second["Shards"]] == [sid(2)]
    assert "NextToken" not in second


async def test_filters_that_need_an_argument(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    for ftype, message in [
        ("AFTER_SHARD_ID", "ShardId must be provided for the AFTER_SHARD_ID filter."),
        ("AT_TIMESTAMP", "Timestamp must be provided for the AT_TIMESTAMP filter."),
        ("FROM_TIMESTAMP", "Timestamp must be provided for the FROM_TIMESTAMP filter."),
    ]:
        payload = {"StreamName": "s", "ShardFilter": {"Type": ftype}}
        assert await kinesis.fail("ListShards", payload) == ("InvalidArgumentException", message)


# ----------------------------------------------------------------- SplitShard
async def test_split_shard(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    payload = {"StreamName": "s", "ShardToSplit": sid(0), "NewStartingHashKey": str(HALF)}
    assert await kinesis.ok("SplitShard", payload) == {}
    shards = (await kinesis.ok("DescribeStream", {"StreamName": "s"}))["StreamDescription"]["Shards"]
    assert [s["ShardId"] for s in shards] == [sid(0), sid(1), sid(2)]
    parent, low, high = shards
    assert parent["SequenceNumberRange"]["EndingSequenceNumber"].isdigit()
    assert "EndingSequenceNumber" not in low["SequenceNumberRange"]
    assert low["ParentShardId"] == high["ParentShardId"] == sid(0)
    assert "AdjacentParentShardId" not in low
    assert low["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(HALF - 1)}
    assert high["HashKeyRange"] == {"StartingHashKey": str(HALF), "EndingHashKey": str(MAX_KEY)}
    assert int(low["SequenceNumberRange"]["StartingSequenceNumber"]) > int(
        parent["SequenceNumberRange"]["EndingSequenceNumber"]
    )


async def test_split_shard_by_arn_and_short_shard_id(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    await kinesis.ok("SplitShard", {"StreamARN": ARN + "s", "ShardToSplit": "0", "NewStartingHashKey": str(HALF)})
    assert len((await kinesis.ok("ListShards", {"StreamName": "s"}))["Shards"]) == 3


SPLIT_ERRORS = [
    ({"ShardToSplit": "abc", "NewStartingHashKey": str(HALF)}, "ResourceNotFoundException",
     f"Could not find shard abc in stream s under account {ACCOUNT}."),
    ({"ShardToSplit": "shard-9", "NewStartingHashKey": str(HALF)}, "ResourceNotFoundException",
     f"Could not find shard shardId-000000000009 in stream s under account {ACCOUNT}."),
    ({"ShardToSplit": sid(0), "NewStartingHashKey": "1"}, "InvalidArgumentException",
     f"NewStartingHashKey 1 used in SplitShard() on shard shardId-000000000000 in stream s under account {ACCOUNT} "
     f"is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's EndingHashKey "
     f"{MAX_KEY}."),
    ({"ShardToSplit": sid(0), "NewStartingHashKey": str(MAX_KEY)}, "InvalidArgumentException",
     f"NewStartingHashKey {MAX_KEY} used in SplitShard() on shard shardId-000000000000 in stream s under account "
     f"{ACCOUNT} is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's "
     f"EndingHashKey {MAX_KEY}."),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "kind", "message"), SPLIT_ERRORS)
async def test_split_shard_errors(kinesis: Kinesis, payload: Any, kind: str, message: str) -> None:
    await kinesis.create("s", 1)
    assert await kinesis.fail("SplitShard", {"StreamName": "s", **payload}) == (kind, message)


async def test_split_a_closed_shard(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    payload = {"StreamName": "s", "ShardToSplit": sid(0), "NewStartingHashKey": str(HALF)}
    await kinesis.ok("SplitShard", payload)
    assert await kinesis.fail("SplitShard", payload) == (
        "InvalidArgumentException",
        f"Shard shardId-000000000000 in stream s under account {ACCOUNT} has already been merged or split, and "
        "thus is not eligible for merging or splitting.",
    )


async def test_split_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamName": "gone", "ShardToSplit": sid(0), "NewStartingHashKey": str(HALF)}
    assert await kinesis.fail("SplitShard", payload) == kinesis.not_found("gone")


async def test_split_while_updating(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(status_delay_s=5.0)
    await k.create("s", 2)
    k.clock.advance(5)
    await k.ok("SplitShard", {"StreamName": "s", "ShardToSplit": sid(0), "NewStartingHashKey": "1000"})
    payload = {"StreamName": "s", "ShardToSplit": sid(1), "NewStartingHashKey": str(HALF + 1000)}
    assert await k.fail("SplitShard", payload) == (
        "ResourceInUseException",
        f"Stream s under account {ACCOUNT} not ACTIVE, instead in state UPDATING",
    )
    k.clock.advance(5)
    await k.ok("SplitShard", payload)


async def test_split_over_the_shard_limit(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(shard_limit=1)
    await k.create("s", 1)
    payload = {"StreamName": "s", "ShardToSplit": sid(0), "NewStartingHashKey": str(HALF)}
    assert await k.fail("SplitShard", payload) == (
        "LimitExceededException",
        f"This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. "
        "Current shard count for the account: 1. Limit: 1. "
        "Number of additional shards that would have resulted from this request: 1. "
        "Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) "
        "for current limits and how to request higher limits.",
    )


# ----------------------------------------------------------------- MergeShards
async def test_merge_shards(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    payload = {"StreamName": "s", "ShardToMerge": sid(0), "AdjacentShardToMerge": sid(1)}
    assert await kinesis.ok("MergeShards", payload) == {}
    shards = (await kinesis.ok("ListShards", {"StreamName": "s"}))["Shards"]
    assert [s["ShardId"] for s in shards] == [sid(0), sid(1), sid(2)]
    child = shards[2]
    assert child["ParentShardId"] == sid(0)
    assert child["AdjacentParentShardId"] == sid(1)
    assert child["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(MAX_KEY)}
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in shards[:2])
    latest = await kinesis.ok("ListShards", {"StreamName": "s", "ShardFilter": {"Type": "AT_LATEST"}})
    assert [s["ShardId"] for s in latest["Shards"]] == [sid(2)]


@pytest.mark.parametrize(("a", "b"), [(0, 2), (1, 0)])
async def test_merge_shards_that_are_not_an_adjacent_pair(kinesis: Kinesis, a: Any, b: Any) -> None:
    await kinesis.create("s", 3)
    payload = {"StreamName": "s", "ShardToMerge": sid(a), "AdjacentShardToMerge": sid(b)}
    assert await kinesis.fail("MergeShards", payload) == (
        "InvalidArgumentException",
        f"Shards {sid(a)} and {sid(b)} in stream s under account {ACCOUNT} are not an adjacent pair of shards "
        "eligible for merging",
    )


async def test_merge_unknown_shards(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    payload = {"StreamName": "s", "ShardToMerge": sid(0), "AdjacentShardToMerge": "x-y"}
    assert await kinesis.fail("MergeShards", payload) == (
        "ResourceNotFoundException",
        f"Could not find shard x-y in stream s under account {ACCOUNT}.",
    )
    payload = {"StreamName": "s", "ShardToMerge": sid(1), "AdjacentShardToMerge": sid(5)}
    assert await kinesis.fail("MergeShards", payload) == (
        "ResourceNotFoundException",
        f"Could not find shard {sid(5)} in stream s under account {ACCOUNT}.",
    )


# ----------------------------------------------------------------- UpdateShardCount
async def test_update_shard_count(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    payload = {"StreamName": "s", "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"}
    assert await kinesis.ok("UpdateShardCount", payload) == {
        "StreamName": "s",
        "CurrentShardCount": 2,
        "TargetShardCount": 4,
        "StreamARN": ARN + "s",
    }
    latest = await kinesis.ok("ListShards", {"StreamName": "s", "ShardFilter": {"Type": "AT_LATEST"}})
    ranges = sorted(
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in latest["Shards"]
    )
    quarter = (1 << 128) // 4
    assert ranges == [(i * quarter, (i + 1) * quarter - 1) for i in range(4)]
    summary = await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"})
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 4
    down = {"StreamARN": ARN + "s", "TargetShardCount": 3, "ScalingType": "UNIFORM_SCALING"}
    out = await kinesis.ok("UpdateShardCount", down)
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (4, 3)
    latest = await kinesis.ok("ListShards", {"StreamName": "s", "ShardFilter": {"Type": "AT_LATEST"}})
    ranges = sorted(
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in latest["Shards"]
    )
    assert ranges == [(0, THIRD - 1), (THIRD, 2 * THIRD - 1), (2 * THIRD, MAX_KEY)]


async def test_update_shard_count_limits(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(shard_limit=10, max_scaling_ops_per_day=2)
    await k.create("s", 4)

    async def update(target: int) -> tuple[str, str | None]:
        return await k.fail(
            "UpdateShardCount", {"StreamName": "s", "TargetShardCount": target, "ScalingType": "UNIFORM_SCALING"}
        )

    assert await update(9) == (
        "LimitExceededException",
        "UpdateShardCount cannot scale up over double your current open shard count. "
        "Current open shard count: 4, Target shard count: 9",
    )
    assert await update(1) == (
        "LimitExceededException",
        "UpdateShardCount cannot scale down below half your current open shard count. "
        "Current open shard count: 4, Target shard count: 1",
    )
    await k.create("t", 3)
    assert await update(8) == (
        "LimitExceededException",
        "Target shard count or number of open shards cannot be greater than 7. "
        "Current open shard count: 4, Target shard count: 8",
    )
    for target in (3, 4):
        await k.ok(
            "UpdateShardCount", {"StreamName": "s", "TargetShardCount": target, "ScalingType": "UNIFORM_SCALING"}
        )
    assert await update(5) == (
        "LimitExceededException",
        f"Exceeded the limit of 2 UpdateShardCount operations in a rolling 24-hour period for stream s under account "
        f"{ACCOUNT}.",
    )
    k.clock.advance(24 * 3600 + 1)
    await k.ok("UpdateShardCount", {"StreamName": "s", "TargetShardCount": 5, "ScalingType": "UNIFORM_SCALING"})


async def test_resharding_an_on_demand_stream(kinesis: Kinesis) -> None:
    await kinesis.ok("CreateStream", {"StreamName": "od", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})
    on_demand = ("ValidationException", f"Request is invalid. Stream od under account {ACCOUNT} is in On-Demand mode.")
    payload = {"StreamName": "od", "TargetShardCount": 8, "ScalingType": "UNIFORM_SCALING"}
    assert await kinesis.fail("UpdateShardCount", payload) == on_demand
    split = {"StreamName": "od", "ShardToSplit": sid(0), "NewStartingHashKey": "12345"}
    assert await kinesis.fail("SplitShard", split) == on_demand
    merge = {"StreamName": "od", "ShardToMerge": sid(0), "AdjacentShardToMerge": sid(1)}
    assert await kinesis.fail("MergeShards", merge) == on_demand


async def test_update_shard_count_of_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamName": "gone", "TargetShardCount": 2, "ScalingType": "UNIFORM_SCALING"}
    assert await kinesis.fail("UpdateShardCount", payload) == kinesis.not_found("gone")
