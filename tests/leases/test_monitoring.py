"""Lease monitoring of real `shardline run` workers on a PostgreSQL lease table: each worker's /metrics (owned
leases, epochs per shard, takes, statements, latency), its /api/overview, and `shardline top` against it."""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from _shardline import CLI, kinesis

from ._cluster import Cluster, Samples, metric_samples, owners, wait_for, write_project

TOKEN = "lease-metrics-token"


def _metrics_url(log: Path) -> str | None:
    m = re.search(r"worker metrics at (http://\S+)/metrics", log.read_text(errors="replace"))
    return m.group(1) if m else None


def _address_of(log: Path) -> Callable[[], str | None]:
    return lambda: _metrics_url(log)


def _get(url: str, token: str | None = TOKEN) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        body: bytes = resp.read()
        return body


def _scrape(urls: dict[str, str]) -> dict[str, Samples]:
    return {w: metric_samples(_get(f"{u}/metrics").decode()) for w, u in urls.items()}


def test_two_workers_export_their_leases(tmp_path: Path, endpoint: str, dsn: str) -> None:
    shards = 4
    project = write_project(tmp_path / "proj", shards, dsn)
    client = kinesis(endpoint)
    client.create_stream(StreamName="events", ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName="events")
    c = Cluster(tmp_path, endpoint, project, dsn)
    try:
        workers = {
            name: c.start_worker(name, "--metrics-port", "0", "--monitoring-token", TOKEN) for name in ("w1", "w2")
        }
        urls = {name: wait_for(f"{name}'s metrics address", _address_of(w.log)) for name, w in workers.items()}

        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(f"{urls['w1']}/metrics", token=None)
        refused.value.close()
        assert refused.value.code == 401

        def settled() -> tuple[dict[str, list[str]], dict[str, dict[str, list[tuple[dict[str, str], float]]]]] | None:
            held = owners(dsn)
            if sorted(len(v) for v in held.values()) != [2, 2]:
                return None
            scraped = _scrape(urls)
            for w, fams in scraped.items():
                epochs = sorted(lb["shard"] for lb, _ in fams.get("shardline_lease_epoch", []))
                if epochs != sorted(held.get(w, [])):
                    return None
            return held, scraped

        held, scraped = wait_for("both workers' metrics to match the lease table", settled)
        owned = {w: sum(v for _, v in fams["shardline_lease_owned"]) for w, fams in scraped.items()}
        print(f"lease table owners {held}; /metrics owned {owned}")
        assert sum(owned.values()) == shards
        assert owned == {w: float(len(v)) for w, v in held.items()}
        for w, fams in scraped.items():
            (labels, _), *_ = fams["shardline_lease_owned"]
            assert labels["worker"] == w and labels["stream"] == "events" and labels["function"] == "sink"
            taken = sum(v for _, v in fams["shardline_lease_taken_total"])
            moved_in = sum(v for _, v in fams["shardline_lease_handoffs_received_total"]) + sum(
                v for _, v in fams["shardline_lease_stolen_total"]
            )
            assert taken + moved_in >= owned[w]
            assert sum(v for _, v in fams["shardline_lease_lost_total"]) == 0
            assert sum(v for _, v in fams["shardline_lease_store_statements_total"]) > 0
            assert {lb["quantile"] for lb, _ in fams["shardline_lease_store_latency_seconds"]} == {"0.5", "0.99", "1.0"}

        doc = orjson.loads(_get(f"{urls['w1']}/api/overview"))
        (mapping,) = doc["mappings"]
        leases = mapping["leases"]
        assert leases["worker"] == "w1" and leases["backend"] == "postgresql" and leases["shared"] is True
        table = {r["shard_id"]: r["owner"] for r in leases["shards"]}
        assert len(table) == shards

        top = subprocess.run(
            [*CLI, "top", "--endpoint", urls["w2"], "--once", "--token", TOKEN],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        print(top.stdout)
        assert "LEASES" in top.stdout
        for owner, shard_ids in owners(dsn).items():
            for sid in shard_ids:
                assert re.search(rf"{sid}\s+{owner}\s", top.stdout), (sid, owner)
    finally:
        c.stop_all()
