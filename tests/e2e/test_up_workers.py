"""Execution environments under a real `shardline up`: they die with it, and their failures are reported.

A worker spinning in user code must not outlive a `kill -9` of its runtime; a worker that crashes, runs out of
memory or returns what cannot be marshalled shows up in the log, in /api/failures and in /api/overview with
Lambda's error type.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _shardline import kinesis, shardline

from ._e2e import wait_for_no_workers, worker_pids

pytestmark = pytest.mark.slow

WAIT_S = 60.0

HANDLER = """
import base64, os, sys

def handler(event, context):
    for r in event["Records"]:
        action = base64.b64decode(r["kinesis"]["data"]).decode()
        if action == "spin":
            open(os.environ["REACHED_FILE"], "w").close()
            while True:
                pass
        if action == "exit":
            os._exit(3)
        if action == "hoard":
            hoard = [bytearray(16 << 20) for _ in range(64)]
        if action == "unserializable":
            return {"when": object()}
"""


def make_project(root: Path, *, timeout_s: int) -> Path:
    (root / "handlers").mkdir(parents=True)
    (root / "handlers" / "app.py").write_text(HANDLER)
    cfg = root / "shardline.yml"
    cfg.write_text(
        f"""
streams:
  events: {{shards: 1}}
functions:
  app:
    handler: handlers/app.handler
    timeout: {timeout_s}
    memorySize: 128
    environment: {{REACHED_FILE: "{root / "reached"}"}}
    events:
      - stream:
          stream: events
          batchSize: 1
          maximumRetryAttempts: 0
"""
    )
    return cfg


def wait_until(cond: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_a_spinning_worker_dies_with_a_killed_runtime(tmp_path: Path) -> None:
    root = (tmp_path / "project").resolve()
    cfg = make_project(root, timeout_s=900)  # far beyond the test: only the runtime's death can end the worker
    with shardline("up", str(cfg), "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never") as run:
        kinesis(run.url).put_record(StreamName="events", Data=b"spin", PartitionKey="k")
        wait_until((root / "reached").exists, "the handler to spin")
        [spinning] = worker_pids(parent=run.proc.pid)
        os.kill(run.proc.pid, signal.SIGKILL)
        assert run.proc.wait(timeout=30) == -signal.SIGKILL
        assert wait_for_no_workers(cwd=root) == set(), f"worker {spinning} outlived its runtime"


@pytest.mark.parametrize(
    ("action", "error_type", "message"),
    [
        ("exit", "Runtime.ExitError", "Runtime exited with error: exit status 3"),
        ("hoard", "Runtime.OutOfMemory", "Runtime exited with error: signal: killed"),
        ("unserializable", "Runtime.MarshalError", "Unable to marshal response"),
    ],
)
def test_runtime_errors_reach_the_log_failures_and_overview(
    tmp_path: Path, action: str, error_type: str, message: str
) -> None:
    root = (tmp_path / "project").resolve()
    cfg = make_project(root, timeout_s=30)
    log = tmp_path / "up.log"
    with (
        log.open("w") as stderr,
        shardline(
            "up", str(cfg), "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never", stderr=stderr
        ) as run,
    ):
        kinesis(run.url).put_record(StreamName="events", Data=action.encode(), PartitionKey="k")
        errors = wait_until(
            lambda: get_json(f"{run.url}/api/failures")["function_errors"], "the error to reach /api/failures"
        )
        [fn] = get_json(f"{run.url}/api/overview")["functions"]
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=30) == 0
    assert errors[0]["function"] == "app"
    assert errors[0]["errorType"] == error_type
    assert message in errors[0]["errorMessage"]
    assert fn["errors_by_type"] == {error_type: 1}
    assert fn["last_error"] == errors[0]
    text = log.read_text()
    assert f"app {errors[0]['requestId']} invocation failed: {error_type}: " in text
    assert wait_for_no_workers(cwd=root) == set()
