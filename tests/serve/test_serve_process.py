"""`shardline serve` as a process: start, clean stop on SIGTERM/SIGINT, and kill -9 losing nothing acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from _shardline import kinesis, shardline


@contextmanager
def serve(data_dir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with shardline("serve", "--port", "0", "--data-dir", str(data_dir), *extra) as running:
        yield running.proc, running.url


def client(url: str) -> Any:
    return kinesis(url)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_stop_writes_marker_and_keeps_data(tmp_path: Path, sig: signal.Signals) -> None:
    with serve(tmp_path) as (proc, url):
        k = client(url)
        k.create_stream(StreamName="s", ShardCount=2)
        k.put_record(StreamName="s", Data=b"kept", PartitionKey="p")
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
    assert (tmp_path / "CLEAN").exists()
    with serve(tmp_path) as (_proc, url):
        k = client(url)
        shards = k.list_shards(StreamName="s")["Shards"]
        got = []
        for sh in shards:
            it = k.get_shard_iterator(StreamName="s", ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")[
                "ShardIterator"
            ]
            got += [r["Data"] for r in k.get_records(ShardIterator=it)["Records"]]
        assert got == [b"kept"]


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    acked: list[tuple[str, str, bytes]] = []
    with serve(tmp_path) as (proc, url):
        k = client(url)
        k.create_stream(StreamName="s", ShardCount=3)
        for batch in range(20):
            records: list[dict[str, Any]] = [
                {"Data": os.urandom(50 + i), "PartitionKey": f"k{batch}-{i}"} for i in range(50)
            ]
            out = k.put_records(StreamName="s", Records=records)
            assert out["FailedRecordCount"] == 0
            acked += [
                (r["ShardId"], r["SequenceNumber"], rec["Data"]) for r, rec in zip(out["Records"], records, strict=True)
            ]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert not (tmp_path / "CLEAN").exists()
    with serve(tmp_path) as (_proc, url):
        k = client(url)
        stored: dict[tuple[str, str], bytes] = {}
        for sh in k.list_shards(StreamName="s")["Shards"]:
            it = k.get_shard_iterator(StreamName="s", ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")[
                "ShardIterator"
            ]
            while it:
                page = k.get_records(ShardIterator=it)
                for r in page["Records"]:
                    stored[(sh["ShardId"], r["SequenceNumber"])] = r["Data"]
                if not page["Records"] and page["MillisBehindLatest"] == 0:
                    break
                it = page.get("NextShardIterator")
        assert len(stored) == len(acked)
        for shard_id, seq, data in acked:
            assert stored[(shard_id, seq)] == data


def test_starts_fast_and_refuses_a_second_server_on_the_same_data_dir(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with serve(tmp_path) as (_proc, _url):
        startup_s = time.perf_counter() - t0
        second = subprocess.run(
            [sys.executable, "-m", "shardline.cli", "serve", "--port", "0", "--data-dir", str(tmp_path)],
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
        assert second.returncode != 0
        assert "in use by another shardline process" in second.stderr
    # Reported, not asserted: startup time is a benchmark figure, not a test threshold.
    print(f"startup to healthy: {startup_s:.3f}s")
