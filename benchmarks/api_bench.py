"""The Kinesis API over HTTP: `shardline serve` beside kinesalite, in one run, through two clients.

```
.venv/bin/python benchmarks/api_bench.py            # full run: 200,000 records per client and server
.venv/bin/python benchmarks/api_bench.py --quick    # smoke run: 20,000 records
    --json FILE       also write every figure as JSON
    --peer-dir PATH   where kinesalite is installed from npm (default ~/.cache/shardline-bench/kinesalite)
    --no-peer         shardline alone
    --dir PATH        parent of the scratch directory (shardline's data dir); always removed at the end
    --fsync MODE      shardline's --fsync (default always, the mode the targets are set for)
    --profile FILE    run shardline under cProfile, save the stats to FILE and print the top functions
    --h2              also the raw client's requests over HTTP/2 (h2c with prior knowledge); shardline alone
```

Both servers run as child processes (shardline with `--fsync always` unless --fsync says otherwise; kinesalite keeps
everything in memory). Each is loaded by one sequential client at a time: boto3, and a raw keep-alive http.client
connection sending hand-built JSON 1.1 bodies (with --h2, also those bodies over one HTTP/2 connection, a stream at
a time: kinesalite speaks HTTP/1.1 only, so shardline runs alone). Per client: PutRecords (500 records of 100 B,
4 shards) until the stream holds the record count, GetRecords (Limit 10,000) over every shard from TRIM_HORIZON,
then single PutRecord calls timed one by one. Every phase runs in slices with the servers taking turns, so load
from elsewhere on the machine falls on both alike. Server CPU is utime+stime from /proc/<pid>/stat over each phase;
resident memory is VmRSS from /proc/<pid>/status, sampled when the server is idle and after every tenth of each
fill.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import boto3
import orjson
from botocore.config import Config

import _h2client
import _peer
from _peer import Server, log

BATCH = 500
RECORD_BYTES = 100
SHARDS = 4
GET_LIMIT = 10_000
POOL_BATCHES = 16  # distinct request batches, cycled
FULL = (200_000, 2_000)  # records per fill, single PutRecord calls
QUICK = (20_000, 300)
TARGET_RATIO = 3.0
FLAT_GROWTH = 0.10  # resident memory may grow by this share of its warm value while the stream fills
MIB = 1024 * 1024
KINDS: tuple[str, ...] = ("boto3", "raw")
_PCT = ("server_cpu_pct", "server CPU %", "%", "")
_PER_1K = [
    _PCT,
    ("server_cpu_ms_per_1k", "server CPU ms/1k", "ms", ""),
    ("client_cpu_ms_per_1k", "client CPU ms/1k", "ms", ""),
]
_PER_CALL = [_PCT, ("server_cpu_ms_per_call", "server CPU ms/call", "ms", "")]
_PER_CALL += [("client_cpu_ms_per_call", "client CPU ms/call", "ms", "")]
_LATENCY = [("calls_per_s", "calls/s", "n", ""), ("p50_ms", "p50 ms", "ms", ""), ("p99_ms", "p99 ms", "ms", "lower")]
PHASE_ROWS = [  # (phase, action, [(figure, label, unit, target)]); "ratio" targets apply to boto3 only
    ("put_records", "PutRecords", [("records_per_s", "records/s", "n", "ratio"), *_PER_1K]),
    ("get_records", "GetRecords", [("records_per_s", "records/s", "n", "ratio"), *_PER_1K]),
    ("put_record", "PutRecord", [*_LATENCY, *_PER_CALL]),
]
IDLE_RECONNECT_S = 2.0
SLICES = 10  # each fill and the single calls run in this many turns per server; RSS is sampled after each
Batch = list[tuple[bytes, str]]


# ----------------------------------------------------------------------------- clients
class Client(Protocol):
    def create_stream(self, name: str, shards: int) -> None: ...
    def put_batch(self, name: str, i: int) -> list[str]: ...
    def iterator(self, name: str, shard_id: str) -> str: ...
    def get(self, iterator: str, limit: int) -> tuple[int, str]: ...
    def put_one(self, name: str, i: int) -> None: ...
    def close(self) -> None: ...


def wait_active(describe: Callable[[], str], name: str) -> None:
    deadline = time.monotonic() + 30
    while (status := describe()) != "ACTIVE":
        if time.monotonic() > deadline:
            raise RuntimeError(f"stream {name} still {status} after 30s")
        time.sleep(0.02)


class Boto3Client:
    def __init__(self, url: str, pool: list[Batch], singles: list[tuple[bytes, str]]) -> None:
        self.c = boto3.client(
            "kinesis",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 0}, connect_timeout=10, read_timeout=120),
        )
        self.pool = [[{"Data": d, "PartitionKey": k} for d, k in b] for b in pool]
        self.singles = singles

    def create_stream(self, name: str, shards: int) -> None:
        self.c.create_stream(StreamName=name, ShardCount=shards)
        wait_active(
            lambda: self.c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"], name
        )

    def put_batch(self, name: str, i: int) -> list[str]:
        r = self.c.put_records(StreamName=name, Records=self.pool[i % len(self.pool)])
        if r["FailedRecordCount"]:
            raise RuntimeError(f"PutRecords: {r['FailedRecordCount']} records failed: {r['Records'][:3]}")
        return [e["ShardId"] for e in r["Records"]]

    def iterator(self, name: str, shard_id: str) -> str:
        it: str = self.c.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        return it

    def get(self, iterator: str, limit: int) -> tuple[int, str]:
        r = self.c.get_records(ShardIterator=iterator, Limit=limit)
        return len(r["Records"]), r["NextShardIterator"]

    def put_one(self, name: str, i: int) -> None:
        data, key = self.singles[i % len(self.singles)]
        self.c.put_record(StreamName=name, Data=data, PartitionKey=key)

    def close(self) -> None:
        self.c.close()


class RawClient:
    """One keep-alive connection; request bodies are built by hand once, responses parsed with orjson.

    The Authorization header is well-formed but unsigned: neither server checks signatures here, and kinesalite
    rejects requests that carry none."""

    def __init__(self, host: str, port: int, pool: list[Batch], singles: list[tuple[bytes, str]]) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.pool = [[(base64.b64encode(d), k.encode()) for d, k in b] for b in pool]
        self.singles = [(base64.b64encode(d), k.encode()) for d, k in singles]
        self.bodies: dict[str, list[bytes]] = {}
        self.single_bodies: dict[str, list[bytes]] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.last_used = time.monotonic()

    def call(self, op: str, body: bytes) -> Any:
        # A connection left idle while the other phases ran may have been closed by the server (Node's keep-alive
        # timeout is 5 s): start a new one rather than find out by a failed request.
        now = time.monotonic()
        if now - self.last_used > IDLE_RECONNECT_S:
            self.conn.close()
        self.last_used = now
        headers = self.op_headers(op)
        self.conn.request("POST", "/", body, headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{op}: HTTP {resp.status}: {data[:300]!r}")
        self.last_used = time.monotonic()
        return orjson.loads(data) if data else {}

    def op_headers(self, op: str) -> dict[str, str]:
        headers = self.headers.get(op)
        if headers is None:
            headers = self.headers[op] = {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"Kinesis_20131202.{op}",
                "X-Amz-Date": "20200101T000000Z",
                "Authorization": "AWS4-HMAC-SHA256 Credential=x/20200101/us-east-1/kinesis/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0",
            }
        return headers

    def create_stream(self, name: str, shards: int) -> None:
        self.call("CreateStream", orjson.dumps({"StreamName": name, "ShardCount": shards}))
        summary = orjson.dumps({"StreamName": name})
        wait_active(
            lambda: self.call("DescribeStreamSummary", summary)["StreamDescriptionSummary"]["StreamStatus"], name
        )
        head = b'{"StreamName":"' + name.encode() + b'",'
        self.bodies[name] = [
            head + b'"Records":[' + b",".join(b'{"Data":"%s","PartitionKey":"%s"}' % e for e in b) + b"]}"
            for b in self.pool
        ]
        self.single_bodies[name] = [head + b'"Data":"%s","PartitionKey":"%s"}' % e for e in self.singles]

    def put_batch(self, name: str, i: int) -> list[str]:
        bodies = self.bodies[name]
        r = self.call("PutRecords", bodies[i % len(bodies)])
        if r["FailedRecordCount"]:
            raise RuntimeError(f"PutRecords: {r['FailedRecordCount']} records failed: {r['Records'][:3]}")
        return [e["ShardId"] for e in r["Records"]]

    def iterator(self, name: str, shard_id: str) -> str:
        body = orjson.dumps({"StreamName": name, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"})
        it: str = self.call("GetShardIterator", body)["ShardIterator"]
        return it

    def get(self, iterator: str, limit: int) -> tuple[int, str]:
        r = self.call("GetRecords", b'{"ShardIterator":"%s","Limit":%d}' % (iterator.encode(), limit))
        return len(r["Records"]), r["NextShardIterator"]

    def put_one(self, name: str, i: int) -> None:
        bodies = self.single_bodies[name]
        self.call("PutRecord", bodies[i % len(bodies)])

    def close(self) -> None:
        self.conn.close()


class H2Client(RawClient):
    """The raw client's requests over one HTTP/2 connection (h2c with prior knowledge), one stream at a time."""

    def __init__(self, host: str, port: int, pool: list[Batch], singles: list[tuple[bytes, str]]) -> None:
        super().__init__(host, port, pool, singles)
        self.h2 = _h2client.H2Connection(host, port)
        self.h2_last_used = [time.monotonic()]

    def call(self, op: str, body: bytes) -> Any:
        return _h2client.call(self.h2, op, self.op_headers(op), body, self.h2_last_used)

    def close(self) -> None:
        self.h2.close()
        super().close()


