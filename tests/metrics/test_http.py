"""The monitoring endpoints, called in-process through the ASGI apps (the Kinesis app hands them GET requests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from shardline import Engine, ManualClock
from shardline.api import KinesisApp
from shardline.metrics.alarms import AlarmManager, default_rules_for
from shardline.metrics.catalog import METRICS
from shardline.metrics.service import Monitor
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.checkpoints import LeaseStore
from shardline.runtime.destinations import FileDestination
from shardline.runtime.functions import FunctionPool, InProcessFunction
from shardline.runtime.mapping import DestinationConfig, MappingConfig
from shardline.runtime.source import EngineSource
from shardline.runtime.supervisor import Mapping, MappingStats

START_MS = 1_699_999_200_000
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def call(app: App, path: str, query: str = "", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "headers": []}
    await app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def get_json(app: App, path: str, query: str = "", status: int = 200) -> Any:
    code, headers, body = await call(app, path, query)
    assert code == status, body
    assert headers["content-type"] == "application/json"
    return orjson.loads(body)


class Rig:
    """An engine with a ManualClock, a monitor over it, and its stream "s" with a few seconds of traffic."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = ManualClock(START_MS)
        self.engine = Engine(data_dir=tmp_path / "data", fsync="never", clock=self.clock)
        self.monitor: Monitor

    async def __aenter__(self) -> Rig:
        await self.engine.open()
        self.monitor = Monitor(self.engine, clock=self.clock, persist=False)
        await self.engine.create_stream("s", 1)
        for second in range(4):
            await self.engine.put_records([PutRecordsRequestEntry(b"abc", "k")] * (10 * (second + 1)), stream_name="s")
            self.monitor.tick()
            self.clock.advance(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.close()


async def test_kinesis_app_hands_metrics_requests_to_the_monitor(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        app = KinesisApp(rig.engine, extra_http=rig.monitor.app)
        status, headers, body = await call(app, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert 'shardline_stream_incoming_records_total{stream="s"} 100\n' in body.decode()
        status, headers, body = await call(app, "/metrics", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
        # the Kinesis API itself is untouched: a GET on / is still Kinesis' refusal
        status, _, body = await call(app, "/")
        assert status == 403 and b"AccessDeniedException" in body


async def test_query(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        app = rig.monitor.app
        q = "name=shardline_stream_incoming_records_total&label.stream=s&start=-4&period=1&stat=Sum"
        data = await get_json(app, "/api/query", q)
        assert data["stat"] == "Sum" and data["period"] == 1
        [series] = data["series"]
        assert series["labels"] == {"stream": "s"}
        assert [v for _, v in series["points"]] == [10, 20, 30, 40]
        assert series["points"][0][0] == START_MS
        # defaults: the last hour, about 360 points, Rate for a counter
        data = await get_json(app, "/api/query", "name=shardline_stream_incoming_records_total")
        assert data["stat"] == "Rate" and data["period"] == 10 and data["end"] == rig.clock.now_ms()
        assert [v for _, v in data["series"][0]["points"] if v is not None] == [25.0]
        # a gauge defaults to Average; absolute times work too
        q = f"name=shardline_stream_shards&label.state=open&start={START_MS}&end={START_MS + 2000}&period=2"
        data = await get_json(app, "/api/query", q)
        assert data["stat"] == "Average" and data["series"][0]["points"] == [[START_MS, 1.0]]
        # histograms by their family name
        q = "name=shardline_stream_put_latency_seconds&stat=SampleCount&start=-4&period=4"
        data = await get_json(app, "/api/query", q)
        assert [v for _, v in data["series"][0]["points"] if v is not None] == [4.0]
        assert (await get_json(app, "/api/query", "name=nothing_here"))["series"] == []
        for bad in (
            "",
            "name=x&stat=Median",
            "name=shardline_stream_shards&stat=Rate",
            "name=x&start=-10&end=-20",
            "name=x&period=abc",
            "name=x&start=yesterday",
            "name=x&start=-86400&period=1",
        ):
            err = await get_json(app, "/api/query", bad, status=400)
            assert err["error"]


async def test_overview_catalog_and_unknown_paths(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        app = rig.monitor.app
        data = await get_json(app, "/api/overview")
        assert data["now_ms"] == rig.clock.now_ms()
        [s] = data["streams"]
        assert (s["name"], s["status"], s["mode"], s["retention_hours"]) == ("s", "ACTIVE", "PROVISIONED", 24)
        assert (s["shards_open"], s["shards_closed"]) == (1, 0)
        assert s["last_incoming_ms"] == START_MS + 3000 and s["iterator_age_ms"] is None
        assert s["totals"]["incoming_records"] == 100 and s["rates"]["incoming_records_per_s"] == 25.0
        assert data["functions"] == [] and data["mappings"] == [] and data["alarms"] == []
        assert data["metrics"]["samples"] == 4 and data["metrics"]["series"] > 10
        catalog = await get_json(app, "/api/catalog")
        assert {m["name"] for m in catalog["metrics"]} == set(METRICS)
        assert all(m["cloudwatch"] for m in catalog["metrics"])
        assert "shardline_stream_incoming_records_total" in catalog["stored"]
        err = await get_json(app, "/api/nope", status=404)
        assert "/api/overview" in err["error"]
        assert (await call(app, "/metrics", method="POST"))[0] == 404


async def test_shard_map_with_lineage(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        e = rig.engine
        await e.split_shard(stream_name="s", shard_to_split="shardId-000000000000", new_starting_hash_key=str(1 << 127))
        await e.merge_shards(
            stream_name="s", shard_to_merge="shardId-000000000001", adjacent_shard_to_merge="shardId-000000000002"
        )
        data = await get_json(rig.monitor.app, "/api/streams/s/shards")
        rows = {r["shard_id"]: r for r in data["shards"]}
        assert [rows[f"shardId-00000000000{i}"]["state"] for i in range(4)] == [
            "closed",
            "closed",
            "closed",
            "open",
        ]
        assert rows["shardId-000000000000"]["children"] == ["shardId-000000000001", "shardId-000000000002"]
        assert rows["shardId-000000000001"]["parent_shard_id"] == "shardId-000000000000"
        merged = rows["shardId-000000000003"]
        assert (merged["parent_shard_id"], merged["adjacent_parent_shard_id"]) == (
            "shardId-000000000001",
            "shardId-000000000002",
        )
        assert merged["starting_hash_key"] == "0" and merged["ending_hash_key"] == str((1 << 128) - 1)
        assert rows["shardId-000000000000"]["incoming_records"] == 100
        assert rows["shardId-000000000000"]["ending_sequence_number"] is not None
        assert merged["ending_sequence_number"] is None
        err = await get_json(rig.monitor.app, "/api/streams/nope/shards", status=404)
        assert "nope" in err["error"]


class OneMapping:
    """The two attributes the monitor reads from a project, around one real mapping."""

    def __init__(self, mapping: Mapping) -> None:
        self.pools: dict[str, FunctionPool] = {}
        self.mappings = [mapping]


async def test_failures_and_mapping_overview(tmp_path: Path) -> None:
    def handler(event: dict[str, Any], context: Any) -> None:
        raise ValueError("always fails")

    async with Engine(data_dir=tmp_path / "data", fsync="never") as engine:
        await engine.create_stream("s", 1)
        cfg = MappingConfig(
            "fn",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s",
            "TRIM_HORIZON",
            batch_size=5,
            maximum_retry_attempts=0,
            on_failure=DestinationConfig("file", str(tmp_path / "failed.jsonl")),
        )
        store = LeaseStore(tmp_path / "leases.db")
        mapping = Mapping(
            cfg,
            function=InProcessFunction(handler, name="fn"),
            function_arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
            role_arn="arn:aws:iam::000000000000:role/fn",
            source=EngineSource(engine, "s"),
            store=store,
            destination=FileDestination(tmp_path / "failed.jsonl"),
        )
        monitor = Monitor(engine, project=OneMapping(mapping), persist=False)
        mapping.start()
        try:
            await engine.put_records([PutRecordsRequestEntry(b"{}", f"k{i}") for i in range(10)], stream_name="s")
            deadline = time.monotonic() + 15
            while mapping.stats().totals["dead_lettered"] < 10:
                assert time.monotonic() < deadline, "the failed batches never reached the destination"
                await asyncio.sleep(0.02)
            await asyncio.wait_for(mapping.idle(), 15)  # (the last batch's checkpoint written: the lag is 0)
            monitor.tick()
            data = await get_json(monitor.app, "/api/failures", "limit=1")
            [row] = data["failures"]
            assert (row["mapping"], row["function"], row["stream"]) == (cfg.uuid, "fn", "s")
            assert row["record"]["requestContext"]["condition"] == "RetryAttemptsExhausted"
            assert row["record"]["KinesisBatchInfo"]["batchSize"] == 5
            assert len((await get_json(monitor.app, "/api/failures"))["failures"]) == 2
            await get_json(monitor.app, "/api/failures", "limit=0", status=400)
            [m] = (await get_json(monitor.app, "/api/overview"))["mappings"]
            assert (m["uuid"], m["function"], m["stream"], m["state"]) == (cfg.uuid, "fn", "s", "Enabled")
            assert m["totals"]["dead_lettered"] == 10 and m["totals"]["dropped"] == 0
            assert m["config"]["batch_size"] == 5 and m["config"]["on_failure"]["kind"] == "file"
            assert m["status"] == "ok" and m["lag_records"] == 0
            shards = (await get_json(monitor.app, "/api/streams/s/shards"))["shards"]
            [cp] = shards[0]["mappings"]
            assert cp["uuid"] == cfg.uuid and cp["checkpoint"]
        finally:
            await mapping.stop()
            store.close()


async def test_alarms_endpoint(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        app = rig.monitor.app
        assert await get_json(app, "/api/alarms") == {"alarms": [], "history": []}
        manager = AlarmManager(rig.monitor.store, default_rules_for(rig.engine), [], rig.clock)
        rig.monitor.alarms = manager
        rig.monitor.collector.alarms = manager
        rig.clock.advance(60)
        rig.monitor.tick()
        data = await get_json(app, "/api/alarms", "limit=5")
        names = {a["name"] for a in data["alarms"]}
        assert "stream:s:write-throttled" in names
        assert all(a["state"] in ("OK", "ALARM", "INSUFFICIENT_DATA") for a in data["alarms"])
        assert len(data["history"]) <= 5
        body = (await call(app, "/metrics"))[2].decode()
        assert 'shardline_alarm_state{alarm="stream:s:write-throttled",state="OK"}' in body


async def test_dashboard_files(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        app = rig.monitor.app
        if (app.dashboard_dir / "index.html").is_file():
            for path in ("/dashboard", "/dashboard/"):
                status, headers, body = await call(app, path)
                assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
                assert body == (app.dashboard_dir / "index.html").read_bytes()
        for bad in ("/dashboard/../series.py", "/dashboard/%2e%2e/series.py", "/dashboard/missing.js"):
            assert (await call(app, bad))[0] == 404
        (tmp_path / "dash").mkdir()
        (tmp_path / "dash" / "index.html").write_text("<html></html>")
        (tmp_path / "dash" / "app.js").write_text("1")
        (tmp_path / ".secret").write_text("x")
        app.dashboard_dir = tmp_path / "dash"
        status, headers, body = await call(app, "/dashboard/app.js")
        assert (status, headers["content-type"], body) == (200, "text/javascript; charset=utf-8", b"1")
        assert (await call(app, "/dashboard/../.secret"))[0] == 404
        app.dashboard_dir = tmp_path / "none"
        err = await get_json(app, "/dashboard", status=404)
        assert "not installed" in err["error"]


@pytest.mark.parametrize("stream", ["with.dots", "a-b_c"])
async def test_stream_names_in_paths(tmp_path: Path, stream: str) -> None:
    async with Rig(tmp_path) as rig:
        await rig.engine.create_stream(stream, 1)
        data = await get_json(rig.monitor.app, f"/api/streams/{stream}/shards")
        assert data["stream"] == stream and len(data["shards"]) == 1


class DiscardingMapping:
    """A mapping that has just discarded a batch: its records count as discarded before their delivery to the
    on-failure destination finishes (they become dead-lettered then)."""

    def __init__(self) -> None:
        self.config = MappingConfig(
            "fn",
            "arn:aws:kinesis:us-east-1:000000000000:stream/s",
            "TRIM_HORIZON",
            on_failure=DestinationConfig("file", "failed.jsonl"),
        )
        self.uuid = self.config.uuid
        self.destination = object()  # (the collector only asks whether there is one)
        self.totals = dict.fromkeys(
            (
                "polled",
                "filtered_out",
                "invoked_records",
                "succeeded",
                "invocations",
                "function_errors",
                "throttles",
                "discarded",
                "dead_lettered",
                "destination_failures",
            ),
            0,
        )

    def stats(self) -> MappingStats:
        return MappingStats("Enabled", 1, 0, "OK", dict(self.totals), 0)

    def shard_stats(self) -> dict[str, Any]:
        return {}


async def test_the_dashboard_and_metrics_agree_on_dropped_records_while_a_discard_is_delivered(
    tmp_path: Path,
) -> None:
    async with Rig(tmp_path) as rig:
        mapping = DiscardingMapping()
        project = SimpleNamespace(pools={}, mappings=[mapping])
        monitor = Monitor(rig.engine, project=project, clock=rig.clock, persist=False)
        monitor.tick()
        rig.clock.advance(1)
        mapping.totals.update(polled=5, invoked_records=5, invocations=1, function_errors=1, discarded=5)
        _, _, body = await call(monitor.app, "/metrics")
        line = next(x for x in body.decode().splitlines() if x.startswith("shardline_esm_dropped_records_total{"))
        assert line.endswith(" 0")  # the records may still reach the destination: not dropped yet
        [m] = (await get_json(monitor.app, "/api/overview"))["mappings"]
        assert m["totals"]["dropped"] == 0 and m["totals"]["discarded"] == 5
