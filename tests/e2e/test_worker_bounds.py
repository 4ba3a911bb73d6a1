"""What an execution environment may cost its runtime: bounded output, its own deadline, no process left behind,
and every failure reported with Lambda's error type.

A response over 6 MiB + 100 bytes fails as on Lambda (Function.ResponseSizeTooLarge); log output and error texts are
cut at fixed bounds so a handler's print cannot grow this process; a worker ends an invocation that overruns its
timeout even when nobody kills it; cancelling an invocation or closing the pool ends its worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from shardline.runtime._worker import EXIT_OVERRAN, MAX_ERROR_CHARS, MAX_LOG_CHARS, MAX_RESPONSE_BYTES
from shardline.runtime.functions import FunctionConfig, FunctionPool, Throttled, Worker, _WorkerDied

from ._e2e import call, pool_of, wait_for_no_workers, worker_pids

pytestmark = pytest.mark.usefixtures("no_leaked_workers")

TOO_LARGE = "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
WAIT_S = 60.0


def config(handlers_dir: Path, **kw: Any) -> FunctionConfig:
    kw.setdefault("handler", "bounds.handler")
    kw.setdefault("memory_mb", 512)
    kw.setdefault("timeout_s", 60.0)  # no slow call here may time out on a loaded machine; time-out tests set theirs
    return FunctionConfig(name="bounds-fn", code_dir=handlers_dir, **kw)


async def until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def children() -> set[int]:
    return worker_pids(parent=os.getpid())


# ----------------------------------------------------------------- output bounds


async def test_a_response_over_the_limit_is_response_size_too_large(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        pid = (await call(pool, "pid")).json()["pid"]
        # A JSON string of n characters is n + 2 bytes: the largest allowed response, and one byte more.
        at_limit = await call(pool, "return", chars=MAX_RESPONSE_BYTES - 2)
        over = await call(pool, "return", chars=7 << 20)
        after = await call(pool, "pid")
    assert at_limit.ok, at_limit.error
    assert len(at_limit.payload) == MAX_RESPONSE_BYTES
    assert over.function_error == "Unhandled"  # a function error: a mapping retries the batch
    assert over.error is not None
    assert over.error["errorType"] == "Function.ResponseSizeTooLarge"
    assert over.error["errorMessage"] == TOO_LARGE
    assert over.json() == over.error
    assert after.json()["pid"] == pid  # the environment stays warm, as after any function error


async def test_the_runtime_does_not_read_a_frame_past_the_bounds(handlers_dir: Path) -> None:
    """A worker announcing a 100 MiB response (user code writing on the runtime's pipe) is killed unread."""
    async with pool_of(config(handlers_dir, timeout_s=600)) as pool:
        pid = (await call(pool, "pid")).json()["pid"]
        forged = await asyncio.wait_for(call(pool, "forge"), WAIT_S)
        assert forged.error is not None
        assert forged.error["errorType"] == "Function.ResponseSizeTooLarge"
        assert pid not in children()
        assert (await call(pool, "pid")).ok


async def test_log_output_of_one_invocation_is_truncated(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        result = await call(pool, "print", chars=20 << 20)
    assert result.ok, result.error
    assert result.logs.startswith("p" * 1000)
    assert len(result.logs) < MAX_LOG_CHARS + 1000
    assert f"[log output truncated: {(20 << 20) + 1 - MAX_LOG_CHARS} more characters" in result.logs


async def test_an_error_message_is_truncated(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        result = await call(pool, "raise", chars=20 << 20)
    assert result.error is not None
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"].startswith("e" * 1000)
    assert len(result.error["errorMessage"]) < MAX_ERROR_CHARS + 100
    assert len(result.logs) < MAX_LOG_CHARS + 1000


# ----------------------------------------------------------------- the worker's own deadline


async def test_a_worker_ends_an_invocation_that_overruns_its_timeout(handlers_dir: Path) -> None:
    """Nobody enforces the timeout here (the pool would): the worker ends the spinning invocation itself."""
    worker, init = await Worker.start(config(handlers_dir, timeout_s=1.0))
    try:
        assert init.get("error") is None
        deadline_ms = time.time_ns() // 1_000_000 + 1000
        with pytest.raises(_WorkerDied):
            await asyncio.wait_for(worker.invoke("spin-1", orjson.dumps({"action": "spin"}), deadline_ms), WAIT_S)
        assert await asyncio.wait_for(worker.proc.wait(), WAIT_S) == EXIT_OVERRAN
    finally:
        await worker.kill()


# ----------------------------------------------------------------- no worker left behind


async def test_a_cancelled_invocation_ends_its_worker(handlers_dir: Path, tmp_path: Path) -> None:
    reached = tmp_path / "reached"
    async with pool_of(config(handlers_dir, timeout_s=600)) as pool:
        task = asyncio.create_task(call(pool, "sleep", seconds=600, reached=str(reached)))
        await until(reached.exists, "the invocation to start")
        assert len(children()) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert wait_for_no_workers(parent=os.getpid()) == set()
        assert pool.in_flight == 0


async def test_a_cancelled_cold_start_ends_its_worker(handlers_dir: Path, tmp_path: Path) -> None:
    reached = tmp_path / "init-reached"
    cfg = config(handlers_dir, handler="slow_init.handler", environment={"INIT_REACHED_FILE": str(reached)})
    async with pool_of(cfg) as pool:
        task = asyncio.create_task(pool.invoke(b"{}"))
        await until(reached.exists, "the worker's init to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert wait_for_no_workers(parent=os.getpid()) == set()


async def test_close_during_an_invocation_ends_its_worker(handlers_dir: Path, tmp_path: Path) -> None:
    reached = tmp_path / "reached"
    pool = FunctionPool(config(handlers_dir, timeout_s=600))
    task = asyncio.create_task(call(pool, "sleep", seconds=600, reached=str(reached)))
    await until(reached.exists, "the invocation to start")
    idle = (await call(pool, "pid")).json()["pid"]  # a second environment, warm and idle beside the busy one
    assert len(children()) == 2
    await pool.close()
    result = await asyncio.wait_for(task, WAIT_S)
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ExitError"
    assert wait_for_no_workers(parent=os.getpid()) == set()
    assert idle not in children()
    with pytest.raises(Throttled):
        await call(pool, "pid")


# ----------------------------------------------------------------- every failure reported


@pytest.mark.parametrize(
    ("action", "error_type", "log_lines"),
    [
        ("exit", "Runtime.ExitError", ["Error: Runtime exited with error: exit status 3", "Runtime.ExitError"]),
        ("hoard", "Runtime.OutOfMemory", ["Error: Runtime exited with error: signal: killed", "Runtime.OutOfMemory"]),
        ("unserializable", "Runtime.MarshalError", ["[ERROR] Runtime.MarshalError: Unable to marshal response"]),
    ],
)
async def test_runtime_errors_are_logged_and_counted_by_type(
    handlers_dir: Path, caplog: pytest.LogCaptureFixture, action: str, error_type: str, log_lines: list[str]
) -> None:
    caplog.set_level(logging.INFO, logger="shardline.function")
    cfg = FunctionConfig(name="behaviours-fn", handler="behaviours.handler", code_dir=handlers_dir, memory_mb=128)
    async with pool_of(cfg) as pool:
        result = await pool.invoke(orjson.dumps({"action": action, "mib": 256}))
    assert result.error is not None and result.error["errorType"] == error_type
    # In the function's log, as Lambda's runtime writes it ...
    for line in log_lines:
        assert line in result.logs
    function_log = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for line in log_lines:
        assert any(line in m and result.request_id in m for m in function_log), function_log
    # ... in the runtime's log at WARNING (what `shardline up` shows by default) ...
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(error_type in m and result.request_id in m for m in warnings), warnings
    # ... and kept for monitoring.
    assert pool.errors_by_type == {error_type: 1}
    [kept] = pool.recent_errors
    assert (kept["function"], kept["requestId"], kept["errorType"]) == ("behaviours-fn", result.request_id, error_type)
    assert kept["errorMessage"] == result.error["errorMessage"]
