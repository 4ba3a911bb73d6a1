"""The same project against a Kinesis endpoint (a real `shardline serve` process) instead of the embedded engine."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shardline.runtime.config import load_config
from shardline.runtime.mapping import RuntimeTuning
from shardline.runtime.remote import RemoteProject, kinesis_client

from ._e2e import serve, shardline_run, write_project


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    with serve(tmp_path) as url:
        yield url


def project(tmp_path: Path) -> Path:
    return write_project(
        tmp_path,
        "shardline.yml",
        f"""
streams:
  orders: {{shards: 2}}
  orders-failed: {{shards: 1}}
functions:
  process:
    handler: handlers/app.handler
    environment: {{SEEN_FILE: "{tmp_path / "seen.txt"}"}}
    events:
      - stream:
          stream: orders
          batchSize: 10
          maximumRetryAttempts: 0
          bisectBatchOnFunctionError: true
          destinations:
            onFailure: {{type: stream, name: orders-failed}}
""",
    )


def failure_messages(client: Any) -> list[dict[str, Any]]:
    shard = client.list_shards(StreamName="orders-failed")["Shards"][0]["ShardId"]
    it = client.get_shard_iterator(StreamName="orders-failed", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return [json.loads(r["Data"]) for r in client.get_records(ShardIterator=it["ShardIterator"])["Records"]]


def test_a_project_runs_unchanged_against_a_kinesis_endpoint(
    tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    asyncio.run(_run(tmp_path, endpoint))


async def _run(tmp_path: Path, endpoint: str) -> None:
    client = kinesis_client(endpoint, "us-east-1")
    config = load_config(project(tmp_path))
    remote = RemoteProject(
        config,
        client,
        tmp_path / "state",
        create_streams=True,
        tuning=RuntimeTuning(poll_interval_s=0.05, retry_backoff_s=0.01),
    )
    await remote.start()
    try:
        records = [{"Data": f"r{i}".encode(), "PartitionKey": f"k{i % 7}"} for i in range(200)]
        records[77] = {"Data": b"poison", "PartitionKey": "k0"}
        out = await asyncio.to_thread(client.put_records, StreamName="orders", Records=records)
        assert out["FailedRecordCount"] == 0
        deadline = time.monotonic() + 30
        seen: list[str] = []
        failures: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen_file = tmp_path / "seen.txt"
            seen = seen_file.read_text().split() if seen_file.exists() else []
            failures = await asyncio.to_thread(failure_messages, client)
            if len(seen) >= 199 and failures:
                break
            await asyncio.sleep(0.1)
    finally:
        await remote.stop()
    assert sorted(seen) == sorted(f"r{i}" for i in range(200) if i != 77)
    assert len(failures) == 1
    info = failures[0]["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == out["Records"][77]["SequenceNumber"]
    assert info["streamArn"].endswith(":stream/orders")


def test_shardline_run_processes_records_from_an_endpoint(
    tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with shardline_run(project(tmp_path), endpoint, tmp_path / "state", stderr=subprocess.DEVNULL) as run:
        assert run.stdout is not None
        assert "running 1 mappings" in run.stdout.readline()
        client = kinesis_client(endpoint, "us-east-1")
        client.put_records(
            StreamName="orders", Records=[{"Data": f"x{i}".encode(), "PartitionKey": str(i)} for i in range(20)]
        )
        seen_file = tmp_path / "seen.txt"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not seen_file.exists() or len(seen_file.read_text().split()) < 20):
            time.sleep(0.1)
        assert sorted(seen_file.read_text().split()) == sorted(f"x{i}" for i in range(20))
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 0
