"""Sampling real objects: an Engine's stream and shard counters (ManualClock), and a running project with a real
worker-process function, its mapping and the EMF lines it prints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _faults import Disk, Fsync, journal_files
from shardline import Engine, ManualClock
from shardline.errors import ServiceUnavailable
from shardline.metrics.alarms import AlarmManager, default_rules_for
from shardline.metrics.catalog import METRICS
from shardline.metrics.collect import BATCH_BUCKETS, Collector, Snapshot
from shardline.metrics.service import Monitor
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.config import load_config
from shardline.runtime.project import Project
from shardline.runtime.supervisor import Mapping

START_MS = 1_699_999_200_000


def values(snap: Snapshot, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    fam = snap.family(name)
    return {} if fam is None else dict(fam.samples)


def one(snap: Snapshot, name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    got = values(snap, name)
    assert want in got, (name, sorted(got))
    return got[want]


async def test_engine_counters(tmp_path: Path) -> None:
    clock = ManualClock(START_MS)
    async with Engine(data_dir=tmp_path, fsync="never", clock=clock) as engine:
        await engine.create_stream("s", 2)
        await engine.put_records([PutRecordsRequestEntry(b"x" * 10, f"k{i}") for i in range(20)], stream_name="s")
        await engine.put_record(stream_name="s", data=b"yy", partition_key="p")
        it = await engine.get_shard_iterator(
            stream_name="s", shard_id="shardId-000000000000", shard_iterator_type="TRIM_HORIZON"
        )
        clock.advance(5)
        page = await engine.get_records(it, limit=1)
        assert len(page.records) == 1
        collector = Collector(engine)
        snap = collector.collect(clock.now_ms())

        assert one(snap, "shardline_stream_incoming_records_total", stream="s") == 21
        shard_in = values(snap, "shardline_shard_incoming_records_total")
        assert sum(shard_in.values()) == 21 and len(shard_in) == 2  # two shards: cheap, so per-shard series
        pk_bytes = sum(len(f"k{i}") for i in range(20)) + 1
        assert one(snap, "shardline_stream_incoming_bytes_total", stream="s") == 200 + 2 + pk_bytes
        assert one(snap, "shardline_stream_outgoing_records_total", stream="s") == 1
        assert one(snap, "shardline_shard_outgoing_records_total", stream="s", shard="shardId-000000000000") == 1
        assert one(snap, "shardline_stream_get_records_requests_total", stream="s", outcome="success") == 1
        assert one(snap, "shardline_stream_put_requests_total", stream="s", api="PutRecords", outcome="success") == 1
        assert one(snap, "shardline_stream_put_requests_total", stream="s", api="PutRecord", outcome="success") == 1
        # one record read of several written 5 s before: the reader is 5 s behind the tip
        assert one(snap, "shardline_stream_iterator_age_seconds", stream="s") == 5.0
        assert one(snap, "shardline_shard_iterator_age_seconds", stream="s", shard="shardId-000000000000") == 5.0
        assert one(snap, "shardline_stream_shards", stream="s", state="open") == 2
        assert one(snap, "shardline_stream_retention_seconds", stream="s") == 86400
        assert one(snap, "shardline_stream_last_incoming_record_timestamp_seconds", stream="s") == START_MS / 1000
        assert one(snap, "shardline_stream_info", stream="s", status="ACTIVE", mode="PROVISIONED") == 1
        [(lb, hist)] = snap.family("shardline_stream_put_latency_seconds").histograms  # type: ignore[union-attr]
        assert lb == (("stream", "s"),) and hist.count == 2 and hist.cumulative == sorted(hist.cumulative)

        # a minute without reads: no iterator age (CloudWatch emits none either)
        clock.advance(61)
        snap = collector.collect(clock.now_ms())
        assert values(snap, "shardline_stream_iterator_age_seconds") == {}
        assert values(snap, "shardline_shard_iterator_age_seconds") == {}

        # resharding: the parent is closed but still counted until it expires
        await engine.split_shard(
            stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 126)
        )
        snap = collector.collect(clock.now_ms())
        assert one(snap, "shardline_stream_shards", stream="s", state="open") == 3
        assert one(snap, "shardline_stream_shards", stream="s", state="closed") == 1

        # every family the collector produced is in the catalog, with its documented labels
        for fam in snap.families:
            assert fam.metric.name in METRICS
            for labels, _ in fam.samples:
                assert {k for k, _ in labels} == set(fam.metric.labels), fam.metric.name


async def test_storage_metrics(tmp_path: Path) -> None:
    """The journal and the group committer are sampled like everything else."""
    async with Engine(data_dir=tmp_path, fsync="always") as engine:
        await engine.create_stream("s", 4)
        collector = Collector(engine)
        before = collector.collect(0)
        for _ in range(3):
            await engine.put_records([PutRecordsRequestEntry(b"x" * 50, f"k{i}") for i in range(40)], stream_name="s")
        snap = collector.collect(1)
        assert one(snap, "shardline_journal_frames_total") == one(before, "shardline_journal_frames_total") + 3
        assert (
            one(snap, "shardline_storage_fsync_rounds_total") >= one(before, "shardline_storage_fsync_rounds_total") + 1
        )
        assert one(snap, "shardline_journal_staged_bytes") > 0  # 120 records wait for their segments
        assert one(snap, "shardline_journal_unreplayed_bytes") > 0
        assert one(snap, "shardline_journal_replayed_records") == 0
        checkpoints = one(snap, "shardline_journal_checkpoints_total")
        await engine.checkpoint()
        after = collector.collect(2)
        assert one(after, "shardline_journal_checkpoints_total") == checkpoints + 1
        assert one(after, "shardline_journal_staged_bytes") == 0
        assert one(after, "shardline_journal_unreplayed_bytes") == 0


async def test_storage_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """shardline_storage_state: 1 for the data directory's state (a full disk, a failed fsync), 0 for the others."""
    disk = Disk(tmp_path, monkeypatch)
    fsync = Fsync(journal_files(tmp_path), monkeypatch)
    async with Engine(data_dir=tmp_path, fsync="always") as engine:
        await engine.create_stream("s", 1)
        collector = Collector(engine)

        def states() -> dict[str, float]:
            return {dict(lb)["state"]: v for lb, v in values(collector.collect(0), "shardline_storage_state").items()}

        async def put_refused() -> None:
            with pytest.raises(ServiceUnavailable):
                await engine.put_record(stream_name="s", data=b"refused", partition_key="k")

        assert states() == {"ok": 1, "disk_full": 0, "failed": 0}
        disk.full = True
        await put_refused()
        assert states() == {"ok": 0, "disk_full": 1, "failed": 0}
        disk.full = False
        fsync.failing = True  # the journal write goes through (the disk is no longer full), its fsync fails
        await put_refused()
        assert states() == {"ok": 0, "disk_full": 0, "failed": 1}


