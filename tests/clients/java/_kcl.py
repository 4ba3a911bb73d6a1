"""The KCL 2.x MultiLangDaemon (the Java process amazon_kclpy runs) pointed at a shardline endpoint, with moto's
DynamoDB server as its lease table; record processors in Python (``kcl_processor.py``) log every record they get."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._java import HERE, java_command, unavailable

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
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


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


@contextmanager
def multilang_daemon(workdir: Path, config: str) -> Iterator[Path]:
    """Runs the MultiLangDaemon with ``config`` in ``workdir``; yields the file its processors log records to. The
    daemon and the processors it started (one process group) are killed on the way out."""
    props = workdir / "app.properties"
    props.write_text(config)
    records = workdir / "records.jsonl"
    env = {
        **os.environ,
        "KCL_RECORDS_FILE": str(records),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
    }
    with (workdir / "daemon.log").open("w") as log:
        proc = subprocess.Popen(
            java_command("software.amazon.kinesis.multilang.MultiLangDaemon", "--properties-file", str(props)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        try:
            yield records
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_records(path: Path, done: Callable[[list[dict[str, Any]]], bool], log: Path) -> list[dict[str, Any]]:
    """The processors' records once ``done`` holds for them (polled); fails with the daemon's log at the deadline."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = read_records(path)
        if done(got):
            return got
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise AssertionError(f"the KCL delivered {len(got)} records; its log ends with:\n{tail}")
        time.sleep(0.2)
