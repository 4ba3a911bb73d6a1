"""/api/catalog against /metrics: every family a process can export is in its catalogue, the families that features
bring through collector hooks (shard leases, CDC sources) included."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shardline import Engine
from shardline.metrics.catalog import METRICS, Metric
from shardline.metrics.collect import Collector, Family, FamilyHook
from shardline.metrics.leases import LEASE_METRICS, lease_families, lease_hook, mapping_leases
from shardline.metrics.service import Monitor
from shardline.metrics.sources import SOURCE_METRICS, source_hook
from shardline.runtime.checkpoints import LeaseStore
from shardline.runtime.functions import FunctionConfig, FunctionPool, InProcessFunction
from shardline.runtime.leases.coordinator import LeaseTiming
from shardline.runtime.mapping import MappingConfig
from shardline.runtime.source import EngineSource
from shardline.runtime.supervisor import Mapping
from shardline.sources.stats import SourceFigures

from .test_http import call, get_json

WAIT_S = 30
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
EMF_LINE = json.dumps(
    {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [{"Namespace": "shop", "Dimensions": [["kind"]], "Metrics": [{"Name": "orders"}]}],
        },
        "kind": "web",
        "orders": 3,
    }
)


# /api/overview's lease counters -> the family of each
COUNTER_FAMILIES = {
    "taken": "shardline_lease_taken_total",
    "stolen": "shardline_lease_stolen_total",
    "handoffs_received": "shardline_lease_handoffs_received_total",
    "handoff_requests": "shardline_lease_handoff_requests_total",
    "released": "shardline_lease_released_total",
    "lost": "shardline_lease_lost_total",
    "store_errors": "shardline_lease_store_errors_total",
    "statements": "shardline_lease_store_statements_total",
    "statement_seconds": "shardline_lease_store_statement_seconds_total",
}


class Sources:
    """The figures of one source that has snapshot a table and reads the binary log (what
    ``shardline.sources.service.Sources`` reports; its reader needs a MySQL server)."""

    lag_alarm_s = 60.0

    def names(self) -> list[str]:
        return ["shop"]

    def figures(self) -> list[SourceFigures]:
        return [
            SourceFigures(
                name="shop",
                stream="s",
                rows_total={"db.orders": 40},
                snapshot_rows={"db.orders": 30},
                snapshot_estimates={"db.orders": 35},
                snapshot_running=False,
                snapshot_done=True,
                lag_seconds=0.5,
                binlog_bytes_behind=120,
                binlog_at_risk=False,
                binlog_purged=False,
            )
        ]


class Project:
    def __init__(self, pools: dict[str, FunctionPool], mappings: list[Mapping]) -> None:
        self.pools = pools
        self.mappings = mappings


def _exported(body: bytes) -> dict[str, str]:
    """Family name -> kind, from the ``# TYPE`` lines of a /metrics page."""
    return dict(_TYPE.findall(body.decode()))


def _shared_mapping(engine: Engine, tmp_path: Path) -> tuple[Mapping, LeaseStore]:
    """A mapping sharing its shards through a lease table (it runs a lease worker), alone in that table."""
    cfg = MappingConfig("fn", "arn:aws:kinesis:us-east-1:000000000000:stream/s", "TRIM_HORIZON", batch_size=5)
    store = LeaseStore(tmp_path / "leases.db", owner="w1")
    mapping = Mapping(
        cfg,
        function=InProcessFunction(lambda event, context: None, name="fn"),
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
        role_arn="arn:aws:iam::000000000000:role/fn",
        source=EngineSource(engine, "s"),
        store=store,
        leasing=LeaseTiming(ttl_s=3.0),
    )
    return mapping, store