async def test_many_shards_get_shard_series_only_when_enhanced_monitoring_asks(tmp_path: Path) -> None:
    async with Engine(data_dir=tmp_path, fsync="never", clock=ManualClock(START_MS)) as engine:
        await engine.create_stream("big", 20)
        await engine.put_record(stream_name="big", data=b"x", partition_key="p")
        collector = Collector(engine)
        snap = collector.collect(START_MS)
        assert values(snap, "shardline_shard_incoming_records_total") == {}  # too many shards for per-shard series
        assert one(snap, "shardline_stream_incoming_records_total", stream="big") == 1
        await engine.enable_enhanced_monitoring(["IncomingRecords"], stream_name="big")
        snap = collector.collect(START_MS)
        assert len(values(snap, "shardline_shard_incoming_records_total")) == 20
        assert values(snap, "shardline_shard_incoming_bytes_total") == {}  # not asked for


async def test_write_throttling(tmp_path: Path) -> None:
    async with Engine(data_dir=tmp_path, fsync="never", enforce_limits=True, clock=ManualClock(START_MS)) as engine:
        await engine.create_stream("t", 1)
        for _ in range(3):
            result = await engine.put_records(
                [PutRecordsRequestEntry(b"x", str(i)) for i in range(500)], stream_name="t"
            )
        assert result.failed_record_count > 0
        snap = Collector(engine).collect(START_MS)
        throttled = one(snap, "shardline_stream_write_throttled_total", stream="t")
        assert throttled == 1500 - one(snap, "shardline_stream_incoming_records_total", stream="t") > 0
        failed = values(snap, "shardline_stream_put_records_failed_total")
        assert sum(failed.values()) == throttled


