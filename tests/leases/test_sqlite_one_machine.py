"""Check 15 of spec §5 with real processes: 4 `shardline run` workers on one machine share one SQLite (WAL) lease
file. A pause (check 5) on SQLite, and a sustained run at 8 shards under a steady put load that reads each worker's
/metrics: no lease-store error ("database is locked" included) reaches a log or the error counter, the lease
statements' p99 stays under 50 ms; the steady-state lease load is at most 2 statements/s per worker.

SHARDLINE_SQLITE_RUN_S sets the sustained run's length in seconds (default 300, the spec's 5 minutes)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from _shardline import kinesis

from ._cluster import (
    Cluster,
    Producer,
    Samples,
    delivery_counts,
    metric_samples,
    same_epoch_duplicates,
    sqlite_owners,
    wait_for,
    write_project,
)

TOKEN = "sqlite-lease-metrics-token"
RUN_S = float(os.environ.get("SHARDLINE_SQLITE_RUN_S", "300"))
# What a worker's log shows when a lease-store call failed (the coordinator's warnings and tracebacks).
STORE_ERRORS = ("database is locked", "lease store:", "renew failed", "lease pass failed")

# Batches the paused worker started under the (shard, epoch) pairs it held at the stop, after the resume.
LATE = (
    "SELECT count(*) FROM delivered d JOIN unnest(%s::text[], %s::bigint[]) AS h(shard_id, epoch) "
    "ON d.shard_id = h.shard_id AND d.epoch = h.epoch WHERE d.worker = %s AND d.t_start > %s"
)


def _cluster(tmp_path: Path, endpoint: str, dsn: str, path: Path) -> Cluster:
    project = write_project(tmp_path / "proj", 8, dsn)
    client = kinesis(endpoint)
    client.create_stream(StreamName="events", ShardCount=8)
    client.get_waiter("stream_exists").wait(StreamName="events")
    return Cluster(tmp_path, endpoint, project, f"sqlite:{path}")


def _balanced(path: Path, workers: int) -> dict[str, list[str]] | None:
    got = sqlite_owners(path)
    counts = [len(v) for v in got.values()]
    if len(counts) == workers and sum(counts) == 8 and max(counts) - min(counts) <= 1:
        return got
    return None


def _store_errors_logged(log: Path) -> int:
    text = log.read_text(errors="replace")
    return sum(text.count(s) for s in STORE_ERRORS)


@pytest.mark.slow
def test_sqlite_pause_loses_leases_and_starts_no_batch_on_resume(tmp_path: Path, endpoint: str, dsn: str) -> None:
    """Check 5 on SQLite: SIGSTOP one of 4 workers for ttl + 2 renew (5 s): its leases change owner; on SIGCONT it
    notices the loss and starts no batch for a lease it held at the stop; nothing is lost."""
    path = tmp_path / "shared" / "leases.db"
    c = _cluster(tmp_path, endpoint, dsn, path)
    try:
        w = [c.start_worker(f"w{i}") for i in range(1, 5)]
        producer = Producer(kinesis(c.endpoint), rate=800)
        producer.start()
        wait_for("4 workers balanced", lambda: _balanced(path, 4))
        with sqlite3.connect(path) as db:
            at_stop = db.execute("SELECT shard_id, epoch FROM shard_lease WHERE owner = 'w2'").fetchall()
        assert at_stop
        w[1].signal(signal.SIGSTOP)
        stopped = time.monotonic()
        held = {str(s) for s, _ in at_stop}

        def taken_over() -> dict[str, str] | None:
            got = {s: o for o, ss in sqlite_owners(path).items() for s in ss if s in held}
            return got if len(got) == len(held) and "w2" not in got.values() else None

        now_owner = wait_for("the paused worker's leases owned by others", taken_over)
        changed_after = time.monotonic() - stopped
        while time.monotonic() < stopped + 5:  # the pause itself is what the check prescribes
            time.sleep(0.1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            resumed_at = conn.execute("SELECT now()").fetchone()
        assert resumed_at is not None
        w[1].signal(signal.SIGCONT)
        wait_for("the resumed worker noticing the loss", lambda: "lost" in w[1].log.read_text(errors="replace"))
        sent = producer.stop()
        wait_for("every record delivered", lambda: delivery_counts(dsn, sent)[0] == 0, timeout=120)
        lost, dups, per = delivery_counts(dsn, sent)
        shards, epochs = [str(s) for s, _ in at_stop], [int(e) for _, e in at_stop]
        with psycopg.connect(dsn, autocommit=True) as conn:
            late = conn.execute(LATE, (shards, epochs, w[1].pid, resumed_at[0])).fetchone()
        assert late is not None
        same_epoch = same_epoch_duplicates(dsn)
        locked = sum(x.log.read_text(errors="replace").count("database is locked") for x in w)
        print(f"SQLite pause: held {shards} at the stop, owners after {changed_after:.1f} s "
              f"{ {s: now_owner[s] for s in shards} }, sent {sent}, lost {lost}, duplicates {dups} "
              f"(bound {100 * len(at_stop)}), batches started after resume for a stolen lease {late[0]}, "
              f"same-epoch duplicates {same_epoch}, 'database is locked' {locked}, per {per}")  # fmt: skip
        assert lost == 0 and dups <= 100 * len(at_stop) and late[0] == 0 and same_epoch == 0 and locked == 0
    finally:
        c.stop_all()


def _scrape(url: str) -> Samples:
    req = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return metric_samples(resp.read().decode())


def _total(fams: Samples, name: str) -> float:
    return sum(v for _, v in fams.get(name, []))


def _p99(fams: Samples) -> float:
    return max((v for lb, v in fams.get("shardline_lease_store_latency_seconds", []) if lb["quantile"] == "0.99"),
               default=0.0)  # fmt: skip


@pytest.mark.slow
def test_sqlite_sustained_run_at_eight_shards(tmp_path: Path, endpoint: str, dsn: str) -> None:
    """Check 15: 4 workers, 8 shards, a steady put load for SHARDLINE_SQLITE_RUN_S seconds: 0 lease-store errors
    (logs and counters), lease statement p99 < 50 ms, at most 2 lease statements/s per worker."""
    path = tmp_path / "shared" / "leases.db"
    c = _cluster(tmp_path, endpoint, dsn, path)
    try:
        names = [f"w{i}" for i in range(1, 5)]
        w = {n: c.start_worker(n, "--metrics-port", "0", "--monitoring-token", TOKEN) for n in names}

        def address(log: Path) -> str | None:
            m = re.search(r"worker metrics at (http://\S+)/metrics", log.read_text(errors="replace"))
            return m.group(1) if m else None

        urls = {n: wait_for(f"{n}'s metrics address", lambda log=x.log: address(log)) for n, x in w.items()}  # type: ignore[misc]
        producer = Producer(kinesis(c.endpoint), rate=800)
        producer.start()
        wait_for("4 workers balanced", lambda: _balanced(path, 4))
        worst_p99 = dict.fromkeys(names, 0.0)
        # The statement rate is counted from the second sample on (10 s into the run): by then the handoffs that
        # balanced the workers, and their follow-up reads, are over, and what is counted is the steady state.
        first: dict[str, tuple[float, float]] = {}
        started = time.monotonic()
        while time.monotonic() < started + RUN_S:
            for n, u in urls.items():
                at, sample = time.monotonic(), _scrape(u)
                worst_p99[n] = max(worst_p99[n], _p99(sample))
                if time.monotonic() >= started + 10 and n not in first:
                    first[n] = (at, _total(sample, "shardline_lease_store_statements_total"))
            assert all(x.proc.poll() is None for x in w.values()), "a worker exited"
            producer.halt.wait(10)
        assert len(first) == len(names), "the run is too short to count its statements (SHARDLINE_SQLITE_RUN_S)"
        last = {n: _scrape(u) for n, u in urls.items()}
        ended = time.monotonic()
        sent = producer.stop()
        rates = {n: (_total(last[n], "shardline_lease_store_statements_total") - first[n][1]) / (ended - first[n][0])
                 for n in names}  # fmt: skip
        for n in names:
            worst_p99[n] = max(worst_p99[n], _p99(last[n]))
        counted = {n: _total(last[n], "shardline_lease_store_errors_total") for n in names}
        logged = {n: _store_errors_logged(x.log) for n, x in w.items()}
        split = {n: len(v) for n, v in sqlite_owners(path).items()}
        wait_for("every record delivered", lambda: delivery_counts(dsn, sent)[0] == 0, timeout=120)
        lost, dups, _ = delivery_counts(dsn, sent)
        print(f"SQLite sustained run {RUN_S:.0f} s, 4 workers, 8 shards: sent {sent}, lost {lost}, duplicates {dups}, "
              f"split {split}; lease statements/s per worker {({n: round(r, 2) for n, r in rates.items()})}; "
              f"worst p99 ms {({n: round(v * 1000, 1) for n, v in worst_p99.items()})}; "
              f"store errors counted {counted}, logged {logged}")  # fmt: skip
        assert sum(counted.values()) == 0 and sum(logged.values()) == 0
        assert all(v < 0.050 for v in worst_p99.values())
        # The steady-state lease load (spec: <= 2 statements/s per worker: 1 renew + 1 take per second at these
        # timings). A cleanup pass runs only when a lease is finished, so none runs here. Counted, not timed: the
        # statements in the window are at most 2 per second of it, plus one pass of each loop at either edge and one
        # for the renew jitter.
        for n in names:
            window = ended - first[n][0]
            sent_statements = _total(last[n], "shardline_lease_store_statements_total") - first[n][1]
            assert sent_statements <= 2 * window + 5, (n, sent_statements, window)
        assert lost == 0
    finally:
        c.stop_all()
