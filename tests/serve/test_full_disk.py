"""`shardline serve` on a real full file system (a small tmpfs, mounted when the test may mount): acknowledged
records stay readable, writes answer ServiceUnavailable (503, which SDKs retry), the server starts read-only on a
full disk, and once space is freed writes work again without a restart. /health and /metrics say so meanwhile.
tests/engine/test_disk_full.py injects the same failure at the OS-call seam and always runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from _shardline import kinesis, shardline


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


def _read_all(k: Any) -> list[tuple[str, str, bytes]]:
    out = []
    for sh in k.list_shards(StreamName="s")["Shards"]:
        it = k.get_shard_iterator(StreamName="s", ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while True:
            page = k.get_records(ShardIterator=it)
            out += [(sh["ShardId"], r["SequenceNumber"], r["Data"]) for r in page["Records"]]
            if not page["Records"] and page["MillisBehindLatest"] == 0:
                break
            it = page["NextShardIterator"]
    return sorted(out)


def _put(k: Any, data: bytes, key: str) -> tuple[str, str, bytes]:
    res = k.put_record(StreamName="s", Data=data, PartitionKey=key)
    return (res["ShardId"], res["SequenceNumber"], data)


def _refused(k: Any) -> None:
    with pytest.raises(ClientError) as exc:
        k.put_record(StreamName="s", Data=os.urandom(600_000), PartitionKey="big")
    err = exc.value.response
    assert err["Error"]["Code"] == "ServiceUnavailable"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "No space left on the device of the data directory" in err["Error"]["Message"]


def _storage(url: str) -> tuple[int, str, list[str]]:
    """What the server says of its storage: /health's status code and ``storage``, and the states that
    shardline_storage_state marks current on /metrics."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
            code, health = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        code, health = exc.code, json.loads(exc.read())
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        current = re.findall(r'^shardline_storage_state\{state="(\w+)"\} 1$', resp.read().decode(), re.MULTILINE)
    return code, health["storage"], current


def test_a_full_disk_refuses_writes_keeps_reads_and_starts_read_only(small_fs: Path, tmp_path: Path) -> None:
    data_dir = small_fs / "data"
    args = ("serve", "--port", "0", "--data-dir", str(data_dir))
    with (tmp_path / "first.log").open("w") as log, shardline(*args, stderr=log) as running:
        k = kinesis(running.url)
        k.create_stream(StreamName="s", ShardCount=2)
        deadline = time.monotonic() + 20
        while k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            assert time.monotonic() < deadline
        acked = [_put(k, f"record-{i}".encode(), f"k{i}") for i in range(40)]
        assert _storage(running.url) == (200, "ok", ["ok"])
        _fill(small_fs / "filler")
        _refused(k)
        assert _storage(running.url) == (200, "disk-full", ["disk_full"])  # (a restart would free no space)
        assert _read_all(k) == sorted(acked)
        os.kill(running.proc.pid, signal.SIGKILL)
        running.proc.wait(timeout=10)
    # The disk is still full: the server starts all the same, read-only.
    with (tmp_path / "second.log").open("w") as log, shardline(*args, stderr=log) as running:
        k = kinesis(running.url)
        assert _read_all(k) == sorted(acked)
        assert _storage(running.url) == (200, "disk-full", ["disk_full"])
        _refused(k)
        (small_fs / "filler").unlink()
        acked.append(_put(k, os.urandom(600_000), "big"))  # no restart
        assert _storage(running.url) == (200, "ok", ["ok"])
        acked += [_put(k, f"after-{i}".encode(), f"k{i}") for i in range(10)]
        assert _read_all(k) == sorted(acked)
    assert "starting read-only" in (tmp_path / "second.log").read_text()
    for shard in {sh for sh, _, _ in acked}:  # nothing renumbered: dense sequence numbers, in put order
        seqs = [int(s) for sh, s, _ in acked if sh == shard]
        assert seqs == sorted(seqs) and seqs[-1] - seqs[0] == len(seqs) - 1
