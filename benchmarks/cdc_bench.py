"""Benchmark of a MySQL/MariaDB change-data-capture source, with the raw binary-log read rate as the baseline.

```
.venv/bin/python benchmarks/cdc_bench.py            # 50,000-row snapshot, 50,000 binlog rows, 300 latency samples
.venv/bin/python benchmarks/cdc_bench.py --quick    # smoke run
    --rows N        rows for the snapshot and the binlog runs
    --json FILE     also write every figure as JSON
```

A private MariaDB (its own data directory on a free port, binary log in ROW format with full images) and an
embedded Engine with fsync=always, both started here.

1. Snapshot: a table of N rows read by a source (chunkSize 1000) into a 4-shard stream; rows/s until every row
   is acknowledged and the snapshot checkpointed.
2. Binary log: N rows committed in transactions of 100 rows before the source starts (snapshot: never, from the
   position before them), once as 100-row INSERT statements and once (N/5 rows) as one-row statements (a row
   event and a table map per row, as OLTP writes them); rows/s until every change is on the stream. Baseline:
   mysql-replication's BinLogStreamReader alone reading the same range and decoding every row (no envelope, no
   put).
3. Latency: single-row transactions committed every 20 ms while `Project` runs a function on the stream (one
   worker process); per change, the time from the COMMIT's return to the handler's first statement (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from shardline import Engine, Settings
from shardline.runtime.config import load_config
from shardline.runtime.project import Project
from shardline.sources.config import SourceConfig, TableFilter
from shardline.sources.envelope import Position
from shardline.sources.mysql import MySqlSource
from shardline.sources.service import EngineSink
from shardline.sources.snapshot import current_position

HANDLER = """
import base64, json, os, time

