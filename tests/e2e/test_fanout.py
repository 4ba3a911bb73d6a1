"""Mappings that read through an enhanced fan-out consumer (SubscribeToShard): embedded, and against a real
`shardline serve` across subscription renewals; every record once, a poison record retried and sent on."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine
from shardline.projectfile import load_project
from shardline.runtime.config import load_config
from shardline.runtime.fanout import FanoutSource
from shardline.runtime.mapping import RuntimeTuning
from shardline.runtime.project import Project
from shardline.runtime.remote import RemoteProject, kinesis_client

from ._e2e import seen, serve, shardline_run, write_project


def native(tmp_path: Path, consumer: str) -> Path:
    return write_project(
        tmp_path,
        "shardline.yml",
        f"""
streams:
  orders: {{shards: 2}}
functions:
  process:
    handler: handlers/app.handler
    environment: {{SEEN_FILE: "{tmp_path / "seen.txt"}"}}
    events:
      - stream:
          stream: orders
          consumer: {consumer}
          batchSize: 10
          maximumRetryAttempts: 2
          bisectBatchOnFunctionError: true
          destinations:
            onFailure: {{type: file, path: "{tmp_path / "failures.jsonl"}"}}
""",
    )


async def put_and_wait(
    tmp_path: Path, put: Any, first: int, count: int, *, poison: int | None = None, expect: int
) -> None:
    """Put records r<first>.. (``poison`` replaced by a record the handler fails on), then wait until ``expect``
    records in all have been handled (and the poison record sent to the failure file)."""
    records = [{"Data": f"r{i}".encode(), "PartitionKey": f"k{i % 7}"} for i in range(first, first + count)]
    if poison is not None:
        records[poison - first] = {"Data": b"poison", "PartitionKey": "k0"}
    await put(records)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen_file = tmp_path / "seen.txt"
        done = len(seen_file.read_text().split()) if seen_file.exists() else 0
        if done >= expect and (poison is None or (tmp_path / "failures.jsonl").exists()):
            return
        await asyncio.sleep(0.05)


async def test_an_embedded_mapping_with_its_own_consumer_reads_by_subscription(tmp_path: Path) -> None:
    config = load_config(native(tmp_path, "true"))
    [consumer] = config.consumers
    assert consumer.name == "process-orders-consumer"
    assert not [n for n in config.notices if "fan-out" in n]
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        project = Project(config, engine, tuning=RuntimeTuning(poll_interval_s=0.05, retry_backoff_s=0.01))
        await project.start()
        try:
            [mapping] = project.mappings
            assert isinstance(mapping.source, FanoutSource)

            async def put(records: list[dict[str, Any]]) -> None:
                entries = [(r["Data"], r["PartitionKey"]) for r in records]
                for data, key in entries:
                    await engine.put_record(stream_name="orders", data=data, partition_key=key)

            await put_and_wait(tmp_path, put, 0, 60, poison=17, expect=59)
        finally:
            await project.stop()
    assert seen(tmp_path) == sorted(f"r{i}" for i in range(60) if i != 17)
    failures = (tmp_path / "failures.jsonl").read_text().splitlines()
    assert len(failures) == 1
    assert '"batchSize": 1' in failures[0] or '"batchSize":1' in failures[0]


def test_serverless_consumer_true_and_a_consumer_arn_read_through_the_consumer(tmp_path: Path) -> None:
    cfg = write_project(
        tmp_path,
        "serverless.yml",
        """
