"""A real cluster for the acceptance checks: one `shardline serve`, several `shardline run` workers sharing one lease
table, a producer, a sampler of the lease table, and a `delivered` table the handler writes (over its own,
unfenced connection) so the oracles can count what was lost, duplicated, or run by two owners at once.

Test timings (spec §5): ttl 3 s, renew 1 s, take 1 s, balance 3 s, batch 100, handoff timeout 10 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from _shardline import CLI

TIMINGS = ["--lease-ttl", "3", "--lease-renew", "1", "--lease-take", "1", "--lease-balance", "3",
           "--handoff-timeout", "10"]  # fmt: skip

HANDLER = """
import base64, os, time
import psycopg

_conn = None

def handler(event, context):
    global _conn
    if _conn is None:
        _conn = psycopg.connect(os.environ["DELIVERED_DSN"], autocommit=True)
    t_start = time.time()
    rows = []
    for r in event["Records"]:
        k = r["kinesis"]
        shard = r["eventID"].split(":")[0]
        rows.append((shard, k["sequenceNumber"], base64.b64decode(k["data"]).decode(), os.getppid(),
                     context.lease_epoch))
    time.sleep(float(os.environ.get("HANDLER_SLEEP", "0")))
    t_end = time.time()
    with _conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO delivered (shard_id, seq, n, worker, epoch, t_start, t_end) VALUES (%s, %s, %s, %s, %s, "
            "to_timestamp(%s), to_timestamp(%s))",
            [row + (t_start, t_end) for row in rows],
        )
"""


def write_project(root: Path, shards: int, dsn: str, sleep_s: float = 0.0, parallelization: int = 1) -> Path:
    (root / "handlers").mkdir(parents=True, exist_ok=True)
    (root / "handlers" / "app.py").write_text(HANDLER)
    cfg = root / "shardline.yml"
    cfg.write_text(
        f"""
streams:
  events: {{shards: {shards}}}
functions:
  sink:
    handler: handlers/app.handler
    environment: {{DELIVERED_DSN: "{dsn}", HANDLER_SLEEP: "{sleep_s}"}}
    events:
      - stream: {{stream: events, batchSize: 100, startingPosition: TRIM_HORIZON,
                  parallelizationFactor: {parallelization}}}
"""
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS delivered (id bigserial PRIMARY KEY, shard_id text, seq text, n text, "
            "worker int, epoch bigint, t_start timestamptz, t_end timestamptz)"
        )
    return cfg


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)


@dataclass
class Cluster:
    root: Path
    endpoint: str
    project: Path
    leases: str
    workers: list[Worker] = field(default_factory=list)

    def start_worker(
        self, name: str, *extra: str, leases: str | None = None, env: dict[str, str] | None = None
    ) -> Worker:
        log = self.root / f"{name}.log"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", **(env or {})}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*CLI, "run", str(self.project), "--endpoint-url", self.endpoint, "--leases", leases or self.leases,
                 "--state-dir", str(self.root / f"state-{name}"), "--worker-id", name, *TIMINGS, *extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )  # fmt: skip
        w = Worker(proc, log)
        self.workers.append(w)
        return w

    def stop_all(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.proc.kill()
            w.proc.wait(timeout=30)


# Loaded through PYTHONPATH by a worker (and its handler processes): shifts the wall clock by
# SHARDLINE_TEST_WALLCLOCK_OFFSET_S seconds, as a machine with a wrong clock would have it.
SKEW = """
import os, time
_offset = float(os.environ.get("SHARDLINE_TEST_WALLCLOCK_OFFSET_S", "0"))
if _offset:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
"""


def skewed_env(root: Path, offset_s: float) -> dict[str, str]:
    site = root / "skew"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SKEW)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SHARDLINE_TEST_WALLCLOCK_OFFSET_S": str(offset_s)}


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 60.0, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


class Producer(threading.Thread):
    """Puts records n = 0, 1, 2 ... (the data) across the shards at about ``rate`` per second until stopped."""

    def __init__(self, client: Any, rate: int) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.rate = rate
        self.sent = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                batch = [{"Data": str(self.sent + i).encode(), "PartitionKey": f"k{self.sent + i}"} for i in range(100)]
                out = self.client.put_records(StreamName="events", Records=batch)
                assert out["FailedRecordCount"] == 0
                self.sent += len(batch)
                self.halt.wait(100 / self.rate)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def stop(self) -> int:
        self.halt.set()
        self.join(timeout=30)
        assert self.error is None, self.error
        return self.sent


class Sampler(threading.Thread):
    """Reads the lease table every 100 ms: the owners and epochs over time; flags an epoch going down."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.halt = threading.Event()
        self.epochs: dict[str, int] = {}
        self.regressions: list[str] = []
        self.samples: list[tuple[float, dict[str, tuple[str | None, int]]]] = []

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.halt.is_set():
                rows = conn.execute(
                    "SELECT shard_id, CASE WHEN expires_at > now() THEN owner END, epoch FROM shard_lease "
                    "WHERE finished_at IS NULL"
                ).fetchall()
                snap = {s: (o, int(e)) for s, o, e in rows}
                for s, (_, e) in snap.items():
                    if e < self.epochs.get(s, 0):
                        self.regressions.append(f"{s}: epoch {self.epochs[s]} -> {e}")
                    self.epochs[s] = e
                self.samples.append((time.monotonic(), snap))
                self.halt.wait(0.1)

    def latest(self) -> dict[str, tuple[str | None, int]]:
        return self.samples[-1][1] if self.samples else {}

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def owners(dsn: str) -> dict[str, list[str]]:
    """worker -> the unfinished shards it holds with an unexpired lease."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('shard_lease') IS NULL").fetchone() == (True,):
            return {}  # no worker has created the table yet
        rows = conn.execute(
            "SELECT owner, shard_id FROM shard_lease WHERE finished_at IS NULL AND owner IS NOT NULL "
            "AND expires_at > now() ORDER BY shard_id"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for o, s in rows:
        out.setdefault(o, []).append(s)
    return out


def delivery_counts(dsn: str, sent: int) -> tuple[int, int, dict[str, int]]:
    """(lost, duplicates, deliveries per worker pid)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = conn.execute("SELECT n, count(*) FROM delivered GROUP BY n").fetchall()
        per = conn.execute("SELECT worker, count(*) FROM delivered GROUP BY worker").fetchall()
    seen = {int(n): int(c) for n, c in got}
    lost = sum(1 for i in range(sent) if i not in seen)
    dups = sum(c - 1 for c in seen.values() if c > 1)
    return lost, dups, {str(w): int(c) for w, c in per}