async def _until_leases_show(monitor: Monitor) -> set[str]:
    """The families of a snapshot once every lease family is in it (the worker took its leases and timed a
    statement)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        names = {f.metric.name for f in monitor.snapshot().families}
        if {m.name for m in LEASE_METRICS} <= names:
            return names
        assert time.monotonic() < deadline, f"lease families missing: {sorted(names)}"
        await asyncio.sleep(0.02)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[FunctionPool]:
    yield FunctionPool(FunctionConfig(name="fn", handler="handler.handler", code_dir=tmp_path))


async def test_every_family_metrics_exports_is_in_the_catalogue(tmp_path: Path, pool: FunctionPool) -> None:
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        await engine.create_stream("s", 2)
        mapping, store = _shared_mapping(engine, tmp_path)
        project = Project({"fn": pool}, [mapping])
        monitor = Monitor(engine, project=project, persist=False, hooks=[source_hook(Sources())])
        monitor.emf.feed("fn", EMF_LINE)
        mapping.start()
        try:
            await _until_leases_show(monitor)
            monitor.tick()
            exported = _exported((await call(monitor.app, "/metrics"))[2])
            catalog = await get_json(monitor.app, "/api/catalog")
        finally:
            await mapping.stop()
            store.close()
    listed = {m["name"]: m for m in catalog["metrics"]}
    custom = {m["name"] for m in catalog["custom"]}
    assert set(exported) >= {m.name for m in LEASE_METRICS} | set(SOURCE_METRICS)
    assert custom and custom <= set(exported)
    assert set(exported) - custom <= set(listed), sorted(set(exported) - custom - set(listed))
    for name, kind in exported.items():
        if name not in custom:
            assert listed[name]["kind"] == kind and listed[name]["help"] and listed[name]["cloudwatch"]
    assert set(listed) == set(METRICS) | {m.name for m in LEASE_METRICS} | set(SOURCE_METRICS)


async def test_the_catalogue_lists_the_families_of_the_hooks_this_process_runs(tmp_path: Path) -> None:
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        serve = Monitor(engine, persist=False)
        assert set(serve.catalog()) == set(METRICS)
        up = Monitor(engine, project=Project({}, []), persist=False, hooks=[source_hook(Sources())])
        assert set(up.catalog()) == set(METRICS) | {m.name for m in LEASE_METRICS} | set(SOURCE_METRICS)
        assert [m["name"] for m in (await get_json(up.app, "/api/catalog"))["metrics"]] == list(up.catalog())


async def test_the_lease_and_source_hooks_return_only_the_families_they_declare(
    tmp_path: Path, pool: FunctionPool
) -> None:
    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        await engine.create_stream("s", 2)
        mapping, store = _shared_mapping(engine, tmp_path)
        project = Project({"fn": pool}, [mapping])
        monitor = Monitor(engine, project=project, persist=False)
        mapping.start()
        try:
            try:
                await _until_leases_show(monitor)
                for hook in (lease_hook(project), source_hook(Sources())):
                    declared = {m.name: m for m in hook.metrics}
                    for fam in hook.sample(0):
                        assert declared.get(fam.metric.name) == fam.metric and fam.samples
            finally:
                await mapping.stop()
            # The dashboard's lease counters (read once the worker stopped counting) are the families' values.
            doc = mapping_leases(mapping)
            families = {f.metric.name: f.samples for f in lease_families([mapping])}
        finally:
            store.close()
    assert doc is not None and doc["shared"] is True
    counters = doc["counters"]
    assert counters["taken"] >= 2 and counters["statements"] > 0
    assert list(counters) == list(COUNTER_FAMILIES)
    for key, family in COUNTER_FAMILIES.items():
        [(_, sampled)] = families[family]
        assert sampled == counters[key], key


async def test_a_failing_hook_is_logged_once_and_the_rest_still_sampled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = Metric("shardline_extra", "gauge", "1", "An extra family.", "n/a (a test)")
    calls: list[int] = []

    def broken(now_ms: int) -> list[Family]:
        calls.append(now_ms)
        raise RuntimeError("cannot read")

    def fine(now_ms: int) -> list[Family]:
        return [Family(extra, samples=[((), float(now_ms))])]

    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        await engine.create_stream("s", 1)
        collector = Collector(engine)
        collector.hooks += [FamilyHook((extra,), broken), FamilyHook((extra,), fine)]
        assert collector.catalog()["shardline_extra"] == extra
        with caplog.at_level(logging.ERROR, logger="shardline.metrics"):
            snaps = [collector.collect(now) for now in (1000, 2000)]
    assert calls == [1000, 2000]
    assert [r.message for r in caplog.records] == ["metrics: a collector hook failed"]
    for now, snap in zip((1000, 2000), snaps, strict=True):
        fam: Any = snap.family("shardline_extra")
        assert fam.samples == [((), float(now))]
        assert snap.family("shardline_stream_incoming_records_total") is not None
