"""Statistic names: one spelling of a percentile for the store, the query API and alarm rules."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from shardline import Engine, ManualClock
from shardline.metrics.alarms import AlarmRule, InvalidRule
from shardline.metrics.series import SeriesStore
from shardline.metrics.service import Monitor
from shardline.metrics.statistic import STATS, percentile

HISTOGRAM = "shardline_stream_put_latency_seconds"
ACCEPTED = ["p0", "p9", "p50", "p99", "p99.9", "p99.99", "p100"]
REFUSED = ["p100.0", "p150", "p999", "p1.", "p.5", "P99", "p", "p-1", "p99.9.9", "Median"]


def test_percentile_reads_the_number_a_percentile_names() -> None:
    assert [percentile(s) for s in ACCEPTED] == [0.0, 9.0, 50.0, 99.0, 99.9, 99.99, 100.0]
    assert [percentile(s) for s in [*REFUSED, *STATS]] == [None] * (len(REFUSED) + len(STATS))


def store_accepts(stat: str) -> bool:
    try:
        SeriesStore(None).query(HISTOGRAM, start_ms=0, end_ms=60_000, period_s=60, stat=stat)
    except ValueError as exc:
        assert str(exc).startswith("stat must be one of ")
        return False
    return True


def rule_accepts(stat: str) -> bool:
    try:
        AlarmRule("r", HISTOGRAM, 1, statistic=stat)
    except InvalidRule as exc:
        assert exc.field_name == "statistic"
        return False
    return True


async def api_answer(monitor: Monitor, stat: str) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    query = f"name={HISTOGRAM}&stat={stat}&start=-60&period=60".replace("+", "%2B")
    scope = {"type": "http", "method": "GET", "path": "/api/query", "query_string": query.encode(), "headers": []}
    await monitor.app(scope, receive, send)
    return sent[0]["status"], orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.mark.parametrize("stat", [*ACCEPTED, *REFUSED])
def test_the_store_the_query_api_and_alarm_rules_accept_the_same_percentiles(tmp_path: Path, stat: str) -> None:
    accepted = stat in ACCEPTED
    assert store_accepts(stat) is accepted
    assert rule_accepts(stat) is accepted
    clock = ManualClock(1_700_000_000_000)
    monitor = Monitor(Engine(data_dir=tmp_path, fsync="never", clock=clock), clock=clock, persist=False)
    status, body = asyncio.run(api_answer(monitor, stat))
    if accepted:
        assert (status, body["stat"], body["series"]) == (200, stat, [])
    else:
        # the query API refuses it itself, in its own words, before the store is asked
        assert status == 400
        assert body["error"] == f"stat must be one of {', '.join(STATS)} or a percentile such as p99, not {stat!r}"
