"""Enhanced fan-out: put -> record received through SubscribeToShard, against GetRecords polling, in one run.

```
.venv/bin/python benchmarks/efo_bench.py            # full run (about a minute and a half)
.venv/bin/python benchmarks/efo_bench.py --quick    # smoke run
    --json FILE       also write every figure as JSON
    --dir PATH        parent of the scratch directory (the server's data dir); always removed at the end
    --fsync MODE      shardline's --fsync (default always)
```

One `shardline serve` child process (loopback, `--fsync always` unless told otherwise), one stream of one shard
and one registered consumer. The clients are in this process and speak raw HTTP/1.1 (http.client with hand-built
JSON 1.1 bodies and our event-stream decoder), so the figures are the server's, not a client library's; boto3's own
subscription throughput is measured too, as what a Python user sees.

Latency: one producer thread sends single PutRecord calls at a fixed rate, each record carrying the monotonic time
taken just before its request was sent; a reader thread notes when it holds the record. The reader is, in turn:
a SubscribeToShard subscription opened at LATEST; a GetRecords poller at 5 calls/s, the most Kinesis allows per
shard (the baseline: what a polling consumer can do at best within the limits); and a GetRecords poller that calls
again as soon as an answer comes back (polling's floor, at any CPU cost). Every reader sees the same put schedule.

Throughput: the stream is filled with PutRecords (500 records of 100 B), then read from TRIM_HORIZON to the end by
a subscription (raw client and boto3) and by GetRecords calls of Limit 10,000 (the baseline), turn by turn, each
repeated; server CPU is utime+stime from /proc over each read.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.config import Config

from _peer import Server, log, start_shardline
from shardline.api.eventstream import Decoder

TARGET = "Kinesis_20131202"
SIGNED = {  # the shape of a signature (`serve --auth none` checks the shape only)
    "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, "
    "Signature=0",
    "X-Amz-Date": "20260101T000000Z",
}
S0 = "shardId-000000000000"
FULL = {"rate": 100, "puts": 1500, "fill": 200_000, "repeats": 3}
QUICK = {"rate": 100, "puts": 300, "fill": 20_000, "repeats": 2}
TARGET_P50_MS, TARGET_P99_MS = 10.0, 50.0
POLL_INTERVAL_S = 0.2  # 5 GetRecords calls a second: Kinesis's per-shard limit
_STAMP = struct.Struct("!Q")


class Raw:
    """One keep-alive connection sending JSON 1.1 calls."""

    def __init__(self, server: Server, timeout_s: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout_s)

    def call(self, op: str, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{TARGET}.{op}", **SIGNED}
        self.conn.request("POST", "/", orjson.dumps(body), headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{op}: HTTP {resp.status} {data[:300]!r}")
        return orjson.loads(data) if data else {}

    def close(self) -> None:
        self.conn.close()


class Subscription:
    """A SubscribeToShard response read raw: ``events`` yields each SubscribeToShardEvent as a dict."""

    def __init__(self, server: Server, consumer_arn: str, position: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        body = {"ConsumerARN": consumer_arn, "ShardId": S0, "StartingPosition": position}
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"{TARGET}.SubscribeToShard",
            **SIGNED,
        }
        deadline = time.monotonic() + 30
        while True:
            self.conn.request("POST", "/", orjson.dumps(body), headers)
            self.resp = self.conn.getresponse()
            if self.resp.status == 200:
                break
            err = self.resp.read()
            if b"ResourceInUseException" not in err or time.monotonic() > deadline:
                raise RuntimeError(f"SubscribeToShard: HTTP {self.resp.status} {err[:300]!r}")
            time.sleep(0.05)  # the previous subscription is still being let go
        self.decoder = Decoder()

    def events(self) -> Any:
        while True:
            chunk = self.resp.read1(1 << 20)
            if not chunk:
                return
            for msg in self.decoder.feed(chunk):
                if msg.header(":event-type") == "SubscribeToShardEvent":
                    yield orjson.loads(msg.payload)
                elif msg.header(":message-type") != "event":
                    raise RuntimeError(f"stream error: {msg.headers} {msg.payload[:300]!r}")

    def close(self) -> None:
        self.conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- latency
def produce(server: Server, stream: str, rate: int, count: int, start_evt: threading.Event) -> None:
    raw = Raw(server)
    start_evt.wait()
    t0 = time.monotonic()
    try:
        for i in range(count):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            data = _STAMP.pack(time.monotonic_ns()) + os.urandom(92)
            raw.call(
                "PutRecord",
                {"StreamName": stream, "PartitionKey": f"k{i}", "Data": base64.b64encode(data).decode()},
            )
    finally:
        raw.close()


def latencies_of(records: list[tuple[bytes, int]]) -> list[float]:
    return [(seen_ns - _STAMP.unpack_from(data)[0]) / 1e6 for data, seen_ns in records]


def via_subscription(server: Server, stream: str, consumer: str, rate: int, count: int) -> list[float]:
    sub = Subscription(server, consumer, {"Type": "LATEST"})
    got: list[tuple[bytes, int]] = []
    go = threading.Event()
    producer = threading.Thread(target=produce, args=(server, stream, rate, count, go))
    producer.start()
    go.set()
    try:
        for ev in sub.events():
            now = time.monotonic_ns()
            got += [(base64.b64decode(r["Data"]), now) for r in ev["Records"]]
            if len(got) >= count:
                break
    finally:
        sub.close()
        producer.join()
    return latencies_of(got)


def via_polling(server: Server, stream: str, rate: int, count: int, interval_s: float) -> list[float]:
    raw = Raw(server)
    it = raw.call("GetShardIterator", {"StreamName": stream, "ShardId": S0, "ShardIteratorType": "LATEST"})[
        "ShardIterator"
    ]
    got: list[tuple[bytes, int]] = []
    go = threading.Event()
    producer = threading.Thread(target=produce, args=(server, stream, rate, count, go))
    producer.start()
    go.set()
    try:
        next_call = time.monotonic()
        while len(got) < count:
            if interval_s:
                delay = next_call - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_call += interval_s
            out = raw.call("GetRecords", {"ShardIterator": it, "Limit": 10_000})
            now = time.monotonic_ns()
            got += [(base64.b64decode(r["Data"]), now) for r in out["Records"]]
            it = out["NextShardIterator"]
    finally:
        raw.close()
        producer.join()
    return latencies_of(got)


# ----------------------------------------------------------------------------- throughput
def fill(server: Server, stream: str, records: int) -> None:
    raw = Raw(server)
    payloads = [
        {
            "StreamName": stream,
            "Records": [
                {"PartitionKey": f"k{j}", "Data": base64.b64encode(os.urandom(100)).decode()} for j in range(500)
            ],
        }
        for _ in range(8)
    ]
    try:
        for i in range(records // 500):
            out = raw.call("PutRecords", payloads[i % len(payloads)])
            assert out["FailedRecordCount"] == 0, out
    finally:
        raw.close()


def read_by_subscription(server: Server, consumer: str, total: int) -> int:
    sub = Subscription(server, consumer, {"Type": "TRIM_HORIZON"})
    n = 0
    try:
        for ev in sub.events():
            n += len(ev["Records"])
            if n >= total:
                break
    finally:
        sub.close()
    return n


def read_by_boto3(client: Any, consumer: str, total: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            resp = client.subscribe_to_shard(
                ConsumerARN=consumer, ShardId=S0, StartingPosition={"Type": "TRIM_HORIZON"}
            )
            break
        except client.exceptions.ResourceInUseException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the previous subscription is still being let go
    n = 0
    stream = resp["EventStream"]
    try:
        for ev in stream:
            n += len(ev["SubscribeToShardEvent"]["Records"])
            if n >= total:
                break
    finally:
        stream.close()
    return n


def read_by_get_records(server: Server, stream: str, total: int) -> int:
    raw = Raw(server)
    n = 0
    try:
        it = raw.call("GetShardIterator", {"StreamName": stream, "ShardId": S0, "ShardIteratorType": "TRIM_HORIZON"})[
            "ShardIterator"
        ]
        while n < total:
            out = raw.call("GetRecords", {"ShardIterator": it, "Limit": 10_000})
            n += len(out["Records"])
            it = out["NextShardIterator"]
    finally:
        raw.close()
    return n


def timed(server: Server, fn: Callable[[], int]) -> dict[str, float]:
    cpu0, t0 = server.cpu_s(), time.perf_counter()
    n = fn()
    wall, cpu = time.perf_counter() - t0, server.cpu_s() - cpu0
    return {"records": n, "seconds": wall, "records_per_s": n / wall, "server_cpu_ms_per_1k": cpu * 1e6 / n}


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--fsync", default="always", choices=["always", "interval", "never"])
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    scratch = Path(tempfile.mkdtemp(prefix="efo-bench-", dir=args.dir))
    load0 = os.getloadavg()[0]
    results: dict[str, Any] = {"config": cfg, "fsync": args.fsync}
    server = start_shardline(scratch / "data", scratch / "serve.log", fsync=args.fsync)
    try:
        client = boto3.client(
            "kinesis",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 0}, read_timeout=60),
        )
        for name in ("lat", "tput"):
            client.create_stream(StreamName=name, ShardCount=1)
        for name in ("lat", "tput"):
            while (
                client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE"
            ):
                time.sleep(0.05)
        arns = {
            n: client.describe_stream_summary(StreamName=n)["StreamDescriptionSummary"]["StreamARN"]
            for n in ("lat", "tput")
        }
        consumers = {
            n: client.register_stream_consumer(StreamARN=a, ConsumerName="bench")["Consumer"]["ConsumerARN"]
            for n, a in arns.items()
        }
        for arn in consumers.values():
            while client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"] != "ACTIVE":
                time.sleep(0.05)

        rate, puts = cfg["rate"], cfg["puts"]
        log(f"latency: {puts} PutRecord calls at {rate}/s per reader")
        readers: list[tuple[str, Callable[[], list[float]]]] = [
            ("SubscribeToShard (push)", lambda: via_subscription(server, "lat", consumers["lat"], rate, puts)),
            (
                f"GetRecords every {POLL_INTERVAL_S * 1000:.0f} ms",
                lambda: via_polling(server, "lat", rate, puts, POLL_INTERVAL_S),
            ),
            ("GetRecords back to back", lambda: via_polling(server, "lat", rate, puts, 0.0)),
        ]
        latency: dict[str, dict[str, float]] = {}
        for label, fn in readers:
            lat = fn()
            latency[label] = {
                "n": len(lat),
                "p50_ms": statistics.median(lat),
                "p99_ms": pct(lat, 0.99),
                "max_ms": max(lat),
            }
        results["latency"] = latency

        total = cfg["fill"]
        log(f"throughput: filling with {total:,} records, then reading them {cfg['repeats']}x per reader")
        fill(server, "tput", total)
        runs: dict[str, list[dict[str, float]]] = {
            "SubscribeToShard, raw client": [],
            "SubscribeToShard, boto3": [],
            "GetRecords, raw client": [],
        }
        for _ in range(cfg["repeats"]):  # the readers take turns, so load from elsewhere falls on each alike
            runs["SubscribeToShard, raw client"].append(
                timed(server, lambda: read_by_subscription(server, consumers["tput"], total))
            )
            runs["SubscribeToShard, boto3"].append(
                timed(server, lambda: read_by_boto3(client, consumers["tput"], total))
            )
            runs["GetRecords, raw client"].append(timed(server, lambda: read_by_get_records(server, "tput", total)))
        results["throughput"] = {
            k: {
                "records_per_s": statistics.median(r["records_per_s"] for r in v),
                "spread": (max(r["records_per_s"] for r in v) - min(r["records_per_s"] for r in v))
                / statistics.median(r["records_per_s"] for r in v),
                "server_cpu_ms_per_1k": statistics.median(r["server_cpu_ms_per_1k"] for r in v),
            }
            for k, v in runs.items()
        }
    finally:
        code = server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    if code != 0:
        log(f"shardline serve exited with {code}")
    results["load_avg"] = (load0, os.getloadavg()[0])
    report(results, args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if code == 0 else 1


def report(r: dict[str, Any], quick: bool) -> None:
    print(
        f"shardline enhanced fan-out benchmark ({'quick' if quick else 'full'} run, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, fsync={r['fsync']})"
    )
    print(
        f"load average (1 min) at start {r['load_avg'][0]:.2f}, at end {r['load_avg'][1]:.2f} (the machine is shared)"
    )
    cfg = r["config"]
    print()
    print(f"put -> record received (100 B records, {cfg['puts']} single PutRecord calls at {cfg['rate']}/s, 1 shard;")
    print(" from just before the put's request is sent to the reader holding the record)")
    print(f"  {'reader':<30} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   target")
    base = r["latency"][f"GetRecords every {POLL_INTERVAL_S * 1000:.0f} ms"]
    for label, f in r["latency"].items():
        target = ""
        if label.startswith("SubscribeToShard"):
            ok = f["p50_ms"] < TARGET_P50_MS and f["p99_ms"] < TARGET_P99_MS
            target = f"p50<{TARGET_P50_MS:g} p99<{TARGET_P99_MS:g}  {'PASS' if ok else 'FAIL'}"
        print(f"  {label:<30} {f['n']:>6} {f['p50_ms']:>8.2f} {f['p99_ms']:>8.2f} {f['max_ms']:>8.2f}   {target}")
    push = r["latency"]["SubscribeToShard (push)"]
    print(f"  push p50 is {base['p50_ms'] / push['p50_ms']:.1f}x lower than polling within Kinesis's limits")
    print()
    print(
        f"records/s through one reader ({cfg['fill']:,} records of 100 B from TRIM_HORIZON; median of "
        f"{cfg['repeats']}, spread = (max - min) / median)"
    )
    print(f"  {'reader':<30} {'records/s':>10} {'spread':>7} {'server CPU ms/1k':>17}")
    for label, f in r["throughput"].items():
        print(f"  {label:<30} {f['records_per_s']:>10,.0f} {f['spread']:>6.0%} {f['server_cpu_ms_per_1k']:>17.2f}")
    t = r["throughput"]
    ratio = t["SubscribeToShard, raw client"]["records_per_s"] / t["GetRecords, raw client"]["records_per_s"]
    print(f"  subscription / GetRecords (raw clients): {ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