async def test_monitor_ticks_into_the_store(tmp_path: Path) -> None:
    clock = ManualClock(START_MS)
    async with Engine(data_dir=tmp_path / "data", fsync="never", clock=clock) as engine:
        monitor = Monitor(engine, clock=clock)
        await engine.create_stream("s", 1)
        for second in range(5):
            await engine.put_records([PutRecordsRequestEntry(b"x", "k")] * (second + 1), stream_name="s")
            monitor.tick()
            clock.advance(1)
        got = monitor.store.query(
            "shardline_stream_incoming_records_total",
            {"stream": "s"},
            start_ms=START_MS,
            end_ms=START_MS + 5000,
            period_s=1,
            stat="Sum",
        )
        assert [v for _, v in got[0][1]] == [1, 2, 3, 4, 5]
        assert monitor.samples == 5 and monitor.sample_seconds > 0
        await monitor.stop()  # never started: still writes the store
        assert (tmp_path / "data" / "metrics" / "series.bin").exists()


HANDLER = """
import json

def handler(event, context):
    n = len(event["Records"])
    print(json.dumps({"_aws": {"Timestamp": 0, "CloudWatchMetrics": [{"Namespace": "orders",
        "Dimensions": [["service"]], "Metrics": [{"Name": "BatchRecords", "Unit": "Count"}]}]},
        "service": "billing", "BatchRecords": n}))
    print("not a metric")
    for r in event["Records"]:
        if r["kinesis"]["partitionKey"] == "poison":
            raise ValueError("poison record")
    return {}
"""

# The project of both tests below, up to its mapping.
BILLING = """\
streams:
  orders: {shards: 1}
functions:
  billing:
    handler: handlers/billing.handler
    events:
"""

CONFIG = (
    BILLING
    + """\
      - stream:
          arn: arn:aws:kinesis:us-east-1:000000000000:stream/orders
          batchSize: 10
          batchWindow: 1
          startingPosition: TRIM_HORIZON
          maximumRetryAttempts: 0
          destinations:
            onFailure: {type: file, path: failures.jsonl}
"""
)


async def wait_for(cond: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Running:
    engine: Engine
    project: Project
    mapping: Mapping
    monitor: Monitor


@asynccontextmanager
async def running_project(tmp_path: Path, config_text: str, *, sampling: bool) -> AsyncIterator[Running]:
    """The project of ``config_text`` (its handler is HANDLER) started in an engine, with a monitor over it whose
    sampling loop runs with ``sampling``; both stopped on the way out."""
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "billing.py").write_text(HANDLER)
    (tmp_path / "shardline.yml").write_text(config_text)
    config = load_config(tmp_path / "shardline.yml")
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        project = Project(config, engine)
        await project.start()
        monitor = Monitor(engine, project=project, persist=False)
        if sampling:
            await monitor.start()
        try:
            [mapping] = project.mappings
            yield Running(engine, project, mapping, monitor)
        finally:
            await monitor.stop()
            await project.stop()


async def test_project_functions_mappings_and_emf(tmp_path: Path) -> None:
    async with running_project(tmp_path, CONFIG, sampling=True) as run:
        project, mapping = run.project, run.mapping
        records = [PutRecordsRequestEntry(b"{}", "poison" if i == 12 else f"k{i}") for i in range(25)]
        await run.engine.put_records(records, stream_name="orders")

        def totals() -> dict[str, int]:
            return mapping.stats().totals

        await wait_for(lambda: totals()["invoked_records"] == 25 and totals()["succeeded"] == 15, "the batches")
        await wait_for(lambda: totals()["dead_lettered"] == 10, "the on-failure record")
        snap = run.monitor.tick()
    esm = {"mapping": mapping.uuid, "function": "billing", "stream": "orders"}
    assert one(snap, "shardline_function_invocations_total", function="billing", outcome="success") == 2
    assert one(snap, "shardline_function_invocations_total", function="billing", outcome="error") == 1
    assert one(snap, "shardline_function_cold_starts_total", function="billing") >= 1
    [(_, duration)] = snap.family("shardline_function_duration_seconds").histograms  # type: ignore[union-attr]
    assert duration.count == 3
    assert one(snap, "shardline_esm_polled_records_total", **esm) == 25
    assert one(snap, "shardline_esm_invoked_records_total", **esm) == 25
    assert one(snap, "shardline_esm_failed_invoke_records_total", **esm) == 10
    assert one(snap, "shardline_esm_invocations_total", **esm, outcome="error") == 1
    assert one(snap, "shardline_esm_on_failure_delivered_records_total", **esm) == 10
    assert one(snap, "shardline_esm_dropped_records_total", **esm) == 0  # it reached the destination: not lost
    assert one(snap, "shardline_esm_state", **esm, state="Enabled") == 1
    assert one(snap, "shardline_esm_lag_records", **esm, shard="shardId-000000000000") == 0
    [(_, batches)] = snap.family("shardline_esm_batch_size_records").histograms  # type: ignore[union-attr]
    assert batches.count == 3 and batches.total == 25
    assert batches.cumulative[BATCH_BUCKETS.index(5.0)] == 1  # the batch of 5 (10 + 10 + 5)
    # the handler's EMF line, once per invocation, with its namespace, dimension and function
    custom = snap.family("shardline_custom_batch_records")
    assert custom is not None and custom.metric.kind == "summary"
    labels = (("function", "billing"), ("namespace", "orders"), ("service", "billing"))
    assert custom.summaries == [(labels, 25.0, 3.0)]
    assert one(snap, "shardline_metrics_emf_lines_total", result="ok") == 3
    assert "invoke" not in vars(project.pools["billing"])  # the EMF hook is gone after stop


