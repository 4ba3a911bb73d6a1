"""Stream and consumer states on the wire, against a real `shardline serve` / `shardline up`: what a raw client sees
while a stream is CREATING, UPDATING or DELETING and a consumer CREATING (status, headers, exact bytes), that the
project streams of `up` are ACTIVE before it reports ready, and that the default delays end as clients expect."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from _shardline import UNVERIFIED_SIGNATURE, kinesis, shardline
from shardline.cli.options import DEFAULT_STATUS_DELAY_S, _parser, _settings

ACCOUNT = "000000000000"
ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/"
JSON_CT = "application/x-amz-json-1.1"
MID = str(1 << 127)
WAIT_S = 60.0  # only turns a hang into a failure


class Wire:
    """Raw Kinesis JSON requests over one connection; answers are (status, lower-cased headers, body bytes)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)

    def __call__(self, op: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": JSON_CT, "X-Amz-Target": f"Kinesis_20131202.{op}", **UNVERIFIED_SIGNATURE}
        self.conn.request("POST", "/", body=json.dumps(payload).encode(), headers=headers)
        resp = self.conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def ok(self, op: str, payload: dict[str, Any]) -> Any:
        status, headers, body = self(op, payload)
        assert status == 200, body
        assert headers["content-type"] == JSON_CT
        return json.loads(body) if body else None

    def error(self, op: str, payload: dict[str, Any], kind: str, message: str) -> None:
        """The exact error answer: 400, AWS's content type, and the body byte for byte."""
        status, headers, body = self(op, payload)
        assert (status, headers["content-type"]) == (400, JSON_CT), body
        assert headers["content-length"] == str(len(body))
        assert body == json.dumps({"__type": kind, "message": message}, separators=(",", ":")).encode()

    def empty(self, op: str, payload: dict[str, Any]) -> None:
        """An action without an output: 200 and no body at all."""
        status, headers, body = self(op, payload)
        assert (status, headers["content-length"], body) == (200, "0", b"")


def not_found(stream: str) -> str:
    return f"Stream {stream} under account {ACCOUNT} not found."


def in_state(stream: str, state: str) -> str:
    return f"Stream {stream} under account {ACCOUNT} not ACTIVE or UPDATING, instead in state {state}"


def no_shard(stream: str, shard: str = "shardId-000000000000") -> str:
    return f"Shard {shard} in stream {stream} under account {ACCOUNT} does not exist"


def until(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (got := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return got


@pytest.fixture(scope="module")
def slow_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    """`shardline up` with every status lasting ten minutes (far beyond the tests): its project streams must be
    ACTIVE anyway, and everything else stays in its transitional state while a test looks at it. Shared by the tests
    of this module, each on streams of its own."""
    tmp_path = tmp_path_factory.mktemp("slow-up")
    project = tmp_path / "shardline.yml"
    project.write_text("streams:\n  kept: {shards: 2}\n  doomed: {shards: 1}\n  other: {shards: 1}\n")
    args = ("up", str(project), "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never")
    with shardline(*args, "--no-metrics", status_delay=600) as running:
        wire = Wire(running.url)
        yield wire
        wire.conn.close()


def test_up_reports_ready_with_its_project_streams_active(slow_up: Wire) -> None:
    summary = slow_up.ok("DescribeStreamSummary", {"StreamName": "kept"})["StreamDescriptionSummary"]
    assert (summary["StreamStatus"], summary["OpenShardCount"]) == ("ACTIVE", 2)
    put = slow_up.ok("PutRecord", {"StreamName": "kept", "Data": "", "PartitionKey": "a"})
    assert put["ShardId"].startswith("shardId-")


def test_a_creating_stream_on_the_wire(slow_up: Wire) -> None:
    slow_up.empty("CreateStream", {"StreamName": "fresh", "ShardCount": 2})
    status, _, body = slow_up("DescribeStream", {"StreamName": "fresh"})
    assert status == 200
    d = json.loads(body)["StreamDescription"]
    expected = {
        "StreamName": "fresh",
        "StreamARN": ARN + "fresh",
        "StreamStatus": "CREATING",
        "StreamModeDetails": {"StreamMode": "PROVISIONED"},
        "Shards": [],
        "HasMoreShards": False,
        "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": d["StreamCreationTimestamp"],
        "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
        "EncryptionType": "NONE",
    }
    assert body == json.dumps({"StreamDescription": expected}, separators=(",", ":")).encode()
    summary = slow_up.ok("DescribeStreamSummary", {"StreamName": "fresh"})["StreamDescriptionSummary"]
    assert (summary["StreamStatus"], summary["OpenShardCount"]) == ("CREATING", 0)

    put = {"StreamName": "fresh", "Data": "", "PartitionKey": "a"}
    slow_up.error("PutRecord", put, "ResourceNotFoundException", not_found("fresh"))
    records = {"StreamName": "fresh", "Records": [{"Data": "", "PartitionKey": "a"}]}
    slow_up.error("PutRecords", records, "ResourceNotFoundException", not_found("fresh"))
    iterator = {"StreamName": "fresh", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}
    slow_up.error("GetShardIterator", iterator, "ResourceNotFoundException", no_shard("fresh"))
    slow_up.error("ListShards", {"StreamName": "fresh"}, "ResourceInUseException", in_state("fresh", "CREATING"))
    consumer = {"StreamARN": ARN + "fresh", "ConsumerName": "c"}
    slow_up.error("RegisterStreamConsumer", consumer, "ResourceInUseException", in_state("fresh", "CREATING"))


def test_an_updating_stream_shows_the_map_before_the_reshard(slow_up: Wire) -> None:
    before = slow_up.ok("DescribeStream", {"StreamName": "kept"})["StreamDescription"]["Shards"]
    split = {"StreamName": "kept", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "1000"}
    slow_up.empty("SplitShard", split)

    d = slow_up.ok("DescribeStream", {"StreamName": "kept"})["StreamDescription"]
    assert d["StreamStatus"] == "UPDATING"
    assert d["Shards"] == before
    assert all("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in d["Shards"])
    assert all("ParentShardId" not in s for s in d["Shards"])
    assert slow_up.ok("ListShards", {"StreamName": "kept"})["Shards"] == before
    # Writes go on, to the shards as they were.
    put = slow_up.ok("PutRecord", {"StreamName": "kept", "Data": "", "PartitionKey": "a", "ExplicitHashKey": "5"})
    assert put["ShardId"] == "shardId-000000000000"

    updating = f"Stream kept under account {ACCOUNT} not ACTIVE, instead in state UPDATING"
    slow_up.error("SplitShard", split, "ResourceInUseException", updating)
    merge = {
        "StreamName": "kept",
        "ShardToMerge": "shardId-000000000000",
        "AdjacentShardToMerge": "shardId-000000000001",
    }
    slow_up.error("MergeShards", merge, "ResourceInUseException", updating)
    scale = {"StreamName": "kept", "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"}
    slow_up.error("UpdateShardCount", scale, "ResourceInUseException", updating)


def test_a_deleting_stream_has_no_shards(slow_up: Wire) -> None:
    slow_up.empty("DeleteStream", {"StreamName": "doomed"})
    d = slow_up.ok("DescribeStream", {"StreamName": "doomed"})["StreamDescription"]
    assert (d["StreamStatus"], d["Shards"], d["HasMoreShards"]) == ("DELETING", [], False)
    put = {"StreamName": "doomed", "Data": "", "PartitionKey": "a"}
    slow_up.error("PutRecord", put, "ResourceNotFoundException", not_found("doomed"))
    slow_up.error("ListShards", {"StreamName": "doomed"}, "ResourceInUseException", in_state("doomed", "DELETING"))
    again = {"StreamName": "doomed", "ShardCount": 1}
    slow_up.error(
        "CreateStream", again, "ResourceInUseException", f"Stream doomed under account {ACCOUNT} already exists."
    )


def test_a_creating_and_a_deleting_consumer(slow_up: Wire) -> None:
    registered = slow_up.ok("RegisterStreamConsumer", {"StreamARN": ARN + "other", "ConsumerName": "c"})["Consumer"]
    assert registered["ConsumerStatus"] == "CREATING"
    arn = registered["ConsumerARN"]
    described = slow_up.ok("DescribeStreamConsumer", {"ConsumerARN": arn})["ConsumerDescription"]
    assert (described["ConsumerStatus"], described["StreamARN"]) == ("CREATING", ARN + "other")
    listed = slow_up.ok("ListStreamConsumers", {"StreamARN": ARN + "other"})["Consumers"]
    assert [(c["ConsumerName"], c["ConsumerStatus"]) for c in listed] == [("c", "CREATING")]
    slow_up.empty("DeregisterStreamConsumer", {"ConsumerARN": arn})
    described = slow_up.ok("DescribeStreamConsumer", {"ConsumerARN": arn})["ConsumerDescription"]
    assert described["ConsumerStatus"] == "DELETING"


def test_the_default_delay_is_long_enough_to_be_noticed() -> None:
    for command in (["serve"], ["up", "shardline.yml"]):
        settings = _settings(_parser().parse_args(command))
        assert (settings.status_delay_s, settings.creating_delay_s) == (DEFAULT_STATUS_DELAY_S, None)
    assert DEFAULT_STATUS_DELAY_S == 0.5
    override = _settings(_parser().parse_args(["serve", "--status-delay", "2", "--deleting-delay", "0"]))
    assert (override.status_delay_s, override.deleting_delay_s, override.updating_delay_s) == (2.0, 0.0, None)


def test_with_the_default_delays_every_transition_ends(tmp_path: Path) -> None:
    """A client that waits as it must on AWS (the boto3 waiter, then polling) sees each state end."""
    args = ("serve", "--port", "0", "--data-dir", str(tmp_path), "--fsync", "never", "--no-metrics")
    with shardline(*args, status_delay=None) as running:
        client = kinesis(running.url)
        client.create_stream(StreamName="s", ShardCount=1)
        client.get_waiter("stream_exists").wait(StreamName="s", WaiterConfig={"Delay": 0.1, "MaxAttempts": 600})
        client.put_record(StreamName="s", Data=b"x", PartitionKey="a")

        client.split_shard(StreamName="s", ShardToSplit="shardId-000000000000", NewStartingHashKey=MID)
        shards = until(
            "the split to show",
            lambda: len(got := client.describe_stream(StreamName="s")["StreamDescription"]["Shards"]) == 3 and got,
        )
        assert client.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]

        arn = client.register_stream_consumer(StreamARN=ARN + "s", ConsumerName="c")["Consumer"]["ConsumerARN"]

        def consumer_status() -> str:
            return str(client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"])

        until("the consumer to be ACTIVE", lambda: consumer_status() == "ACTIVE")
        client.delete_stream(StreamName="s", EnforceConsumerDeletion=True)
        client.get_waiter("stream_not_exists").wait(StreamName="s", WaiterConfig={"Delay": 0.1, "MaxAttempts": 600})
