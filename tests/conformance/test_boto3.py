"""Every Kinesis action and every error type through an unmodified boto3 client against a running server."""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from xml.etree import ElementTree

import cbor2
import pytest
from botocore.exceptions import ClientError

from _shardline import UNVERIFIED_SIGNATURE, kinesis_cbor

from .conftest import Streams

MAX_KEY = (1 << 128) - 1
ALL_METRICS = {
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
}
SHARD_LIMIT_TAIL = (
    "Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) "
    "for current limits and how to request higher limits."
)


@contextmanager
def raises(code: str, message: str | None = None, *, match: str | None = None) -> Iterator[Any]:
    """Expect one Kinesis error: its code, and its exact message (or a full-match pattern) when AWS's is known."""
    with pytest.raises(ClientError) as info:
        yield info
    resp = info.value.response
    assert resp["Error"]["Code"] == code, resp["Error"]
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert resp["ResponseMetadata"].get("RequestId"), "no x-amzn-RequestId on an error"
    if message is not None:
        assert resp["Error"]["Message"] == message
    if match is not None:
        assert re.fullmatch(match, resp["Error"]["Message"]), resp["Error"]["Message"]


def shard_num(i: int) -> str:
    return f"shardId-{i:012d}"


def ranges_cover_key_space(shards: list[dict[str, Any]]) -> bool:
    spans = sorted((int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in shards)
    if spans[0][0] != 0 or spans[-1][1] != MAX_KEY:
        return False
    return all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(spans))


def open_shards(kinesis: Any, name: str) -> list[dict[str, Any]]:
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def ids(shards: list[dict[str, Any]]) -> list[str]:
    return [s["ShardId"] for s in shards]


