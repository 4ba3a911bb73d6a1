"""`shardline up --workers 2`: the endpoint in one process, two local worker processes sharing the shards through
the SQLite lease file; every record is processed once per mapping, and each shard has one owner."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from _shardline import kinesis, shardline

from ._cluster import wait_for

SHARDS = 4
RECORDS = 200

HANDLER = """
import base64, json, os

def handler(event, context):
    out = os.path.join(os.environ["OUT_DIR"], f"{os.environ['FN']}-{os.getpid()}.jsonl")
    with open(out, "a") as f:
        for r in event["Records"]:
            k = r["kinesis"]
            f.write(json.dumps({"n": base64.b64decode(k["data"]).decode(), "worker": os.getppid(),
                                "shard": r["eventID"].split(":")[0]}) + "\\n")
"""


def _project(root: Path, out: Path) -> Path:
    (root / "handlers").mkdir(parents=True)
    (root / "handlers" / "app.py").write_text(HANDLER)
    cfg = root / "shardline.yml"
    functions = "".join(
        f"""
  {fn}:
    handler: handlers/app.handler
    environment: {{OUT_DIR: "{out}", FN: {fn}}}
    events:
      - stream: {{stream: events, batchSize: 50, startingPosition: TRIM_HORIZON}}
"""
        for fn in ("first", "second")
    )
    cfg.write_text(f"streams:\n  events: {{shards: {SHARDS}}}\nfunctions:{functions}")
    return cfg


def _delivered(out: Path, fn: str) -> list[dict[str, str]]:
    rows = []
    for path in out.glob(f"{fn}-*.jsonl"):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return rows


def _owners(db: Path) -> dict[str, list[tuple[str, str | None]]]:
    """mapping -> [(shard, owner)] of the unfinished leases."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT app, shard_id, owner FROM shard_lease WHERE finished_at_ms IS NULL ORDER BY 1, 2"
        ).fetchall()
    out: dict[str, list[tuple[str, str | None]]] = {}
    for app, shard, owner in rows:
        out.setdefault(app, []).append((shard, owner))
    return out


def _workers(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {w for (w,) in conn.execute("SELECT DISTINCT worker_id FROM lease_worker")}


def test_up_with_two_workers_processes_each_record_once_per_mapping(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cfg = _project(tmp_path / "proj", out)
    data = tmp_path / "data"
    with shardline("up", str(cfg), "--port", "0", "--data-dir", str(data), "--workers", "2") as running:
        client = kinesis(running.url)
        t0 = time.monotonic()
        for n in range(RECORDS):
            client.put_record(StreamName="events", Data=str(n).encode(), PartitionKey=f"k{n}")
        db = data / "runtime" / "leases.db"
        for fn in ("first", "second"):
            wait_for(f"{fn} to see every record", lambda fn=fn: len(_delivered(out, fn)) >= RECORDS)  # type: ignore[misc]
        print(f"delivered after {time.monotonic() - t0:.1f} s")
        owners = _owners(db)
        workers = wait_for(
            "two workers registered in the lease file", lambda: _workers(db) if len(_workers(db)) == 2 else None
        )
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(timeout=90) == 0
        print(f"stopped after {time.monotonic() - t0:.1f} s")

    counts = {}
    for fn in ("first", "second"):
        rows = _delivered(out, fn)
        got = sorted(int(r["n"]) for r in rows)
        counts[fn] = (len(rows), len({r["worker"] for r in rows}))
        assert got == list(range(RECORDS)), f"{fn}: lost or duplicated records"
    print(f"up --workers 2: (deliveries, worker processes) per function {counts}; workers {sorted(workers)}")
    print(f"lease owners {owners}")
    assert len(owners) == 2  # two mappings
    for shards in owners.values():
        assert len(shards) == SHARDS
        assert all(owner in workers for _, owner in shards), shards