# ----------------------------------------------------------------------------- phases
class Meter:
    """Wall time, server CPU and this process's CPU, summed over the slices of one phase."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.seconds = self.server_cpu_s = self.client_cpu_s = 0.0

    @contextmanager
    def slice(self) -> Iterator[None]:
        cpu0, client0, t0 = self.server.cpu_s(), time.process_time(), time.perf_counter()
        yield
        self.seconds += time.perf_counter() - t0
        self.server_cpu_s += self.server.cpu_s() - cpu0
        self.client_cpu_s += time.process_time() - client0

    def figures(self, records: int) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "records": records,
            "records_per_s": records / self.seconds,
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_pct": 100 * self.server_cpu_s / self.seconds,
            "server_cpu_ms_per_1k": 1e6 * self.server_cpu_s / records,
            "client_cpu_pct": 100 * self.client_cpu_s / self.seconds,
            "client_cpu_ms_per_1k": 1e6 * self.client_cpu_s / records,
        }


class Target:
    """One server with its two clients, driven a slice at a time so the servers can take turns."""

    def __init__(self, server: Server, pool: list[Batch], single_pool: list[tuple[bytes, str]]) -> None:
        self.server = server
        self.clients: dict[str, Client] = {
            "boto3": Boto3Client(server.url, pool, single_pool),
            "raw": RawClient(server.host, server.port, pool, single_pool),
        }
        if "h2" in KINDS:
            self.clients["h2"] = H2Client(server.host, server.port, pool, single_pool)
        self.meters = {(k, ph): Meter(server) for k in KINDS for ph in ("put_records", "get_records", "put_record")}
        self.shards: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
        self.read = dict.fromkeys(KINDS, 0)
        self.latencies: dict[str, list[float]] = {k: [] for k in KINDS}
        self.rss: list[tuple[int, int]] = []  # (records in the server, VmRSS bytes)
        self.filled = 0
        self.out: dict[str, Any] = {"pid": server.pid, "rss_start": server.rss_bytes()}
        for kind, client in self.clients.items():
            client.create_stream(f"bench-{kind}", SHARDS)
        # A server's monitoring allocates a new stream's series at its next one-second sample: let that happen
        # before the fill starts, so "growth while filling" measures growth with the data, not with the streams.
        time.sleep(2.5)

    def put(self, kind: str, lo: int, hi: int) -> None:
        client, stream, shards = self.clients[kind], f"bench-{kind}", self.shards[kind]
        with self.meters[kind, "put_records"].slice():
            for i in range(lo, hi):
                shards.update(client.put_batch(stream, i))
        self.filled += (hi - lo) * BATCH
        self.rss.append((self.filled, self.server.rss_bytes()))

    def read_shard(self, kind: str, index: int) -> None:
        ids = sorted(self.shards[kind])
        if index >= len(ids):
            return
        shard_id, expected = ids[index], self.shards[kind][ids[index]]
        client = self.clients[kind]
        with self.meters[kind, "get_records"].slice():
            it = client.iterator(f"bench-{kind}", shard_id)
            read = empties = 0
            while read < expected:
                n, it = client.get(it, GET_LIMIT)
                read += n
                empties = empties + 1 if n == 0 else 0
                if empties >= 3:
                    raise RuntimeError(f"{shard_id}: read {read} of {expected} records, then only empty responses")
        self.read[kind] += read

    def singles(self, kind: str, lo: int, hi: int) -> None:
        client, stream, lat = self.clients[kind], f"bench-{kind}", self.latencies[kind]
        with self.meters[kind, "put_record"].slice():
            for i in range(lo, hi):
                t = time.perf_counter()
                client.put_one(stream, i)
                lat.append(time.perf_counter() - t)

    def results(self) -> dict[str, Any]:
        out = self.out
        for kind in KINDS:
            lat = sorted(self.latencies[kind])
            n = len(lat)
            single = self.meters[kind, "put_record"].figures(n)
            single["calls_per_s"] = single.pop("records_per_s")
            single["server_cpu_ms_per_call"] = single.pop("server_cpu_ms_per_1k") / 1000
            single["client_cpu_ms_per_call"] = single.pop("client_cpu_ms_per_1k") / 1000
            single.update(
                p50_ms=1e3 * lat[int(0.50 * (n - 1))], p99_ms=1e3 * lat[int(0.99 * (n - 1))], max_ms=1e3 * lat[-1]
            )
            out[kind] = {
                "put_records": self.meters[kind, "put_records"].figures(sum(self.shards[kind].values())),
                "get_records": self.meters[kind, "get_records"].figures(self.read[kind]),
                "put_record": single,
            }
        rss = self.rss
        out["rss_fill"] = rss
        out["rss_warm"] = rss[0][1]
        out["rss_first_fill"] = rss[len(rss) // 2 - 1][1]
        out["rss_full"] = rss[-1][1]
        out["rss_growth"] = max(r for _, r in rss) - rss[0][1]
        out["rss_end"] = self.server.rss_bytes()
        return out

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def make_pool(seed: int) -> tuple[list[Batch], list[tuple[bytes, str]]]:
    rng = random.Random(seed)

    def rec() -> tuple[bytes, str]:
        return rng.randbytes(RECORD_BYTES), f"{rng.getrandbits(64):016x}"

    return [[rec() for _ in range(BATCH)] for _ in range(POOL_BATCHES)], [rec() for _ in range(1000)]


def run(targets: list[Target], records: int, singles: int) -> None:
    """Every phase in slices, the servers taking turns (and swapping who goes first), so load from elsewhere on the
    machine falls on both alike. Both fills come first, so resident memory is sampled while only the streams grow."""
    batches = records // BATCH

    def turns(step: int) -> list[Target]:
        return targets if step % 2 == 0 else targets[::-1]

    for kind in KINDS:
        log(f"{kind}: PutRecords x {batches} per server")
        for step in range(SLICES):
            for t in turns(step):
                t.put(kind, batches * step // SLICES, batches * (step + 1) // SLICES)
    for kind in KINDS:
        log(f"{kind}: GetRecords")
        for index in range(SHARDS):
            for t in turns(index):
                t.read_shard(kind, index)
    for t in targets:
        t.out["rss_after_reads"] = t.server.rss_bytes()
    for kind in KINDS:
        log(f"{kind}: PutRecord x {singles} per server")
        for step in range(SLICES):
            for t in turns(step):
                t.singles(kind, singles * step // SLICES, singles * (step + 1) // SLICES)


# ----------------------------------------------------------------------------- report
def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "n":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}"
    if unit == "MiB":
        return f"{value / MIB:.1f}"
    return f"{value:.0f}"  # percentages and per-1k CPU figures


def render(res: dict[str, Any]) -> tuple[str, list[tuple[str, bool | None]]]:
    sl: dict[str, Any] = res["shardline"]
    ks: dict[str, Any] | None = res.get("kinesalite")
    verdicts: list[tuple[str, bool | None]] = []
    rows: list[tuple[str, str, str, str, str]] = []

    def pick(r: dict[str, Any], path: tuple[str, ...]) -> float:
        for key in path[:-1]:
            r = r[key]
        return float(r[path[-1]])

    def row(label: str, path: tuple[str, ...], unit: str, target: str = "") -> None:
        a = pick(sl, path)
        b = pick(ks, path) if ks else None
        ratio = f"{a / b:.2f}x" if b else "-"
        verdict = ""
        if target:
            ok: bool | None = None
            if b:
                ok = a >= TARGET_RATIO * b if target == "ratio" else a < b
            name = f">= {TARGET_RATIO:g}x" if target == "ratio" else "lower"
            verdict = f"{name}: {'n/a' if ok is None else 'PASS' if ok else 'MISS'}"
            verdicts.append((f"{label} {name}", ok))
        rows.append((label, fmt(a, unit), fmt(b, unit), ratio, verdict))

    for kind in KINDS:
        for phase, action, figures in PHASE_ROWS:
            for key, what, unit, target in figures:
                goal = "" if target == "ratio" and kind != "boto3" else target
                row(f"{kind} {action} {what}", (kind, phase, key), unit, goal)
    n = res["records"]
    row("RSS MiB, idle at start", ("rss_start",), "MiB")
    row(f"RSS MiB, {n // 10:,} records in (warm)", ("rss_warm",), "MiB")
    row(f"RSS MiB, {n:,} records in", ("rss_first_fill",), "MiB")
    row(f"RSS MiB, {2 * n:,} records in", ("rss_full",), "MiB")
    row("RSS MiB growth while filling, from warm", ("rss_growth",), "MiB")
    row("RSS MiB after the reads", ("rss_after_reads",), "MiB")
    row("RSS MiB at the end", ("rss_end",), "MiB")
    flat = sl["rss_growth"] <= FLAT_GROWTH * sl["rss_warm"]
    verdicts.append((f"shardline RSS flat while filling (growth <= {FLAT_GROWTH:.0%} of warm)", flat))
    growth_row = next(i for i, r in enumerate(rows) if r[0].startswith("RSS MiB growth"))
    rows[growth_row] = (*rows[growth_row][:4], f"flat: {'PASS' if flat else 'MISS'}")

    head = ("metric", "shardline", "kinesalite" if ks else "kinesalite (not run)", "ratio", "target")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(
            c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    table = [line(head), "-+-".join("-" * w for w in widths), *map(line, rows)]
    if ks:
        table.append("")
        for phase, action, _ in PHASE_ROWS[:2]:
            client_ms = sl["boto3"][phase]["client_cpu_ms_per_1k"]
            peer_ms = 1e6 / ks["boto3"][phase]["records_per_s"]
            table.append(
                f"ceiling: boto3 {action} costs this process {client_ms:.1f} ms CPU per 1k records; kinesalite took"
                f" {peer_ms:.1f} ms per 1k in all, so one sequential boto3 client caps any server at"
                f" {peer_ms / client_ms:.2f}x"
            )
    return "\n".join(table), verdicts


# ----------------------------------------------------------------------------- main
def print_profile(path: Path, top: int = 30) -> None:
    for key in ("tottime", "cumulative"):
        print(f"\n--- shardline server profile, top {top} by {key} ---")
        stats = pstats.Stats(str(path), stream=sys.stdout)
        stats.strip_dirs().sort_stats(key).print_stats(top)


def main() -> int:
    ap = argparse.ArgumentParser(description="shardline API benchmark, beside kinesalite")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK[0]:,} records per fill: a smoke run")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--peer-dir", type=Path, default=Path.home() / ".cache" / "shardline-bench" / "kinesalite")
    ap.add_argument("--no-peer", action="store_true", help="run shardline alone")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    ap.add_argument("--fsync", choices=["always", "interval", "never"], default="always", help="shardline's mode")
    ap.add_argument("--profile", type=Path, default=None, help="cProfile shardline; stats to this file")
    ap.add_argument(
        "--h2", action="store_true", help="a third client: the raw one over HTTP/2 (h2c); implies --no-peer"
    )
    args = ap.parse_args()
    if args.h2:
        global KINDS  # noqa: PLW0603 (the clients every phase runs, fixed before any runs)
        KINDS = (*KINDS, "h2")
        args.no_peer = True
    records, singles = QUICK if args.quick else FULL

    peer_problem = "--no-peer given" if args.no_peer else _peer.ensure_kinesalite(args.peer_dir)
    if peer_problem:
        print(f"kinesalite will not run: {peer_problem}; measuring shardline alone")
    res: dict[str, Any] = {
        "records": records, "record_bytes": RECORD_BYTES, "batch": BATCH, "shards": SHARDS, "get_limit": GET_LIMIT,
        "single_calls": singles, "fsync": args.fsync, "cpus": os.cpu_count(), "profiled": args.profile is not None,
        "kinesalite_version": None if peer_problem else _peer.kinesalite_version(args.peer_dir),
    }  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="shardline-api-bench-", dir=args.dir))
    servers: list[Server] = []
    targets: list[Target] = []
    try:
        servers.append(
            _peer.start_shardline(
                scratch / "data", scratch / "shardline.log", fsync=args.fsync, profile_out=args.profile
            )
        )
        if not peer_problem:
            servers.append(_peer.start_kinesalite(args.peer_dir, scratch / "kinesalite.log"))
        for srv in servers:
            log(f"{srv.name} pid {srv.pid} at {srv.url}")
        pool, single_pool = make_pool(1)
        for srv in servers:
            targets.append(Target(srv, pool, single_pool))
        run(targets, records, singles)
        for t in targets:
            res[t.server.name] = t.results()
    except BaseException:
        for srv in servers:
            tail = srv.log_path.read_text(errors="replace")[-3000:]
            print(f"--- {srv.name} log tail ---\n{tail}", file=sys.stderr)
        raise
    finally:
        for t in targets:
            t.close()
        for srv in reversed(servers):
            status = srv.stop()
            if status not in (0, None, -15):
                log(f"{srv.name} exited with status {status}")
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"\nKinesis API over HTTP on 127.0.0.1, one sequential client at a time: {records:,} records of"
        f" {RECORD_BYTES} B per fill in PutRecords of {BATCH} to {SHARDS} shards, GetRecords Limit {GET_LIMIT:,},"
        f" {singles:,} PutRecord calls; shardline --fsync {args.fsync}{' (under cProfile)' if args.profile else ''};"
        f" kinesalite {res['kinesalite_version'] or 'not run'} (in memory); {os.cpu_count()} CPUs\n"
    )
    table, verdicts = render(res)
    print(table)
    print()
    for name, ok in verdicts:
        print(f"{'n/a ' if ok is None else 'PASS' if ok else 'MISS'}  {name}")
    res["verdicts"] = {name: ok for name, ok in verdicts}
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    if args.profile:
        print_profile(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
