"""Helpers the end-to-end tests share: where the handlers are, a function pool to call them through, and finding
execution-environment processes."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from shardline.runtime.functions import FunctionConfig, FunctionPool, InvocationResult

HANDLERS = Path(__file__).resolve().parent / "handlers"


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