# ----------------------------------------------------------------- streams: create, describe, list
def test_create_describe_and_summary(kinesis: Any, streams: Any) -> None:
    name = streams.create(3, label="desc", Tags={"team": "core"})
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert desc["StreamName"] == name
    assert desc["StreamStatus"] == "ACTIVE"
    assert desc["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert desc["RetentionPeriodHours"] == 24
    assert desc["HasMoreShards"] is False
    assert desc.get("EncryptionType", "NONE") == "NONE"
    assert re.fullmatch(rf"arn:aws:kinesis:us-east-1:\d{{12}}:stream/{name}", desc["StreamARN"])
    assert isinstance(desc["StreamCreationTimestamp"], dt.datetime)
    assert len(desc["Shards"]) == 3
    assert ranges_cover_key_space(desc["Shards"])
    for sh in desc["Shards"]:
        assert sh["SequenceNumberRange"]["StartingSequenceNumber"].isdigit()
        assert "EndingSequenceNumber" not in sh["SequenceNumberRange"]
        assert "ParentShardId" not in sh

    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["StreamARN"] == desc["StreamARN"]
    assert summary["OpenShardCount"] == 3
    assert summary["ConsumerCount"] == 0
    assert summary["RetentionPeriodHours"] == 24
    assert summary["StreamCreationTimestamp"] == desc["StreamCreationTimestamp"]
    # A StreamId would make botocore route later calls that carry it to AWS itself, past endpoint_url.
    assert "StreamId" not in summary
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == [{"Key": "team", "Value": "core"}]


def test_describe_stream_paginator_walks_shards(kinesis: Any, streams: Any) -> None:
    name = streams.create(3, label="dpage")
    pages = list(kinesis.get_paginator("describe_stream").paginate(StreamName=name, PaginationConfig={"PageSize": 1}))
    assert [len(p["StreamDescription"]["Shards"]) for p in pages] == [1, 1, 1]
    assert [p["StreamDescription"]["HasMoreShards"] for p in pages] == [True, True, False]
    walked = [s["ShardId"] for p in pages for s in p["StreamDescription"]["Shards"]]
    assert walked == ids(kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"])
    after = kinesis.describe_stream(StreamName=name, ExclusiveStartShardId=walked[0], Limit=1)["StreamDescription"]
    assert ids(after["Shards"]) == [walked[1]]
    assert after["HasMoreShards"] is True


def test_list_streams_paginator_and_exclusive_start(kinesis: Any, streams: Any) -> None:
    mine = sorted(streams.create(1, label="ls") for _ in range(3))
    names: list[str] = []
    summaries: list[str] = []
    for page in kinesis.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["StreamNames"]) <= 2
        names += page["StreamNames"]
        summaries += [s["StreamName"] for s in page.get("StreamSummaries", [])]
    assert len(names) == len(set(names))
    assert names == sorted(names)
    assert set(mine) <= set(names)
    if summaries:
        assert summaries == names
    nxt = kinesis.list_streams(ExclusiveStartStreamName=mine[0], Limit=1)
    assert nxt["StreamNames"] == [names[names.index(mine[0]) + 1]]
    assert nxt["HasMoreStreams"] is (names.index(mine[0]) + 2 < len(names))


def test_list_shards_next_token_and_filters(kinesis: Any, streams: Any) -> None:
    name = streams.create(4, label="lsh")
    account = streams.account(name)
    first = kinesis.list_shards(StreamName=name, MaxResults=3)
    assert ids(first["Shards"]) == [shard_num(i) for i in range(3)]
    rest = kinesis.list_shards(NextToken=first["NextToken"], MaxResults=3)
    assert ids(rest["Shards"]) == [shard_num(3)]
    assert "NextToken" not in rest
    # Page by page with the token alone: AWS rejects the StreamName that botocore's ListShards paginator repeats.
    walked: list[str] = []
    page = kinesis.list_shards(StreamName=name, MaxResults=1)
    while True:
        walked += ids(page["Shards"])
        if "NextToken" not in page:
            break
        page = kinesis.list_shards(NextToken=page["NextToken"], MaxResults=1)
    assert walked == [shard_num(i) for i in range(4)]
    after = kinesis.list_shards(StreamName=name, ExclusiveStartShardId=shard_num(1))
    assert ids(after["Shards"]) == [shard_num(2), shard_num(3)]

    with raises("InvalidArgumentException", "NextToken and StreamName cannot be provided together."):
        kinesis.list_shards(StreamName=name, NextToken=first["NextToken"])
    with raises("InvalidArgumentException", "Either NextToken or StreamName should be provided."):
        kinesis.list_shards()
    with raises("ResourceNotFoundException", f"Stream {name}-x under account {account} not found."):
        kinesis.list_shards(StreamName=f"{name}-x")

    created = streams.summary(name)["StreamCreationTimestamp"]
    s0 = kinesis.list_shards(StreamName=name)["Shards"][0]
    mid = (int(s0["HashKeyRange"]["StartingHashKey"]) + int(s0["HashKeyRange"]["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=name, ShardToSplit=shard_num(0), NewStartingHashKey=str(mid))
    streams.wait_active(name)

    def filtered(**f: Any) -> list[str]:
        return ids(kinesis.list_shards(StreamName=name, ShardFilter=f)["Shards"])

    every = [shard_num(i) for i in range(6)]
    assert ids(kinesis.list_shards(StreamName=name)["Shards"]) == every
    assert filtered(Type="AT_LATEST") == every[1:]
    assert filtered(Type="AT_TRIM_HORIZON") == every[:4]
    assert filtered(Type="FROM_TRIM_HORIZON") == every
    assert filtered(Type="AFTER_SHARD_ID", ShardId=shard_num(3)) == every[4:]
    assert filtered(Type="AT_TIMESTAMP", Timestamp=created) == every[:4]
    assert filtered(Type="FROM_TIMESTAMP", Timestamp=created) == every


# ----------------------------------------------------------------- data plane
def test_put_record_and_every_iterator_type(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="iter")
    account = streams.account(name)
    payloads = [b"zero", b"\x00\xff\x10binary", b"", b"three" * 100, "vier \u00fc".encode()]
    puts = [kinesis.put_record(StreamName=name, Data=d, PartitionKey=f"k{i}") for i, d in enumerate(payloads)]
    assert {p["ShardId"] for p in puts} == {shard_num(0)}
    seqs = [p["SequenceNumber"] for p in puts]
    assert all(s.isdigit() for s in seqs)
    assert [int(s) for s in seqs] == sorted({int(s) for s in seqs})
    assert puts[0].get("EncryptionType", "NONE") == "NONE"

    def read(kind: str, **kw: Any) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = streams.read(streams.iterator(name, shard_num(0), kind, **kw))[0]
        return records

    everything = read("TRIM_HORIZON")
    assert [r["Data"] for r in everything] == payloads
    assert [r["PartitionKey"] for r in everything] == [f"k{i}" for i in range(5)]
    assert [r["SequenceNumber"] for r in everything] == seqs
    arrivals = [r["ApproximateArrivalTimestamp"] for r in everything]
    assert arrivals == sorted(arrivals)

    assert [r["SequenceNumber"] for r in read("AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])] == seqs[2:]
    assert [r["SequenceNumber"] for r in read("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])] == seqs[3:]
    at = arrivals[2]
    expected = [r["SequenceNumber"] for r in everything if r["ApproximateArrivalTimestamp"] >= at]
    assert [r["SequenceNumber"] for r in read("AT_TIMESTAMP", Timestamp=at)] == expected
    assert seqs[2] in expected
    old = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert [r["SequenceNumber"] for r in read("AT_TIMESTAMP", Timestamp=old)] == seqs

    ordered = kinesis.put_record(
        StreamName=name, Data=b"ordered", PartitionKey="k0", SequenceNumberForOrdering=seqs[-1]
    )
    assert int(ordered["SequenceNumber"]) > int(seqs[-1])
    seqs.append(ordered["SequenceNumber"])
    payloads.append(b"ordered")

    latest = kinesis.get_records(ShardIterator=streams.iterator(name, shard_num(0), "LATEST"))
    assert latest["Records"] == []
    assert latest["MillisBehindLatest"] == 0
    late = kinesis.put_record(StreamName=name, Data=b"late", PartitionKey="late")
    after_latest = kinesis.get_records(ShardIterator=latest["NextShardIterator"])
    assert [r["Data"] for r in after_latest["Records"]] == [b"late"]
    assert after_latest["Records"][0]["SequenceNumber"] == late["SequenceNumber"]

    page = kinesis.get_records(ShardIterator=streams.iterator(name, shard_num(0)), Limit=2)
    assert [r["SequenceNumber"] for r in page["Records"]] == seqs[:2]
    nxt = kinesis.get_records(ShardIterator=page["NextShardIterator"], Limit=1)
    assert [r["SequenceNumber"] for r in nxt["Records"]] == [seqs[2]]

    must = "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) "
    with raises("InvalidArgumentException", must + "TRIM_HORIZON or LATEST and no StartingSequenceNumber. "
                "Request specified AT_SEQUENCE_NUMBER and no StartingSequenceNumber."):  # fmt: skip
        streams.iterator(name, shard_num(0), "AT_SEQUENCE_NUMBER")
    with raises("InvalidArgumentException", must + "TRIM_HORIZON or LATEST and no StartingSequenceNumber. "
                "Request specified TRIM_HORIZON and also a StartingSequenceNumber."):  # fmt: skip
        streams.iterator(name, shard_num(0), "TRIM_HORIZON", StartingSequenceNumber=seqs[0])
    with raises(
        "InvalidArgumentException",
        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
        "Current request has no timestamp parameter.",
    ):
        streams.iterator(name, shard_num(0), "AT_TIMESTAMP")
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    future_ms = int(future.timestamp()) * 1000
    with raises(
        "InvalidArgumentException",
        match=re.escape(
            "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. "
            f"timestampInMillis: {future_ms}, currentTimestampInMillis: "
        )
        + r"\d+",
    ):
        streams.iterator(name, shard_num(0), "AT_TIMESTAMP", Timestamp=future)
    with raises(
        "ResourceNotFoundException", f"Shard {shard_num(9)} in stream {name} under account {account} does not exist"
    ):
        streams.iterator(name, shard_num(9))
    with raises("InvalidArgumentException", "Invalid ShardIterator."):
        kinesis.get_records(ShardIterator="AAAAAAAAAAAAAAAAAAAAAAAA")


def test_sequence_numbers_have_shardlines_format(kinesis: Any, streams: Any, shardline_only: None) -> None:
    name = streams.create(2, label="seqfmt")
    seq = kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="p")["SequenceNumber"]
    assert re.fullmatch(r"\d{41}", seq)
    for sh in kinesis.list_shards(StreamName=name)["Shards"]:
        assert re.fullmatch(r"\d{41}", sh["SequenceNumberRange"]["StartingSequenceNumber"])
    # Every number of a higher shard index sorts after every number of a lower one.
    s0, s1 = (
        int(s["SequenceNumberRange"]["StartingSequenceNumber"]) for s in kinesis.list_shards(StreamName=name)["Shards"]
    )
    assert s0 < s1


def test_put_records_routes_and_keeps_order(kinesis: Any, streams: Any) -> None:
    name = streams.create(3, label="putrs")
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    records: list[dict[str, Any]] = []
    for i in range(30):
        rec: dict[str, Any] = {"Data": f"r{i}".encode(), "PartitionKey": f"pk-{i % 7}"}
        if i % 5 == 0:
            rec["ExplicitHashKey"] = str([0, MAX_KEY, MAX_KEY // 2][i % 3])
        records.append(rec)
    out = kinesis.put_records(StreamName=name, Records=records)
    assert out["FailedRecordCount"] == 0
    assert len(out["Records"]) == len(records)
    by_shard: dict[str, list[tuple[str, bytes]]] = {}
    for rec, res in zip(records, out["Records"], strict=True):
        assert "ErrorCode" not in res
        by_shard.setdefault(res["ShardId"], []).append((res["SequenceNumber"], rec["Data"]))
        if "ExplicitHashKey" in rec:
            owner = next(
                s
                for s in shards
                if int(s["HashKeyRange"]["StartingHashKey"])
                <= int(rec["ExplicitHashKey"])
                <= int(s["HashKeyRange"]["EndingHashKey"])
            )
            assert res["ShardId"] == owner["ShardId"]
    for shard_id, expected in by_shard.items():
        stored = streams.read_shard(name, shard_id)
        assert [(r["SequenceNumber"], r["Data"]) for r in stored] == expected
    # Keys hash the same way every time: one partition key, one shard.
    owners: dict[str, set[str]] = {}
    for rec, res in zip(records, out["Records"], strict=True):
        if "ExplicitHashKey" not in rec:
            owners.setdefault(rec["PartitionKey"], set()).add(res["ShardId"])
    assert all(len(v) == 1 for v in owners.values())


def test_put_records_partial_failure_under_throttling(throttled_endpoint: str, client_for: Any) -> None:
    client = client_for(throttled_endpoint)
    name = f"conf-throttle-{uuid.uuid4().hex[:12]}"
    client.create_stream(StreamName=name, ShardCount=1)
    account = Streams(client).wait_active(name)["StreamARN"].split(":")[4]
    # 500 records of 4 KB into one shard: about a quarter fit in the shard's 1 MiB/s write allowance.
    records = [{"Data": bytes([i % 256]) * 4000, "PartitionKey": f"p{i}"} for i in range(500)]
    out = client.put_records(StreamName=name, Records=records)
    failed = [r for r in out["Records"] if "ErrorCode" in r]
    ok = [(rec, r) for rec, r in zip(records, out["Records"], strict=True) if "ErrorCode" not in r]
    assert out["FailedRecordCount"] == len(failed)
    assert 0 < len(failed) < len(records)
    for r in failed:
        assert r["ErrorCode"] == "ProvisionedThroughputExceededException"
        assert r["ErrorMessage"] == f"Rate exceeded for shard {shard_num(0)} in stream {name} under account {account}."
        assert "SequenceNumber" not in r
        assert "ShardId" not in r
    for _rec, r in ok:
        assert r["ShardId"] == shard_num(0)
    it = client.get_shard_iterator(StreamName=name, ShardId=shard_num(0), ShardIteratorType="TRIM_HORIZON")
    stored = client.get_records(ShardIterator=it["ShardIterator"])["Records"]
    assert [(r["SequenceNumber"], r["Data"]) for r in stored] == [(r["SequenceNumber"], rec["Data"]) for rec, r in ok]
    client.delete_stream(StreamName=name)


# ----------------------------------------------------------------- resharding
def test_read_through_split_and_merge(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="reshard")
    account = streams.account(name)
    before = [
        kinesis.put_record(StreamName=name, Data=f"pre{i}".encode(), PartitionKey="p", ExplicitHashKey=k)
        for i, k in enumerate(["0", str(MAX_KEY), str(1 << 127)])
    ]
    kinesis.split_shard(StreamName=name, ShardToSplit=shard_num(0), NewStartingHashKey=str(1 << 127))
    streams.wait_active(name)
    shards = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert ids(shards) == [shard_num(0), shard_num(1), shard_num(2)]
    assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]
    assert [s.get("ParentShardId") for s in shards] == [None, shard_num(0), shard_num(0)]
    assert shards[1]["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str((1 << 127) - 1)}
    assert shards[2]["HashKeyRange"] == {"StartingHashKey": str(1 << 127), "EndingHashKey": str(MAX_KEY)}
    low = kinesis.put_record(StreamName=name, Data=b"low", PartitionKey="p", ExplicitHashKey="0")
    high = kinesis.put_record(StreamName=name, Data=b"high", PartitionKey="p", ExplicitHashKey=str(MAX_KEY))
    assert (low["ShardId"], high["ShardId"]) == (shard_num(1), shard_num(2))
    # Children sort after the parent's records.
    assert int(low["SequenceNumber"]) > max(int(p["SequenceNumber"]) for p in before)

    parent, last = streams.read(streams.iterator(name, shard_num(0)))
    assert [r["Data"] for r in parent] == [b"pre0", b"pre1", b"pre2"]
    assert "NextShardIterator" not in last
    assert sorted(last["ChildShards"], key=lambda c: c["ShardId"]) == [
        {"ShardId": shard_num(1), "ParentShards": [shard_num(0)], "HashKeyRange": shards[1]["HashKeyRange"]},
        {"ShardId": shard_num(2), "ParentShards": [shard_num(0)], "HashKeyRange": shards[2]["HashKeyRange"]},
    ]
    assert [r["Data"] for r in streams.read_shard(name, shard_num(1))] == [b"low"]
    assert [r["Data"] for r in streams.read_shard(name, shard_num(2))] == [b"high"]

    # AWS's observed wordings for sequence numbers at a closed shard's end and from another shard.
    parent_end = shards[0]["SequenceNumberRange"]["EndingSequenceNumber"]
    with raises(
        "InvalidArgumentException",
        "Invalid SequenceNumber for ShardIteratorType AFTER_SEQUENCE_NUMBER, SequenceNumber has reached max possible "
        "value for the shard.",
    ):
        streams.iterator(name, shard_num(0), "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=parent_end)
    with raises(
        "InvalidArgumentException",
        f"Invalid StartingSequenceNumber. It encodes {shard_num(1)}, while it was used in a call to a shard with "
        f"{shard_num(0)}",
    ):
        streams.iterator(name, shard_num(0), "AT_SEQUENCE_NUMBER", StartingSequenceNumber=low["SequenceNumber"])

    with raises(
        "InvalidArgumentException",
        f"Shard {shard_num(0)} in stream {name} under account {account} has already been merged or split, "
        "and thus is not eligible for merging or splitting.",
    ):
        kinesis.split_shard(StreamName=name, ShardToSplit=shard_num(0), NewStartingHashKey=str(1 << 126))

    kinesis.merge_shards(StreamName=name, ShardToMerge=shard_num(1), AdjacentShardToMerge=shard_num(2))
    streams.wait_active(name)
    merged = kinesis.list_shards(StreamName=name)["Shards"][-1]
    assert merged["ShardId"] == shard_num(3)
    assert merged["ParentShardId"] == shard_num(1)
    assert merged["AdjacentParentShardId"] == shard_num(2)
    assert merged["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(MAX_KEY)}
    assert kinesis.put_record(StreamName=name, Data=b"m", PartitionKey="p")["ShardId"] == shard_num(3)
    child, last = streams.read(streams.iterator(name, shard_num(1)))
    assert [r["Data"] for r in child] == [b"low"]
    assert "NextShardIterator" not in last
    assert [(c["ShardId"], c["ParentShards"]) for c in last["ChildShards"]] == [
        (shard_num(3), [shard_num(1), shard_num(2)])
    ]
    assert [r["Data"] for r in streams.read_shard(name, shard_num(3))] == [b"m"]
    assert ranges_cover_key_space(open_shards(kinesis, name))


def test_reshard_errors(kinesis: Any, streams: Any) -> None:
    name = streams.create(3, label="rerr")
    account = streams.account(name)
    s0 = kinesis.list_shards(StreamName=name)["Shards"][0]["HashKeyRange"]
    with raises(
        "InvalidArgumentException",
        f"NewStartingHashKey 1 used in SplitShard() on shard {shard_num(0)} in stream {name} under account "
        f"{account} is not both greater than one plus the shard's StartingHashKey {s0['StartingHashKey']} and "
        f"less than the shard's EndingHashKey {s0['EndingHashKey']}.",
    ):
        kinesis.split_shard(StreamName=name, ShardToSplit=shard_num(0), NewStartingHashKey="1")
    with raises(
        "ResourceNotFoundException", f"Could not find shard {shard_num(9)} in stream {name} under account {account}."
    ):
        kinesis.split_shard(StreamName=name, ShardToSplit=shard_num(9), NewStartingHashKey="5")
    for a, b in ((0, 2), (1, 0)):
        with raises(
            "InvalidArgumentException",
            f"Shards {shard_num(a)} and {shard_num(b)} in stream {name} under account {account} are not an "
            "adjacent pair of shards eligible for merging",
        ):
            kinesis.merge_shards(StreamName=name, ShardToMerge=shard_num(a), AdjacentShardToMerge=shard_num(b))
    with raises("ResourceNotFoundException", f"Stream {name}-x under account {account} not found."):
        kinesis.merge_shards(StreamName=f"{name}-x", ShardToMerge=shard_num(0), AdjacentShardToMerge=shard_num(1))
    assert len(open_shards(kinesis, name)) == 3


def test_update_shard_count(kinesis: Any, streams: Any) -> None:
    name = streams.create(2, label="usc")
    out = kinesis.update_shard_count(StreamName=name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert (out["StreamName"], out["CurrentShardCount"], out["TargetShardCount"]) == (name, 2, 4)
    streams.wait_active(name)
    opened = open_shards(kinesis, name)
    assert len(opened) == 4
    assert ranges_cover_key_space(opened)
    widths = {int(s["HashKeyRange"]["EndingHashKey"]) - int(s["HashKeyRange"]["StartingHashKey"]) for s in opened}
    assert max(widths) - min(widths) <= 1
    assert streams.summary(name)["OpenShardCount"] == 4
    with raises(
        "LimitExceededException",
        "UpdateShardCount cannot scale down below half your current open shard count. "
        "Current open shard count: 4, Target shard count: 1",
    ):
        kinesis.update_shard_count(StreamName=name, TargetShardCount=1, ScalingType="UNIFORM_SCALING")
    with raises(
        "LimitExceededException",
        "UpdateShardCount cannot scale up over double your current open shard count. "
        "Current open shard count: 4, Target shard count: 9",
    ):
        kinesis.update_shard_count(StreamName=name, TargetShardCount=9, ScalingType="UNIFORM_SCALING")
    out = kinesis.update_shard_count(StreamName=name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (4, 2)
    streams.wait_active(name)
    opened = open_shards(kinesis, name)
    assert len(opened) == 2
    assert ranges_cover_key_space(opened)
    data = kinesis.put_record(StreamName=name, Data=b"after", PartitionKey="p")
    assert data["ShardId"] in ids(opened)


# ----------------------------------------------------------------- stream settings
def test_retention_increase_and_decrease(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="ret")
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    assert streams.wait_active(name)["RetentionPeriodHours"] == 48
    with raises(
        "InvalidArgumentException",
        f"Requested retention period (24 hours) for stream {name} can not be shorter than existing retention "
        "period (48 hours). Use DecreaseRetentionPeriod API.",
    ):
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=24)
    with raises(
        "InvalidArgumentException",
        f"Requested retention period (72 hours) for stream {name} can not be longer than existing retention "
        "period (48 hours). Use IncreaseRetentionPeriod API.",
    ):
        kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=72)
    with raises(
        "InvalidArgumentException",
        "Minimum allowed retention period is 24 hours. Requested retention period (12 hours) is too short.",
    ):
        kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=12)
    with raises(
        "InvalidArgumentException",
        "Maximum allowed retention period is 8760 hours. Requested retention period (9000 hours) is too long.",
    ):
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=9000)
    kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=24)
    assert streams.wait_active(name)["RetentionPeriodHours"] == 24


def test_update_stream_mode(kinesis: Any, streams: Any) -> None:
    name = streams.create(None, label="mode", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    account = streams.account(name)
    summary = streams.summary(name)
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert summary["OpenShardCount"] >= 1
    with raises(
        "ValidationException", f"Request is invalid. Stream {name} under account {account} is in On-Demand mode."
    ):
        kinesis.update_shard_count(StreamName=name, TargetShardCount=1, ScalingType="UNIFORM_SCALING")
    kinesis.update_stream_mode(StreamARN=summary["StreamARN"], StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert streams.wait_active(name)["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    listed = kinesis.list_streams(ExclusiveStartStreamName=name[:-1], Limit=10)
    mine = [s for s in listed.get("StreamSummaries", []) if s["StreamName"] == name]
    assert all(s["StreamModeDetails"] == {"StreamMode": "PROVISIONED"} for s in mine)


def test_enhanced_monitoring(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="mon")
    out = kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingBytes", "OutgoingRecords"])
    assert out["StreamName"] == name
    assert out["CurrentShardLevelMetrics"] == []
    assert set(out["DesiredShardLevelMetrics"]) == {"IncomingBytes", "OutgoingRecords"}
    streams.wait_active(name)
    out = kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    assert set(out["CurrentShardLevelMetrics"]) == {"IncomingBytes", "OutgoingRecords"}
    assert set(out["DesiredShardLevelMetrics"]) == ALL_METRICS
    streams.wait_active(name)
    desc = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert set(desc["EnhancedMonitoring"][0]["ShardLevelMetrics"]) == ALL_METRICS
    out = kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingBytes"])
    assert set(out["DesiredShardLevelMetrics"]) == ALL_METRICS - {"IncomingBytes"}
    streams.wait_active(name)
    out = kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    assert out["DesiredShardLevelMetrics"] == []
    summary = streams.wait_active(name)
    assert summary["EnhancedMonitoring"][0]["ShardLevelMetrics"] == []


def test_stream_encryption(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="enc")
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    summary = streams.wait_active(name)
    assert (summary["EncryptionType"], summary["KeyId"]) == ("KMS", "alias/aws/kinesis")
    put = kinesis.put_record(StreamName=name, Data=b"secret", PartitionKey="p")
    assert put["EncryptionType"] == "KMS"
    [rec] = streams.read_shard(name, put["ShardId"])
    assert (rec["Data"], rec["EncryptionType"]) == (b"secret", "KMS")
    kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    summary = streams.wait_active(name)
    assert summary["EncryptionType"] == "NONE"
    assert "KeyId" not in summary


def test_tags_through_both_apis(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="tags", Tags={"team": "core"})
    arn = streams.arn(name)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"env": "dev", "k3": "v3"})
    listed = kinesis.list_tags_for_stream(StreamName=name)
    assert listed["Tags"] == [
        {"Key": "env", "Value": "dev"},
        {"Key": "k3", "Value": "v3"},
        {"Key": "team", "Value": "core"},
    ]
    assert listed["HasMoreTags"] is False
    page = kinesis.list_tags_for_stream(StreamName=name, Limit=1)
    assert (page["Tags"], page["HasMoreTags"]) == ([{"Key": "env", "Value": "dev"}], True)
    page = kinesis.list_tags_for_stream(StreamName=name, ExclusiveStartTagKey="env", Limit=1)
    assert (page["Tags"], page["HasMoreTags"]) == ([{"Key": "k3", "Value": "v3"}], True)
    kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["k3", "absent"])
    assert [t["Key"] for t in kinesis.list_tags_for_stream(StreamName=name)["Tags"]] == ["env", "team"]

    kinesis.tag_resource(ResourceARN=arn, Tags={"owner": "me"})
    tags = {t["Key"]: t["Value"] for t in kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"]}
    assert tags == {"env": "dev", "team": "core", "owner": "me"}
    kinesis.untag_resource(ResourceARN=arn, TagKeys=["env", "owner"])
    assert kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "core"}]

    with raises(
        "InvalidArgumentException",
        "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, "
        "_ . / = + - % @.",
    ):
        kinesis.add_tags_to_stream(StreamName=name, Tags={"bad!": "v"})


def test_consumers_register_describe_list_deregister(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="cons")
    arn = streams.arn(name)
    made = [kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=c)["Consumer"] for c in ("c1", "c2")]
    for c, want in zip(made, ("c1", "c2"), strict=True):
        assert c["ConsumerName"] == want
        assert c["ConsumerARN"].startswith(f"{arn}/consumer/{want}:")
        assert c["ConsumerStatus"] in ("CREATING", "ACTIVE")
        assert isinstance(c["ConsumerCreationTimestamp"], dt.datetime)
    for c in made:
        streams.until(
            f"consumer {c['ConsumerName']} to become ACTIVE",
            lambda c=c: (
                kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName=c["ConsumerName"])["ConsumerDescription"][
                    "ConsumerStatus"
                ]
                == "ACTIVE"
            ),
        )
        by_arn = kinesis.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])["ConsumerDescription"]
        assert by_arn["ConsumerName"] == c["ConsumerName"]
        assert by_arn["StreamARN"] == arn
    pages = list(
        kinesis.get_paginator("list_stream_consumers").paginate(StreamARN=arn, PaginationConfig={"PageSize": 1})
    )
    assert len(pages) == 2
    assert sorted(c["ConsumerName"] for p in pages for c in p["Consumers"]) == ["c1", "c2"]
    assert streams.summary(name)["ConsumerCount"] == 2
    with raises("ResourceInUseException"):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c1")
    with raises("ResourceInUseException"):
        kinesis.delete_stream(StreamName=name)

    kinesis.deregister_stream_consumer(ConsumerARN=made[0]["ConsumerARN"])
    kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="c2")
    streams.until("consumers to be removed", lambda: not kinesis.list_stream_consumers(StreamARN=arn)["Consumers"])
    with raises("ResourceNotFoundException"):
        kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="c1")


def test_describe_limits(kinesis: Any, streams: Any) -> None:
    # Shards of a DELETING stream count until it is gone: let earlier tests' deletions finish first.
    streams.until(
        "earlier deletions to finish",
        lambda: all(s["StreamStatus"] != "DELETING" for s in kinesis.list_streams()["StreamSummaries"]),
    )
    before = kinesis.describe_limits()
    assert before["ShardLimit"] >= 1
    streams.create(2, label="lim")
    after = kinesis.describe_limits()
    assert after["OpenShardCount"] == before["OpenShardCount"] + 2
    assert after["OnDemandStreamCountLimit"] >= 1


def test_describe_limits_defaults(kinesis: Any, shardline_only: None) -> None:
    limits = kinesis.describe_limits()
    assert (limits["ShardLimit"], limits["OnDemandStreamCountLimit"]) == (500, 50)


def test_delete_stream(kinesis: Any, streams: Any) -> None:
    name = streams.create(2, label="del")
    account = streams.account(name)
    kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="p")
    iterator = streams.iterator(name, shard_num(0))
    kinesis.delete_stream(StreamName=name)
    gone = streams.wait_gone(name)
    assert gone.response["Error"]["Message"] == f"Stream {name} under account {account} not found."
    with raises(
        "ResourceNotFoundException", f"Shard {shard_num(0)} in stream {name} under account {account} does not exist"
    ):
        kinesis.get_records(ShardIterator=iterator)
    assert name not in kinesis.list_streams(ExclusiveStartStreamName=name[:-1], Limit=5)["StreamNames"]
    with raises("ResourceNotFoundException", f"Stream {name} under account {account} not found."):
        kinesis.delete_stream(StreamName=name)
    # The name is free again, and the new stream starts empty.
    kinesis.create_stream(StreamName=name, ShardCount=1)
    streams.wait_active(name)
    assert streams.read_shard(name, shard_num(0)) == []


