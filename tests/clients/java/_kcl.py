"""The KCL 2.x pointed at a shardline endpoint, with moto's DynamoDB server as its lease table, in its two usual
forms: the MultiLangDaemon (the Java process amazon_kclpy runs) with record processors in Python
(``kcl_processor.py``), and a Java application built on the KCL's Scheduler (``KclApp.java``). Either logs every
record its processors get, and ``reads_through_a_split_and_a_merge`` is the scenario both are tested with."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ._java import HERE, end_by_stdin, java_command, unavailable

PROCESSOR = HERE / "kcl_processor.py"
WAIT_S = 180.0  # a generous deadline: the KCL takes leases and discovers child shards on its own schedule

_MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def dynamodb() -> Iterator[str]:
    """moto's server (DynamoDB among the rest) on a free loopback port, for as long as the block runs."""
    if importlib.util.find_spec("moto") is None:
        unavailable("moto's server is missing: pip install 'moto[server]'")
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        end_by_stdin(proc)


def properties(kinesis_url: str, dynamodb_url: str, stream: str, *, retrieval: str) -> str:
    """A MultiLangDaemon configuration: endpoints, dummy credentials from the environment, no CloudWatch metrics,
    and short intervals so that leases and child shards are picked up within seconds."""
    return "\n".join(
        [
            f"executableName = {sys.executable} {PROCESSOR}",
            f"streamName = {stream}",
            f"applicationName = {stream}-app",
            "AWSCredentialsProvider = DefaultAWSCredentialsProviderChain",
            "processingLanguage = python/3",
            "initialPositionInStream = TRIM_HORIZON",
            "regionName = us-east-1",
            f"kinesisEndpoint = {kinesis_url}",
            f"dynamoDBEndpoint = {dynamodb_url}",
            "metricsLevel = NONE",
            f"retrievalMode = {retrieval}",
            "idleTimeBetweenReadsInMillis = 200",
            "shardSyncIntervalMillis = 1000",
            "parentShardPollIntervalMillis = 500",
            "failoverTimeMillis = 3000",
            "",
        ]
    )


@dataclass(frozen=True)
class Kcl:
    """A running KCL: where its records are written (one JSON line each) and where it logs."""

    records: Path
    log: Path


@contextmanager
def _process_group(
    command: list[str], workdir: Path, stdout: IO[Any], stderr: IO[Any] | int, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Runs ``command`` in ``workdir`` as the leader of a new process group (dummy credentials and ``env`` in its
    environment), and kills the group (the KCL and any processors it started) on the way out."""
    env = {
        **os.environ,
        **(env or {}),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
    }
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=workdir, env=env, start_new_session=True
    )
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def multilang_daemon(workdir: Path, config: str) -> Iterator[Kcl]:
    """Runs the MultiLangDaemon with ``config`` in ``workdir``; its processors log their records to
    ``records.jsonl``, the daemon to ``kcl.log``."""
    props = workdir / "app.properties"
    props.write_text(config)
    kcl = Kcl(workdir / "records.jsonl", workdir / "kcl.log")
    command = java_command("software.amazon.kinesis.multilang.MultiLangDaemon", "--properties-file", str(props))
    env = {"KCL_RECORDS_FILE": str(kcl.records)}
    with kcl.log.open("w") as log, _process_group(command, workdir, log, subprocess.STDOUT, env):
        yield kcl


@contextmanager
def kcl_app(workdir: Path, kinesis_url: str, dynamodb_url: str, stream: str, *, retrieval: str) -> Iterator[Kcl]:
    """Runs ``KclApp.java`` (a KCL application built on the Scheduler) in ``workdir``, reading ``stream`` from its
    start; its stdout (one line per record) goes to ``records.jsonl``, the KCL's log to ``kcl.log``."""
    kcl = Kcl(workdir / "records.jsonl", workdir / "kcl.log")
    command = java_command("KclApp", kinesis_url, dynamodb_url, stream, f"{stream}-app", retrieval)
    with kcl.records.open("w") as out, kcl.log.open("w") as log, _process_group(command, workdir, out, log):
        yield kcl


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records written so far: complete lines only (a writer may be in the middle of one)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines]


def wait_for_records(kcl: Kcl, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The records once ``done`` holds for them (polled); fails with the KCL's log at the deadline."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = read_records(kcl.records)
        if done(got):
            return got
        if time.monotonic() > deadline:
            tail = kcl.log.read_text()[-4000:] if kcl.log.exists() else ""
            raise AssertionError(f"the KCL delivered {len(got)} records; its log ends with:\n{tail}")
        time.sleep(0.2)


def wait_active(boto: Any, stream: str) -> None:
    boto.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600})


def put(boto: Any, stream: str, tag: str, n: int) -> list[bytes]:
    data = [f"{tag}-{i}".encode() for i in range(n)]
    records = [{"Data": d, "PartitionKey": f"key-{i}"} for i, d in enumerate(data)]
    assert boto.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0
    return data


def reads_through_a_split_and_a_merge(
    boto: Any, stream: str, start: Callable[[str], AbstractContextManager[Kcl]], *, consumer: str | None
) -> None:
    """Creates ``stream`` with 2 shards and puts records; ``start(dynamodb_url)`` runs a KCL reading it, while the
    stream is split and then merged, with records put after each. Asserts that the KCL delivered each record exactly
    once, from the shard that holds it, and no shard's records before its parents' last ones; and that it registered
    ``consumer`` (fan-out retrieval) or no consumer at all (polling)."""
    boto.create_stream(StreamName=stream, ShardCount=2)
    wait_active(boto, stream)
    sent = put(boto, stream, "first", 30)

    def holds(expected: list[bytes]) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda got: {r["data"].encode("latin-1") for r in got} >= set(expected)

    with dynamodb() as ddb, start(ddb) as kcl:
        wait_for_records(kcl, holds(sent))

        boto.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(1 << 126))
        wait_active(boto, stream)
        sent += put(boto, stream, "split", 30)
        wait_for_records(kcl, holds(sent))

        # shardId-000000000003 (the upper half of the split shard) and shardId-000000000001 are adjacent.
        boto.merge_shards(
            StreamName=stream, ShardToMerge="shardId-000000000003", AdjacentShardToMerge="shardId-000000000001"
        )
        wait_active(boto, stream)
        sent += put(boto, stream, "merged", 30)
        got = wait_for_records(kcl, holds(sent))

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
    arn = boto.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    registered = [c["ConsumerName"] for c in boto.list_stream_consumers(StreamARN=arn)["Consumers"]]
    assert registered == ([] if consumer is None else [consumer])