POISON_AT_THE_TIP = BILLING + "      - stream: {stream: orders, batchSize: 10, startingPosition: TRIM_HORIZON}\n"


async def test_a_batch_retried_at_the_tip_has_an_iterator_age_and_a_lag(tmp_path: Path) -> None:
    """The mapping caught up (its checkpoint at the tip, lag 0), then a poison record arrives and is retried without
    end: nothing settles, so no checkpoint is written, yet the record waits. Its iterator age and lag are reported,
    as the alarms that must fire before it ages out need."""
    async with running_project(tmp_path, POISON_AT_THE_TIP, sampling=False) as run:
        engine, mapping = run.engine, run.mapping
        await engine.put_records([PutRecordsRequestEntry(b"{}", f"k{i}") for i in range(5)], stream_name="orders")
        await wait_for(lambda: mapping.stats().totals["succeeded"] == 5, "the first records")
        await asyncio.wait_for(mapping.idle(), 20)
        [stats] = mapping.shard_stats().values()
        assert stats.lag_records == 0
        await engine.put_record(stream_name="orders", data=b"{}", partition_key="poison")
        await wait_for(lambda: mapping.stats().totals["function_errors"] >= 2, "the poison record, retried")
        snap = run.monitor.snapshot()
        outstanding, age_ms = stats.outstanding, stats.iterator_age_ms  # (as the snapshot read them)
    shard = {"mapping": mapping.uuid, "function": "billing", "stream": "orders", "shard": "shardId-000000000000"}
    assert outstanding == 1 and age_ms > 0
    assert one(snap, "shardline_esm_iterator_age_seconds", **shard) == age_ms / 1000
    assert one(snap, "shardline_esm_lag_records", **shard) == 1


async def test_sampling_loop_persists_and_refreshes_alarm_rules(tmp_path: Path) -> None:
    clock = ManualClock(START_MS)
    async with Engine(data_dir=tmp_path / "data", fsync="never", clock=clock) as engine:
        await engine.create_stream("s", 1)
        built: list[AlarmManager] = []

        def factory(store: Any) -> AlarmManager:
            built.append(AlarmManager(store, default_rules_for(engine), [], clock))
            return built[0]

        monitor = Monitor(
            engine, clock=clock, alarms_factory=factory, rules=lambda: default_rules_for(engine), persist_interval_s=2
        )
        await monitor.start()
        try:
            assert len(built) == 1 and monitor.alarms is built[0]
            deadline = time.monotonic() + 10
            for _ in range(3):
                await engine.put_record(stream_name="s", data=b"x", partition_key="k")
            while monitor.samples < 3:  # the loop samples whenever the clock reaches a whole second
                assert time.monotonic() < deadline, "the sampling loop did not run"
                clock.advance(1)
                await asyncio.sleep(0.01)
            path = tmp_path / "data" / "metrics" / "series.bin"
            while not path.exists():  # written every 2 s (of the clock) by a worker thread
                assert time.monotonic() < deadline, "the store was never written"
                clock.advance(1)
                await asyncio.sleep(0.01)
            # a stream created later gets its alarm rules at the next sample
            await engine.create_stream("later", 1)
            while not any(a["name"].startswith("stream:later:") for a in built[0].states()):
                assert time.monotonic() < deadline, "the rules were not refreshed"
                clock.advance(1)
                await asyncio.sleep(0.01)
        finally:
            await monitor.stop()
        got = monitor.store.query(
            "shardline_stream_incoming_records_total",
            {"stream": "s"},
            start_ms=START_MS,
            end_ms=START_MS + 60_000,
            period_s=60,
            stat="Sum",
        )
        assert got[0][1] == [(START_MS, 3.0)]
