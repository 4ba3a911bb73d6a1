"""Cost of the metrics Monitor.

python benchmarks/metrics_bench.py
    HTTP PutRecords of `shardline serve` vs `serve --no-metrics` in alternating slices; in-process
    Engine.put_records with and without a running Monitor; the cost of one Monitor.tick for 10 streams x 8 shards
python benchmarks/metrics_bench.py runtime
    a project (4 shards, one mapping, a handler printing EMF) processing records with and without a Monitor
env: SLICES, SLICE_S, FSYNC (serve's --fsync), REV=1 (start the no-metrics server first), AA=1 (both servers
     without metrics: the bench's own bias), RT_RECORDS, RT_ROUNDS
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from shardline import Engine
from shardline.metrics import Monitor
from shardline.models import PutRecordsRequestEntry
from shardline.runtime.config import load_config
from shardline.runtime.project import Project

SLICES = int(os.environ.get("SLICES", "8"))
SLICE_S = float(os.environ.get("SLICE_S", "4"))
BATCH = 500
URL_RE = re.compile(r"serving Kinesis at http://([\d.]+):(\d+)")
TICK = os.sysconf("SC_CLK_TCK")

# A signature of the shape serve's default --auth none requires (it verifies nothing).
SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, "
    "Signature=0",
    "X-Amz-Date": "20260101T000000Z",
}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Server:
    def __init__(self, data: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shardline.cli",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(data),
                "--fsync",
                os.environ.get("FSYNC", "never"),
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        m = URL_RE.search(self.proc.stdout.readline())
        self.host, self.port = m.group(1), int(m.group(2))
        self.conn = http.client.HTTPConnection(self.host, self.port)
        self.call("CreateStream", {"StreamName": "b", "ShardCount": 4})
        while self.call("DescribeStreamSummary", {"StreamName": "b"})["StreamDescriptionSummary"]["StreamStatus"] != (
            "ACTIVE"
        ):
            time.sleep(0.05)  # a new stream is CREATING for a moment, as on AWS
        rng = random.Random(1)
        recs = [
            {"Data": base64.b64encode(rng.randbytes(100)).decode(), "PartitionKey": f"{rng.getrandbits(64):x}"}
            for _ in range(BATCH)
        ]
        self.body = orjson.dumps({"StreamName": "b", "Records": recs})
        self.records = 0
        self.seconds = 0.0
        self.cpu = 0.0

    def call(self, op: str, payload: object | bytes) -> dict:
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.conn.request(
            "POST",
            "/",
            body,
            {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Kinesis_20131202.{op}", **SIGNED},
        )
        r = self.conn.getresponse()
        data = r.read()
        assert r.status == 200, data
        return orjson.loads(data) if data else {}

    def slice(self, seconds: float) -> None:
        c0, t0 = cpu_s(self.proc.pid), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            r = self.call("PutRecords", self.body)
            assert r["FailedRecordCount"] == 0
            self.records += BATCH
        self.seconds += time.perf_counter() - t0
        self.cpu += cpu_s(self.proc.pid) - c0

    def stop(self) -> None:
        self.conn.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def http_bench(root: Path) -> None:
    if os.environ.get("REV"):
        off = Server(root / "off", "--no-metrics")
        on = Server(root / "on", *(["--no-metrics"] if os.environ.get("AA") else []))
    else:
        on = Server(root / "on", *(["--no-metrics"] if os.environ.get("AA") else []))
        off = Server(root / "off", "--no-metrics")
    try:
        for i in range(SLICES):
            for s in (on, off) if i % 2 == 0 else (off, on):
                s.slice(SLICE_S)
        meta = {"samples": 0, "series": 0, "sample_seconds_total": 0.0}
        if not os.environ.get("AA"):
            with urllib.request.urlopen(f"http://{on.host}:{on.port}/api/overview") as resp:
                meta = json.loads(resp.read())["metrics"]
    finally:
        on.stop()
        off.stop()
    print(
        f"HTTP PutRecords (500 x 100 B, 4 shards, fsync={os.environ.get('FSYNC', 'never')}, "
        f"{SLICES} alternating slices of {SLICE_S:g} s each):"
    )
    for name, s in (("metrics on ", on), ("metrics off", off)):
        print(
            f"  {name}: {s.records / s.seconds:9.0f} records/s   "
            f"server CPU {1e6 * s.cpu / s.records:6.1f} ms/1k records"
            f"   ({s.records} records in {s.seconds:.1f} s)"
        )
    ratio = (on.records / on.seconds) / (off.records / off.seconds)
    cpu = (on.cpu / on.records) / (off.cpu / off.records)
    print(
        f"  throughput on/off = {ratio:.3f} ({(1 - ratio) * 100:+.1f}% cost);  server CPU per record on/off = {cpu:.3f}"
    )
    print(
        f"  monitor: {meta['samples']} samples, {meta['series']} series, "
        f"{1000 * meta['sample_seconds_total'] / max(1, meta['samples']):.3f} ms per sample"
    )


async def engine_bench(root: Path) -> None:

    rng = random.Random(2)
    batch = [PutRecordsRequestEntry(rng.randbytes(100), f"{rng.getrandbits(64):x}") for _ in range(BATCH)]
    results = {True: [0, 0.0], False: [0, 0.0]}
    async with Engine(data_dir=root / "engine", fsync="never") as engine:
        await engine.create_stream("b", 4)
        monitor = Monitor(engine, persist=False)
        for i in range(SLICES):
            for on in (True, False) if i % 2 == 0 else (False, True):
                if on:
                    await monitor.start()
                t0 = time.perf_counter()
                n = 0
                while time.perf_counter() - t0 < SLICE_S:
                    await engine.put_records(batch, stream_name="b")
                    n += BATCH
                    await asyncio.sleep(0)
                results[on][0] += n
                results[on][1] += time.perf_counter() - t0
                if on:
                    await monitor.stop()
    r_on = results[True][0] / results[True][1]
    r_off = results[False][0] / results[False][1]
    print("In-process Engine.put_records (500 x 100 B, 4 shards, fsync=never):")
    print(
        f"  metrics on : {r_on:9.0f} records/s\n  metrics off: {r_off:9.0f} records/s\n"
        f"  on/off = {r_on / r_off:.3f} ({(1 - r_on / r_off) * 100:+.1f}% cost); monitor {monitor.samples} samples, "
        f"{1000 * monitor.sample_seconds / max(1, monitor.samples):.3f} ms per sample, {len(monitor.store)} series"
    )


async def tick_cost(root: Path) -> None:

    async with Engine(data_dir=root / "tick", fsync="never") as engine:
        for i in range(10):
            await engine.create_stream(f"s{i}", 8)
            await engine.put_records([PutRecordsRequestEntry(b"x", str(j)) for j in range(100)], stream_name=f"s{i}")
        monitor = Monitor(engine, persist=False, max_series=5000)
        now = engine.clock.now_ms() // 1000 * 1000
        for k in range(120):
            monitor.tick(now + k * 1000)
        per = 1000 * monitor.sample_seconds / monitor.samples
        print(
            f"Tick cost, 10 streams x 8 shards: {len(monitor.store)} series, {per:.3f} ms per sample "
            f"= {per / 10:.2f}% of one core at 1 sample/s"
        )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="metrics-overhead-"))
    try:
        if "engine" not in sys.argv[1:]:
            http_bench(root)
        asyncio.run(engine_bench(root))
        asyncio.run(tick_cost(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__" and "runtime" not in sys.argv[1:]:
    main()


RT_HANDLER = """
import json
def handler(event, context):
    print(json.dumps({"_aws": {"Timestamp": 0, "CloudWatchMetrics": [{"Namespace": "bench",
        "Dimensions": [["service"]], "Metrics": [{"Name": "Records", "Unit": "Count"}]}]},
        "service": "s", "Records": len(event["Records"])}))
    return {}