# ----------------------------------------------------------------- error types
def test_resource_not_found(kinesis: Any, streams: Any) -> None:
    account = streams.account(streams.create(1, label="rnf"))
    missing = streams.name("missing")
    not_found = f"Stream {missing} under account {account} not found."
    calls: tuple[Callable[[], Any], ...] = (
        lambda: kinesis.describe_stream(StreamName=missing),
        lambda: kinesis.describe_stream_summary(StreamName=missing),
        lambda: kinesis.put_record(StreamName=missing, Data=b"x", PartitionKey="p"),
        lambda: kinesis.put_records(StreamName=missing, Records=[{"Data": b"x", "PartitionKey": "p"}]),
        lambda: kinesis.delete_stream(StreamName=missing),
        lambda: kinesis.list_tags_for_stream(StreamName=missing),
        lambda: kinesis.increase_stream_retention_period(StreamName=missing, RetentionPeriodHours=48),
    )
    for call in calls:
        with raises("ResourceNotFoundException", not_found):
            call()
    with raises(
        "ResourceNotFoundException", f"Shard {shard_num(0)} in stream {missing} under account {account} does not exist"
    ):
        kinesis.get_shard_iterator(StreamName=missing, ShardId=shard_num(0), ShardIteratorType="LATEST")


def test_resource_in_use(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="riu")
    account = streams.account(name)
    with raises("ResourceInUseException", f"Stream {name} under account {account} already exists."):
        kinesis.create_stream(StreamName=name, ShardCount=1)


