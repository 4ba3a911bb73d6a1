"""`shardline redrive` on messages it cannot follow: each fails on its own line, the others are redriven, and the
command ends with status 1 (never a traceback)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson

from _shardline import CLI
from shardline import Engine, Settings

SHARD0 = "shardId-000000000000"
ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"

CONFIG = """\
streams:
  s: {shards: 1}
functions:
  f:
    handler: handlers/ok.handler
    events:
      - stream: s
"""


def _message(stream: str, start: str, end: str) -> bytes:
    info = {"shardId": SHARD0, "startSequenceNumber": start, "endSequenceNumber": end, "streamArn": ARN + stream}
    return orjson.dumps({"version": "1.0", "KinesisBatchInfo": info})


async def _put_one(data_dir: Path) -> str:
    async with Engine(Settings(data_dir=data_dir, fsync="never")) as engine:
        await engine.create_stream("s", 1)
        res = await engine.put_record(stream_name="s", data=b"r1", partition_key="k")
        return str(res.sequence_number)


def test_bad_pointers_fail_one_message_each_and_the_rest_is_redriven(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "ok.py").write_text("def handler(event, context):\n    return None\n")
    (tmp_path / "shardline.yml").write_text(CONFIG)
    data = tmp_path / "data"
    seq = asyncio.run(_put_one(data))
    far = "4" + "0" * 55
    (tmp_path / "failures.jsonl").write_bytes(
        b"\n".join(
            [
                _message("s", "abc", seq),
                _message("s", seq, seq),
                _message("gone", far, far),
                _message("s", str(int(seq) + 1), seq),
            ]
        )
    )
    done = subprocess.run(
        [*CLI, "redrive", "failures.jsonl", "--function", "f", "--data-dir", str(data), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        f"{SHARD0} abc..{seq}: 0 records FAILED (KinesisBatchInfo.startSequenceNumber 'abc' is not a sequence "
        "number: one is decimal digits only)",
        f"{SHARD0} {seq}..{seq}: 1 records ok",
        f"{SHARD0} {far}..{far}: 0 records FAILED (ResourceNotFoundException: Shard {SHARD0} in stream gone under "
        "account 000000000000 does not exist) (some records are past retention)",
        f"{SHARD0} {int(seq) + 1}..{seq}: 0 records FAILED (KinesisBatchInfo.startSequenceNumber {int(seq) + 1} is "
        f"after endSequenceNumber {seq})",
        "redrove 1 of 4 messages",
    ]


def test_a_line_without_the_batch_pointers_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "ok.py").write_text("def handler(event, context):\n    return None\n")
    (tmp_path / "shardline.yml").write_text(CONFIG)
    (tmp_path / "failures.jsonl").write_bytes(orjson.dumps({"KinesisBatchInfo": {"shardId": SHARD0}}) + b"\n")
    done = subprocess.run(
        [*CLI, "redrive", "failures.jsonl", "--function", "f", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "shardline redrive: failures.jsonl:1: not a Kinesis on-failure record (KinesisBatchInfo has no streamArn, "
        "startSequenceNumber, endSequenceNumber)\n"
    )
