"""A source's figures in the metrics layer: /metrics, the dashboard's JSON, and the built-in source alarms."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _shardline import shardline
from shardline.clock import ManualClock
from shardline.metrics.alarms import AlarmManager
from shardline.metrics.collect import Snapshot
from shardline.metrics.series import SeriesStore
from shardline.metrics.sources import source_families, source_rules
from shardline.sources.envelope import Position
from shardline.sources.service import Sources

from ._cdc import NOW_MS, source_config
from ._mariadb import MariaDB

SAMPLE = re.compile(r"^(shardline_source_\w+)\{([^}]*)\} (\S+)$")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body.decode()


def _figures(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in _get(f"{url}/metrics").splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def test_up_shows_snapshot_progress_and_rows_per_table_in_metrics(
    mariadb: MariaDB, schema: str, tmp_path: Path
) -> None:
    mariadb.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(8,2))",
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40))",
        "INSERT INTO orders VALUES " + ", ".join(f"({i}, {i}.25)" for i in range(1, 41)),
        "INSERT INTO customers VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger')",
        database=schema,
    )
    (tmp_path / "shardline.yml").write_text(
        f"""
streams:
  changes: {{shards: 2}}
sources:
  shop:
    dsn: mysql://root@127.0.0.1:{mariadb.port}/{schema}
    stream: changes
    chunkSize: 7
"""
    )
    env = {**os.environ, "SHOP_DB_PASSWORD": ""}
    args = ["up", str(tmp_path / "shardline.yml"), "--port", "0", "--data-dir", str(tmp_path / "data")]
    orders, customers = f"{schema}.orders", f"{schema}.customers"

    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (f"shardline_source_{name}", tuple(sorted({"source": "shop", **labels}.items())))

    with shardline(*args, env=env, cwd=tmp_path) as srv:

        def until(check: Any, what: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            deadline = time.monotonic() + 60
            while True:
                assert srv.proc.poll() is None, "shardline up stopped"
                figures = _figures(srv.url)
                if check(figures):
                    return figures
                assert time.monotonic() < deadline, f"never saw {what}: {figures}"
                time.sleep(0.1)

        snap = until(lambda f: f.get(key("snapshot_rows", table=orders)) == 40, "the snapshot's 40 orders")
        assert snap[key("snapshot_rows", table=customers)] == 3
        assert snap[key("snapshot_rows_estimated", table=orders)] >= 40
        until(lambda f: f.get(key("snapshot_running")) == 0, "the snapshot end")
        mariadb.execute("INSERT INTO orders VALUES (41, 1.00), (42, 2.00)", database=schema)
        mariadb.execute("UPDATE customers SET name = 'ada l' WHERE id = 1", database=schema)
        rows = until(
            lambda f: (
                f.get(key("rows_total", stream="changes", table=orders)) == 42
                and f.get(key("rows_total", stream="changes", table=customers)) == 4
            ),
            "every row counted per table",
        )
        assert rows[key("lag_seconds")] >= 0
        assert rows[key("binlog_purged")] == 0
        metrics = _get(f"{srv.url}/metrics")
        assert "# TYPE shardline_source_rows_total counter" in metrics
        for rule in ("falling-behind", "binlog-at-risk", "binlog-purged"):  # registered, and not alarming
            assert f'shardline_alarm_state{{alarm="source:shop:{rule}",state="ALARM"}} 0' in metrics
        overview = json.loads(_get(f"{srv.url}/api/overview"))
        [shop] = overview["sources"]
        assert shop["name"] == "shop" and shop["stream"] == "changes"
        assert {t["name"]: t["rows_total"] for t in shop["tables"]} == {customers: 4, orders: 42}
        assert {t["name"]: t["snapshot_rows"] for t in shop["tables"]} == {customers: 3, orders: 40}
        srv.proc.terminate()
        assert srv.proc.wait(30) == 0


class _NoSink:
    """The alarm test drives the source's figures itself; the sources are never started, nothing is put."""

    stream_name = "changes"

    async def check(self) -> None:
        raise AssertionError("not started")

    async def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[str | None]:
        raise AssertionError("not started")


def test_source_alarms_go_through_the_alarm_manager(mariadb: MariaDB, schema: str, tmp_path: Path) -> None:
    clock = ManualClock(NOW_MS)
    sources = Sources(
        {"shop": source_config(mariadb, schema)}, lambda _: _NoSink(), tmp_path, clock=clock, lag_alarm_s=30
    )
    store = SeriesStore(None)
    manager = AlarmManager(store, source_rules(sources.names(), sources.lag_alarm_s), [], clock)
    stats = sources.stats["shop"]
    logs = {"shop": [("mysql-bin.000001", 900), ("mysql-bin.000002", 300)]}

    def minutes(n: int, *, event_age_s: float | None) -> dict[str, str]:
        """Sample once a second for ``n`` minutes, the source seeing changes ``event_age_s`` old (None: idle)."""
        for _ in range(n * 60):
            clock.advance(1.0)
            if event_age_s is None:
                stats.idle()
            else:
                stats.event(clock.now_ms() - round(event_age_s * 1000))
            sources.monitor.sample(logs)
            now = clock.now_ms()
            store.record(now, Snapshot(now, source_families(sources.figures())).series())
            manager.evaluate(now)
        return {a["name"]: a["state"] for a in manager.states()}

    stats.checkpointed(Position("mysql-bin.000002", 120))
    assert minutes(2, event_age_s=None) == {
        "source:shop:falling-behind": "OK",
        "source:shop:binlog-at-risk": "OK",
        "source:shop:binlog-purged": "OK",
    }
    assert minutes(2, event_age_s=45)["source:shop:falling-behind"] == "ALARM"
    assert minutes(2, event_age_s=5)["source:shop:falling-behind"] == "OK"
    stats.checkpointed(Position("mysql-bin.000001", 400))  # in the oldest log the server keeps
    states = minutes(2, event_age_s=None)
    assert states["source:shop:binlog-at-risk"] == "ALARM" and states["source:shop:binlog-purged"] == "OK"
    logs["shop"] = [("mysql-bin.000002", 300), ("mysql-bin.000003", 80)]  # the server purged .000001
    states = minutes(2, event_age_s=None)
    assert states["source:shop:binlog-purged"] == "ALARM"
    assert sources.figures()[0].binlog_bytes_behind is None
    stats.checkpointed(Position("mysql-bin.000003", 80))  # resumed by GTID in a file the server has
    assert minutes(2, event_age_s=None)["source:shop:binlog-purged"] == "OK"
    assert sources.figures()[0].binlog_bytes_behind == 0
    history = sorted(manager.history(), key=lambda h: int(h["seq"]))
    assert [(h["alarm"], h["new_state"]) for h in history if h["new_state"] == "ALARM"] == [
        ("source:shop:falling-behind", "ALARM"),
        ("source:shop:binlog-at-risk", "ALARM"),
        ("source:shop:binlog-purged", "ALARM"),
    ]
