"""Scaling of `shardline run` over shard leases in PostgreSQL, with the one-worker run as the baseline.

```
.venv/bin/python benchmarks/scale_bench.py            # 8 shards x 10,000 records, TTL 10 s (the defaults)
.venv/bin/python benchmarks/scale_bench.py --quick    # 8 shards x 2,500 records, TTL 3 s
    --dsn URL     PostgreSQL server to create a scratch database on (default postgresql://postgres@127.0.0.1:5432)
    --workers     worker counts to measure (default 1 2 4)
```

One `shardline serve` holds a backlog of 100 B records in 8 shards. For each worker count a fresh lease table is
used and that many `shardline run` processes (a no-op handler, BatchSize 100) start together; the figure is
records/s from the start until every lease's checkpoint reaches its shard's last record (process start-up is
inside the figure, the same for every count). Then, at steady state (nothing left to read, every worker holding
its share, so no handoff under way), the lease store's
statement rate (committed transactions per second on the scratch database, over 10 s; every lease
statement is one autocommit transaction). Last, failover: with two
workers running, one is SIGKILLed and the time until the survivor owns every lease is measured (the target is
TTL + renew interval + 1 s).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.config import Config

SHARDS = 8
CLI = [sys.executable, "-m", "shardline.cli"]


def serve(root: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--data-dir", str(root / "server"), "--fsync", "never", "--no-metrics"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    match = re.search(r"serving Kinesis at (http://\S+)", proc.stdout.readline())
    assert match, "shardline serve did not start"
    return proc, match.group(1)


def project(root: Path) -> Path:
    (root / "proj" / "handlers").mkdir(parents=True)
    (root / "proj" / "handlers" / "noop.py").write_text("def handler(event, context):\n    return None\n")
    cfg = root / "proj" / "shardline.yml"
    cfg.write_text(
        "streams:\n  events: {shards: 8}\nfunctions:\n  noop:\n    handler: handlers/noop.handler\n"
        "    events:\n      - stream: {stream: events, batchSize: 100, startingPosition: TRIM_HORIZON}\n"
    )
    return cfg


def fill(client: Any, per_shard: int) -> dict[str, str]:
    """The backlog; returns each shard's last sequence number."""
    shards = [s["HashKeyRange"]["StartingHashKey"] for s in client.list_shards(StreamName="events")["Shards"]]
    last: dict[str, str] = {}
    for _ in range(per_shard // 500):
        for hk in shards:
            out = client.put_records(
                StreamName="events",
                Records=[{"Data": b"x" * 100, "PartitionKey": "k", "ExplicitHashKey": hk} for _ in range(500)],
            )
            for r in out["Records"]:
                last[r["ShardId"]] = r["SequenceNumber"]
    return last


def start(cfg: Path, url: str, dsn: str, root: Path, *, name: str, ttl: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    return subprocess.Popen(
        [*CLI, "run", str(cfg), "--endpoint-url", url, "--leases", dsn, "--worker-id", name,
         "--state-dir", str(root / f"state-{name}"), "--lease-ttl", str(ttl), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def checkpoints(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('shard_lease') IS NULL").fetchone() == (True,):
            return {}
        return {s: c for s, c in conn.execute("SELECT shard_id, checkpoint FROM shard_lease").fetchall()}


def owners(dsn: str) -> dict[str, str | None]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT shard_id, CASE WHEN expires_at > now() THEN owner END FROM shard_lease")
        return {s: o for s, o in rows.fetchall()}


def balanced(held: dict[str, str | None], workers: int) -> bool:
    counts: dict[str, int] = {}
    for owner in held.values():
        if owner is None:
            return False
        counts[owner] = counts.get(owner, 0) + 1
    return len(counts) == workers and max(counts.values()) - min(counts.values()) <= 1


def commits(dsn: str, db: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db,)).fetchone()
    assert row is not None
    return int(row[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    per_shard = 2_500 if args.quick else 10_000
    ttl = 3.0 if args.quick else 10.0
    renew = ttl / 3 - 0.025
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server, url = serve(root)
        try:
            client = boto3.client(
                "kinesis", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                aws_secret_access_key="x", config=Config(retries={"max_attempts": 3}),
            )  # fmt: skip
            client.create_stream(StreamName="events", ShardCount=SHARDS)
            client.get_waiter("stream_exists").wait(StreamName="events")
            last = fill(client, per_shard)
            cfg = project(root)
            total = per_shard * SHARDS
            print(f"backlog: {total} records of 100 B in {SHARDS} shards; TTL {ttl} s, renew {renew:.3f} s")
            rates: dict[int, float] = {}
            for n in args.workers:
                db = f"scale_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(f"{args.dsn}/postgres", autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{db}"')
                dsn = f"{args.dsn}/{db}"
                procs = []
                try:
                    started = time.monotonic()
                    procs = [start(cfg, url, dsn, root / db, name=f"w{i}", ttl=ttl) for i in range(n)]
                    while checkpoints(dsn) != last:
                        time.sleep(0.05)
                    took = time.monotonic() - started
                    rates[n] = total / took
                    # Steady state: every worker holds its share (max - min <= 1), so no handoff is under way.
                    settle = time.monotonic() + 60
                    while not balanced(owners(dsn), n) and time.monotonic() < settle:
                        time.sleep(0.2)
                    time.sleep(2)  # backends report their counts about once a second: let the drain's arrive
                    before, t0 = commits(args.dsn + "/postgres", db), time.monotonic()
                    time.sleep(10)
                    stmts = (commits(args.dsn + "/postgres", db) - before) / (time.monotonic() - t0)
                    ratio = rates[n] / rates[args.workers[0]]
                    print(f"{n} worker(s): {rates[n]:,.0f} records/s ({took:.1f} s, x{ratio:.2f} of "
                          f"{args.workers[0]}); lease store at steady state {stmts:.1f} statements/s "
                          f"({stmts / n:.1f} per worker)")  # fmt: skip
                    if n == 2:
                        victim = procs[1]
                        held = [s for s, o in owners(dsn).items() if o == "w1"]
                        victim.send_signal(signal.SIGKILL)
                        killed = time.monotonic()
                        while any(owners(dsn).get(s) != "w0" for s in held):
                            time.sleep(0.02)
                        print(f"failover after SIGKILL of 1 of 2: {time.monotonic() - killed:.1f} s for "
                              f"{len(held)} leases (target <= TTL + renew + 1 = {ttl + renew + 1:.1f} s)")  # fmt: skip
                finally:
                    for p in procs:
                        if p.poll() is None:
                            p.terminate()
                    for p in procs:
                        try:
                            p.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            p.wait()
                    with psycopg.connect(f"{args.dsn}/postgres", autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
