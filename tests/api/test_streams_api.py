"""Stream actions over the wire: lifecycle, describe/list, limits, retention, capacity mode, enhanced monitoring,
encryption and tags. Each family in three parts: wrong JSON types, constraint violations, behaviour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ._asgi import Kinesis
from ._wire_cases import BOOLEAN, INTEGER, LIST, MAP, STRING, STRUCTURE, nest, one_error

ACCOUNT = "000000000000"
ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/"
STREAM_ARN_PATTERN = r"arn:aws.*:kinesis:.*:\d{12}:stream/\S+"
NAME_PATTERN = "[a-zA-Z0-9_.-]+"
THIRD = (1 << 128) // 3
ALL_METRICS = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
]


def _cases(op: str, member: str, table: list[tuple[Any, str]], **base: Any) -> list[Any]:
    return [pytest.param(op, {**base, **nest(member, v)}, msg, id=f"{op}.{member}={v!r}") for v, msg in table]


# ======================================================================== 1. serialization
SERIALIZATION = [
    *_cases("CreateStream", "StreamName", STRING),
    *_cases("CreateStream", "ShardCount", INTEGER, StreamName="s"),
    *_cases("CreateStream", "StreamModeDetails", STRUCTURE, StreamName="s"),
    *_cases("CreateStream", "StreamModeDetails.StreamMode", STRING, StreamName="s"),
    *_cases("CreateStream", "Tags", MAP, StreamName="s", ShardCount=1),
    *_cases("CreateStream", "Tags.a", STRING, StreamName="s", ShardCount=1),
    *_cases("CreateStream", "MaxRecordSizeInKiB", INTEGER, StreamName="s", ShardCount=1),
    *_cases("DeleteStream", "StreamName", STRING),
    *_cases("DeleteStream", "EnforceConsumerDeletion", BOOLEAN, StreamName="s"),
    *_cases("DescribeStream", "StreamName", STRING),
    *_cases("DescribeStream", "Limit", INTEGER, StreamName="s"),
    *_cases("DescribeStream", "ExclusiveStartShardId", STRING, StreamName="s"),
    *_cases("DescribeStream", "StreamARN", STRING),
    *_cases("DescribeStreamSummary", "StreamName", STRING),
    *_cases("ListStreams", "Limit", INTEGER),
    *_cases("ListStreams", "ExclusiveStartStreamName", STRING),
    *_cases("ListStreams", "NextToken", STRING),
    *_cases("IncreaseStreamRetentionPeriod", "RetentionPeriodHours", INTEGER, StreamName="s"),
    *_cases("DecreaseStreamRetentionPeriod", "RetentionPeriodHours", INTEGER, StreamName="s"),
    *_cases("UpdateStreamMode", "StreamModeDetails", STRUCTURE, StreamARN=ARN + "s"),
    *_cases("EnableEnhancedMonitoring", "ShardLevelMetrics", LIST, StreamName="s"),
    *_cases("EnableEnhancedMonitoring", "ShardLevelMetrics.0", STRING, StreamName="s"),
    *_cases("DisableEnhancedMonitoring", "ShardLevelMetrics", LIST, StreamName="s"),
    *_cases("StartStreamEncryption", "EncryptionType", STRING, StreamName="s", KeyId="k"),
    *_cases("StopStreamEncryption", "KeyId", STRING, StreamName="s", EncryptionType="KMS"),
    *_cases("AddTagsToStream", "Tags", MAP, StreamName="s"),
    *_cases("AddTagsToStream", "Tags.a", STRING, StreamName="s"),
    *_cases("RemoveTagsFromStream", "TagKeys", LIST, StreamName="s"),
    *_cases("RemoveTagsFromStream", "TagKeys.0", STRING, StreamName="s"),
    *_cases("ListTagsForStream", "Limit", INTEGER, StreamName="s"),
    *_cases("ListTagsForStream", "ExclusiveStartTagKey", STRING, StreamName="s"),
    *_cases("TagResource", "ResourceARN", STRING, Tags={"a": "b"}),
    *_cases("TagResource", "Tags", MAP, ResourceARN=ARN + "s"),
    *_cases("UntagResource", "TagKeys", LIST, ResourceARN=ARN + "s"),
    *_cases("ListTagsForResource", "ResourceARN", STRING),
]


@pytest.mark.parametrize(("op", "payload", "message"), SERIALIZATION)
async def test_wrong_json_type_is_a_serialization_exception(
    kinesis: Kinesis, op: str, payload: Any, message: str
) -> None:
    assert await kinesis.serialization(op, payload) == message


async def test_the_first_mismatch_in_model_order_wins(kinesis: Kinesis) -> None:
    msg = await kinesis.serialization("CreateStream", {"ShardCount": "1", "StreamName": 5})
    assert msg == "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"


async def test_serialization_comes_before_validation(kinesis: Kinesis) -> None:
    msg = await kinesis.serialization("CreateStream", {"StreamName": "", "ShardCount": 0, "Tags": []})
    assert msg == "Start of list found where not expected"


async def test_fractional_integers_are_truncated(kinesis: Kinesis) -> None:
    # AWS reads JSON numbers as big decimals and truncates them for integer members.
    await kinesis.ok("CreateStream", {"StreamName": "s", "ShardCount": 2.9})
    d = await kinesis.ok("DescribeStream", {"StreamName": "s"})
    assert len(d["StreamDescription"]["Shards"]) == 2


async def test_null_members_count_as_absent(kinesis: Kinesis) -> None:
    await kinesis.ok("CreateStream", {"StreamName": "s", "ShardCount": 1, "Tags": None, "StreamModeDetails": None})
    assert await kinesis.validation("CreateStream", {"StreamName": None}) == one_error(
        None, "streamName", "Member must not be null"
    )


# ======================================================================== 2. validation
async def test_missing_stream_name_is_null_without_quotes(kinesis: Kinesis) -> None:
    assert await kinesis.validation("CreateStream", {"ShardCount": 1}) == (
        "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"
    )


async def test_empty_stream_name_and_zero_shards_list_three_violations(kinesis: Kinesis) -> None:
    assert await kinesis.validation("CreateStream", {"StreamName": "", "ShardCount": 0}) == (
        "3 validation errors detected: "
        "Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1; "
        "Value '' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "
        "Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
    )


STREAM_VALIDATION = [
    ("CreateStream", {"StreamName": "a" * 129, "ShardCount": 1}, "a" * 129, "streamName",
     "Member must have length less than or equal to 128"),
    ("CreateStream", {"StreamName": "bad name!", "ShardCount": 1}, "bad name!", "streamName",
     f"Member must satisfy regular expression pattern: {NAME_PATTERN}"),
    ("CreateStream", {"StreamName": "s", "StreamModeDetails": {}}, None, "streamModeDetails.streamMode",
     "Member must not be null"),
    ("CreateStream", {"StreamName": "s", "StreamModeDetails": {"StreamMode": "FAST"}}, "FAST",
     "streamModeDetails.streamMode", "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"),
    ("CreateStream", {"StreamName": "s", "ShardCount": 1, "MaxRecordSizeInKiB": 1}, 1, "maxRecordSizeInKiB",
     "Member must have value greater than or equal to 1024"),
    ("CreateStream", {"StreamName": "s", "ShardCount": 1, "MaxRecordSizeInKiB": 10241}, 10241,
     "maxRecordSizeInKiB", "Member must have value less than or equal to 10240"),
    ("CreateStream", {"StreamName": "s", "ShardCount": 1, "WarmThroughputMiBps": -1}, -1, "warmThroughputMiBps",
     "Member must have value greater than or equal to 0"),
    ("CreateStream", {"StreamName": "s", "ShardCount": 1, "RecordDistributionStrategy": "RANDOM"}, "RANDOM",
     "recordDistributionStrategy", "Member must satisfy enum value set: [USER_PARTITION_KEY, AUTO]"),
    ("CreateStream", {"StreamName": "s", "ShardCount": 1, "Tags": {}}, "{}", "tags",
     "Member must have length greater than or equal to 1"),
    ("CreateStream", {"StreamName": "s", "ShardCount": -3}, -3, "shardCount",
     "Member must have value greater than or equal to 1"),
    ("DescribeStream", {"StreamName": "s", "Limit": 0}, 0, "limit",
     "Member must have value greater than or equal to 1"),
    ("DescribeStream", {"StreamName": "s", "Limit": 10001}, 10001, "limit",
     "Member must have value less than or equal to 10000"),
    ("DescribeStream", {"StreamARN": "arn:aws:kinesis:us-east-1:123:stream/s"},
     "arn:aws:kinesis:us-east-1:123:stream/s", "streamARN",
     f"Member must satisfy regular expression pattern: {STREAM_ARN_PATTERN}"),
    ("DescribeStreamSummary", {"StreamName": "s/t"}, "s/t", "streamName",
     f"Member must satisfy regular expression pattern: {NAME_PATTERN}"),
    ("DescribeStreamSummary", {"StreamId": "nope"}, "nope", "streamId",
     "Member must satisfy regular expression pattern: [a-z0-9]{20}-[a-z0-9]{3}"),
    ("DeleteStream", {"StreamName": "a" * 200}, "a" * 200, "streamName",
     "Member must have length less than or equal to 128"),
    ("ListStreams", {"Limit": 0}, 0, "limit", "Member must have value greater than or equal to 1"),
    ("ListStreams", {"Limit": 10001}, 10001, "limit", "Member must have value less than or equal to 10000"),
    ("ListStreams", {"NextToken": ""}, "", "nextToken", "Member must have length greater than or equal to 1"),
    ("ListTagsForStream", {"StreamName": "s", "Limit": 51}, 51, "limit",
     "Member must have value less than or equal to 50"),
    ("ListTagsForStream", {"StreamName": "s", "ExclusiveStartTagKey": "k" * 129}, "k" * 129,
     "exclusiveStartTagKey", "Member must have length less than or equal to 128"),
    ("IncreaseStreamRetentionPeriod", {"StreamName": "s"}, None, "retentionPeriodHours", "Member must not be null"),
    ("DecreaseStreamRetentionPeriod", {"StreamName": "s"}, None, "retentionPeriodHours", "Member must not be null"),
    ("EnableEnhancedMonitoring", {"StreamName": "s"}, None, "shardLevelMetrics", "Member must not be null"),
    ("EnableEnhancedMonitoring", {"StreamName": "s", "ShardLevelMetrics": []}, "[]", "shardLevelMetrics",
     "Member must have length greater than or equal to 1"),
    ("DisableEnhancedMonitoring", {"StreamName": "s", "ShardLevelMetrics": [*ALL_METRICS, "ALL"]},
     "[" + ", ".join([*ALL_METRICS, "ALL"]) + "]", "shardLevelMetrics",
     "Member must have length less than or equal to 7"),
    ("StartStreamEncryption", {"StreamName": "s", "EncryptionType": "AES", "KeyId": "k"}, "AES", "encryptionType",
     "Member must satisfy enum value set: [KMS, NONE]"),
    ("StartStreamEncryption", {"StreamName": "s", "EncryptionType": "KMS", "KeyId": ""}, "", "keyId",
     "Member must have length greater than or equal to 1"),
    ("StopStreamEncryption", {"StreamName": "s", "EncryptionType": "KMS", "KeyId": "k" * 2049}, "k" * 2049, "keyId",
     "Member must have length less than or equal to 2048"),
    ("AddTagsToStream", {"StreamName": "s"}, None, "tags", "Member must not be null"),
    ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": []}, "[]", "tagKeys",
     "Member must have length greater than or equal to 1"),
    ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": [str(i) for i in range(51)]},
     "[" + ", ".join(str(i) for i in range(51)) + "]", "tagKeys", "Member must have length less than or equal to 50"),
    ("ListTagsForResource", {}, None, "resourceARN", "Member must not be null"),
    ("ListTagsForResource", {"ResourceARN": "nope"}, "nope", "resourceARN",
     r"Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\d{12}:.*(stream|channel|queue)/\S+"),
    ("UntagResource", {"ResourceARN": ARN + "s", "TagKeys": []}, "[]", "tagKeys",
     "Member must have length greater than or equal to 1"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "payload", "value", "path", "rule"), STREAM_VALIDATION)
async def test_one_constraint_violation(
    kinesis: Kinesis, op: str, payload: Any, *, value: Any, path: str, rule: Any
) -> None:
    assert await kinesis.validation(op, payload) == one_error(value, path, rule)


async def test_violations_are_listed_in_member_order(kinesis: Kinesis) -> None:
    msg = await kinesis.validation("StartStreamEncryption", {"StreamName": ""})
    assert msg == (
        "4 validation errors detected: "
        "Value null at 'encryptionType' failed to satisfy constraint: Member must not be null; "
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null; "
        "Value '' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "
        "Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
    )


async def test_two_missing_members_of_tag_resource(kinesis: Kinesis) -> None:
    assert await kinesis.validation("TagResource", {}) == (
        "2 validation errors detected: "
        "Value null at 'resourceARN' failed to satisfy constraint: Member must not be null; "
        "Value null at 'tags' failed to satisfy constraint: Member must not be null"
    )


async def test_update_stream_mode_needs_arn_and_details(kinesis: Kinesis) -> None:
    assert await kinesis.validation("UpdateStreamMode", {}) == (
        "2 validation errors detected: "
        "Value null at 'streamARN' failed to satisfy constraint: Member must not be null; "
        "Value null at 'streamModeDetails' failed to satisfy constraint: Member must not be null"
    )


async def test_a_too_long_tag_key_is_reported_on_the_whole_list(kinesis: Kinesis) -> None:
    # AWS reports a constraint on the strings of a list once, on the list, listing every constraint of the member.
    long = "a" * 129
    msg = await kinesis.validation("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": ["a", long, "b"]})
    assert msg == (
        f"1 validation error detected: Value '[a, {long}, b]' at 'tagKeys' failed to satisfy constraint: "
        "Member must satisfy constraint: [Member must have length less than or equal to 128, "
        "Member must have length greater than or equal to 1]"
    )


async def test_a_too_long_tag_map_key_is_reported_on_the_map(kinesis: Kinesis) -> None:
    long = "k" * 129
    msg = await kinesis.validation("AddTagsToStream", {"StreamName": "s", "Tags": {long: "v"}})
    assert msg == (
        f"1 validation error detected: Value '{{{long}=v}}' at 'tags' failed to satisfy constraint: "
        "Map keys must satisfy constraint: [Member must have length less than or equal to 128, "
        "Member must have length greater than or equal to 1]"
    )


async def test_an_unknown_metric_is_reported_on_the_metrics_list(kinesis: Kinesis) -> None:
    # The engine words this violation the same way; the shape check must not pre-empt it with another wording.
    msg = await kinesis.validation("EnableEnhancedMonitoring", {"StreamName": "s", "ShardLevelMetrics": ["Bogus"]})
    assert msg == (
        "1 validation error detected: Value '[Bogus]' at 'shardLevelMetrics' failed to satisfy constraint: "
        "Member must satisfy constraint: [Member must satisfy enum value set: [ALL, "
        "WriteProvisionedThroughputExceeded, IteratorAgeMilliseconds, IncomingBytes, OutgoingRecords, "
        "ReadProvisionedThroughputExceeded, IncomingRecords, OutgoingBytes]]"
    )


async def test_validation_comes_before_the_stream_lookup(kinesis: Kinesis) -> None:
    msg = await kinesis.validation("DescribeStream", {"StreamName": "missing", "Limit": 0})
    assert msg == one_error(0, "limit", "Member must have value greater than or equal to 1")


# ======================================================================== 3. behaviour
async def test_create_and_describe_three_shards(kinesis: Kinesis) -> None:
    assert await kinesis.ok("CreateStream", {"StreamName": "s", "ShardCount": 3}) == {}
    d = (await kinesis.ok("DescribeStream", {"StreamName": "s"}))["StreamDescription"]
    starts = [s["SequenceNumberRange"].pop("StartingSequenceNumber") for s in d["Shards"]]
    assert all(x.isdigit() for x in starts)
    assert d == {
        "StreamName": "s",
        "StreamARN": ARN + "s",
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": {"StreamMode": "PROVISIONED"},
        "Shards": [
            {
                "ShardId": f"shardId-{i:012d}",
                "HashKeyRange": {"StartingHashKey": str(lo), "EndingHashKey": str(hi)},
                "SequenceNumberRange": {},
            }
            for i, (lo, hi) in enumerate([(0, THIRD - 1), (THIRD, 2 * THIRD - 1), (2 * THIRD, (1 << 128) - 1)])
        ],
        "HasMoreShards": False,
        "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": 1_700_000_000,
        "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
        "EncryptionType": "NONE",
    }


async def test_creation_timestamp_is_epoch_seconds(kinesis: Kinesis) -> None:
    kinesis.clock.advance(ms=250)
    await kinesis.create("s")
    d = await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"})
    assert d["StreamDescriptionSummary"]["StreamCreationTimestamp"] == 1_700_000_000.25


async def test_summary_never_carries_a_stream_id(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    r = await kinesis.send("DescribeStreamSummary", {"StreamName": "s"})
    assert r.status == 200
    assert b"StreamId" not in r.body
    assert r.json() == {
        "StreamDescriptionSummary": {
            "StreamName": "s",
            "StreamARN": ARN + "s",
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": 1_700_000_000,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": 2,
            "ConsumerCount": 0,
            "MaxRecordSizeInKiB": 1024,
        }
    }


async def test_no_response_carries_a_stream_id(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    for op, payload in [
        ("DescribeStream", {"StreamName": "s"}),
        ("ListStreams", {}),
        ("ListShards", {"StreamName": "s"}),
        ("UpdateShardCount", {"StreamName": "s", "TargetShardCount": 2, "ScalingType": "UNIFORM_SCALING"}),
        ("EnableEnhancedMonitoring", {"StreamName": "s", "ShardLevelMetrics": ["ALL"]}),
    ]:
        r = await kinesis.send(op, payload)
        assert r.status == 200, (op, r.body)
        assert b"StreamId" not in r.body, op


async def test_create_an_existing_stream(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    assert await kinesis.fail("CreateStream", {"StreamName": "s", "ShardCount": 1}) == (
        "ResourceInUseException",
        f"Stream s under account {ACCOUNT} already exists.",
    )


async def test_provisioned_create_needs_a_shard_count(kinesis: Kinesis) -> None:
    assert await kinesis.fail("CreateStream", {"StreamName": "s"}) == (
        "InvalidArgumentException",
        "ShardCount must be provided for streams in PROVISIONED mode.",
    )


async def test_on_demand_create(kinesis: Kinesis) -> None:
    await kinesis.ok("CreateStream", {"StreamName": "od", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})
    s = (await kinesis.ok("DescribeStreamSummary", {"StreamName": "od"}))["StreamDescriptionSummary"]
    assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert s["OpenShardCount"] == 4
    limits = await kinesis.ok("DescribeLimits")
    assert limits == {"ShardLimit": 500, "OpenShardCount": 4, "OnDemandStreamCount": 1, "OnDemandStreamCountLimit": 50}


async def test_create_over_the_shard_limit(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(shard_limit=5)
    await k.create("a", 2)
    assert await k.fail("CreateStream", {"StreamName": "b", "ShardCount": 4}) == (
        "LimitExceededException",
        f"This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. "
        "Current shard count for the account: 2. Limit: 5. "
        "Number of additional shards that would have resulted from this request: 4. "
        "Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) "
        "for current limits and how to request higher limits.",
    )
    assert await k.fail("DescribeStream", {"StreamName": "b"}) == k.not_found("b")


async def test_describe_limits(kinesis: Kinesis) -> None:
    assert await kinesis.ok("DescribeLimits") == {
        "ShardLimit": 500,
        "OpenShardCount": 0,
        "OnDemandStreamCount": 0,
        "OnDemandStreamCountLimit": 50,
    }
    await kinesis.create("a", 3)
    assert (await kinesis.ok("DescribeLimits"))["OpenShardCount"] == 3


async def test_describe_stream_pages_through_shards(kinesis: Kinesis) -> None:
    await kinesis.create("s", 5)
    first = (await kinesis.ok("DescribeStream", {"StreamName": "s", "Limit": 2}))["StreamDescription"]
    assert [s["ShardId"] for s in first["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    assert first["HasMoreShards"] is True
    nxt = await kinesis.ok("DescribeStream", {"StreamName": "s", "ExclusiveStartShardId": "shardId-000000000001"})
    d = nxt["StreamDescription"]
    assert [s["ShardId"] for s in d["Shards"]] == [f"shardId-{i:012d}" for i in (2, 3, 4)]
    assert d["HasMoreShards"] is False


@pytest.mark.parametrize("op", ["DescribeStream", "DescribeStreamSummary", "DeleteStream", "ListTagsForStream"])
async def test_missing_stream_is_not_found(kinesis: Kinesis, op: str) -> None:
    r = await kinesis.send(op, {"StreamName": "missing"})
    assert r.status == 400
    assert r.json() == {
        "__type": "ResourceNotFoundException",
        "message": f"Stream missing under account {ACCOUNT} not found.",
    }


async def test_describe_needs_a_name_or_an_arn(kinesis: Kinesis) -> None:
    assert await kinesis.fail("DescribeStreamSummary", {}) == (
        "ValidationException",
        "Either StreamName or StreamARN should be provided.",
    )


# ----------------------------------------------------------------- StreamARN forms
async def test_stream_arn_names_the_stream(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    by_arn = await kinesis.ok("DescribeStreamSummary", {"StreamARN": ARN + "s"})
    by_both = await kinesis.ok("DescribeStreamSummary", {"StreamName": "s", "StreamARN": ARN + "s"})
    by_name = await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"})
    assert by_arn == by_both == by_name


async def test_stream_name_and_arn_must_agree(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    await kinesis.create("t", 1)
    assert await kinesis.fail("DescribeStream", {"StreamName": "t", "StreamARN": ARN + "s"}) == (
        "InvalidArgumentException",
        f"StreamName t and StreamARN {ARN}s do not refer to the same stream.",
    )


async def test_arn_of_another_account_or_region_is_not_found(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    other = "arn:aws:kinesis:us-east-1:111111111111:stream/s"
    assert await kinesis.fail("DescribeStreamSummary", {"StreamARN": other}) == (
        "ResourceNotFoundException",
        "Stream s under account 111111111111 not found.",
    )
    elsewhere = f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/s"
    kind, _ = await kinesis.fail("DescribeStreamSummary", {"StreamARN": elsewhere})
    assert kind == "ResourceNotFoundException"


async def test_arn_of_a_missing_stream(kinesis: Kinesis) -> None:
    assert await kinesis.fail("DeleteStream", {"StreamARN": ARN + "gone"}) == kinesis.not_found("gone")


# ----------------------------------------------------------------- list / delete
async def test_list_streams_pages(kinesis: Kinesis) -> None:
    for name in ("c", "a", "b"):
        await kinesis.create(name, 1)
    everything = await kinesis.ok("ListStreams")
    assert everything["StreamNames"] == ["a", "b", "c"]
    assert everything["HasMoreStreams"] is False
    assert "NextToken" not in everything
    assert everything["StreamSummaries"][0] == {
        "StreamName": "a",
        "StreamARN": ARN + "a",
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": {"StreamMode": "PROVISIONED"},
        "StreamCreationTimestamp": 1_700_000_000,
    }
    page = await kinesis.ok("ListStreams", {"Limit": 2})
    assert page["StreamNames"] == ["a", "b"]
    assert page["HasMoreStreams"] is True
    rest = await kinesis.ok("ListStreams", {"NextToken": page["NextToken"]})
    assert rest["StreamNames"] == ["c"]
    assert rest["HasMoreStreams"] is False
    after = await kinesis.ok("ListStreams", {"ExclusiveStartStreamName": "a"})
    assert after["StreamNames"] == ["b", "c"]


async def test_list_streams_rejects_bad_and_stale_tokens(kinesis: Kinesis) -> None:
    for name in ("a", "b"):
        await kinesis.create(name, 1)
    token = (await kinesis.ok("ListStreams", {"Limit": 1}))["NextToken"]
    assert await kinesis.fail("ListStreams", {"NextToken": "garbage"}) == (
        "InvalidArgumentException",
        "Invalid NextToken.",
    )
    kinesis.clock.advance(301)
    assert await kinesis.fail("ListStreams", {"NextToken": token}) == (
        "ExpiredNextTokenException",
        "The timestamp of the NextToken has expired.",
    )


async def test_delete_stream(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    assert await kinesis.ok("DeleteStream", {"StreamName": "s"}) == {}
    assert await kinesis.fail("DescribeStream", {"StreamName": "s"}) == kinesis.not_found("s")
    assert (await kinesis.ok("ListStreams"))["StreamNames"] == []
    await kinesis.create("s", 1)
    d = await kinesis.ok("DescribeStream", {"StreamName": "s"})
    assert len(d["StreamDescription"]["Shards"]) == 1


async def test_delete_by_arn(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    await kinesis.ok("DeleteStream", {"StreamARN": ARN + "s"})
    assert await kinesis.fail("DescribeStreamSummary", {"StreamName": "s"}) == kinesis.not_found("s")


async def test_delete_with_consumers_needs_enforce(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    await kinesis.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c"})
    assert await kinesis.fail("DeleteStream", {"StreamName": "s"}) == (
        "ResourceInUseException",
        f"Stream s under account {ACCOUNT} has registered consumers. Deregister them first, or set "
        "EnforceConsumerDeletion to true.",
    )
    await kinesis.ok("DeleteStream", {"StreamName": "s", "EnforceConsumerDeletion": True})
    assert await kinesis.fail("DescribeStream", {"StreamName": "s"}) == kinesis.not_found("s")


async def test_status_moves_through_creating_with_a_delay(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(status_delay_s=1.0)
    await k.create("s", 1)
    s = await k.ok("DescribeStreamSummary", {"StreamName": "s"})
    assert s["StreamDescriptionSummary"]["StreamStatus"] == "CREATING"
    assert await k.fail("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": "a"}) == k.not_found("s")
    d = await k.ok("DescribeStream", {"StreamName": "s"})
    assert (d["StreamDescription"]["Shards"], d["StreamDescription"]["HasMoreShards"]) == ([], False)
    assert await k.fail("ListShards", {"StreamName": "s"}) == (
        "ResourceInUseException",
        f"Stream s under account {ACCOUNT} not ACTIVE or UPDATING, instead in state CREATING",
    )
    k.clock.advance(1)
    s = await k.ok("DescribeStreamSummary", {"StreamName": "s"})
    assert s["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    await k.ok("DeleteStream", {"StreamName": "s"})
    s = await k.ok("DescribeStreamSummary", {"StreamName": "s"})
    assert s["StreamDescriptionSummary"]["StreamStatus"] == "DELETING"
    k.clock.advance(1)
    assert await k.fail("DescribeStreamSummary", {"StreamName": "s"}) == k.not_found("s")


# ----------------------------------------------------------------- retention
async def _retention(kinesis: Kinesis) -> int:
    s = await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"})
    return int(s["StreamDescriptionSummary"]["RetentionPeriodHours"])


async def test_retention_up_and_down(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    assert await kinesis.ok("IncreaseStreamRetentionPeriod", {"StreamName": "s", "RetentionPeriodHours": 48}) == {}
    assert await _retention(kinesis) == 48
    await kinesis.ok("IncreaseStreamRetentionPeriod", {"StreamName": "s", "RetentionPeriodHours": 48})
    await kinesis.ok("DecreaseStreamRetentionPeriod", {"StreamARN": ARN + "s", "RetentionPeriodHours": 30})
    assert await _retention(kinesis) == 30


RETENTION_ERRORS = [
    ("IncreaseStreamRetentionPeriod", 24,
     "Requested retention period (24 hours) for stream s can not be shorter than existing retention period "
     "(48 hours). Use DecreaseRetentionPeriod API."),
    ("DecreaseStreamRetentionPeriod", 72,
     "Requested retention period (72 hours) for stream s can not be longer than existing retention period "
     "(48 hours). Use IncreaseRetentionPeriod API."),
    ("DecreaseStreamRetentionPeriod", 23,
     "Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short."),
    ("IncreaseStreamRetentionPeriod", 8761,
     "Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long."),
]  # fmt: skip


@pytest.mark.parametrize(("op", "hours", "message"), RETENTION_ERRORS)
async def test_retention_errors(kinesis: Kinesis, op: str, hours: Any, message: str) -> None:
    await kinesis.create("s", 1)
    await kinesis.ok("IncreaseStreamRetentionPeriod", {"StreamName": "s", "RetentionPeriodHours": 48})
    assert await kinesis.fail(op, {"StreamName": "s", "RetentionPeriodHours": hours}) == (
        "InvalidArgumentException",
        message,
    )
    assert await _retention(kinesis) == 48


async def test_retention_of_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamName": "nope", "RetentionPeriodHours": 48}
    assert await kinesis.fail("IncreaseStreamRetentionPeriod", payload) == kinesis.not_found("nope")


# ----------------------------------------------------------------- capacity mode
async def test_update_stream_mode(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(max_mode_switches_per_day=2)
    await k.create("s", 2)
    details = {"StreamMode": "ON_DEMAND"}
    assert await k.ok("UpdateStreamMode", {"StreamARN": ARN + "s", "StreamModeDetails": details}) == {}
    s = (await k.ok("DescribeStreamSummary", {"StreamName": "s"}))["StreamDescriptionSummary"]
    assert s["StreamModeDetails"] == details
    assert (await k.ok("DescribeLimits"))["OnDemandStreamCount"] == 1
    # Asking for the current mode changes nothing and is not counted.
    await k.ok("UpdateStreamMode", {"StreamARN": ARN + "s", "StreamModeDetails": details})
    await k.ok("UpdateStreamMode", {"StreamARN": ARN + "s", "StreamModeDetails": {"StreamMode": "PROVISIONED"}})
    assert await k.fail("UpdateStreamMode", {"StreamARN": ARN + "s", "StreamModeDetails": details}) == (
        "LimitExceededException",
        f"Stream s under account {ACCOUNT} has exceeded the limit of 2 capacity mode switches in a rolling "
        "24-hour period.",
    )
    k.clock.advance(24 * 3600 + 1)
    await k.ok("UpdateStreamMode", {"StreamARN": ARN + "s", "StreamModeDetails": details})


async def test_update_stream_mode_of_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamARN": ARN + "gone", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}
    assert await kinesis.fail("UpdateStreamMode", payload) == kinesis.not_found("gone")


# ----------------------------------------------------------------- enhanced monitoring
async def test_enable_and_disable_enhanced_monitoring(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    out = await kinesis.ok("EnableEnhancedMonitoring", {"StreamName": "s", "ShardLevelMetrics": ["IncomingBytes"]})
    assert out == {
        "StreamName": "s",
        "CurrentShardLevelMetrics": [],
        "DesiredShardLevelMetrics": ["IncomingBytes"],
        "StreamARN": ARN + "s",
    }
    out = await kinesis.ok("EnableEnhancedMonitoring", {"StreamARN": ARN + "s", "ShardLevelMetrics": ["ALL"]})
    assert out["CurrentShardLevelMetrics"] == ["IncomingBytes"]
    assert out["DesiredShardLevelMetrics"] == ALL_METRICS
    out = await kinesis.ok(
        "DisableEnhancedMonitoring", {"StreamName": "s", "ShardLevelMetrics": ["IncomingBytes", "OutgoingBytes"]}
    )
    assert out["CurrentShardLevelMetrics"] == ALL_METRICS
    remaining = [m for m in ALL_METRICS if m not in ("IncomingBytes", "OutgoingBytes")]
    assert out["DesiredShardLevelMetrics"] == remaining
    d = (await kinesis.ok("DescribeStream", {"StreamName": "s"}))["StreamDescription"]
    assert d["EnhancedMonitoring"] == [{"ShardLevelMetrics": remaining}]
    out = await kinesis.ok("DisableEnhancedMonitoring", {"StreamName": "s", "ShardLevelMetrics": ["ALL"]})
    assert out["DesiredShardLevelMetrics"] == []


async def test_enhanced_monitoring_of_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamName": "gone", "ShardLevelMetrics": ["ALL"]}
    assert await kinesis.fail("EnableEnhancedMonitoring", payload) == kinesis.not_found("gone")


# ----------------------------------------------------------------- encryption
async def test_start_and_stop_encryption(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    start = {"StreamName": "s", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert await kinesis.ok("StartStreamEncryption", start) == {}
    s = (await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"}))["StreamDescriptionSummary"]
    assert (s["EncryptionType"], s["KeyId"]) == ("KMS", "alias/aws/kinesis")
    d = (await kinesis.ok("DescribeStream", {"StreamName": "s"}))["StreamDescription"]
    assert (d["EncryptionType"], d["KeyId"]) == ("KMS", "alias/aws/kinesis")
    put = await kinesis.put("s", b"x")
    assert put["EncryptionType"] == "KMS"
    got = await kinesis.ok("GetRecords", {"ShardIterator": await kinesis.iterator("s")})
    assert got["Records"][0]["EncryptionType"] == "KMS"
    stop = {"StreamARN": ARN + "s", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert await kinesis.ok("StopStreamEncryption", stop) == {}
    s = (await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"}))["StreamDescriptionSummary"]
    assert s["EncryptionType"] == "NONE"
    assert "KeyId" not in s
    assert "EncryptionType" not in await kinesis.put("s", b"y")


async def test_start_encryption_of_type_none(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    payload = {"StreamName": "s", "EncryptionType": "NONE", "KeyId": "k"}
    assert await kinesis.fail("StartStreamEncryption", payload) == (
        "ValidationException",
        one_error("NONE", "encryptionType", "Member must satisfy enum value set: [KMS, NONE]"),
    )


# ----------------------------------------------------------------- tags
async def test_stream_tags(kinesis: Kinesis) -> None:
    await kinesis.ok("CreateStream", {"StreamName": "s", "ShardCount": 1, "Tags": {"team": "data"}})
    assert await kinesis.ok("AddTagsToStream", {"StreamName": "s", "Tags": {"a": "1", "b": ""}}) == {}
    assert await kinesis.ok("ListTagsForStream", {"StreamName": "s"}) == {
        "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": ""}, {"Key": "team", "Value": "data"}],
        "HasMoreTags": False,
    }
    assert await kinesis.ok("ListTagsForStream", {"StreamName": "s", "Limit": 1}) == {
        "Tags": [{"Key": "a", "Value": "1"}],
        "HasMoreTags": True,
    }
    after = await kinesis.ok("ListTagsForStream", {"StreamARN": ARN + "s", "ExclusiveStartTagKey": "a"})
    assert [t["Key"] for t in after["Tags"]] == ["b", "team"]
    assert await kinesis.ok("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": ["a", "not-there"]}) == {}
    tags = (await kinesis.ok("ListTagsForStream", {"StreamName": "s"}))["Tags"]
    assert [t["Key"] for t in tags] == ["b", "team"]


async def test_tag_errors(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    assert await kinesis.fail("AddTagsToStream", {"StreamName": "s", "Tags": {"a;b": "c"}}) == (
        "InvalidArgumentException",
        "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, "
        "_ . / = + - % @.",
    )
    assert await kinesis.fail("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": ["a,b"]}) == (
        "InvalidArgumentException",
        "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, "
        "_ . / = + - % @.",
    )
    too_many = {f"k{i}": "v" for i in range(51)}
    assert await kinesis.fail("AddTagsToStream", {"StreamName": "s", "Tags": too_many}) == (
        "InvalidArgumentException",
        f"Failed to add tags to stream s under account {ACCOUNT} because a given stream cannot have more than "
        "50 tags associated with it.",
    )
    assert (await kinesis.ok("ListTagsForStream", {"StreamName": "s"}))["Tags"] == []
    assert await kinesis.fail("AddTagsToStream", {"StreamName": "x", "Tags": {"a": "b"}}) == kinesis.not_found("x")


TAG_CHARS = (
    "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."
)


@pytest.mark.parametrize(
    "text",
    ["tab\there", "new\nline", "nul\x00", "bell\x07", "del\x7f", "colon:key", "semi;colon", "aws:cloudformation"],
)
async def test_tag_characters_outside_the_documented_set_are_refused(kinesis: Kinesis, text: str) -> None:
    # Source: the Kinesis API Reference, data type Tag ("Valid characters: Unicode letters, digits, white space,
    # _ . / = + - % @"): % is allowed, ':' is not; white space is Unicode separators, never control characters.
    await kinesis.create("s", 1)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("AddTagsToStream", {"StreamName": "s", "Tags": {text: "v"}}),
        ("AddTagsToStream", {"StreamName": "s", "Tags": {"k": text}}),
        ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": [text]}),
        ("TagResource", {"ResourceARN": ARN + "s", "Tags": {text: "v"}}),
        ("UntagResource", {"ResourceARN": ARN + "s", "TagKeys": [text]}),
    ]
    for op, payload in cases:
        assert await kinesis.fail(op, payload) == ("InvalidArgumentException", TAG_CHARS), op


async def test_tag_characters_in_the_documented_set_are_accepted(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    tags = {"Ünïcödé 名前 ١٢": "a b\u00a0c", "_./=+-%@": "100%", "k": ""}
    await kinesis.ok("AddTagsToStream", {"StreamName": "s", "Tags": tags})
    listed = (await kinesis.ok("ListTagsForStream", {"StreamName": "s"}))["Tags"]
    assert {t["Key"]: t.get("Value", "") for t in listed} == tags
    await kinesis.ok("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": list(tags)})


async def test_resource_tags(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    arn = ARN + "s"
    assert await kinesis.ok("TagResource", {"ResourceARN": arn, "Tags": {"b": "2", "a": "1"}}) == {}
    assert await kinesis.ok("ListTagsForResource", {"ResourceARN": arn}) == {
        "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    }
    assert await kinesis.ok("UntagResource", {"ResourceARN": arn, "TagKeys": ["a"]}) == {}
    assert await kinesis.ok("ListTagsForResource", {"ResourceARN": arn}) == {"Tags": [{"Key": "b", "Value": "2"}]}
    stream_view = await kinesis.ok("ListTagsForStream", {"StreamName": "s"})
    assert stream_view["Tags"] == [{"Key": "b", "Value": "2"}]


async def test_resource_tags_of_a_missing_stream(kinesis: Kinesis) -> None:
    assert await kinesis.fail("ListTagsForResource", {"ResourceARN": ARN + "gone"}) == kinesis.not_found("gone")
    payload = {"ResourceARN": ARN + "gone", "Tags": {"a": "b"}}
    assert await kinesis.fail("TagResource", payload) == kinesis.not_found("gone")