def test_invalid_argument(kinesis: Any, streams: Any) -> None:
    name = streams.create(1, label="inv")
    too_big = str(MAX_KEY + 1)
    with raises(
        "InvalidArgumentException",
        f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {too_big}",
    ):
        kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="p", ExplicitHashKey=too_big)
    with raises("InvalidArgumentException"):
        kinesis.put_records(StreamName=name, Records=[{"Data": b"x", "PartitionKey": "p", "ExplicitHashKey": too_big}])
    # Each record is within the 1 MiB limit; together they pass the 5 MiB a PutRecords call may carry.
    big = [{"Data": bytes(940 * 1024), "PartitionKey": f"p{i}"} for i in range(6)]
    with raises("InvalidArgumentException", "Records size exceeds 5 MB limit"):
        kinesis.put_records(StreamName=name, Records=big)
    assert streams.read_shard(name, shard_num(0)) == []


def test_limit_exceeded_on_shard_limit(kinesis: Any, streams: Any, server: Any) -> None:
    name = streams.name("toomany")
    open_before = kinesis.describe_limits()["OpenShardCount"]
    with raises(
        "LimitExceededException",
        match=re.escape("This request would exceed the shard limit for the account ")
        + r"\d{12} in us-east-1\. Current shard count for the account: \d+\. Limit: \d+\. "
        + re.escape("Number of additional shards that would have resulted from this request: 501. " + SHARD_LIMIT_TAIL),
    ) as info:
        kinesis.create_stream(StreamName=name, ShardCount=501)
    if server.local:
        msg = info.value.response["Error"]["Message"]
        assert f"Current shard count for the account: {open_before}. Limit: 500. " in msg
    with raises("ResourceNotFoundException"):
        kinesis.describe_stream_summary(StreamName=name)