def lease_checkpoints(dsn: str, shards: list[str]) -> dict[str, tuple[str | None, str]]:
    """shard -> (owner, checkpoint) of these shards' leases, as the table holds them now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT shard_id, owner, checkpoint FROM shard_lease WHERE shard_id = ANY(%s)", (shards,)
        ).fetchall()
    return {str(s): (o, str(cp)) for s, o, cp in rows}


def duplicates_not_after(dsn: str, checkpoints: dict[str, str]) -> int:
    """Records delivered more than once that are not after the checkpoint of their shard's previous owner (or are on
    another shard). Must be 0: a new owner starts after the checkpoint, so a duplicate can only repeat what came
    after it (an in-flight batch, or batches whose checkpoint write the store did not answer)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT shard_id, seq FROM delivered GROUP BY shard_id, seq HAVING count(*) > 1").fetchall()
    bad = 0
    for shard, seq in rows:
        cp = checkpoints.get(shard)
        if cp is None or (cp.isdigit() and int(seq) <= int(cp)):
            bad += 1
    return bad


def same_epoch_duplicates(dsn: str) -> int:
    """Records delivered twice under one epoch (a duplicate must come from an ownership change), plus deliveries
    without an epoch in the handler's context."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM (SELECT n FROM delivered GROUP BY n, shard_id, epoch HAVING count(*) > 1) d)"
            " + (SELECT count(*) FROM delivered WHERE epoch IS NULL)"
        ).fetchone()
    assert row is not None
    return int(row[0])


def overlaps(dsn: str) -> int:
    """Handler invocations of one shard by two different workers whose [t_start, t_end] intersect."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "WITH b AS (SELECT DISTINCT shard_id, worker, t_start, t_end FROM delivered) "
            "SELECT count(*) FROM b x JOIN b y ON x.shard_id = y.shard_id AND x.worker < y.worker "
            "AND x.t_start <= y.t_end AND y.t_start <= x.t_end"
        ).fetchone()
    assert row is not None
    return int(row[0])


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def sqlite_owners(path: Path) -> dict[str, list[str]]:
    """worker -> the unfinished shards it holds with an unexpired lease, in a SQLite lease table."""
    import sqlite3  # noqa: PLC0415

    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        if db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'shard_lease'").fetchone() == (0,):
            return {}
        now = time.time_ns() // 1_000_000  # the workers' store clock: this host's wall clock
        rows = db.execute(
            "SELECT owner, shard_id FROM shard_lease WHERE finished_at_ms IS NULL AND owner IS NOT NULL "
            "AND expires_at_ms > ? ORDER BY shard_id",
            (now,),
        ).fetchall()
    out: dict[str, list[str]] = {}
    for o, s in rows:
        out.setdefault(o, []).append(s)
    return out


Samples = dict[str, list[tuple[dict[str, str], float]]]
_SAMPLE = re.compile(r"^([a-z_]+)\{([^}]*)\} (\S+)$")


def metric_samples(text: str) -> Samples:
    """The labelled samples of a Prometheus text exposition: family -> [(labels, value)]."""
    out: Samples = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is not None:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out
