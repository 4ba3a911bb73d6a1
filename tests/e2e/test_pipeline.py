"""The whole product as a user runs it: `shardline up` on a project directory, producers on boto3, a poison record,
a clean stop, a kill -9 and a restart, `shardline redrive` with the fixed handler, and a config mistake.

The function records each processed item id in a file; a poison item fails its batch before anything is written.
Bisect isolates the poison, which is then reported to the failure stream, alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from _shardline import CLI, kinesis, shardline
from shardline import Engine
from shardline.runtime.redrive import read_messages
from shardline.runtime.source import EngineSource

from ._e2e import wait_for_no_workers, worker_pids

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent / "project"
SHARDS = 3
BATCH_SIZE = 100
PARALLELIZATION = 1
RECORDS = 10_000
POISON_ID = 4_000
GATE_ID = 7_000
WAIT_S = 60.0
QUIET = ("--log-level", "warning")  # the log file keeps discards and errors, not a line per invocation

CONFIG = """\
streams:
  events: {{shards: {shards}}}
  events-failed: {{shards: 1}}
functions:
  process:
    handler: handlers/pipeline.handler
    timeout: 30
    memorySize: 256
    environment:
      PROCESSED_FILE: {processed}
{gate}    events:
      - stream:
          arn: arn:aws:kinesis:us-east-1:000000000000:stream/events
          batchSize: {batch_size}
          parallelizationFactor: {parallelization}
          startingPosition: TRIM_HORIZON
          maximumRetryAttempts: 1
          bisectBatchOnFunctionError: true
          destinations:
            onFailure: {{type: stream, name: events-failed}}
"""


@dataclass(frozen=True)
class Project:
    root: Path
    config: Path
    data: Path
    processed: Path
    gate: Path
    log: Path

    def processed_ids(self) -> list[int]:
        if not self.processed.exists():
            return []
        return [int(x) for x in self.processed.read_text().split()]


def make_project(root: Path, *, gate: bool = False) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT / "handlers", root / "handlers", ignore=shutil.ignore_patterns("__pycache__"))
    p = Project(
        root=root,
        config=root / "shardline.yml",
        data=root / "data",
        processed=root / "processed.txt",
        gate=root / "gate",
        log=root / "up.log",
    )
    p.config.write_text(
        CONFIG.format(
            shards=SHARDS,
            processed=p.processed,
            gate=f"      GATE_FILE: {p.gate}\n" if gate else "",
            batch_size=BATCH_SIZE,
            parallelization=PARALLELIZATION,
        )
    )
    return p


def command(*args: str) -> list[str]:
    return [*CLI, *args]


@dataclass
class Running:
    proc: subprocess.Popen[str]
    url: str
    kinesis: Any

    def stop(self) -> None:
        """SIGINT: a clean stop, in-flight batches finished and checkpointed."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=30) == 0


@contextmanager
def up(project: Project) -> Iterator[Running]:
    args = ("up", str(project.config), "--port", "0", "--data-dir", str(project.data), *QUIET)
    with project.log.open("a") as log, shardline(*args, stderr=log, cwd=project.root) as running:
        yield Running(running.proc, running.url, kinesis(running.url))


def put_items(
    kinesis: Any, items: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]
) -> dict[int, tuple[str, str]]:
    """Puts in PutRecords calls of 500; returns id -> (shard id, sequence number)."""
    where: dict[int, tuple[str, str]] = {}
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        out = kinesis.put_records(
            StreamName="events", Records=[{"Data": orjson.dumps(x), "PartitionKey": key(x)} for x in chunk]
        )
        assert out["FailedRecordCount"] == 0
        for item, r in zip(chunk, out["Records"], strict=True):
            where[item["id"]] = (r["ShardId"], r["SequenceNumber"])
    return where


def the_items(*, gate: bool = False) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"id": i} for i in range(1, RECORDS + 1)]
    items[POISON_ID - 1]["poison"] = "legacy format"
    if gate:
        items[GATE_ID - 1]["gate"] = True
    return items


def by_id(item: dict[str, Any]) -> str:
    return f"key-{item['id']}"