def test_validation_exception(kinesis: Any, unvalidated: Any, streams: Any) -> None:
    with raises(
        "ValidationException",
        "1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    ):
        kinesis.create_stream(StreamName="bad name!", ShardCount=1)
    with raises(
        "ValidationException",
        "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1",
    ):
        unvalidated.create_stream(StreamName=streams.name("zero"), ShardCount=0)
    name = streams.create(1, label="val")
    one_mib = 1024 * 1024
    with raises(
        "ValidationException",
        f"1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim={one_mib + 1} cap={one_mib + 1}]' "
        f"at 'data' failed to satisfy constraint: Member must have length less than or equal to {one_mib}",
    ):
        kinesis.put_record(StreamName=name, Data=b"x" * (one_mib + 1), PartitionKey="p")
    with raises(
        "ValidationException",
        f"1 validation error detected: Value '{'k' * 257}' at 'partitionKey' failed to satisfy constraint: "
        "Member must have length less than or equal to 256",
    ):
        kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k" * 257)
    with raises(
        "ValidationException",
        "1 validation error detected: Value '10001' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 10000",
    ):
        kinesis.get_records(ShardIterator=streams.iterator(name, shard_num(0)), Limit=10001)
    with raises("ValidationException") as info:
        kinesis.put_records(StreamName=name, Records=[{"Data": b"x", "PartitionKey": "p"}] * 501)
    msg = info.value.response["Error"]["Message"]
    assert msg.startswith("1 validation error detected: Value '")
    assert msg.endswith(
        "' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"
    )
    assert streams.read_shard(name, shard_num(0)) == []

    with raises("ValidationException") as info:
        unvalidated.put_record(StreamName="bad name!", Data=b"x", PartitionKey="")
    msg = info.value.response["Error"]["Message"]
    assert msg.startswith("2 validation errors detected: ")
    assert (
        "Value '' at 'partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1"
        in msg
    )
    assert (
        "Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression" in msg
    )


# ----------------------------------------------------------------- raw HTTP: what botocore never sends
def _connect(endpoint: str) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)


