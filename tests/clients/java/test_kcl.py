"""The KCL 2.x (its MultiLangDaemon, as amazon_kclpy runs it, with Python record processors) reading a stream through
a split and a merge, against a real `shardline serve` and moto's DynamoDB as the lease table. The KCL's Kinesis client
is the SDK's async client, which speaks CBOR over HTTP/2 and cannot be switched to HTTP/1.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _shardline import shardline

from ._kcl import dynamodb, multilang_daemon, properties, wait_for_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    with shardline("serve", "--port", "0", "--data-dir", str(data), "--fsync", "never") as running:
        yield running.url


def wait_active(boto: Any, stream: str) -> None:
    boto.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600})


def put(boto: Any, stream: str, tag: str, n: int) -> list[bytes]:
    data = [f"{tag}-{i}".encode() for i in range(n)]
    records = [{"Data": d, "PartitionKey": f"key-{i}"} for i, d in enumerate(data)]
    assert boto.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0
    return data


# FANOUT is the KCL's default (SubscribeToShard through a consumer it registers); POLLING reads with GetRecords.
@pytest.mark.parametrize("retrieval", ["FANOUT", "POLLING"])
def test_kcl_reads_every_record_once_through_a_split_and_a_merge(
    endpoint: str, boto: Any, tmp_path: Path, retrieval: str
) -> None:
    stream = f"kcl-{retrieval.lower()}"
    boto.create_stream(StreamName=stream, ShardCount=2)
    wait_active(boto, stream)
    sent = put(boto, stream, "first", 30)
    log = tmp_path / "daemon.log"

    def holds(expected: list[bytes]) -> Any:
        return lambda got: {r["data"].encode("latin-1") for r in got} >= set(expected)

    with dynamodb() as ddb, multilang_daemon(tmp_path, properties(endpoint, ddb, stream, retrieval=retrieval)) as out:
        wait_for_records(out, holds(sent), log)

        boto.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(1 << 126))
        wait_active(boto, stream)
        sent += put(boto, stream, "split", 30)
        wait_for_records(out, holds(sent), log)

        # shardId-000000000003 (the upper half of the split shard) and shardId-000000000001 are adjacent.
        boto.merge_shards(
            StreamName=stream, ShardToMerge="shardId-000000000003", AdjacentShardToMerge="shardId-000000000001"
        )
        wait_active(boto, stream)
        sent += put(boto, stream, "merged", 30)
        got = wait_for_records(out, holds(sent), log)

    # Each record exactly once, from the shard that holds it, and no shard before its parents were read to the end.
    assert sorted(r["data"].encode("latin-1") for r in got) == sorted(sent)
    assert len({r["sequence"] for r in got}) == len(got)
    shards = {s["ShardId"]: s for s in boto.list_shards(StreamName=stream)["Shards"]}
    assert {r["shard"] for r in got} == set(shards)
    position: dict[str, list[int]] = {}
    for i, r in enumerate(got):
        position.setdefault(r["shard"], []).append(i)
    for shard_id, shard in shards.items():
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")):
            if parent in position and shard_id in position:
                assert max(position[parent]) < min(position[shard_id]), (parent, shard_id)
