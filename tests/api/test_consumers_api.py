"""The enhanced fan-out consumer registry over the wire: Register, Deregister, Describe, ListStreamConsumers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ._asgi import Kinesis
from ._wire_cases import INTEGER, MAP, STRING, nest, one_error

ACCOUNT = "000000000000"
ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/"
STREAM_ARN_PATTERN = r"arn:aws.*:kinesis:.*:\d{12}:stream/\S+"
CONSUMER_ARN_PATTERN = r"^(arn):aws.*:kinesis:.*:\d{12}:.*stream\/[a-zA-Z0-9_.-]+\/consumer\/[a-zA-Z0-9_.-]+:[0-9]+"
CREATED_S = 1_700_000_000


def _cases(op: str, member: str, table: list[tuple[Any, str]], **base: Any) -> list[Any]:
    return [pytest.param(op, {**base, **nest(member, v)}, msg, id=f"{op}.{member}={v!r}") for v, msg in table]


# ======================================================================== 1. serialization
SERIALIZATION = [
    *_cases("RegisterStreamConsumer", "StreamARN", STRING, ConsumerName="c"),
    *_cases("RegisterStreamConsumer", "ConsumerName", STRING, StreamARN=ARN + "s"),
    *_cases("RegisterStreamConsumer", "Tags", MAP, StreamARN=ARN + "s", ConsumerName="c"),
    *_cases("DeregisterStreamConsumer", "ConsumerARN", STRING),
    *_cases("DeregisterStreamConsumer", "ConsumerName", STRING, StreamARN=ARN + "s"),
    *_cases("DescribeStreamConsumer", "ConsumerARN", STRING),
    *_cases("DescribeStreamConsumer", "StreamARN", STRING, ConsumerName="c"),
    *_cases("ListStreamConsumers", "StreamARN", STRING),
    *_cases("ListStreamConsumers", "NextToken", STRING, StreamARN=ARN + "s"),
    *_cases("ListStreamConsumers", "MaxResults", INTEGER, StreamARN=ARN + "s"),
]


@pytest.mark.parametrize(("op", "payload", "message"), SERIALIZATION)
async def test_wrong_json_type_is_a_serialization_exception(
    kinesis: Kinesis, op: str, payload: Any, message: str
) -> None:
    assert await kinesis.serialization(op, payload) == message


# ======================================================================== 2. validation
async def test_register_needs_stream_and_name(kinesis: Kinesis) -> None:
    assert await kinesis.validation("RegisterStreamConsumer", {}) == (
        "2 validation errors detected: "
        "Value null at 'consumerName' failed to satisfy constraint: Member must not be null; "
        "Value null at 'streamARN' failed to satisfy constraint: Member must not be null"
    )


async def test_empty_consumer_name(kinesis: Kinesis) -> None:
    payload = {"StreamARN": ARN + "s", "ConsumerName": ""}
    assert await kinesis.validation("RegisterStreamConsumer", payload) == (
        "2 validation errors detected: "
        "Value '' at 'consumerName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "
        "Value '' at 'consumerName' failed to satisfy constraint: Member must have length greater than or equal to 1"
    )


CONSUMER_VALIDATION = [
    ("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c d"}, "c d", "consumerName",
     "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
    ("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c" * 129}, "c" * 129, "consumerName",
     "Member must have length less than or equal to 128"),
    ("RegisterStreamConsumer", {"StreamARN": f"arn:aws:kinesis:us-east-1:{ACCOUNT}:table/s", "ConsumerName": "c"},
     f"arn:aws:kinesis:us-east-1:{ACCOUNT}:table/s", "streamARN",
     f"Member must satisfy regular expression pattern: {STREAM_ARN_PATTERN}"),
    ("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c", "Tags": {}}, "{}", "tags",
     "Member must have length greater than or equal to 1"),
    ("DescribeStreamConsumer", {"ConsumerARN": ARN + "s/consumer/c"}, ARN + "s/consumer/c", "consumerARN",
     f"Member must satisfy regular expression pattern: {CONSUMER_ARN_PATTERN}"),
    ("DeregisterStreamConsumer", {"ConsumerARN": ARN + "s"}, ARN + "s", "consumerARN",
     f"Member must satisfy regular expression pattern: {CONSUMER_ARN_PATTERN}"),
    ("ListStreamConsumers", {}, None, "streamARN", "Member must not be null"),
    ("ListStreamConsumers", {"StreamARN": ARN + "s", "MaxResults": 0}, 0, "maxResults",
     "Member must have value greater than or equal to 1"),
    ("ListStreamConsumers", {"StreamARN": ARN + "s", "MaxResults": 10001}, 10001, "maxResults",
     "Member must have value less than or equal to 10000"),
    ("ListStreamConsumers", {"StreamARN": ARN + "s", "NextToken": ""}, "", "nextToken",
     "Member must have length greater than or equal to 1"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "payload", "value", "path", "rule"), CONSUMER_VALIDATION)
async def test_one_constraint_violation(
    kinesis: Kinesis, op: str, payload: Any, *, value: Any, path: str, rule: Any
) -> None:
    assert await kinesis.validation(op, payload) == one_error(value, path, rule)


async def test_a_too_long_consumer_arn_breaks_only_the_length(kinesis: Kinesis) -> None:
    arn = ARN + "s/consumer/c:" + "1" * 2048
    msg = await kinesis.validation("DescribeStreamConsumer", {"ConsumerARN": arn})
    assert msg == (
        f"1 validation error detected: Value '{arn}' at 'consumerARN' failed to satisfy constraint: "
        "Member must have length less than or equal to 2048"
    )


# ======================================================================== 3. behaviour
def consumer_arn(stream: str, name: str, created_s: int = CREATED_S) -> str:
    return f"{ARN}{stream}/consumer/{name}:{created_s}"


async def test_register_and_describe(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    out = await kinesis.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c"})
    assert out == {
        "Consumer": {
            "ConsumerName": "c",
            "ConsumerARN": consumer_arn("s", "c"),
            "ConsumerStatus": "CREATING",
            "ConsumerCreationTimestamp": CREATED_S,
        }
    }
    expected = {
        "ConsumerDescription": {
            "ConsumerName": "c",
            "ConsumerARN": consumer_arn("s", "c"),
            "ConsumerStatus": "ACTIVE",
            "ConsumerCreationTimestamp": CREATED_S,
            "StreamARN": ARN + "s",
        }
    }
    assert await kinesis.ok("DescribeStreamConsumer", {"ConsumerARN": consumer_arn("s", "c")}) == expected
    by_name = await kinesis.ok("DescribeStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c"})
    assert by_name == expected
    summary = await kinesis.ok("DescribeStreamSummary", {"StreamName": "s"})
    assert summary["StreamDescriptionSummary"]["ConsumerCount"] == 1


async def test_register_twice(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    payload = {"StreamARN": ARN + "s", "ConsumerName": "c"}
    await kinesis.ok("RegisterStreamConsumer", payload)
    assert await kinesis.fail("RegisterStreamConsumer", payload) == (
        "ResourceInUseException",
        f"Consumer c under stream s already exists for account {ACCOUNT}.",
    )


async def test_register_on_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamARN": ARN + "gone", "ConsumerName": "c"}
    assert await kinesis.fail("RegisterStreamConsumer", payload) == kinesis.not_found("gone")
    other = {"StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s", "ConsumerName": "c"}
    assert await kinesis.fail("RegisterStreamConsumer", other) == (
        "ResourceNotFoundException",
        "Stream s under account 123456789012 not found.",
    )


async def test_consumer_limit(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(max_consumers_per_stream=2)
    await k.create("s")
    for name in ("a", "b"):
        await k.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": name})
    assert await k.fail("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c"}) == (
        "LimitExceededException",
        f"Stream s under account {ACCOUNT} has reached the maximum of 2 registered consumers.",
    )


async def test_describe_needs_an_arn_or_stream_and_name(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    message = "Either ConsumerARN or both StreamARN and ConsumerName should be provided."
    assert await kinesis.fail("DescribeStreamConsumer", {}) == ("InvalidArgumentException", message)
    assert await kinesis.fail("DescribeStreamConsumer", {"ConsumerName": "c"}) == ("InvalidArgumentException", message)
    assert await kinesis.fail("DeregisterStreamConsumer", {"StreamARN": ARN + "s"}) == (
        "InvalidArgumentException",
        message,
    )


async def test_unknown_consumers(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    missing = ("ResourceNotFoundException", f"Consumer x under stream s not found for account {ACCOUNT}.")
    assert await kinesis.fail("DescribeStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "x"}) == missing
    assert await kinesis.fail("DescribeStreamConsumer", {"ConsumerARN": consumer_arn("s", "x")}) == missing
    await kinesis.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c"})
    # The creation time in the ARN tells a consumer from an earlier one of the same name.
    stale = consumer_arn("s", "c", CREATED_S - 100)
    assert await kinesis.fail("DescribeStreamConsumer", {"ConsumerARN": stale}) == (
        "ResourceNotFoundException",
        f"Consumer c under stream s not found for account {ACCOUNT}.",
    )


async def test_list_stream_consumers(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    assert await kinesis.ok("ListStreamConsumers", {"StreamARN": ARN + "s"}) == {"Consumers": []}
    for i, name in enumerate(["zeta", "alpha", "mid"]):
        kinesis.clock.advance(1)
        out = await kinesis.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": name})
        assert out["Consumer"]["ConsumerCreationTimestamp"] == CREATED_S + i + 1
    everything = await kinesis.ok("ListStreamConsumers", {"StreamARN": ARN + "s"})
    assert [c["ConsumerName"] for c in everything["Consumers"]] == ["zeta", "alpha", "mid"]
    assert everything["Consumers"][0] == {
        "ConsumerName": "zeta",
        "ConsumerARN": consumer_arn("s", "zeta", CREATED_S + 1),
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": CREATED_S + 1,
    }
    assert "NextToken" not in everything
    names: list[str] = []
    page = await kinesis.ok("ListStreamConsumers", {"StreamARN": ARN + "s", "MaxResults": 2})
    names += [c["ConsumerName"] for c in page["Consumers"]]
    page = await kinesis.ok(
        "ListStreamConsumers", {"StreamARN": ARN + "s", "MaxResults": 2, "NextToken": page["NextToken"]}
    )
    names += [c["ConsumerName"] for c in page["Consumers"]]
    assert "NextToken" not in page
    assert names == ["zeta", "alpha", "mid"]
    assert await kinesis.fail("ListStreamConsumers", {"StreamARN": ARN + "s", "NextToken": "abc"}) == (
        "InvalidArgumentException",
        "Invalid NextToken.",
    )


async def test_list_consumers_of_a_missing_stream(kinesis: Kinesis) -> None:
    assert await kinesis.fail("ListStreamConsumers", {"StreamARN": ARN + "gone"}) == kinesis.not_found("gone")


async def test_deregister_by_arn_and_by_name(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    for name in ("a", "b"):
        await kinesis.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": name})
    assert await kinesis.ok("DeregisterStreamConsumer", {"ConsumerARN": consumer_arn("s", "a")}) == {}
    assert await kinesis.ok("DeregisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "b"}) == {}
    assert await kinesis.ok("ListStreamConsumers", {"StreamARN": ARN + "s"}) == {"Consumers": []}
    assert await kinesis.fail("DescribeStreamConsumer", {"ConsumerARN": consumer_arn("s", "a")}) == (
        "ResourceNotFoundException",
        f"Consumer a under stream s not found for account {ACCOUNT}.",
    )
    await kinesis.ok("DeleteStream", {"StreamName": "s"})


async def test_consumer_status_with_a_delay(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(status_delay_s=2.0)
    await k.create("s")
    k.clock.advance(2)
    await k.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c"})
    arn = consumer_arn("s", "c", CREATED_S + 2)

    async def status() -> str:
        out = await k.ok("DescribeStreamConsumer", {"ConsumerARN": arn})
        return str(out["ConsumerDescription"]["ConsumerStatus"])

    assert await status() == "CREATING"
    k.clock.advance(2)
    assert await status() == "ACTIVE"
    await k.ok("DeregisterStreamConsumer", {"ConsumerARN": arn})
    assert await status() == "DELETING"
    k.clock.advance(2)
    assert (await k.fail("DescribeStreamConsumer", {"ConsumerARN": arn}))[0] == "ResourceNotFoundException"


async def test_consumer_arns_are_not_taggable_streams(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    await kinesis.ok("RegisterStreamConsumer", {"StreamARN": ARN + "s", "ConsumerName": "c"})
    arn = consumer_arn("s", "c")
    kind, _ = await kinesis.fail("TagResource", {"ResourceARN": arn, "Tags": {"a": "b"}})
    assert kind == "ResourceNotFoundException"
    assert (await kinesis.ok("ListTagsForStream", {"StreamName": "s"}))["Tags"] == []
