"""Helpers the end-to-end tests share: where the handlers are, a function pool to call them through, finding
execution-environment processes, and a project whose handler records what it handled, run by `shardline serve` and
`shardline run` processes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson

from _shardline import CLI, shardline
from shardline.runtime.functions import FunctionConfig, FunctionPool, InvocationResult

HANDLERS = Path(__file__).resolve().parent / "handlers"

# A handler that appends each record's data to $SEEN_FILE, one line each, and fails a batch holding b"poison".
RECORDING_HANDLER = """
import base64, os

def handler(event, context):
    out = []
    for r in event["Records"]:
        data = base64.b64decode(r["kinesis"]["data"])
        if data == b"poison":
            raise ValueError("cannot handle poison")
        out.append(data.decode())
    with open(os.environ["SEEN_FILE"], "a") as f:
        f.write("".join(x + "\\n" for x in out))
"""


def write_project(tmp_path: Path, name: str, text: str) -> Path:
    """``tmp_path/proj/<name>`` holding ``text``, beside ``handlers/app.py`` (the recording handler)."""
    (tmp_path / "proj" / "handlers").mkdir(parents=True)
    (tmp_path / "proj" / "handlers" / "app.py").write_text(RECORDING_HANDLER)
    cfg = tmp_path / "proj" / name
    cfg.write_text(text)
    return cfg


def seen(tmp_path: Path) -> list[str]:
    """What the recording handler handled, sorted."""
    return sorted((tmp_path / "seen.txt").read_text().split())


@contextmanager
def serve(tmp_path: Path, *args: str) -> Iterator[str]:
    """A real `shardline serve` with its own status delays (a remote runtime must wait for ACTIVE, as on AWS);
    yields its URL and stops it gracefully after the block."""
    command = ("serve", "--port", "0", "--data-dir", str(tmp_path / "server"), "--fsync", "never", *args)
    with shardline(*command, status_delay=None) as running:
        yield running.url
        running.proc.terminate()
        running.proc.wait(timeout=15)


@contextmanager
def shardline_run(cfg: Path, endpoint: str, state: Path, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """`shardline run CFG` against ``endpoint`` (creating the project's streams), its stdout a text pipe; killed on
    the way out if the block did not stop it."""
    command = [*CLI, "run", str(cfg), "--endpoint-url", endpoint, "--create-streams", "--state-dir", str(state)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ), **popen)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if run.stdout is not None:
            run.stdout.close()


def worker_pids(*, parent: int | None = None, cwd: Path | None = None) -> set[int]:
    """Live execution-environment processes: children of ``parent``, or any whose working directory is ``cwd``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
            where = Path(os.readlink(entry / "cwd")) if cwd is not None else None
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if not any(arg.endswith(b"_worker.py") for arg in cmdline):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        if parent is not None and int(fields[1]) != parent:
            continue
        if cwd is not None and where != cwd:
            continue
        found.add(int(entry.name))
    return found


def wait_for_no_workers(*, parent: int | None = None, cwd: Path | None = None, timeout_s: float = 15.0) -> set[int]:
    """Poll (bounded) until no such worker is left; returns the survivors if some outlive the deadline."""
    deadline = time.monotonic() + timeout_s
    left = worker_pids(parent=parent, cwd=cwd)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = worker_pids(parent=parent, cwd=cwd)
    return left


@asynccontextmanager
async def pool_of(cfg: FunctionConfig) -> AsyncIterator[FunctionPool]:
    """A function pool over ``cfg``, closed (its workers ended) on the way out."""
    pool = FunctionPool(cfg)
    try:
        yield pool
    finally:
        await pool.close()


async def call(pool: FunctionPool, action: str, **fields: Any) -> InvocationResult:
    """Invoke a test handler with ``{"action": action, **fields}`` as its event."""
    return await pool.invoke(orjson.dumps({"action": action, **fields}))
