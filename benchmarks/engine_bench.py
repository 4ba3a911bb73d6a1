"""In-process benchmark of shardline.Engine, with baselines measured in the same run.

```
.venv/bin/python benchmarks/engine_bench.py            # full run: 1 GB retained, ~1-2 min, <= ~1.5 GB disk
.venv/bin/python benchmarks/engine_bench.py --quick    # smoke run: 100 MB retained, well under a minute
    --dir PATH      put the scratch directory under PATH (default: the system temp dir); always removed at the end
    --json FILE     also write every figure as JSON
    --profile       cProfile the put, read and 1,000-shard paths and print the top functions
```

Figures: PutRecords throughput (100 B and 1 KiB records, 500-record batches, 4 shards) with fsync=never and
fsync=always; GetRecords throughput over the data just written; put latency percentiles; per-record put cost at
1, 64 and 1,000 shards; recovery time after SIGKILL and clean-reopen time with 100 MB and 1 GB retained; resident
memory of a fresh process that reads the whole stream. Baselines: the same bytes written with os.write (+ os.fsync)
and read back with os.pread, and the cost of building the request tuples alone (a floor no caller gets under).
The child processes (the killed writer, the recovering opener, the memory probe) run this same file with the
hidden --child flag, so each starts as a fresh interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shardline import Engine, Settings
from shardline.storage import framing

BATCH = 500
STREAM = "bench"
SHARDS = 4
POOL_BATCHES = 16  # distinct request batches, cycled: keeps the benchmark's own memory small
MB = 1_000_000
RETAINED_RECORD = 1024  # record size of the recovery / memory data sets
Batch = list[Any]  # (data, partition key) or (data, partition key, explicit hash key)


@dataclass(frozen=True)
class Sizes:
    repeats: int  # every throughput figure is the median of this many runs
    never_batches: int  # per run and record size, one writer
    always8_batches: int  # per run and record size, 8 writers
    always1_batches: int  # per run and record size, 1 writer
    # per run and shard count. A run ends with a full journal checkpoint (every staged record written), so it must
    # be long enough not to force frames far smaller than the engine writes on its own: 100,000 records (about
    # 0.3 s) is still more often than the engine's memory cap or 1 s checkpoint would write them.
    shard_batches: int
    single_always: int  # sequential put_record calls
    single_never: int
    small_bytes: int  # retained data for the recovery / memory pair
    big_bytes: int
    shard_rounds: int  # rounds of the shard-count comparison (a ratio of two noisy figures needs more)


FULL = Sizes(5, 200, 160, 100, 200, 1000, 5000, 100 * MB, 1000 * MB, 15)
QUICK = Sizes(3, 40, 30, 16, 16, 150, 500, 40 * MB, 100 * MB, 3)

TARGET_PUT_NEVER = 150_000
TARGET_PUT_ALWAYS8 = 50_000
TARGET_READ = 500_000
TARGET_FLAT = 1.20  # 1,000-shard cost / 1-shard cost, and 1 GB / 100 MB peak memory


# ----------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def make_batches(record_bytes: int, seed: int, count: int = POOL_BATCHES) -> list[Batch]:
    rng = random.Random(seed)
    return [[(rng.randbytes(record_bytes), f"{rng.getrandbits(64):016x}") for _ in range(BATCH)] for _ in range(count)]


def batch_bytes(batch: Batch) -> int:
    return sum(len(d) for d, _ in batch)


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def latency_ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": pct(s, 0.50) * 1e3, "p99_ms": pct(s, 0.99) * 1e3, "max_ms": s[-1] * 1e3, "n": len(s)}


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in kB."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def settings(data_dir: Path, fsync: str, **kw: Any) -> Settings:
    return Settings(data_dir=data_dir, fsync=fsync, shard_limit=2000, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- engine workloads
async def put_batches(
    engine: Engine, pool: list[Batch], n_batches: int, writers: int, stream: str = STREAM
) -> tuple[float, list[float]]:
    """PutRecords n_batches from the pool with `writers` concurrent tasks, then a journal checkpoint; returns
    (seconds, per-call latencies)."""
    todo = iter(range(n_batches))
    lat: list[float] = []

    async def writer() -> None:
        for i in todo:
            t = time.perf_counter()
            res = await engine.put_records(pool[i % len(pool)], stream_name=stream)
            lat.append(time.perf_counter() - t)
            if res.failed_record_count:
                raise RuntimeError(f"{res.failed_record_count} records failed")

    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    # A run ends when every record is in its shard's segment files (and, under fsync=always, fsynced there): the
    # journal's deferred work is part of the cost.
    await engine.checkpoint()
    return time.perf_counter() - t0, lat


async def read_stream(engine: Engine, stream: str = STREAM) -> tuple[int, float, int]:
    """Read every shard from TRIM_HORIZON to the end with Limit 10000: (records, seconds, calls).

    Records are counted, not inspected: every record of a run has the same size, so MB/s follows from the count.
    A quick run's read takes about 15 ms, and a full collection of the heap (about 5 ms) falls inside it or not
    depending on what the process allocated before: the heap is collected first, so two versions compare alike."""
    gc.collect()
    t0 = time.perf_counter()
    shards = (await engine.list_shards(stream)).shards
    records = calls = 0
    for sh in shards:
        it: str | None = await engine.get_shard_iterator(
            stream_name=stream, shard_id=sh.shard_id, shard_iterator_type="TRIM_HORIZON"
        )
        while it is not None:
            res = await engine.get_records(it, limit=10_000)
            calls += 1
            if not res.records:
                break
            records += len(res.records)
            it = res.next_shard_iterator
            del res  # a consumer holds one response at a time: do not count two in the peak
    return records, time.perf_counter() - t0, calls


def summary(values: list[float]) -> tuple[float, float]:
    """Median and spread ((max - min) / median) of repeated measurements."""
    med = statistics.median(values)
    return med, (max(values) - min(values)) / med if med else 0.0


# ----------------------------------------------------------------------------- baselines
def raw_write(path: Path, pool: list[Batch], n_batches: int, fsync: bool) -> float:
    """The same data bytes, one os.write per request (+ one os.fsync per request when fsync)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        t0 = time.perf_counter()
        for i in range(n_batches):
            buf = b"".join([d for d, _ in pool[i % len(pool)]])
            os.write(fd, buf)
            if fsync:
                os.fsync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def raw_read(path: Path) -> float:
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        pos = 0
        while chunk := os.pread(fd, 1 << 20, pos):
            pos += len(chunk)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def tuple_floor(pool: list[Batch], n_records: int) -> float:
    """µs per record to build the request tuples from bytes and keys that already exist."""
    datas = [[d for d, _ in b] for b in pool]
    keys = [[k for _, k in b] for b in pool]
    n_batches = max(1, n_records // BATCH)
    t0 = time.perf_counter()
    for i in range(n_batches):
        j = i % len(pool)
        _ = list(zip(datas[j], keys[j], strict=True))
    return (time.perf_counter() - t0) / (n_batches * BATCH) * 1e6


def phase_raw(root: Path, pool: list[Batch], sizes: Sizes) -> dict[str, Any]:
    per_batch = batch_bytes(pool[0])
    raw = root / "raw.bin"
    w, r, ws, fl = [], [], [], []
    for _ in range(sizes.repeats):
        w.append(sizes.never_batches * BATCH / raw_write(raw, pool, sizes.never_batches, fsync=False))
        r.append(sizes.never_batches * BATCH / raw_read(raw))
        raw.unlink()
        ws.append(sizes.always1_batches * BATCH / raw_write(raw, pool, sizes.always1_batches, fsync=True))
        raw.unlink()
        fl.append(tuple_floor(pool, sizes.never_batches * BATCH))
    scale = per_batch / BATCH / MB
    return {
        "write_rec_s": summary(w)[0],
        "write_mb_s": summary(w)[0] * scale,
        "write_fsync_rec_s": summary(ws)[0],
        "write_fsync_mb_s": summary(ws)[0] * scale,
        "read_rec_s": summary(r)[0],
        "read_mb_s": summary(r)[0] * scale,
        "tuple_floor_us": summary(fl)[0],
    }


# ----------------------------------------------------------------------------- phases
async def phase_throughput(root: Path, sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {"put": [], "read": [], "raw": {}}
    cases = [
        ("never", 1, sizes.never_batches),
        ("always", 8, sizes.always8_batches),
        ("always", 1, sizes.always1_batches),
    ]
    for rec_size in (100, 1024):
        pool = make_batches(rec_size, seed=rec_size)
        per_batch = batch_bytes(pool[0])
        for fsync, writers, n in cases:
            d = root / f"tp-{rec_size}-{fsync}-{writers}"
            log(f"put {rec_size} B fsync={fsync} writers={writers}: {sizes.repeats} x {n * BATCH:,} records")
            async with Engine(settings(d, fsync)) as eng:
                await eng.create_stream(STREAM, SHARDS)
                await put_batches(eng, pool, 2, 1)  # warm-up: first frames, first fsyncs
                rounds0 = eng.committer.rounds
                rates, lat = [], []
                for _ in range(sizes.repeats):
                    secs, lat_one = await put_batches(eng, pool, n, writers)
                    rates.append(n * BATCH / secs)
                    lat += lat_one
                rate, spread = summary(rates)
                row = {
                    "record_bytes": rec_size,
                    "fsync": fsync,
                    "writers": writers,
                    "records": n * BATCH,
                    "repeats": sizes.repeats,
                    "rec_s": rate,
                    "spread": spread,
                    "mb_s": rate * per_batch / BATCH / MB,
                    "us_per_record": 1e6 / rate,
                    "latency": latency_ms(lat),
                }
                if fsync == "always":
                    row["requests"] = sizes.repeats * n
                    row["fsync_rounds"] = eng.committer.rounds - rounds0
                out["put"].append(row)
                if writers == 8 or fsync == "never":
                    reads = [await read_stream(eng) for _ in range(sizes.repeats)]
                    r_recs, _, calls = reads[0]
                    rate, spread = summary([r[0] / r[1] for r in reads])
                    out["read"].append(
                        {
                            "record_bytes": rec_size,
                            "written_with": f"fsync={fsync} writers={writers}",
                            "records": r_recs,
                            "calls": calls,
                            "rec_s": rate,
                            "spread": spread,
                            "mb_s": rate * rec_size / MB,
                        }
                    )
            shutil.rmtree(d)
        log(f"raw baselines {rec_size} B")
        out["raw"][str(rec_size)] = phase_raw(root, pool, sizes)
    return out


async def phase_single_latency(root: Path, sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = random.Random(7)
    data = rng.randbytes(100)
    for fsync, n in (("always", sizes.single_always), ("never", sizes.single_never)):
        d = root / f"single-{fsync}"
        log(f"put_record latency fsync={fsync}: {n:,} calls")
        async with Engine(settings(d, fsync)) as eng:
            await eng.create_stream(STREAM, SHARDS)
            lat: list[float] = []
            for i in range(n + 10):
                t = time.perf_counter()
                await eng.put_record(stream_name=STREAM, data=data, partition_key=f"k{i}")
                if i >= 10:
                    lat.append(time.perf_counter() - t)
        shutil.rmtree(d)
        out[fsync] = latency_ms(lat)
    return out


SHARD_COUNTS = (1, 64, 1000)


def grouped_batches(shards: int, seed: int, touched: int = 4) -> list[Any]:
    """Batches whose records carry explicit hash keys inside ``touched`` of the ``shards`` ranges (as a producer
    that groups records by shard sends them), so a request costs ``touched`` appends at every shard count."""
    rng = random.Random(seed)
    width = (1 << 128) // shards
    out = []
    for _ in range(POOL_BATCHES):
        chosen = [rng.randrange(shards) for _ in range(touched)]
        out.append(
            [
                (
                    rng.randbytes(100),
                    f"{rng.getrandbits(64):016x}",
                    str(rng.choice(chosen) * width + rng.randrange(width)),
                )
                for _ in range(BATCH)
            ]
        )
    return out


async def phase_shards(root: Path, sizes: Sizes) -> dict[str, Any]:
    """One engine, one stream per shard count, measured in interleaved rounds so drift hits every count alike;
    once with random partition keys (a request spreads over every shard) and once with shard-grouped batches."""
    out: dict[str, Any] = {}
    for kind in ("random", "grouped"):
        out[kind] = await _phase_shards(root, sizes, kind)
    return out


async def _phase_shards(root: Path, sizes: Sizes, kind: str) -> dict[str, Any]:
    pools = {
        c: make_batches(100, seed=1000) if kind == "random" else grouped_batches(c, seed=1000 + c) for c in SHARD_COUNTS
    }
    d = root / f"shards-{kind}"
    n = sizes.shard_batches
    costs: dict[int, list[float]] = {c: [] for c in SHARD_COUNTS}
    ratios: dict[int, list[float]] = {c: [] for c in SHARD_COUNTS}
    log(f"put cost at {SHARD_COUNTS} shards: {sizes.shard_rounds} rounds x {n * BATCH:,} records each")
    async with Engine(settings(d, "never")) as eng:
        for count in SHARD_COUNTS:
            await eng.create_stream(f"s{count}", count)
            await put_batches(eng, pools[count], POOL_BATCHES, 1, f"s{count}")  # warm-up: every pool batch once
        for _ in range(sizes.shard_rounds):
            for count in SHARD_COUNTS:
                secs, _ = await put_batches(eng, pools[count], n, 1, f"s{count}")
                costs[count].append(secs / (n * BATCH) * 1e6)
            for count in SHARD_COUNTS:
                ratios[count].append(costs[count][-1] / costs[1][-1])
    shutil.rmtree(d)
    rows: list[dict[str, Any]] = []
    for count in SHARD_COUNTS:
        us, spread = summary(costs[count])
        rows.append({"shards": count, "records": n * BATCH, "us_per_record": us, "spread": spread, "rec_s": 1e6 / us})
    for r in rows:
        # The median of per-round ratios: each round measures every count back to back, so slow drift cancels.
        r["ratio_to_1"] = statistics.median(ratios[r["shards"]])
    return {"rows": rows, "rounds": sizes.shard_rounds}


async def phase_profile(root: Path, sizes: Sizes) -> list[str]:
    """Separate profiled runs (profiling slows everything, so none of the reported figures come from here)."""
    reports: list[str] = []

    def report(name: str, prof: cProfile.Profile) -> None:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
        reports.append(f"---- profile: {name} (sorted by own time) ----\n{buf.getvalue()}")

    pool = make_batches(100, seed=100)
    d = root / "profile"
    async with Engine(settings(d, "never")) as eng:
        await eng.create_stream(STREAM, SHARDS)
        await eng.create_stream("s1000", 1000)
        prof = cProfile.Profile()
        prof.enable()
        await put_batches(eng, pool, sizes.never_batches, 1)
        prof.disable()
        report(f"put 100 B fsync=never, {SHARDS} shards, {sizes.never_batches * BATCH:,} records", prof)
        prof = cProfile.Profile()
        prof.enable()
        await read_stream(eng)
        prof.disable()
        report("read 100 B, Limit 10000", prof)
        prof = cProfile.Profile()
        prof.enable()
        await put_batches(eng, pool, sizes.shard_batches, 1, "s1000")
        prof.disable()
        report(f"put 100 B fsync=never, 1000 shards, {sizes.shard_batches * BATCH:,} records", prof)
    shutil.rmtree(d)
    return reports


def run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def phase_retained(root: Path, target_bytes: int) -> dict[str, Any]:
    """Fill a stream in a child, SIGKILL it mid-write, time the unclean open, then a clean reopen + full read."""
    d = root / f"retained-{target_bytes}"
    log(f"retained {target_bytes / MB:,.0f} MB: writer child (fsync=never, 1 KiB records), then SIGKILL")
    writer = subprocess.Popen(
        [sys.executable, __file__, "--child", "writer", "--dir", str(d), "--bytes", str(target_bytes)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"writer child did not get ready: {line!r}")
        writer.send_signal(signal.SIGKILL)  # it is still writing: this is an unclean stop mid-write
        writer.wait()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    _, written, acked, write_secs = line.split()
    log("recovery child: opening after SIGKILL")
    rec = run_child(["--child", "recover", "--dir", str(d)])
    log("memory child: clean reopen, read the whole stream")
    mem = run_child(["--child", "memory", "--dir", str(d)])
    disk = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    shutil.rmtree(d)
    return {
        "target_bytes": target_bytes,
        "disk_bytes": disk,
        "load_mb_s": int(written) / MB / float(write_secs),
        "records_acked": int(acked),
        "recovery": rec,
        "memory": mem,
    }


# ----------------------------------------------------------------------------- children
async def child_writer(d: Path, target: int) -> None:
    pool = make_batches(RETAINED_RECORD, seed=42)
    per_batch = batch_bytes(pool[0])
    eng = Engine(settings(d, "never"))
    await eng.open()
    await eng.create_stream(STREAM, SHARDS)
    written, i, ready = 0, 0, False
    t0 = time.perf_counter()
    # Keep writing after READY so the kill lands mid-write; stop on our own if nobody kills us.
    while written < target * 1.1:
        await eng.put_records(pool[i % POOL_BATCHES], stream_name=STREAM)
        written += per_batch
        i += 1
        if not ready and written >= target:
            print(f"READY {written} {i * BATCH} {time.perf_counter() - t0:.6f}", flush=True)
            ready = True
    await asyncio.sleep(60)
    os._exit(3)


async def child_recover(d: Path) -> None:
    t0 = time.perf_counter()
    eng = Engine(settings(d, "never"))
    await eng.open()
    open_s = time.perf_counter() - t0
    reports = eng.recovery
    out = {
        "open_s": open_s,
        "was_clean": eng.was_clean,
        "segments": sum(r.segments for r in reports),
        "truncated_bytes": sum(r.truncated_bytes for r in reports),
        "corrupt_ranges": sum(len(r.corrupt) for r in reports),
        "journal_records": eng.journal_report.records,
        "journal_bytes": eng.journal_report.end - eng.journal_report.checkpoint,
    }
    await eng.close()
    print(json.dumps(out))


async def child_memory(d: Path) -> None:
    before = proc_status()
    t0 = time.perf_counter()
    eng = Engine(settings(d, "never"))
    await eng.open()
    open_s = time.perf_counter() - t0
    opened = proc_status()
    recs, secs, calls = await read_stream(eng)
    after = proc_status()
    out = {
        "clean_open_s": open_s,
        "was_clean": eng.was_clean,
        "rss_start_kb": before["VmRSS"],
        "rss_opened_kb": opened["VmRSS"],
        "rss_after_read_kb": after["VmRSS"],
        "hwm_kb": after["VmHWM"],
        "records": recs,
        "read_rec_s": recs / secs,
        "read_mb_s": recs * RETAINED_RECORD / MB / secs,
        "read_calls": calls,
    }
    await eng.close()
    print(json.dumps(out))


# ----------------------------------------------------------------------------- report
def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def render(res: dict[str, Any]) -> tuple[str, list[tuple[str, bool]]]:
    lines: list[str] = []
    checks: list[tuple[str, bool]] = []
    w = lines.append
    tp = res["throughput"]
    raw = tp["raw"]
    reps = res["sizes"]["repeats"]

    def check(name: str, ok: bool) -> str:
        checks.append((name, ok))
        return verdict(ok)

    decoder = "compiled" if res.get("compiled_decoder") else "pure Python"
    w(f"shardline engine benchmark ({res['mode']} run, {res['cpus']} CPUs, Python {res['python']}, {decoder} decoder)")
    w(f"{BATCH}-record batches, data = random bytes, partition keys = random 16-hex-digit strings; every throughput")
    w(f"figure is the median of {reps} runs, 'spread' = (max - min) / median over those runs")
    w(f"load average (1 min) at start {res['load_start']:.2f}, at end {res['load_end']:.2f} (the machine is shared)")
    w("")
    w(f"PutRecords throughput ({SHARDS} shards)")
    w(
        f"  {'record':>6} {'fsync':>6} {'wr':>2} {'records/run':>11} {'rec/s':>10} {'spread':>6} {'MB/s':>7} "
        f"{'µs/rec':>6} {'raw rec/s':>10} {'eng/raw':>7} {'target':>9}  status"
    )
    for r in tp["put"]:
        key = str(r["record_bytes"])
        base = raw[key]["write_rec_s"] if r["fsync"] == "never" else raw[key]["write_fsync_rec_s"]
        target, status = "", ""
        if r["record_bytes"] == 100 and r["fsync"] == "never":
            target = f">={TARGET_PUT_NEVER:,}"
            status = check("put 100 B fsync=never, 1 writer", r["rec_s"] >= TARGET_PUT_NEVER)
        elif r["record_bytes"] == 100 and r["writers"] == 8:
            target = f">={TARGET_PUT_ALWAYS8:,}"
            status = check("put 100 B fsync=always, 8 writers", r["rec_s"] >= TARGET_PUT_ALWAYS8)
        w(
            f"  {r['record_bytes']:>5}B {r['fsync']:>6} {r['writers']:>2} {r['records']:>11,} {r['rec_s']:>10,.0f} "
            f"{r['spread']:>6.0%} {r['mb_s']:>7.1f} {r['us_per_record']:>6.2f} {base:>10,.0f} "
            f"{r['rec_s'] / base:>7.3f} {target:>9}  {status}"
        )
    w("  raw = one os.write per request of the same data bytes; for the fsync=always rows + one os.fsync per request")
    w("        (a single sequential writer: the engine's concurrent writers share fsyncs, the raw loop cannot)")
    for r in tp["put"]:
        if "fsync_rounds" in r:
            w(
                f"  group commit, {r['record_bytes']} B, {r['writers']} writer(s): {r['requests']:,} requests "
                f"-> {r['fsync_rounds']:,} fsync rounds"
            )
    for size, base in raw.items():
        us = base["tuple_floor_us"]
        put_us = next(r["us_per_record"] for r in tp["put"] if r["record_bytes"] == int(size) and r["fsync"] == "never")
        w(
            f"  floor, {size:>4} B: building the request tuples alone = {us:.3f} µs/record "
            f"({1e6 / us / 1e6:.1f} M rec/s); engine put fsync=never = {put_us / us:,.0f}x that"
        )
    w("")
    w("GetRecords throughput (Limit 10000, TRIM_HORIZON to the end of every shard, over the data just written)")
    w(
        f"  {'record':>6} {'written with':<22} {'records':>9} {'calls':>5} {'rec/s':>10} {'spread':>6} {'MB/s':>7} "
        f"{'raw rec/s':>11} {'eng/raw':>7} {'target':>9}  status"
    )
    for r in tp["read"]:
        base = raw[str(r["record_bytes"])]["read_rec_s"]
        target, status = "", ""
        if r["record_bytes"] == 100:
            target = f">={TARGET_READ:,}"
            status = check(f"read 100 B ({r['written_with']})", r["rec_s"] >= TARGET_READ)
        w(
            f"  {r['record_bytes']:>5}B {r['written_with']:<22} {r['records']:>9,} {r['calls']:>5} "
            f"{r['rec_s']:>10,.0f} {r['spread']:>6.0%} {r['mb_s']:>7.1f} {base:>11,.0f} {r['rec_s'] / base:>7.3f} "
            f"{target:>9}  {status}"
        )
    w("  raw = os.pread of the same data bytes in 1 MiB chunks (page cache), no decoding")
    w("")
    w("Put latency")
    for r in tp["put"]:
        if r["fsync"] == "always":
            lat = r["latency"]
            w(
                f"  PutRecords {BATCH} x {r['record_bytes']:>4} B, fsync=always, {r['writers']} writer(s): "
                f"p50 {lat['p50_ms']:6.2f} ms  p99 {lat['p99_ms']:6.2f} ms  max {lat['max_ms']:6.2f} ms  (n={lat['n']})"
            )
    for fsync, lat in res["single"].items():
        w(
            f"  put_record 100 B, fsync={fsync:<6}, sequential:     p50 {lat['p50_ms']:6.3f} ms  "
            f"p99 {lat['p99_ms']:6.3f} ms  max {lat['max_ms']:6.2f} ms  (n={lat['n']})"
        )
    w("  (with 8 writers a request also waits for the 7 queued ahead of it on the one event loop)")
    w("")
    w("Per-record put cost vs shard count (100 B, fsync=never, 1 writer; one engine; the counts are measured back")
    rounds = res["shards"]["random"].get("rounds", 0)
    w(f" to back in each of {rounds} rounds, ratio = median of the per-round ratios; a run ends with a journal")
    w(" checkpoint, which writes every shard's staged records to its segment as one frame)")
    labels = {
        "random": "random partition keys: a 500-record request spreads over up to 500 shards",
        "grouped": "shard-grouped batches: each request's explicit hash keys fall in 4 shards",
    }
    for kind in ("random", "grouped"):
        w(f"  {labels[kind]}")
        w(
            f"  {'shards':>6} {'records/run':>11} {'µs/rec':>7} {'spread':>6} {'rec/s':>10} {'ratio':>6} "
            f"{'target':>7}  status"
        )
        for r in res["shards"][kind]["rows"]:
            target, status = "", ""
            if r["shards"] > 1:
                target = f"<={TARGET_FLAT:.2f}"
                status = check(
                    f"put cost at {r['shards']} shards within 20% of 1 shard ({kind})", r["ratio_to_1"] <= TARGET_FLAT
                )
            w(
                f"  {r['shards']:>6} {r['records']:>11,} {r['us_per_record']:>7.2f} {r['spread']:>6.0%} "
                f"{r['rec_s']:>10,.0f} {r['ratio_to_1']:>6.2f} {target:>7}  {status}"
            )
    w("")
    w(f"Recovery and memory (1 KiB records, {SHARDS} shards, written with fsync=never by a child killed by SIGKILL")
    w(" while still writing; each open is timed in a fresh child process)")
    w(
        f"  {'retained':>9} {'on disk':>8} {'load MB/s':>9} {'unclean open':>12} {'replayed':>8} {'torn B':>6} "
        f"{'segs':>4} {'clean open':>10} {'RSS open':>8} {'RSS read':>8} {'VmHWM':>8} {'read rec/s':>10}"
    )
    ret = res["retained"]
    for r in ret:
        rc, mem = r["recovery"], r["memory"]
        w(
            f"  {r['target_bytes'] / MB:>7,.0f}MB {r['disk_bytes'] / MB:>6,.0f}MB {r['load_mb_s']:>9.1f} "
            f"{rc['open_s'] * 1e3:>10.1f}ms {rc.get('journal_records', 0):>8,} {rc['truncated_bytes']:>6} "
            f"{rc['segments']:>4} "
            f"{mem['clean_open_s'] * 1e3:>8.1f}ms {mem['rss_opened_kb'] / 1024:>6.1f}MB "
            f"{mem['rss_after_read_kb'] / 1024:>6.1f}MB {mem['hwm_kb'] / 1024:>6.1f}MB {mem['read_rec_s']:>10,.0f}"
        )
        if rc["was_clean"] or not mem["was_clean"] or rc["corrupt_ranges"]:
            w(
                f"  !! unexpected: unclean open saw was_clean={rc['was_clean']}, corrupt={rc['corrupt_ranges']}; "
                f"reopen saw was_clean={mem['was_clean']}"
            )
        if mem["records"] < r["records_acked"]:
            w(f"  !! {r['records_acked'] - mem['records']:,} acknowledged records missing after recovery")
    small, big = ret[0]["memory"], ret[-1]["memory"]
    hwm_ratio = big["hwm_kb"] / small["hwm_kb"]
    rss_ratio = big["rss_after_read_kb"] / small["rss_after_read_kb"]
    status = check("memory flat", hwm_ratio <= TARGET_FLAT)
    w(
        f"  memory ratio {ret[-1]['target_bytes'] / MB:,.0f} MB / {ret[0]['target_bytes'] / MB:,.0f} MB retained: "
        f"VmHWM {hwm_ratio:.2f}, VmRSS after read {rss_ratio:.2f}   target <={TARGET_FLAT:.2f}  {status}"
    )
    w("  (memory of a fresh interpreter that imports shardline, opens the engine and reads every record once;")
    w("   the page cache is warm, so open times are CPU work: index loads and CRC scans of the unindexed tails, and")
    w("   the replay of the journal since the last checkpoint: 'replayed' records that had not reached their shards)")
    w("")
    w("Targets")
    for name, ok in checks:
        w(f"  {verdict(ok)}  {name}")
    return "\n".join(lines), checks


# ----------------------------------------------------------------------------- main
async def run_in_process(root: Path, sizes: Sizes, profile: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["throughput"] = await phase_throughput(root, sizes)
    out["single"] = await phase_single_latency(root, sizes)
    out["shards"] = await phase_shards(root, sizes)
    if profile:
        out["profiles"] = await phase_profile(root, sizes)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="shardline engine benchmark")
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--profile", action="store_true", help="cProfile the put, read and 1,000-shard paths")
    ap.add_argument("--child", choices=["writer", "recover", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        child = {
            "writer": lambda: child_writer(args.dir, args.bytes),
            "recover": lambda: child_recover(args.dir),
            "memory": lambda: child_memory(args.dir),
        }[args.child]
        asyncio.run(child())
        return 0

    sizes = QUICK if args.quick else FULL
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="shardline-bench-", dir=args.dir))
    need = sizes.big_bytes * 1.3 + 400 * MB
    free = shutil.disk_usage(root).free
    if free < need:
        shutil.rmtree(root)
        print(f"not enough free disk under {root.parent}: {free / MB:,.0f} MB free, {need / MB:,.0f} MB needed")
        return 2
    t0 = time.perf_counter()
    try:
        res: dict[str, Any] = {
            "mode": "quick" if args.quick else "full",
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "compiled_decoder": framing.ACCELERATED,
            "dir": str(root),
            "sizes": asdict(sizes),
            "load_start": os.getloadavg()[0],
        }
        res.update(asyncio.run(run_in_process(root, sizes, args.profile)))
        res["retained"] = [phase_retained(root, sizes.small_bytes), phase_retained(root, sizes.big_bytes)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res["total_seconds"] = time.perf_counter() - t0
    res["load_end"] = os.getloadavg()[0]
    text, checks = render(res)
    res["targets"] = {name: ok for name, ok in checks}
    print(text)
    print(f"\ntotal run time {res['total_seconds']:.0f} s; scratch directory removed")
    for report in res.pop("profiles", []):
        print()
        print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
