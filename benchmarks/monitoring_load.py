"""Put latency of a `shardline serve` while heavy monitoring queries run against it.

python benchmarks/monitoring_load.py
    One server, one 200-shard stream with shard-level IncomingRecords (200 stored series). PutRecord latency
    (sequential calls on one keep-alive connection) is measured in alternating slices: alone, then while QUERIERS
    separate processes each send /api/query for every shard series in a loop. Prints p50/p99/max put latency per
    kind of slice, and the status codes and latency the queries got.
env: SHARDS (200), QUERIERS (5), SLICES (4 of each kind), SLICE_S (4), QUERY (the query string; by default every
     shard series over the last hour at a 5 s period, 144,000 values), TOKEN (sent as a bearer token, and given to
     the server with --monitoring-token when the server has that option)
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

SHARDS = int(os.environ.get("SHARDS", "200"))
QUERIERS = int(os.environ.get("QUERIERS", "5"))
SLICES = int(os.environ.get("SLICES", "4"))
SLICE_S = float(os.environ.get("SLICE_S", "4"))
QUERY = os.environ.get("QUERY", "name=shardline_shard_incoming_records_total&start=-3600&period=10&stat=Sum")
TOKEN = os.environ.get("TOKEN", "")
URL_RE = re.compile(r"serving Kinesis at (http://[\d.]+:\d+)")

# A signature of the shape serve's default --auth none requires (it verifies nothing).
SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, "
    "Signature=0",
    "X-Amz-Date": "20260101T000000Z",
}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def querier(url: str, stop_file: str) -> None:
    """A child process: /api/query in a loop until stop_file exists; prints one line per answer (status, ms)."""
    headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
    while not os.path.exists(stop_file):
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/api/query?{QUERY}", headers=headers)) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            exc.read()
            status = exc.code
            if status == 503:
                time.sleep(float(exc.headers.get("Retry-After", "1")))
        print(status, round((time.perf_counter() - t0) * 1000, 3), flush=True)


class Kinesis:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port))
        self.last = b""

    def call(self, op: str, payload: object) -> float:
        t0 = time.perf_counter()
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Kinesis_20131202.{op}", **SIGNED}
        self.conn.request("POST", "/", orjson.dumps(payload), headers)
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200, body
        self.last = body
        return time.perf_counter() - t0

    def status(self, stream: str) -> str:
        self.call("DescribeStreamSummary", {"StreamName": stream})
        return str(orjson.loads(self.last)["StreamDescriptionSummary"]["StreamStatus"])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="monitoring-load-"))
    cmd = [sys.executable, "-m", "shardline.cli", "serve", "--port", "0", "--data-dir", str(root / "data")]
    cmd += ["--fsync", "never", "--log-level", "warning"]
    helps = subprocess.run([*cmd[:4], "--help"], capture_output=True, text=True, check=True).stdout
    if TOKEN and "--monitoring-token" in helps:
        cmd += ["--monitoring-token", TOKEN]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        match = URL_RE.search(server.stdout.readline())
        assert match, "the server did not start"
        url = match.group(1)
        k = Kinesis(url)
        k.call("CreateStream", {"StreamName": "big", "ShardCount": SHARDS})
        while k.status("big") != "ACTIVE":
            time.sleep(0.05)  # a new stream is CREATING for a moment, as on AWS
        k.call("EnableEnhancedMonitoring", {"StreamName": "big", "ShardLevelMetrics": ["IncomingRecords"]})
        data = base64.b64encode(b"x" * 100).decode()
        put = {"StreamName": "big", "Data": data, "PartitionKey": "k"}
        for _ in range(200):
            k.call("PutRecord", put)
        time.sleep(2)  # a couple of samples so the shard series exist
        alone: list[float] = []
        loaded: list[float] = []
        answers: list[tuple[int, float]] = []
        for i in range(2 * SLICES):
            heavy = i % 2 == 1
            stop_file = root / f"stop-{i}"
            kids = [
                subprocess.Popen(
                    [sys.executable, __file__, "query", url, str(stop_file)], stdout=subprocess.PIPE, text=True
                )
                for _ in range(QUERIERS if heavy else 0)
            ]
            if heavy:
                time.sleep(0.5)  # let the queries get going
            into = loaded if heavy else alone
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < SLICE_S:
                into.append(k.call("PutRecord", put) * 1000)
            stop_file.touch()
            for kid in kids:
                out, _ = kid.communicate(timeout=120)
                answers += [(int(a), float(b)) for a, b in (line.split() for line in out.splitlines())]
        print(f"PutRecord latency, 1 client, {SHARDS}-shard stream, {SLICES} alternating slices of {SLICE_S:g} s each")
        print(f"  query: /api/query?{QUERY}  ({QUERIERS} processes in a loop during the loaded slices)")
        for name, xs in (("no queries  ", alone), ("with queries", loaded)):
            print(
                f"  {name}: {len(xs):6d} puts  p50 {statistics.median(xs):8.2f} ms  p99 {pct(xs, 0.99):8.2f} ms  "
                f"max {max(xs):8.2f} ms"
            )
        print(f"  p99 with/without queries: {pct(loaded, 0.99) / pct(alone, 0.99):.1f}x")
        by_status: dict[int, list[float]] = {}
        for status, ms in answers:
            by_status.setdefault(status, []).append(ms)
        for status, xs in sorted(by_status.items()):
            print(
                f"  queries answered {status}: {len(xs):5d}  p50 {statistics.median(xs):8.1f} ms  max {max(xs):8.1f} ms"
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["query"]:
        querier(sys.argv[2], sys.argv[3])
    else:
        main()