def handler(event, context):
    now = time.time()
    with open(os.environ["SEEN"], "a") as f:
        for r in event["Records"]:
            f.write(f"{json.loads(base64.b64decode(r['kinesis']['data']))['after']['id']} {now}\\n")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mariadb(base: Path, port: int) -> subprocess.Popen[bytes]:
    user = ["--user=root"] if os.geteuid() == 0 else []
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db") or "mariadb-install-db"
    subprocess.run(
        [install, "--no-defaults", f"--datadir={base / 'db'}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *user],
        check=True, capture_output=True,
    )  # fmt: skip
    return subprocess.Popen(
        [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={base / 'db'}",
         f"--socket={base / 'sock'}", f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
         f"--log-error={base / 'mariadb.log'}", "--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL",
         "--binlog-row-metadata=FULL", "--server-id=1", "--innodb-flush-log-at-trx-commit=2", *user],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def connect(port: int) -> Any:
    deadline = time.monotonic() + 60
    while True:
        try:
            return pymysql.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True)
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def fill(port: int, table: str, first: int, rows: int, per_txn: int, *, per_statement: int = 100) -> None:
    """``rows`` rows in transactions of ``per_txn`` rows, each INSERT statement carrying ``per_statement`` rows."""
    with connect(port) as conn, conn.cursor() as cur:
        for start in range(first, first + rows, per_txn):
            cur.execute("BEGIN")
            ids = list(range(start, min(start + per_txn, first + rows)))
            for at in range(0, len(ids), per_statement):
                chunk = ids[at : at + per_statement]
                values = ", ".join(["(%s, %s, %s, '2024-01-02 03:04:05.123456')"] * len(chunk))
                cur.execute(
                    f"INSERT INTO bench.{table} VALUES {values}",
                    [v for i in chunk for v in (i, f"customer-{i % 97}", i * 0.25)],
                )
            cur.execute("COMMIT")


def source_config(port: int, table: str, **kw: Any) -> SourceConfig:
    return SourceConfig(
        name="bench", host="127.0.0.1", port=port, user="root", database="bench", stream="changes",
        tables=TableFilter((f"bench.{table}",)), chunk_size=1000, **kw,
    )  # fmt: skip


async def count_on_stream(engine: Engine) -> int:
    stream = engine.view.stream("changes")
    return 0 if stream is None else sum(s.visible_end or 0 for s in stream.shards())


async def run_until(engine: Engine, source: MySqlSource, total: int, done: Any) -> float:
    t0 = time.perf_counter()
    task = asyncio.create_task(source.run())
    while not done():
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    await source.stop()
    await task
    return total / elapsed


def raw_read_rate(port: int, start: Position, rows: int) -> float:
    """mysql-replication alone: read the rows from ``start`` and decode every row's values."""
    t0 = time.perf_counter()
    stream = BinLogStreamReader(
        connection_settings={"host": "127.0.0.1", "port": port, "user": "root", "password": ""},
        server_id=99, log_file=start.file, log_pos=start.pos, resume_stream=True, blocking=False,
        only_events=[WriteRowsEvent],
    )  # fmt: skip
    seen = 0
    for event in stream:
        seen += sum(1 for row in event.rows if row["values"])
        if seen >= rows:
            break
    stream.close()
    return seen / (time.perf_counter() - t0)


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    db = start_mariadb(work, port)
    figures: dict[str, Any] = {"rows": args.rows}
    try:
        with connect(port) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE bench")
            for t in ("snap", "log", "lat"):
                cur.execute(f"CREATE TABLE bench.{t} (id INT PRIMARY KEY, customer VARCHAR(40), total DECIMAL(12,2), "
                            "at DATETIME(6))")  # fmt: skip
        fill(port, "snap", 1, args.rows, 1000)
        engine = Engine(Settings(data_dir=work / "engine", fsync="always"))
        await engine.open()
        try:
            await engine.create_stream("changes", 4)
            sink = EngineSink(engine, "changes")
            snap = MySqlSource(source_config(port, "snap"), sink, work / "state-snap")
            figures["snapshot_rows_per_s"] = await run_until(
                engine, snap, args.rows, lambda: snap.checkpoint.snapshot_done
            )
            first = 1
            for shape, per_statement in (("100-row statements", 100), ("1-row statements", 1)):
                rows = args.rows if per_statement > 1 else args.rows // 5
                with connect(port) as conn:
                    start = current_position(conn)
                fill(port, "log", first, rows, 100, per_statement=per_statement)
                first += rows
                raw = raw_read_rate(port, start, rows)
                before = await count_on_stream(engine)
                cfg = source_config(port, "log", snapshot="never")
                log_source = MySqlSource(cfg, sink, work / f"state-log-{per_statement}")
                log_source.checkpoint.binlog, log_source.checkpoint.snapshot_done = start, True
                on_stream: list[int] = [0]

                def all_there(target: int = before + rows, seen: list[int] = on_stream) -> bool:
                    return seen[0] >= target

                async def watch(check: Any = all_there, seen: list[int] = on_stream) -> None:
                    while not check():
                        seen[0] = await count_on_stream(engine)
                        await asyncio.sleep(0.01)

                watcher = asyncio.create_task(watch())
                rate = await run_until(engine, log_source, rows, all_there)
                await watcher
                figures[f"binlog_rows_per_s ({shape}, {rows} rows)"] = rate
                figures[f"baseline_raw_read_rows_per_s ({shape})"] = raw
                figures[f"binlog_vs_raw_read ({shape})"] = rate / raw
        finally:
            await engine.close()
        figures.update(await latency(args, work, port))
    finally:
        db.terminate()
        db.wait(60)
    return figures


async def latency(args: argparse.Namespace, work: Path, port: int) -> dict[str, Any]:
    project = work / "project"
    (project / "handlers").mkdir(parents=True)
    (project / "handlers" / "seen.py").write_text(HANDLER)
    seen = work / "seen.txt"
    (project / "shardline.yml").write_text(
        f"""streams:
  lat: {{shards: 4}}
functions:
  seen:
    handler: handlers/seen.handler
    environment: {{SEEN: "{seen}"}}
    events: [{{stream: lat}}]
"""
    )
    engine = Engine(Settings(data_dir=work / "engine-lat", fsync="always"))
    await engine.open()
    try:
        proj = Project(load_config(project / "shardline.yml"), engine)
        await proj.start()
        src = MySqlSource(source_config(port, "lat", snapshot="never"), EngineSink(engine, "lat"), work / "state-lat")
        task = asyncio.create_task(src.run())
        committed: dict[int, float] = {}
        try:
            while not src.checkpoint.snapshot_done:
                await asyncio.sleep(0.01)
            with connect(port) as conn, conn.cursor() as cur:
                # A warm-up change first: the worker's first invocation (process start, import) is not measured.
                cur.execute("INSERT INTO bench.lat VALUES (0, 'x', 1, NOW(6))")
                while not seen.exists():
                    await asyncio.sleep(0.01)
                for i in range(1, args.samples + 1):
                    await asyncio.to_thread(cur.execute, "INSERT INTO bench.lat VALUES (%s, 'x', 1, NOW(6))", (i,))
                    committed[i] = time.time()
                    await asyncio.sleep(0.02)
            deadline = time.monotonic() + 60
            while (not seen.exists() or len(seen.read_text().splitlines()) < args.samples + 1) and (
                time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
        finally:
            await src.stop()
            await task
            await proj.stop()
    finally:
        await engine.close()
    lat_ms = sorted(
        (float(t) - committed[int(i)]) * 1000
        for i, t in (line.split() for line in seen.read_text().splitlines())
        if int(i) in committed
    )
    return {
        "latency_samples": len(lat_ms),
        "commit_to_handler_p50_ms": statistics.median(lat_ms),
        "commit_to_handler_p99_ms": lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.rows, args.samples = 5_000, 50
    work = Path(tempfile.mkdtemp(prefix="cdc-bench-"))
    try:
        figures = asyncio.run(bench(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for k, v in figures.items():
        print(f"{k:34} {v:,.2f}" if isinstance(v, float) else f"{k:34} {v}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