def _exchange(
    conn: http.client.HTTPConnection, method: str, body: bytes, headers: dict[str, str], path: str = "/"
) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=body, headers={**UNVERIFIED_SIGNATURE, **headers})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


JSON_CT = "application/x-amz-json-1.1"
LIST = "Kinesis_20131202.ListStreams"


class Raw(NamedTuple):
    method: str
    target: str | None
    content_type: str
    body: bytes
    expected: str | None  # the exact __type, where AWS's is known


RAW_CASES = {
    "unknown-action": Raw("POST", "Kinesis_20131202.NoSuchAction", JSON_CT, b"{}", "UnknownOperationException"),
    "other-service": Raw("POST", "Firehose_20150804.ListStreams", JSON_CT, b"{}", "UnknownOperationException"),
    "no-target": Raw("POST", None, JSON_CT, b"{}", None),
    "garbled-json": Raw("POST", LIST, JSON_CT, b'{"Limit": 1,', "SerializationException"),
    "binary-body": Raw("POST", LIST, JSON_CT, b"\xff\xfe\x00garbage", "SerializationException"),
    "json-array": Raw("POST", LIST, JSON_CT, b"[1, 2]", "SerializationException"),
    "wrong-type": Raw("POST", LIST, JSON_CT, b'{"Limit": "ten"}', "SerializationException"),
    "text-plain": Raw("POST", LIST, "text/plain", b"{}", "UnknownOperationException"),
    "json-as-cbor": Raw("POST", LIST, "application/x-amz-cbor-1.1", b"{}", "SerializationException"),
    "get": Raw("GET", LIST, JSON_CT, b"", "AccessDeniedException"),
}


