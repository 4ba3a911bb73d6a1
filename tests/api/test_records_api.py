"""Data plane over the wire: PutRecord, PutRecords, GetShardIterator, GetRecords. Wrong JSON types, constraint
violations, then behaviour (base64 Data, epoch-second timestamps, partial failures, child shards)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from _shardline import START_MS

from ._asgi import Kinesis
from ._wire_cases import INTEGER, LIST, STRING, STRUCTURE, blob_cases, nest, one_error

ACCOUNT = "000000000000"
ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/"
HALF = 1 << 127
MAX_KEY = (1 << 128) - 1
HASH_KEY_PATTERN = r"^(0|([1-9]\d{0,38}))$"
SEQ_PATTERN = r"^(0|([1-9]\d{0,128}))$"
# AWS's recorded order (Java hash-set order, see shardline.errors.enum_rule), not the model's.
ITER_TYPES = "[AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_in(lo: int, hi: int) -> str:
    """A partition key whose MD5 hash key falls in [lo, hi]."""
    for i in range(10_000):
        k = f"k{i}"
        if lo <= int.from_bytes(hashlib.md5(k.encode()).digest(), "big") <= hi:
            return k
    raise AssertionError("no key found")


def _cases(op: str, member: str, table: list[tuple[Any, str]], **base: Any) -> list[Any]:
    return [pytest.param(op, {**base, **nest(member, v)}, msg, id=f"{op}.{member}={v!r}") for v, msg in table]


ENTRY = {"Data": "", "PartitionKey": "a"}
TIMESTAMP = [
    (True, "class java.lang.Boolean can not be converted to milliseconds since epoch"),
    ("yesterday", "class java.lang.String can not be converted to milliseconds since epoch"),
    ("23", "class java.lang.String can not be converted to milliseconds since epoch"),
    ("2020-12-09T07:04:00Z", "class java.lang.String can not be converted to milliseconds since epoch"),
    ([], "Start of list found where not expected"),
    ({}, "Start of structure or map found where not expected."),
]

# ======================================================================== 1. serialization
SERIALIZATION = [
    *_cases("PutRecord", "StreamName", STRING, Data="", PartitionKey="a"),
    *_cases("PutRecord", "Data", blob_cases(), StreamName="s", PartitionKey="a"),
    *_cases("PutRecord", "PartitionKey", STRING, StreamName="s", Data=""),
    *_cases("PutRecord", "ExplicitHashKey", STRING, StreamName="s", Data="", PartitionKey="a"),
    *_cases("PutRecord", "SequenceNumberForOrdering", STRING, StreamName="s", Data="", PartitionKey="a"),
    *_cases("PutRecords", "Records", LIST, StreamName="s"),
    *_cases("PutRecords", "Records.0", STRUCTURE, StreamName="s"),
    *_cases("PutRecords", "Records.0.Data", blob_cases(), StreamName="s"),
    *_cases("PutRecords", "Records.0.PartitionKey", STRING, StreamName="s"),
    *_cases("PutRecords", "Records.0.ExplicitHashKey", STRING, StreamName="s"),
    *_cases("PutRecords", "StreamName", STRING, Records=[ENTRY]),
    *_cases("GetShardIterator", "ShardId", STRING, StreamName="s", ShardIteratorType="LATEST"),
    *_cases("GetShardIterator", "ShardIteratorType", STRING, StreamName="s", ShardId="0"),
    *_cases("GetShardIterator", "StartingSequenceNumber", STRING, StreamName="s", ShardId="0"),
    *_cases("GetShardIterator", "Timestamp", TIMESTAMP, StreamName="s", ShardId="0", ShardIteratorType="AT_TIMESTAMP"),
    *_cases("GetRecords", "ShardIterator", STRING),
    *_cases("GetRecords", "Limit", INTEGER, ShardIterator="x"),
]


@pytest.mark.parametrize(("op", "payload", "message"), SERIALIZATION)
async def test_wrong_json_type_is_a_serialization_exception(
    kinesis: Kinesis, op: str, payload: Any, message: str
) -> None:
    assert await kinesis.serialization(op, payload) == message


async def test_bad_base64_is_reported_before_the_stream_lookup(kinesis: Kinesis) -> None:
    msg = await kinesis.serialization("PutRecord", {"StreamName": "missing", "Data": "abc", "PartitionKey": "a"})
    assert (
        msg
        == "'abc' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3"
    )


# ======================================================================== 2. validation
async def test_get_records_needs_an_iterator(kinesis: Kinesis) -> None:
    assert await kinesis.validation("GetRecords", {}) == (
        "1 validation error detected: Value null at 'shardIterator' failed to satisfy constraint: "
        "Member must not be null"
    )


async def test_get_shard_iterator_needs_shard_and_type(kinesis: Kinesis) -> None:
    assert await kinesis.validation("GetShardIterator", {"StreamName": "s"}) == (
        "2 validation errors detected: "
        "Value null at 'shardId' failed to satisfy constraint: Member must not be null; "
        "Value null at 'shardIteratorType' failed to satisfy constraint: Member must not be null"
    )


async def test_put_records_entry_violations_name_their_position(kinesis: Kinesis) -> None:
    payload = {"StreamName": "", "Records": [ENTRY, {"Data": "", "PartitionKey": "", "ExplicitHashKey": ""}]}
    assert await kinesis.validation("PutRecords", payload) == (
        "4 validation errors detected: "
        "Value '' at 'records.2.member.explicitHashKey' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {HASH_KEY_PATTERN}; "
        "Value '' at 'records.2.member.partitionKey' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
        "Value '' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "
        "Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
    )


async def test_at_most_ten_violations_are_listed(kinesis: Kinesis) -> None:
    # AWS stops at ten violations and counts only those it lists.
    records = [{"Data": "", "PartitionKey": ""} for _ in range(12)]
    msg = await kinesis.validation("PutRecords", {"StreamName": "s", "Records": records})
    parts = [
        f"Value '' at 'records.{i}.member.partitionKey' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
        for i in range(1, 11)
    ]
    assert msg == "10 validation errors detected: " + "; ".join(parts)


async def test_no_more_than_ten_violations_are_listed(kinesis: Kinesis) -> None:
    records = [{"Data": "", "PartitionKey": ""} for _ in range(12)]
    msg = await kinesis.validation("PutRecords", {"StreamName": "s", "Records": records})
    assert msg is not None
    assert msg.count("failed to satisfy constraint") == 10
    assert "records.10.member" in msg
    assert "records.11.member" not in msg


async def test_too_many_records(kinesis: Kinesis) -> None:
    msg = await kinesis.validation("PutRecords", {"StreamName": "s", "Records": [ENTRY] * 501})
    assert msg is not None
    assert msg.startswith("1 validation error detected: Value '[")
    assert msg.endswith(
        "]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"
    )


RECORD_VALIDATION = [
    ("PutRecord", {"StreamName": "s", "PartitionKey": "a"}, None, "data", "Member must not be null"),
    ("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": ""}, "", "partitionKey",
     "Member must have length greater than or equal to 1"),
    ("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": "p" * 257}, "p" * 257, "partitionKey",
     "Member must have length less than or equal to 256"),
    ("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": "a", "ExplicitHashKey": "-1"}, "-1",
     "explicitHashKey", f"Member must satisfy regular expression pattern: {HASH_KEY_PATTERN}"),
    ("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": "a", "ExplicitHashKey": "1" * 40}, "1" * 40,
     "explicitHashKey", f"Member must satisfy regular expression pattern: {HASH_KEY_PATTERN}"),
    # AWS quirk: the model's patterns are Java's, where \d is an ASCII digit: Arabic-Indic digits are refused.
    ("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": "a", "ExplicitHashKey": "1\u0661\u0662"},
     "1\u0661\u0662", "explicitHashKey", f"Member must satisfy regular expression pattern: {HASH_KEY_PATTERN}"),
    ("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": "a", "SequenceNumberForOrdering": "01"}, "01",
     "sequenceNumberForOrdering", f"Member must satisfy regular expression pattern: {SEQ_PATTERN}"),
    ("PutRecord", {"StreamName": "s b", "Data": "", "PartitionKey": "a"}, "s b", "streamName",
     "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
    ("PutRecords", {"StreamName": "s"}, None, "records", "Member must not be null"),
    ("PutRecords", {"StreamName": "s", "Records": []}, "[]", "records",
     "Member must have length greater than or equal to 1"),
    ("PutRecords", {"StreamName": "s", "Records": [ENTRY, None]}, None, "records.2.member", "Member must not be null"),
    ("PutRecords", {"StreamName": "s", "Records": [{"PartitionKey": "a"}]}, None, "records.1.member.data",
     "Member must not be null"),
    ("GetShardIterator", {"StreamName": "s", "ShardId": "0", "ShardIteratorType": "OLDEST"}, "OLDEST",
     "shardIteratorType", f"Member must satisfy enum value set: {ITER_TYPES}"),
    ("GetShardIterator", {"StreamName": "s", "ShardId": "0", "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                          "StartingSequenceNumber": "12a"}, "12a", "startingSequenceNumber",
     f"Member must satisfy regular expression pattern: {SEQ_PATTERN}"),
    ("GetShardIterator", {"StreamName": "s", "ShardId": "s" * 129, "ShardIteratorType": "LATEST"}, "s" * 129,
     "shardId", "Member must have length less than or equal to 128"),
    ("GetRecords", {"ShardIterator": ""}, "", "shardIterator", "Member must have length greater than or equal to 1"),
    ("GetRecords", {"ShardIterator": "x" * 513}, "x" * 513, "shardIterator",
     "Member must have length less than or equal to 512"),
    ("GetRecords", {"ShardIterator": "x", "Limit": 0}, 0, "limit", "Member must have value greater than or equal to 1"),
    ("GetRecords", {"ShardIterator": "x", "Limit": 10001}, 10001, "limit",
     "Member must have value less than or equal to 10000"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "payload", "value", "path", "rule"), RECORD_VALIDATION)
async def test_one_constraint_violation(
    kinesis: Kinesis, op: str, payload: Any, *, value: Any, path: str, rule: Any
) -> None:
    assert await kinesis.validation(op, payload) == one_error(value, path, rule)


async def test_empty_shard_id_breaks_two_constraints(kinesis: Kinesis) -> None:
    payload = {"StreamName": "s", "ShardId": "", "ShardIteratorType": "LATEST"}
    assert await kinesis.validation("GetShardIterator", payload) == (
        "2 validation errors detected: "
        "Value '' at 'shardId' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "
        "Value '' at 'shardId' failed to satisfy constraint: Member must have length greater than or equal to 1"
    )


async def test_data_over_the_record_limit(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    data = b64(b"\0" * (1024 * 1024 + 1))
    msg = await kinesis.validation("PutRecord", {"StreamName": "s", "Data": data, "PartitionKey": "a"})
    assert msg == one_error(
        "java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]",
        "data",
        "Member must have length less than or equal to 1048576",
    )


async def test_put_record_without_partition_key_is_a_client_error(kinesis: Kinesis) -> None:
    # The model leaves PartitionKey optional (streams with the AUTO strategy ignore it); a stream with the default
    # USER_PARTITION_KEY strategy requires it, so leaving it out is the caller's error, never a server failure.
    await kinesis.create("s")
    r = await kinesis.send("PutRecord", {"StreamName": "s", "Data": b64(b"x")})
    assert r.status == 400, r.body
    kind, msg = r.error
    assert kind == "ValidationException"
    assert msg is not None
    assert msg.startswith("1 validation error detected: Value null at 'partitionKey' failed to satisfy constraint: ")


async def test_put_records_without_partition_key_is_a_client_error(kinesis: Kinesis) -> None:
    await kinesis.create("s")
    r = await kinesis.send("PutRecords", {"StreamName": "s", "Records": [ENTRY, {"Data": b64(b"x")}]})
    assert r.status == 400, r.body
    kind, msg = r.error
    assert kind == "ValidationException"
    assert msg is not None
    assert msg.startswith(
        "1 validation error detected: Value null at 'records.2.member.partitionKey' failed to satisfy constraint: "
    )


async def test_put_needs_a_stream(kinesis: Kinesis) -> None:
    assert await kinesis.fail("PutRecord", {"Data": "", "PartitionKey": "a"}) == (
        "ValidationException",
        "Either StreamName or StreamARN should be provided.",
    )


# ======================================================================== 3. behaviour
async def test_put_record_answers_shard_and_sequence(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    low = await kinesis.put("s", b"a", key=key_in(0, HALF - 1))
    assert set(low) == {"ShardId", "SequenceNumber"}  # AWS quirk: no EncryptionType on an unencrypted stream
    assert low["ShardId"] == "shardId-000000000000"
    assert low["SequenceNumber"].isdigit()
    high = await kinesis.put("s", b"b", key=key_in(HALF, MAX_KEY))
    assert high["ShardId"] == "shardId-000000000001"
    again = await kinesis.put("s", b"c", key=key_in(0, HALF - 1))
    assert int(again["SequenceNumber"]) > int(low["SequenceNumber"])


async def test_explicit_hash_key_routes(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    lo = key_in(0, HALF - 1)
    put = await kinesis.put("s", b"x", key=lo, ExplicitHashKey=str(MAX_KEY))
    assert put["ShardId"] == "shardId-000000000001"
    put = await kinesis.put("s", b"x", key=lo, ExplicitHashKey=str(HALF - 1))
    assert put["ShardId"] == "shardId-000000000000"


async def test_explicit_hash_key_out_of_range(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    payload = {"StreamName": "s", "Data": "", "PartitionKey": "a", "ExplicitHashKey": str(1 << 128)}
    assert await kinesis.fail("PutRecord", payload) == (
        "InvalidArgumentException",
        f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {1 << 128}",
    )


async def test_sequence_number_for_ordering(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    first = await kinesis.put("s", b"1")
    second = await kinesis.put("s", b"2", SequenceNumberForOrdering=first["SequenceNumber"])
    assert int(second["SequenceNumber"]) > int(first["SequenceNumber"])
    payload = {"StreamName": "s", "Data": "", "PartitionKey": "a", "SequenceNumberForOrdering": "1"}
    assert await kinesis.fail("PutRecord", payload) == (
        "InvalidArgumentException",
        f"ExclusiveMinimumSequenceNumber 1 used in PutRecord on stream s under account {ACCOUNT} is invalid.",
    )


async def test_put_record_to_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamName": "gone", "Data": "", "PartitionKey": "a"}
    assert await kinesis.fail("PutRecord", payload) == kinesis.not_found("gone")
    assert await kinesis.fail("PutRecords", {"StreamName": "gone", "Records": [ENTRY]}) == kinesis.not_found("gone")


async def test_put_record_by_arn(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    out = await kinesis.ok("PutRecord", {"StreamARN": ARN + "s", "Data": b64(b"x"), "PartitionKey": "a"})
    assert out["ShardId"] == "shardId-000000000000"


async def test_put_record_dry_run_writes_nothing(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    r = await kinesis.send("PutRecord", {"StreamName": "s", "Data": b64(b"x"), "PartitionKey": "a", "DryRun": True})
    got = await kinesis.ok("GetRecords", {"ShardIterator": await kinesis.iterator("s")})
    assert got["Records"] == []
    assert r.status == 400, r.body
    assert r.error[0] == "DryRunOperationException"


async def test_put_records_in_request_order(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    lo, hi = key_in(0, HALF - 1), key_in(HALF, MAX_KEY)
    records = [
        {"Data": b64(b"0"), "PartitionKey": lo},
        {"Data": b64(b"1"), "PartitionKey": hi},
        {"Data": b64(b"2"), "PartitionKey": lo},
        {"Data": b64(b"3"), "PartitionKey": lo, "ExplicitHashKey": str(MAX_KEY)},
    ]
    out = await kinesis.ok("PutRecords", {"StreamName": "s", "Records": records})
    assert out["FailedRecordCount"] == 0
    assert "EncryptionType" not in out
    assert [r["ShardId"] for r in out["Records"]] == [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000000",
        "shardId-000000000001",
    ]
    assert all(set(r) == {"SequenceNumber", "ShardId"} for r in out["Records"])
    seqs = [int(r["SequenceNumber"]) for r in out["Records"]]
    assert seqs[0] < seqs[2]
    assert seqs[1] < seqs[3]
    got = await kinesis.ok("GetRecords", {"ShardIterator": await kinesis.iterator("s", "shardId-000000000001")})
    assert [base64.b64decode(r["Data"]) for r in got["Records"]] == [b"1", b"3"]


async def test_put_records_partial_failures_stay_in_place(make_kinesis: Callable[..., Awaitable[Kinesis]]) -> None:
    k = await make_kinesis(enforce_limits=True, shard_write_records_per_s=1)
    await k.create("s", 2)
    lo, hi = key_in(0, HALF - 1), key_in(HALF, MAX_KEY)
    records = [{"Data": b64(str(i).encode()), "PartitionKey": key} for i, key in enumerate([lo, lo, hi, lo])]
    out = await k.ok("PutRecords", {"StreamName": "s", "Records": records})
    assert out["FailedRecordCount"] == 2
    rate = f"Rate exceeded for shard shardId-000000000000 in stream s under account {ACCOUNT}."
    failed = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": rate}
    assert out["Records"][1] == failed
    assert out["Records"][3] == failed
    assert out["Records"][0]["ShardId"] == "shardId-000000000000"
    assert out["Records"][2]["ShardId"] == "shardId-000000000001"
    assert "ErrorCode" not in out["Records"][0]
    assert "ErrorCode" not in out["Records"][2]
    got = await k.ok("GetRecords", {"ShardIterator": await k.iterator("s")})
    assert [base64.b64decode(r["Data"]) for r in got["Records"]] == [b"0"]
    assert await k.fail("PutRecord", {"StreamName": "s", "Data": "", "PartitionKey": lo}) == (
        "ProvisionedThroughputExceededException",
        rate,
    )
    k.clock.advance(1)
    await k.put("s", b"later", key=lo)


async def test_put_records_with_a_bad_hash_key_fails_whole(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    records = [ENTRY, {"Data": "", "PartitionKey": "a", "ExplicitHashKey": str(1 << 128)}]
    kind, _ = await kinesis.fail("PutRecords", {"StreamName": "s", "Records": records})
    assert kind == "InvalidArgumentException"
    got = await kinesis.ok("GetRecords", {"ShardIterator": await kinesis.iterator("s")})
    assert got["Records"] == []


async def test_put_records_over_five_mib(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    big = b64(b"\1" * (900 * 1024))
    records = [{"Data": big, "PartitionKey": "a"} for _ in range(6)]
    assert await kinesis.fail("PutRecords", {"StreamName": "s", "Records": records}) == (
        "InvalidArgumentException",
        "Records size exceeds 5 MB limit",
    )


async def test_get_records_returns_base64_data_and_epoch_seconds(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    payloads = [bytes(range(256)), b"", b"hello"]
    seqs = []
    for i, data in enumerate(payloads):
        kinesis.clock.advance(ms=1234 if i == 0 else 1000)
        seqs.append((await kinesis.put("s", data, key=f"pk{i}"))["SequenceNumber"])
    r = await kinesis.send("GetRecords", {"ShardIterator": await kinesis.iterator("s")})
    assert r.status == 200
    out = r.json()
    assert out["MillisBehindLatest"] == 0
    assert isinstance(out["NextShardIterator"], str)
    assert "ChildShards" not in out
    assert out["Records"] == [
        {
            "SequenceNumber": seqs[0],
            "ApproximateArrivalTimestamp": 1_700_000_001.234,
            "Data": b64(payloads[0]),
            "PartitionKey": "pk0",
        },
        {
            "SequenceNumber": seqs[1],
            "ApproximateArrivalTimestamp": 1_700_000_002.234,
            "Data": "",
            "PartitionKey": "pk1",
        },
        {
            "SequenceNumber": seqs[2],
            "ApproximateArrivalTimestamp": 1_700_000_003.234,
            "Data": b64(b"hello"),
            "PartitionKey": "pk2",
        },
    ]
    # A number on the wire, not a string: SDKs parse the JSON protocol's timestamps as epoch seconds.
    assert b'"ApproximateArrivalTimestamp":1700000001.234' in r.body


async def test_get_records_limit_and_next_iterator(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    for i in range(5):
        await kinesis.put("s", str(i).encode())
    it = await kinesis.iterator("s")
    first = await kinesis.ok("GetRecords", {"ShardIterator": it, "Limit": 2})
    assert [base64.b64decode(r["Data"]) for r in first["Records"]] == [b"0", b"1"]
    rest = await kinesis.ok("GetRecords", {"ShardIterator": first["NextShardIterator"]})
    assert [base64.b64decode(r["Data"]) for r in rest["Records"]] == [b"2", b"3", b"4"]
    empty = await kinesis.ok("GetRecords", {"ShardIterator": rest["NextShardIterator"]})
    assert empty["Records"] == []
    await kinesis.put("s", b"5")
    late = await kinesis.ok("GetRecords", {"ShardIterator": empty["NextShardIterator"]})
    assert [base64.b64decode(r["Data"]) for r in late["Records"]] == [b"5"]


async def test_millis_behind_latest(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    for _ in range(3):
        await kinesis.put("s", b"x")
        kinesis.clock.advance(1)
    kinesis.clock.advance(7)
    out = await kinesis.ok("GetRecords", {"ShardIterator": await kinesis.iterator("s"), "Limit": 1})
    # The next unread record arrived at +1 s; it is now +10 s.
    assert out["MillisBehindLatest"] == 9000


async def test_iterator_types(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    seqs = []
    for i in range(3):
        seqs.append((await kinesis.put("s", str(i).encode()))["SequenceNumber"])
        kinesis.clock.advance(10)

    async def read(**kw: Any) -> list[bytes]:
        out = await kinesis.ok("GetRecords", {"ShardIterator": await kinesis.iterator("s", **kw)})
        return [base64.b64decode(r["Data"]) for r in out["Records"]]

    assert await read(kind="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1]) == [b"1", b"2"]
    assert await read(kind="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1]) == [b"2"]
    assert await read(kind="LATEST") == []
    assert await read(kind="AT_TIMESTAMP", Timestamp=(START_MS + 10_000) / 1000) == [b"1", b"2"]
    assert await read(kind="AT_TIMESTAMP", Timestamp=(START_MS + 10_001) / 1000) == [b"2"]
    assert await read(shard="0") == [b"0", b"1", b"2"]
    assert await read(shard="shard-0") == [b"0", b"1", b"2"]


GET_SHARD_ITERATOR_ERRORS = [
    ({"ShardId": "bogus", "ShardIteratorType": "LATEST"}, "ResourceNotFoundException",
     f"Could not find shard bogus in stream s under account {ACCOUNT}."),
    ({"ShardId": "shardId-000000000007", "ShardIteratorType": "LATEST"}, "ResourceNotFoundException",
     f"Shard shardId-000000000007 in stream s under account {ACCOUNT} does not exist"),
    ({"ShardId": "0", "ShardIteratorType": "TRIM_HORIZON", "StartingSequenceNumber": "1"}, "InvalidArgumentException",
     "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
     "(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified TRIM_HORIZON and also a "
     "StartingSequenceNumber."),
    ({"ShardId": "0", "ShardIteratorType": "AFTER_SEQUENCE_NUMBER"}, "InvalidArgumentException",
     "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
     "(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified AFTER_SEQUENCE_NUMBER and no "
     "StartingSequenceNumber."),
    ({"ShardId": "0", "ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": "123"},
     "InvalidArgumentException",
     f"StartingSequenceNumber 123 used in GetShardIterator on shard shardId-000000000000 in stream s under account "
     f"{ACCOUNT} is invalid."),
    ({"ShardId": "0", "ShardIteratorType": "AT_TIMESTAMP"}, "InvalidArgumentException",
     "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
     "Current request has no timestamp parameter."),
    ({"ShardId": "0", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": (START_MS + 5000) / 1000},
     "InvalidArgumentException",
     "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. "
     f"timestampInMillis: {START_MS + 5000}, currentTimestampInMillis: {START_MS}"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "kind", "message"), GET_SHARD_ITERATOR_ERRORS)
async def test_get_shard_iterator_errors(kinesis: Kinesis, payload: Any, kind: str, message: str) -> None:
    await kinesis.create("s", 1)
    assert await kinesis.fail("GetShardIterator", {"StreamName": "s", **payload}) == (kind, message)


async def test_sequence_number_of_another_shard(kinesis: Kinesis) -> None:
    await kinesis.create("s", 2)
    seq = (await kinesis.put("s", b"x", key=key_in(HALF, MAX_KEY)))["SequenceNumber"]
    payload = {"StreamName": "s", "ShardId": "0", "ShardIteratorType": "AT_SEQUENCE_NUMBER"}
    assert await kinesis.fail("GetShardIterator", {**payload, "StartingSequenceNumber": seq}) == (
        "InvalidArgumentException",
        "Invalid StartingSequenceNumber. It encodes shardId-000000000001, while it was used in a call to a shard "
        "with shardId-000000000000",
    )


async def test_iterator_of_a_missing_stream(kinesis: Kinesis) -> None:
    payload = {"StreamName": "gone", "ShardId": "shardId-000000000000", "ShardIteratorType": "LATEST"}
    assert await kinesis.fail("GetShardIterator", payload) == (
        "ResourceNotFoundException",
        f"Shard shardId-000000000000 in stream gone under account {ACCOUNT} does not exist",
    )


async def test_get_records_with_a_forged_iterator(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    it = await kinesis.iterator("s")
    raw = bytearray(base64.b64decode(it))
    raw[5] ^= 1
    for bad in ("not-an-iterator", b64(bytes(raw)), "AAAA"):
        assert await kinesis.fail("GetRecords", {"ShardIterator": bad}) == (
            "InvalidArgumentException",
            "Invalid ShardIterator.",
        )


async def test_get_records_with_an_expired_iterator(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    it = await kinesis.iterator("s")
    kinesis.clock.advance(ms=300_000)
    await kinesis.ok("GetRecords", {"ShardIterator": it})
    kinesis.clock.advance(ms=1)
    assert await kinesis.fail("GetRecords", {"ShardIterator": it}) == (
        "ExpiredIteratorException",
        "Iterator expired. The iterator was created at time Tue Nov 14 22:13:20 UTC 2023 while right now it is "
        "Tue Nov 14 22:18:20 UTC 2023 which is further in the future than the tolerated delay of 300000 "
        "milliseconds.",
    )


async def test_get_records_after_the_stream_is_deleted(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    it = await kinesis.iterator("s")
    await kinesis.ok("DeleteStream", {"StreamName": "s"})
    assert await kinesis.fail("GetRecords", {"ShardIterator": it}) == (
        "ResourceNotFoundException",
        f"Shard shardId-000000000000 in stream s under account {ACCOUNT} does not exist",
    )


async def test_closed_shard_ends_with_child_shards(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    await kinesis.put("s", b"before")
    it = await kinesis.iterator("s")
    await kinesis.ok(
        "SplitShard", {"StreamName": "s", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": str(HALF)}
    )
    out = await kinesis.ok("GetRecords", {"ShardIterator": it})
    assert [base64.b64decode(r["Data"]) for r in out["Records"]] == [b"before"]
    assert "NextShardIterator" not in out
    assert out["ChildShards"] == [
        {
            "ShardId": "shardId-000000000001",
            "ParentShards": ["shardId-000000000000"],
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(HALF - 1)},
        },
        {
            "ShardId": "shardId-000000000002",
            "ParentShards": ["shardId-000000000000"],
            "HashKeyRange": {"StartingHashKey": str(HALF), "EndingHashKey": str(MAX_KEY)},
        },
    ]
    after = await kinesis.put("s", b"after", key=key_in(0, HALF - 1))
    assert after["ShardId"] == "shardId-000000000001"


async def test_after_the_last_sequence_number_of_a_closed_shard(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    await kinesis.ok("SplitShard", {"StreamName": "s", "ShardToSplit": "0", "NewStartingHashKey": str(HALF)})
    shards = (await kinesis.ok("ListShards", {"StreamName": "s"}))["Shards"]
    end = shards[0]["SequenceNumberRange"]["EndingSequenceNumber"]
    payload = {"StreamName": "s", "ShardId": "0", "ShardIteratorType": "AFTER_SEQUENCE_NUMBER"}
    assert await kinesis.fail("GetShardIterator", {**payload, "StartingSequenceNumber": end}) == (
        "InvalidArgumentException",
        "Invalid SequenceNumber for ShardIteratorType AFTER_SEQUENCE_NUMBER, SequenceNumber has reached max "
        "possible value for the shard.",
    )


async def test_data_plane_by_stream_arn(kinesis: Kinesis) -> None:
    await kinesis.create("s", 1)
    put = await kinesis.ok(
        "PutRecords", {"StreamARN": ARN + "s", "Records": [{"Data": b64(b"x"), "PartitionKey": "a"}]}
    )
    assert put["FailedRecordCount"] == 0
    payload = {"StreamARN": ARN + "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}
    it = (await kinesis.ok("GetShardIterator", payload))["ShardIterator"]
    got = await kinesis.ok("GetRecords", {"ShardIterator": it, "StreamARN": ARN + "s"})
    assert [base64.b64decode(r["Data"]) for r in got["Records"]] == [b"x"]
    other = {**payload, "StreamName": "t"}
    assert await kinesis.fail("GetShardIterator", other) == (
        "InvalidArgumentException",
        f"StreamName t and StreamARN {ARN}s do not refer to the same stream.",
    )
