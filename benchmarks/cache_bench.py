"""What a put costs per record in instructions and cache misses at 1, 64 and 1,000 shards, counted by cachegrind.

```
.venv/bin/python benchmarks/cache_bench.py            # needs valgrind; about 2 minutes on 2 cores
    --json FILE     also write every figure as JSON
```

Wall-clock figures on a shared machine move with the neighbours (engine_bench prints their spread); these do not:
cachegrind counts every instruction and simulates the caches (32 KiB L1, a 1 MiB last level standing for the
per-core L2), so a change to the put path shows up here the same on every run. What it cannot see: time in the
kernel (the writes of segment frames, page faults) and TLB misses, which engine_bench measures.

Workload, as engine_bench's shard-count runs: 500-record PutRecords of 100 B with random partition keys, fsync
never; a full journal checkpoint every 100,000 records. A manual clock moves 2 ms per request (250,000 records/s,
near the engine's top rate), so the journal's time-based batching behaves as in real time although cachegrind
runs some 50 times slower. Each figure is the difference of two runs (20 and 220 requests after the same
warm-up), so start-up and import costs cancel. The baseline is the same workload at 1 shard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from shardline import Engine, ManualClock, Settings

BATCH = 500
SHORT, LONG = 20, 220  # requests measured; the difference is 100,000 records
CHECKPOINT_EVERY = 200  # requests: 100,000 records, as engine_bench's runs
STEP_MS = 2
SHARD_COUNTS = (1, 64, 1000)
_SUMMARY = {
    "instructions": re.compile(r"I\s+refs:\s+([\d,]+)"),
    "l1_misses": re.compile(r"D1\s+misses:\s+([\d,]+)"),
    "ll_misses": re.compile(r"LLd\s+misses:\s+([\d,]+)"),
}


async def child(shards: int, requests: int) -> None:
    rng = random.Random(1000)
    pool = [[(rng.randbytes(100), f"{rng.getrandbits(64):016x}") for _ in range(BATCH)] for _ in range(16)]
    clock = ManualClock()
    data_dir = Path(tempfile.mkdtemp(prefix="shardline-cache-bench-"))
    settings = Settings(
        data_dir=data_dir,
        fsync="never",
        shard_limit=2000,
        journal_checkpoint_ms=10**9,  # checkpoints at fixed points in the workload, not on a timer
        retention_check_interval_s=1e9,
    )
    try:
        async with Engine(settings, clock=clock) as engine:
            await engine.create_stream("s", shards)
            for i in range(16):  # warm-up: every pool batch once
                await engine.put_records(pool[i], stream_name="s")
            await engine.checkpoint()
            for i in range(requests):
                await engine.put_records(pool[i % 16], stream_name="s")
                clock.advance(ms=STEP_MS)
                if (i + 1) % CHECKPOINT_EVERY == 0:
                    await engine.checkpoint()
            await engine.checkpoint()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def measure(shards: int, requests: int) -> dict[str, int]:
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=yes",
        "--I1=32768,8,64",
        "--D1=32768,8,64",
        "--LL=1048576,16,64",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        str(shards),
        str(requests),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    figures: dict[str, int] = {}
    for name, pattern in _SUMMARY.items():
        m = pattern.search(out)
        if m is None:
            raise RuntimeError(f"no {name} in cachegrind's output:\n{out[-2000:]}")
        figures[name] = int(m.group(1).replace(",", ""))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description="shardline put path under cachegrind")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        asyncio.run(child(*args.child))
        return
    if shutil.which("valgrind") is None:
        sys.exit("cache_bench needs valgrind (apt-get install valgrind)")
    jobs = [(shards, n) for shards in SHARD_COUNTS for n in (SHORT, LONG)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = dict(zip(jobs, pool.map(lambda job: measure(*job), jobs), strict=True))
    records = (LONG - SHORT) * BATCH
    rows: list[dict[str, Any]] = []
    for shards in SHARD_COUNTS:
        short, long = results[(shards, SHORT)], results[(shards, LONG)]
        rows.append({"shards": shards, **{k: (long[k] - short[k]) / records for k in _SUMMARY}})
    base = rows[0]
    print(f"shardline put path under cachegrind (Python {sys.version.split()[0]}), per record over {records:,} records")
    print("500-record PutRecords of 100 B, random keys, fsync=never, a full checkpoint every 100,000 records;")
    print("last level = 1 MiB (the per-core L2); kernel time and TLB misses are not counted here (see engine_bench)")
    print()
    print("  shards  instructions  ratio  L1 misses  ratio  LL misses  ratio")
    for r in rows:
        print(
            f"  {r['shards']:>6}  {r['instructions']:>12,.0f}  {r['instructions'] / base['instructions']:>5.2f}"
            f"  {r['l1_misses']:>9.1f}  {r['l1_misses'] / base['l1_misses']:>5.2f}"
            f"  {r['ll_misses']:>9.1f}  {r['ll_misses'] / base['ll_misses']:>5.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"records": records, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