@pytest.mark.parametrize("case", RAW_CASES.values(), ids=RAW_CASES.keys())
def test_raw_malformed_requests_get_a_4xx_and_keep_the_connection(endpoint: str, server: Any, case: Raw) -> None:
    conn = _connect(endpoint)
    try:
        headers = {"Content-Type": case.content_type}
        if case.target is not None:
            headers["X-Amz-Target"] = case.target
        status, resp_headers, data = _exchange(conn, case.method, case.body, headers)
        assert 400 <= status < 500, (status, data)
        assert resp_headers.get("x-amzn-requestid")
        ctype = resp_headers.get("content-type", "")
        if not ctype and data.startswith(b"<"):  # AWS answers a request in no known protocol in XML
            kind = ElementTree.fromstring(data).tag
        else:
            error = kinesis_cbor(data) if "cbor" in ctype else json.loads(data)
            assert isinstance(error.get("__type"), str)
            kind = error["__type"]
        if case.expected is not None:
            assert kind.rsplit("#", 1)[-1] == case.expected
        sock = conn.sock
        status, _, data = _exchange(conn, "POST", b'{"Limit": 1}', {"Content-Type": JSON_CT, "X-Amz-Target": LIST})
        assert status == 200, data
        if server.local:
            assert conn.sock is sock, "the server closed the connection after a malformed request"
    finally:
        conn.close()


