"""Acceptance check 12: 16 processes x 300 random take/renew/steal/handoff/release/checkpoint operations on 64
PostgreSQL leases. The audit trigger must show epoch + 1 on every owner change, never two transitions out of one
(lease, epoch), no checkpoint regression, and no statement may fail with a serialization or deadlock error."""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from typing import Any

import psycopg
import pytest

from shardline.runtime.leases import Lease, LeaseLost
from shardline.runtime.leases.postgres import PostgresLeaseStore
from shardline.runtime.position import TRIM_HORIZON, Position

from ._pg import audit_violations

WORKERS = 16
OPS = 300
LEASES = 64
TTL = 2.0


def storm_worker(dsn: str, app: str, worker: int, seed: int, out: Any) -> None:
    rng = random.Random(seed)
    store = PostgresLeaseStore(dsn, owner=f"w{worker}")
    held: dict[str, Lease] = {}
    counts = {"ops": 0, "lost": 0, "taken": 0, "stolen": 0, "released": 0, "checkpoints": 0, "errors": 0}
    errors: list[str] = []
    seq = 0
    try:
        for _ in range(OPS):
            op = rng.choice(["take", "take", "renew", "steal", "handoff", "release", "checkpoint", "checkpoint"])
            counts["ops"] += 1
            try:
                if op == "take":
                    for lease in store.take_available(app, rng.randint(1, 4), TTL):
                        held[lease.key] = lease
                        counts["taken"] += 1
                elif op == "renew":
                    renewal = store.renew(app, {k: v.epoch for k, v in held.items()}, TTL)
                    for k in renewal.lost:
                        held.pop(k)
                        counts["lost"] += 1
                elif op in ("steal", "handoff"):
                    snap = store.snapshot(app)
                    victims = [(o, k, e) for o, ls in snap.owners.items() if o != store.owner for k, e in ls]
                    if victims:
                        owner, key, epoch = rng.choice(victims)
                        if op == "handoff":
                            store.request_handoff(app, key, owner, epoch)
                        else:
                            got = store.steal(app, key, owner, epoch, TTL, force=True, handoff_timeout_s=0)
                            if got is not None:
                                held[got.key] = got
                                counts["stolen"] += 1
                elif op == "release" and held:
                    key = rng.choice(sorted(held))
                    lease = held.pop(key)
                    store.release(lease, ttl_s=TTL)
                    counts["released"] += 1
                elif op == "checkpoint" and held:
                    lease = held[rng.choice(sorted(held))]
                    seq += rng.randint(1, 1000)
                    store.checkpoint(lease, Position.sequence(str(10**20 + seq * 100 + worker)))
                    counts["checkpoints"] += 1
            except LeaseLost:  # a release or checkpoint of a lease stolen meanwhile
                counts["lost"] += 1
                held.pop(lease.key, None)
            except psycopg.Error as exc:
                counts["errors"] += 1
                errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        store.close()
    out.put((worker, counts, errors))


@pytest.mark.slow
def test_sixteen_processes_never_break_the_fence(pg_dsn: str) -> None:
    app = f"storm-{uuid.uuid4().hex[:8]}"
    setup = PostgresLeaseStore(pg_dsn, owner="setup")
    for i in range(LEASES):
        setup.ensure(app, "s", f"shardId-{i:012d}", (), TRIM_HORIZON)
    setup.close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=storm_worker, args=(pg_dsn, app, w, 1000 + w, out)) for w in range(WORKERS)]
    started = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    elapsed = time.monotonic() - started
    totals = {k: sum(r[1][k] for r in results) for k in results[0][1]}
    errors = [e for r in results for e in r[2]]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        transitions = conn.execute(
            "SELECT count(*) FROM lease_audit WHERE app = %s AND new_epoch <> old_epoch", (app,)
        ).fetchone()
    violations = [v for v in audit_violations(pg_dsn)]
    print(f"race storm: {WORKERS} processes, {totals}, owner transitions {transitions}, {elapsed:.1f} s")
    print(f"race storm: fence violations {len(violations)}, statement errors {len(errors)}")
    assert errors == []
    assert violations == []
    assert totals["taken"] > 0 and totals["stolen"] > 0 and totals["released"] > 0 and totals["checkpoints"] > 0
