"""SIGKILL ``shardline cdc`` again and again while a writer commits: afterwards every committed change is on the
stream (a real ``shardline serve``, fsync=always), each row's changes in commit order; the only duplicates are
records put again after a restart, and consumers drop them by ``source.file``/``pos``/``row``."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _shardline import CLI, kinesis, shardline

from ._mariadb import MariaDB


def all_records(client: Any, stream: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        it = it["ShardIterator"]
        while it:
            r = client.get_records(ShardIterator=it, Limit=10_000)
            out += [json.loads(x["Data"]) for x in r["Records"]]
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out


class Writer(threading.Thread):
    """Commits small transactions (updates that count each row up by one, and inserts) until stopped."""

    def __init__(self, db: MariaDB, schema: str) -> None:
        super().__init__(daemon=True)
        self.db, self.schema = db, schema
        self.stop = threading.Event()
        self.rng = random.Random(7)
        self.next_id = 11
        self.committed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.db.connect(self.schema) as conn, conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute("BEGIN")
                    for i in self.rng.sample(range(1, self.next_id), k=min(3, self.next_id - 1)):
                        cur.execute("UPDATE t SET n = n + 1 WHERE id = %s", (i,))
                    if self.rng.random() < 0.2:
                        cur.execute("INSERT INTO t VALUES (%s, 0)", (self.next_id,))
                        self.next_id += 1
                    cur.execute("COMMIT")
                    self.committed += 1
        except BaseException as exc:
            self.error = exc


@pytest.mark.slow
def test_sigkilled_source_loses_nothing_and_keeps_each_rows_order(
    mariadb: MariaDB, schema: str, tmp_path: Path
) -> None:
    mariadb.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, n INT NOT NULL)",
        "INSERT INTO t VALUES " + ", ".join(f"({i}, 0)" for i in range(1, 11)),
        database=schema,
    )
    project = tmp_path / "shardline.yml"
    project.write_text(
        f"sources:\n  crash:\n    dsn: mysql://root@127.0.0.1:{mariadb.port}/{schema}\n    stream: changes\n"
        "    chunkSize: 4\n"
    )
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "CRASH_DB_PASSWORD": ""}
    state = tmp_path / "state"
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "serve"), "--fsync", "always") as srv:
        client = kinesis(srv.url)
        client.create_stream(StreamName="changes", ShardCount=2)
        client.get_waiter("stream_exists").wait(StreamName="changes")
        cdc = [*CLI, "cdc", str(project), "--endpoint-url", srv.url, "--state-dir", str(state)]

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(cdc, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        proc = start()
        deadline = time.monotonic() + 60
        while len(all_records(client, "changes")) < 10:  # the snapshot
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        writer = Writer(mariadb, schema)
        writer.start()
        rng = random.Random(3)
        try:
            for _ in range(6):
                time.sleep(rng.uniform(0.3, 1.5))  # (a random moment to kill at, not a condition to wait for)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                proc = start()
        finally:
            writer.stop.set()
            writer.join()
        assert writer.error is None and writer.committed > 0
        with mariadb.connect(schema) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, n FROM t")
            final = {int(i): int(n) for i, n in cur.fetchall()}
        try:
            deadline = time.monotonic() + 120
            while True:
                seen = all_records(client, "changes")
                last: dict[int, int] = {}
                for r in seen:
                    row = r["after"]
                    last[row["id"]] = max(last.get(row["id"], -1), row["n"])
                if last == final:
                    break
                assert proc.poll() is None, "shardline cdc stopped"
                assert time.monotonic() < deadline, "not every committed change reached the stream"
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    # Per row: after dropping records put twice (same file/pos/row), the values go 0, 1, 2, ... final: every
    # committed change once, in commit order.
    kept: dict[int, list[int]] = {}
    ids: set[tuple[str, int, int, int]] = set()
    duplicates = 0
    for r in seen:
        src = r["source"]
        row = r["after"]
        ident = (src["file"], src["pos"], src["row"], row["id"]) if r["op"] != "r" else ("r", 0, 0, row["id"])
        if ident in ids:
            duplicates += 1
            continue
        ids.add(ident)
        if r["op"] == "u":
            assert r["before"]["n"] == row["n"] - 1
        kept.setdefault(row["id"], []).append(row["n"])
    assert kept == {i: list(range(n + 1)) for i, n in final.items()}
    assert sum(final.values()) > 0
    print(f"{writer.committed} transactions, {len(seen)} records, {duplicates} put again after a restart")