"""
RT_CONFIG = """
streams:
  rt: {shards: 4}
functions:
  f:
    handler: h.handler
    events:
      - stream:
          arn: arn:aws:kinesis:us-east-1:000000000000:stream/rt
          batchSize: 100
          startingPosition: TRIM_HORIZON
"""


async def runtime_bench(root: Path) -> None:
    logging.getLogger("shardline.function").setLevel(logging.WARNING)

    proj = root / "rtproj"
    proj.mkdir()
    (proj / "h.py").write_text(RT_HANDLER)
    (proj / "shardline.yml").write_text(RT_CONFIG)
    n = int(os.environ.get("RT_RECORDS", "200000"))
    rounds = int(os.environ.get("RT_ROUNDS", "8"))
    rng = random.Random(3)
    batch = [PutRecordsRequestEntry(rng.randbytes(100), f"{rng.getrandbits(64):x}") for _ in range(BATCH)]
    times = {True: [], False: []}
    async with Engine(data_dir=root / "rtdata", fsync="never") as engine:
        project = Project(load_config(proj / "shardline.yml"), engine)
        await project.start()
        [mapping] = project.mappings
        for _ in range(n // BATCH):  # warm-up: start the execution environments
            await engine.put_records(batch, stream_name="rt")
        while mapping.stats().totals["succeeded"] < n:
            await asyncio.sleep(0.002)
        for r in range(rounds):
            for on in (True, False) if r % 2 == 0 else (False, True):
                monitor = Monitor(engine, project=project, persist=False)
                if on:
                    await monitor.start()
                base = mapping.stats().totals["succeeded"]
                t0 = time.perf_counter()
                for _ in range(n // BATCH):
                    await engine.put_records(batch, stream_name="rt")
                while mapping.stats().totals["succeeded"] - base < n:
                    await asyncio.sleep(0.002)
                times[on].append(time.perf_counter() - t0)
                if on:
                    await monitor.stop()
                    emf_ok = monitor.emf.ok_lines
                    print(
                        f"    on  {times[on][-1]:.3f} s  ({monitor.samples} samples, "
                        f"{1000 * monitor.sample_seconds / max(1, monitor.samples):.2f} ms each)"
                    )
                else:
                    print(f"    off {times[on][-1]:.3f} s")
        await project.stop()
    on, off = n * len(times[True]) / sum(times[True]), n * len(times[False]) / sum(times[False])
    print(f"Runtime (put {n} records, 4 shards, one mapping, batch 100, handler prints one EMF line per batch):")
    print(f"  metrics on : {on:9.0f} records/s processed   ({emf_ok} EMF lines parsed in the last run)")
    print(f"  metrics off: {off:9.0f} records/s processed")
    print(f"  on/off = {on / off:.3f} ({(1 - on / off) * 100:+.1f}% cost)")


if __name__ == "__main__" and "runtime" in sys.argv[1:]:
    _root = Path(tempfile.mkdtemp(prefix="metrics-rt-"))
    try:
        asyncio.run(runtime_bench(_root))
    finally:
        shutil.rmtree(_root, ignore_errors=True)