def test_raw_oversized_body_is_refused_without_dropping_the_connection(endpoint: str, server: Any) -> None:
    conn = _connect(endpoint)
    try:
        body = b'{"StreamName": "' + b"a" * (9 * 1024 * 1024) + b'"}'
        status, headers, data = _exchange(conn, "POST", body, {"Content-Type": JSON_CT, "X-Amz-Target": LIST})
        assert 400 <= status < 500, (status, data[:200])
        assert headers.get("x-amzn-requestid")
        if server.local:
            assert status == 413
            assert json.loads(data)["__type"] == "RequestEntityTooLargeException"
        status, _, data = _exchange(conn, "POST", b'{"Limit": 1}', {"Content-Type": JSON_CT, "X-Amz-Target": LIST})
        assert status == 200, data
    finally:
        conn.close()


def test_raw_cbor_round_trip(endpoint: str, streams: Any) -> None:
    name = streams.create(1, label="cbor")
    conn = _connect(endpoint)
    cbor = {"Content-Type": "application/x-amz-cbor-1.1"}

    def call(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, headers, data = _exchange(
            conn, "POST", cbor2.dumps(payload), {**cbor, "X-Amz-Target": f"Kinesis_20131202.{action}"}
        )
        assert status == 200, kinesis_cbor(data)
        assert headers["content-type"] == "application/x-amz-cbor-1.1"
        out: dict[str, Any] = kinesis_cbor(data)
        return out

    try:
        put = call("PutRecord", {"StreamName": name, "Data": b"\x00cbor\xff", "PartitionKey": "p"})
        it = call(
            "GetShardIterator", {"StreamName": name, "ShardId": put["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}
        )
        [rec] = call("GetRecords", {"ShardIterator": it["ShardIterator"]})["Records"]
        assert rec["Data"] == b"\x00cbor\xff"
        assert rec["SequenceNumber"] == put["SequenceNumber"]
        assert isinstance(rec["ApproximateArrivalTimestamp"], dt.datetime)
    finally:
        conn.close()