service: shop
provider: {name: aws, runtime: python3.12, region: us-east-1}
functions:
  process:
    handler: handlers/app.handler
    events:
      - stream: {type: kinesis, arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders", consumer: true}
      - stream:
          type: kinesis
          arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
          consumer: "arn:aws:kinesis:us-east-1:000000000000:stream/orders/consumer/shared:1700000000"
      - stream: {type: kinesis, arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders"}
""",
    )
    config = load_project(cfg).config
    names = [config.mapping_consumers.get(mc.uuid) for _fn, mc in config.mappings]
    assert [c.name if c else None for c in names] == ["process-orders-consumer", "shared", None]
    assert {c.name for c in config.consumers} == {"process-orders-consumer", "shared"}
    assert not [n for n in config.notices if "fan-out" in n]


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    with serve(tmp_path, "--subscription-lifetime", "1") as url:
        yield url


def test_shardline_run_reads_through_a_consumer_across_subscription_renewals(
    tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    asyncio.run(_run(tmp_path, endpoint))


async def _run(tmp_path: Path, endpoint: str) -> None:
    client = kinesis_client(endpoint, "us-east-1")
    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/orders/consumer/reader:1"
    config = load_config(native(tmp_path, f'"{arn}"'))
    remote = RemoteProject(
        config,
        client,
        tmp_path / "state",
        create_streams=True,
        tuning=RuntimeTuning(poll_interval_s=0.05, retry_backoff_s=0.01),
    )
    await remote.start()

    async def put(records: list[dict[str, Any]]) -> None:
        out = await asyncio.to_thread(client.put_records, StreamName="orders", Records=records)
        assert out["FailedRecordCount"] == 0

    try:
        [mapping] = remote.mappings
        source = mapping.source
        assert isinstance(source, FanoutSource)
        await put_and_wait(tmp_path, put, 0, 50, poison=7, expect=49)
        # every shard's subscription has ended (1 s lifetime) and been renewed at its continuation
        opened = dict(source.subscriptions)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(source.subscriptions[s] >= opened[s] + 1 for s in opened):
            await asyncio.sleep(0.05)
        assert len(opened) == 2
        assert all(source.subscriptions[s] > opened[s] for s in opened)
        await put_and_wait(tmp_path, put, 50, 50, expect=99)
    finally:
        await remote.stop()
    consumers = client.list_stream_consumers(StreamARN=source.stream_arn)["Consumers"]
    assert [c["ConsumerName"] for c in consumers] == ["reader"]
    assert seen(tmp_path) == sorted(f"r{i}" for i in range(100) if i != 7)
    assert len((tmp_path / "failures.jsonl").read_text().splitlines()) == 1


async def test_a_split_shard_is_read_through_the_consumer_parent_then_children(tmp_path: Path) -> None:
    config = load_config(native(tmp_path, "true"))
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        project = Project(config, engine, tuning=RuntimeTuning(poll_interval_s=0.05, retry_backoff_s=0.01))
        await project.start()

        async def put(records: list[dict[str, Any]]) -> None:
            for r in records:
                await engine.put_record(stream_name="orders", data=r["Data"], partition_key=r["PartitionKey"])

        try:
            await put_and_wait(tmp_path, put, 0, 30, expect=30)
            await engine.update_shard_count(target_shard_count=4, stream_name="orders")
            await put_and_wait(tmp_path, put, 30, 30, expect=60)
            [mapping] = project.mappings
            source = mapping.source
            assert isinstance(source, FanoutSource)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len(source.subscriptions) < 6:
                await asyncio.sleep(0.05)
            assert len(source.subscriptions) == 6  # both parents to their end, then the four children
        finally:
            await project.stop()
    assert seen(tmp_path) == sorted(f"r{i}" for i in range(60))


def test_the_shardline_run_command_reads_through_a_consumer(
    tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    client = kinesis_client(endpoint, "us-east-1")

    async def put(records: list[dict[str, Any]]) -> None:
        assert client.put_records(StreamName="orders", Records=records)["FailedRecordCount"] == 0

    cfg = native(tmp_path, "true")
    with shardline_run(cfg, endpoint, tmp_path / "state", stderr=subprocess.STDOUT) as run:
        assert run.stdout is not None
        first = ""
        while "running 1 mappings" not in first:  # the startup lines (logs included) up to the mappings running
            line = run.stdout.readline()
            assert line, first
            first += line
        asyncio.run(put_and_wait(tmp_path, put, 0, 20, expect=20))
        # the server ends every subscription after 1 s: what comes after this is read by renewed ones
        renewed = time.monotonic() + 2.5
        while time.monotonic() < renewed:
            time.sleep(0.1)
        asyncio.run(put_and_wait(tmp_path, put, 20, 20, expect=40))
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 0
        output = run.stdout.read()
    assert "fan-out delivery not applied" not in first + output
    arn = client.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]["StreamARN"]
    consumers = client.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [c["ConsumerName"] for c in consumers] == ["process-orders-consumer"]
    assert seen(tmp_path) == sorted(f"r{i}" for i in range(40))