def failures_via(kinesis: Any) -> list[dict[str, Any]]:
    out = []
    for shard in kinesis.list_shards(StreamName="events-failed")["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName="events-failed", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out += [orjson.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=it)["Records"]]
    return out


def failures_on_disk(data_dir: Path) -> list[dict[str, Any]]:
    """The failure stream as the stopped runtime left it on disk."""

    async def read() -> list[dict[str, Any]]:
        async with Engine(data_dir=data_dir, fsync="never") as engine:
            return await read_messages(EngineSource(engine, "events-failed"))

    return asyncio.run(read())


def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def poison_range(where: dict[int, tuple[str, str]]) -> tuple[str, str, str]:
    shard, seq = where[POISON_ID]
    return shard, seq, seq


def ranges(messages: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (
            m["KinesisBatchInfo"]["shardId"],
            m["KinesisBatchInfo"]["startSequenceNumber"],
            m["KinesisBatchInfo"]["endSequenceNumber"],
        )
        for m in messages
    }


# ----------------------------------------------------------------- a clean run


@dataclass(frozen=True)
class CleanRun:
    project: Project
    where: dict[int, tuple[str, str]]
    expected: set[int]
    processed: list[int]
    failures: list[dict[str, Any]]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> CleanRun:
    project = make_project(tmp_path_factory.mktemp("clean"))
    good = {i for i in range(1, RECORDS + 1) if i != POISON_ID}
    with up(project) as run:
        where = put_items(run.kinesis, the_items(), by_id)
        wait_until(lambda: good <= set(project.processed_ids()), "every good record to be processed")
        wait_until(lambda: bool(failures_via(run.kinesis)), "the poison to reach the failure stream")
        # The poison's shard is not stuck: records put after it on the same shard (same key) still flow.
        tail = [{"id": i} for i in range(RECORDS + 1, RECORDS + 51)]
        tail_where = put_items(run.kinesis, tail, lambda _item: by_id({"id": POISON_ID}))
        assert {shard for shard, _seq in tail_where.values()} == {where[POISON_ID][0]}
        wait_until(lambda: {x["id"] for x in tail} <= set(project.processed_ids()), "the records after the poison")
        run.stop()
    # A restart after a clean stop resumes from the checkpoints: only the new records are delivered. There is one on
    # every shard, and a shard delivers in order, so once they are processed anything delivered again would be too.
    after = [{"id": i} for i in range(20_000, 20_030)]
    with up(project) as run:
        after_where = put_items(run.kinesis, after, by_id)
        assert len({shard for shard, _seq in after_where.values()}) == SHARDS
        wait_until(lambda: set(after_where) <= set(project.processed_ids()), "the records put after the restart")
        run.stop()
    assert worker_pids(cwd=project.root.resolve()) == set()  # a clean stop ends every environment
    expected = good | {x["id"] for x in tail} | set(after_where)
    return CleanRun(project, where, expected, project.processed_ids(), failures_on_disk(project.data))


def test_every_good_record_is_processed_exactly_once(clean_run: CleanRun) -> None:
    counts = Counter(clean_run.processed)
    assert set(counts) == clean_run.expected
    assert {i: n for i, n in counts.items() if n != 1} == {}
    assert POISON_ID not in counts


def test_exactly_the_poison_record_is_in_the_failure_stream(clean_run: CleanRun) -> None:
    (msg,) = clean_run.failures
    info = msg["KinesisBatchInfo"]
    shard, seq = clean_run.where[POISON_ID]
    assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]) == (shard, seq, seq)
    assert info["batchSize"] == 1
    assert info["streamArn"] == "arn:aws:kinesis:us-east-1:000000000000:stream/events"
    assert msg["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert msg["requestContext"]["functionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:process"
    assert msg["responseContext"]["functionError"] == "Unhandled"


def test_the_poison_invoke_count_is_its_own_tries(clean_run: CleanRun) -> None:
    """As in the bisect acceptance case: the count covers the discarded record's own invocations (first try and
    maximumRetryAttempts: 1 retry), not the larger batches it was bisected out of."""
    (msg,) = clean_run.failures
    assert msg["requestContext"]["approximateInvokeCount"] == 2


def test_redrive_reprocesses_the_poison_with_the_fixed_handler(clean_run: CleanRun) -> None:
    project = clean_run.project
    redrive = command(
        "redrive",
        "stream:events-failed",
        "--config",
        str(project.config),
        "--function",
        "process",
        "--data-dir",
        str(project.data),
        "--log-level",
        "warning",
    )
    shard, seq = clean_run.where[POISON_ID]
    # With the handler still broken the redrive fails, says why, and changes nothing.
    broken = subprocess.run(redrive, capture_output=True, text=True, timeout=60, check=False, cwd=project.root)
    assert broken.returncode == 1, broken.stderr
    assert f"{shard} {seq}..{seq}: 1 records FAILED" in broken.stdout
    assert "cannot process item 4000" in broken.stdout
    assert POISON_ID not in project.processed_ids()

    fixed = [*redrive, "--handler", "handlers/pipeline_fixed.handler"]
    done = subprocess.run(fixed, capture_output=True, text=True, timeout=60, check=False, cwd=project.root)
    assert done.returncode == 0, done.stderr
    assert f"{shard} {seq}..{seq}: 1 records ok" in done.stdout
    assert "redrove 1 of 1 messages" in done.stdout
    assert Counter(project.processed_ids())[POISON_ID] == 1

    # A message that was redriven successfully is not redriven again.
    again = subprocess.run(fixed, capture_output=True, text=True, timeout=60, check=False, cwd=project.root)
    assert again.returncode == 0, again.stderr
    assert "nothing to redrive" in again.stdout
    assert Counter(project.processed_ids())[POISON_ID] == 1


# ----------------------------------------------------------------- kill -9 mid-run


def test_sigkill_mid_run_then_restart_loses_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", gate=True)
    reached = Path(f"{project.gate}.reached")
    with up(project) as run:
        where = put_items(run.kinesis, the_items(gate=True), by_id)
        wait_until(reached.exists, "the gated batch to be in flight")
        os.kill(run.proc.pid, signal.SIGKILL)
        assert run.proc.wait(timeout=30) == -signal.SIGKILL
        # The environment holding the gated batch dies with its runtime, the batch unfinished.
        assert wait_for_no_workers(cwd=project.root.resolve()) == set()
        project.gate.touch()
    before_restart = Counter(project.processed_ids())
    assert before_restart[GATE_ID] == 0
    assert len(before_restart) < RECORDS - 1  # the kill really came mid-run

    good = {i for i in range(1, RECORDS + 1) if i != POISON_ID}
    with up(project) as run:
        wait_until(lambda: good <= set(project.processed_ids()), "every good record after the restart")
        wait_until(lambda: bool(failures_via(run.kinesis)), "the poison to reach the failure stream")
        run.stop()
    assert wait_for_no_workers(cwd=project.root.resolve()) == set()

    counts = Counter(project.processed_ids())
    assert set(counts) == good  # nothing lost, the poison never processed
    duplicates = sum(counts.values()) - len(counts)
    # Only batches in flight at the kill come again: at most one per sub-shard of each shard.
    assert duplicates <= BATCH_SIZE * SHARDS * PARALLELIZATION
    assert counts[GATE_ID] == 1  # the gated batch was in flight: delivered again, and finished this time
    assert ranges(failures_on_disk(project.data)) == {poison_range(where)}


# ----------------------------------------------------------------- invalid configuration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "batchSize: 100",
            "batchSize: 10001",
            "functions.process.events[0].stream.batchSize: 10001 is not allowed (allowed: an integer from 1 to 10000)",
        ),
        (
            "parallelizationFactor: 1",
            "parallelizationFactor: 11",
            "functions.process.events[0].stream.parallelizationFactor: 11 is not allowed "
            "(allowed: an integer from 1 to 10)",
        ),
        (
            "maximumRetryAttempts: 1",
            "maximumRecordAgeInSeconds: 59",
            "functions.process.events[0].stream.maximumRecordAgeInSeconds: 59 is not allowed "
            "(allowed: -1 (no limit) or an integer from 60 to 604800)",
        ),
        ("memorySize: 256", "memorySize: 64", "functions.process.memorySize: 64 is out of range (allowed: 128..10240)"),
        ("timeout: 30", "timeout: 901", "functions.process.timeout: 901 is out of range (allowed: 1..900)"),
        (
            "batchSize: 100",
            "batchsize: 100",
            "functions.process.events[0].stream.batchsize: unknown key (did you mean 'batchSize'?)",
        ),
        (
            "handlers/pipeline.handler",
            "handlers/pipline.handler",
            "functions.process.handler: handlers/pipline.py does not exist",
        ),
    ],
)
def test_invalid_config_is_refused_before_anything_starts(tmp_path: Path, replace: str, by: str, expected: str) -> None:
    project = make_project(tmp_path / "project")
    text = project.config.read_text()
    assert replace in text
    project.config.write_text(text.replace(replace, by))
    port = free_port()
    out = subprocess.run(
        command("up", str(project.config), "--port", str(port), "--data-dir", str(project.data)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"shardline up: {project.config}: {expected}"
    assert out.stdout == ""
    assert not project.data.exists()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
