"""The put path in-process: PutRecord and PutRecords through the ASGI app, CPU time per call, no network, no fsync.

```
.venv/bin/python benchmarks/put_path_bench.py              # full run
.venv/bin/python benchmarks/put_path_bench.py --quick      # smoke run
    --json FILE    also write every figure as JSON
```

What a put costs the server's process once the HTTP server has parsed the request: the app's checks and dispatch,
the engine's put and the wake-up of readers waiting on the shard. Measured in process CPU time (``time.process_time``),
which load from elsewhere on a shared machine disturbs far less than wall time; each figure is the median of its
rounds. Three cases: nobody reading; a reader waiting on each shard's data signal (a stream function's poller);
and, where the engine has SubscribeToShard, a subscription open on each shard (its events read as they come).
``benchmarks/ab_bench.py --bench put_path_bench`` runs it against an earlier commit too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from shardline import Engine, Settings
from shardline.api.app import KinesisApp

SHARDS = 4
FULL = {"calls": 20_000, "batches": 400, "rounds": 7}
QUICK = {"calls": 3_000, "batches": 60, "rounds": 3}
ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/b"


def scope_for(op: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"content-type", b"application/x-amz-json-1.1"),
        (b"x-amz-target", f"Kinesis_20131202.{op}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": headers}


async def call(app: KinesisApp, op: str, body: bytes) -> bytes:
    given = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal given
        if given:
            await asyncio.Event().wait()  # (never: the app reads no further for an ordinary call)
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    out: list[bytes] = []
    status = 0

    async def send(msg: MutableMapping[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        else:
            out.append(msg.get("body", b""))

    await app(scope_for(op, body), receive, send)
    if status != 200:
        raise RuntimeError(f"{op}: {status} {b''.join(out)[:300]!r}")
    return b"".join(out)


async def cpu_per_call(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - t0) / n * 1e6


async def run(cfg: dict[str, int], data_dir: Path) -> dict[str, Any]:
    engine = Engine(Settings(data_dir=data_dir, fsync="never", retention_check_interval_s=1e9))
    await engine.open()
    app = KinesisApp(engine)
    try:
        await call(app, "CreateStream", json.dumps({"StreamName": "b", "ShardCount": SHARDS}).encode())
        singles = [
            json.dumps(
                {
                    "StreamName": "b",
                    "PartitionKey": os.urandom(8).hex(),
                    "Data": base64.b64encode(os.urandom(100)).decode(),
                }
            ).encode()
            for _ in range(256)
        ]
        batches = [
            json.dumps(
                {
                    "StreamName": "b",
                    "Records": [
                        {"PartitionKey": os.urandom(8).hex(), "Data": base64.b64encode(os.urandom(100)).decode()}
                        for _ in range(500)
                    ],
                }
            ).encode()
            for _ in range(8)
        ]
        it = iter(range(1 << 62))

        async def put_record() -> None:
            await call(app, "PutRecord", singles[next(it) % len(singles)])

        async def put_records() -> None:
            await call(app, "PutRecords", batches[next(it) % len(batches)])

        async def measure() -> dict[str, float]:
            return {
                "put_record_call_us": await cpu_per_call(put_record, cfg["calls"]),
                "put_records_record_us": await cpu_per_call(put_records, cfg["batches"]) / 500,
            }

        cases: dict[str, list[dict[str, float]]] = {"no_reader": [], "signal_readers": [], "subscriptions": []}
        shard_ids = [f"shardId-{i:012d}" for i in range(SHARDS)]
        for _ in range(cfg["rounds"]):
            cases["no_reader"].append(await measure())

            # A poller per shard, as stream functions wait: clear, then wait for the next put.
            async def poll(shard: str) -> None:
                while True:
                    signal = engine.data_signal("b", shard)
                    assert signal is not None
                    signal.clear()
                    await signal.wait()

            pollers = [asyncio.ensure_future(poll(s)) for s in shard_ids]
            await asyncio.sleep(0)
            cases["signal_readers"].append(await measure())
            for t in pollers:
                t.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)
            if hasattr(engine, "subscribe_to_shard"):
                cases["subscriptions"].append(await with_subscriptions(engine, shard_ids, measure))
    finally:
        await engine.close()
    return {
        case: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for case, rounds in cases.items()
        if rounds
    }


async def with_subscriptions(
    engine: Engine, shard_ids: list[str], measure: Callable[[], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    name = f"c{time.monotonic_ns()}"
    consumer = (await engine.register_stream_consumer(ARN, name)).consumer_arn
    await engine.describe_stream_consumer(consumer_arn=consumer)  # (its status moves on a look)
    subs = [
        await engine.subscribe_to_shard(consumer_arn=consumer, shard_id=s, starting_position="LATEST")
        for s in shard_ids
    ]

    async def drain(sub: Any) -> None:
        while await sub.next_event() is not None:
            pass

    readers = [asyncio.ensure_future(drain(s)) for s in subs]
    try:
        return await measure()
    finally:
        for s in subs:
            s.close()
        await asyncio.gather(*readers, return_exceptions=True)
        await engine.deregister_stream_consumer(consumer_arn=consumer)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--dir", type=Path)
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    scratch = Path(tempfile.mkdtemp(prefix="put-path-bench-", dir=args.dir))
    load0 = os.getloadavg()[0]
    try:
        results = asyncio.run(run(cfg, scratch / "data"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"put path in-process ({'quick' if args.quick else 'full'} run, Python {sys.version.split()[0]}, "
        f"{SHARDS} shards, 100 B records, fsync=never; CPU time, median of {cfg['rounds']} rounds)"
    )
    print(f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}")
    print(f"  {'readers':<16} {'PutRecord µs/call':>18} {'PutRecords µs/record':>21}")
    for case, f in results.items():
        print(f"  {case:<16} {f['put_record_call_us']:>18.1f} {f['put_records_record_us']:>21.2f}")
    if args.json:
        args.json.write_text(json.dumps({"config": cfg, "cases": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
