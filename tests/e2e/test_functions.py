"""Functions on real worker processes: warm reuse, cold starts, and every way user code can fail.

Each failure must stay inside its execution environment: the invocation reports the error Lambda reports, a fatal
one replaces the worker (the next invocation is a cold start in a new process), and this process, which plays the
runtime, carries on.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shardline.runtime.functions import FunctionConfig, FunctionPool, Throttled

from ._e2e import call, pool_of

pytestmark = pytest.mark.usefixtures("no_leaked_workers")

LOG_STREAM = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")


def config(handlers_dir: Path, **kw: Any) -> FunctionConfig:
    kw.setdefault("handler", "behaviours.handler")
    # Far above what any call here needs, so that a loaded machine never turns slow work into a time-out; the tests
    # of time-outs set their own.
    kw.setdefault("timeout_s", 60.0)
    return FunctionConfig(name=kw.pop("name", "e2e-fn"), code_dir=handlers_dir, **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def assert_replaced(pool: FunctionPool, old_pid: int) -> None:
    """The failed environment is gone and the next invocation cold-starts a new one."""
    assert not alive(old_pid)
    after = await call(pool, "echo")
    assert after.ok, after.error
    assert after.json()["pid"] != old_pid
    assert after.json()["invocations"] == 1
    assert after.init_ms is not None


# ----------------------------------------------------------------- warm and cold


async def test_warm_worker_is_reused_and_keeps_module_state(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        first = await call(pool, "echo")
        second = await call(pool, "echo")
        third = await call(pool, "echo")
    assert first.ok and second.ok and third.ok
    a, b, c = first.json(), second.json(), third.json()
    assert a["pid"] == b["pid"] == c["pid"] != os.getpid()
    assert [a["invocations"], b["invocations"], c["invocations"]] == [1, 2, 3]
    assert a["loaded_at_ns"] == b["loaded_at_ns"] == c["loaded_at_ns"]  # imported once
    # The cold start is measured apart from the invocation, and only the first invocation had one.
    assert first.init_ms is not None and first.init_ms > 0
    assert second.init_ms is None and third.init_ms is None
    assert pool.cold_starts == 1
    assert pool.invocations == 3


async def test_concurrent_invocations_each_get_an_environment(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        both = await asyncio.gather(call(pool, "sleep", seconds=0.05), call(pool, "sleep", seconds=0.05))
        warm = await call(pool, "echo")
    pids = {r.json()["pid"] for r in both}
    assert len(pids) == 2
    assert all(r.init_ms is not None for r in both)
    assert pool.cold_starts == 2
    assert warm.init_ms is None
    assert warm.json()["pid"] in pids


# ----------------------------------------------------------------- failures that end the environment


@pytest.mark.slow
async def test_timeout_kills_the_worker_and_reports_sandbox_timedout(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir, timeout_s=1.0)) as pool:
        pid = (await call(pool, "echo")).json()["pid"]
        result = await call(pool, "sleep", seconds=60)
        assert not result.ok
        assert result.function_error == "Unhandled"
        assert result.error is not None
        assert result.error["errorType"] == "Sandbox.Timedout"
        assert "Task timed out after 1.00 seconds" in result.error["errorMessage"]
        assert result.request_id in result.error["errorMessage"]
        assert result.json() == result.error  # the payload is the error document
        assert "Task timed out after 1.00 seconds" in result.logs
        await assert_replaced(pool, pid)
        assert pool.errors == 1


async def test_os_exit_is_runtime_exit_error(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        pid = (await call(pool, "echo")).json()["pid"]
        result = await call(pool, "exit")
        assert result.error is not None
        assert result.error["errorType"] == "Runtime.ExitError"
        assert result.request_id in result.error["errorMessage"]
        assert result.function_error == "Unhandled"
        await assert_replaced(pool, pid)


@pytest.mark.slow
async def test_exit_status_is_the_one_the_handler_exited_with(handlers_dir: Path) -> None:
    # Repeated: the status is lost whenever the runtime reaps the dead worker before its child watcher does.
    async with pool_of(config(handlers_dir)) as pool:
        messages = []
        for _ in range(30):
            await call(pool, "echo")
            result = await call(pool, "exit")
            assert result.error is not None
            messages.append(result.error["errorMessage"].split(" Error: ", 1)[1])
    assert messages == ["Runtime exited with error: exit status 3"] * 30


async def test_system_exit_is_runtime_exit_error(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        pid = (await call(pool, "echo")).json()["pid"]
        result = await call(pool, "system_exit")
        assert result.error is not None
        assert result.error["errorType"] == "Runtime.ExitError"
        assert result.function_error == "Unhandled"
        await assert_replaced(pool, pid)


async def test_memory_beyond_memory_size_is_runtime_out_of_memory(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir, memory_mb=128)) as pool:
        within = await call(pool, "hoard", mib=64)
        assert within.ok, within.error
        pid = within.json()["pid"]
        result = await call(pool, "hoard", mib=256)
        assert result.error is not None
        assert result.error["errorType"] == "Runtime.OutOfMemory"
        assert result.function_error == "Unhandled"
        await assert_replaced(pool, pid)


async def test_more_memory_size_allows_more(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir, memory_mb=512)) as pool:
        result = await call(pool, "hoard", mib=256)
    assert result.ok, result.error
    assert result.json()["hoarded_mib"] == 256


# ----------------------------------------------------------------- failures at init


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        (
            "broken_import.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'broken_import': No module named 'shardline_e2e_no_such_dependency'",
        ),
        ("no_such_module.handler", "Runtime.ImportModuleError", "Unable to import module 'no_such_module'"),
        ("behaviours.no_such_function", "Runtime.HandlerNotFound", "Handler 'no_such_function' missing on module"),
    ],
)
async def test_init_errors(handlers_dir: Path, handler: str, error_type: str, message: str) -> None:
    async with pool_of(config(handlers_dir, handler=handler)) as pool:
        results = [await pool.invoke(b"{}") for _ in range(2)]
    for result in results:
        assert result.error is not None
        assert result.error["errorType"] == error_type
        assert message in result.error["errorMessage"]
        assert result.function_error == "Unhandled"
        assert result.init_ms is not None  # a failed init is still a cold start, and is tried again next time
    assert pool.cold_starts == 2
    assert pool.errors == 2


# ----------------------------------------------------------------- failures that keep the environment


async def test_unserializable_return_is_marshal_error(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        pid = (await call(pool, "echo")).json()["pid"]
        result = await call(pool, "unserializable")
        after = await call(pool, "echo")
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.MarshalError"
    assert result.error["errorMessage"].startswith("Unable to marshal response")
    assert result.function_error == "Unhandled"
    assert after.json()["pid"] == pid and after.init_ms is None


async def test_handler_exception_is_reported_with_its_type_and_trace(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        pid = (await call(pool, "echo")).json()["pid"]
        result = await call(pool, "raise", value=42)
        after = await call(pool, "echo")
    assert result.error is not None
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "bad input 42"
    assert result.error["requestId"] == result.request_id
    assert any("behaviours.py" in frame for frame in result.error["stackTrace"])
    assert "ValueError: bad input 42" in result.logs
    assert after.json()["pid"] == pid and after.json()["invocations"] == 3


@pytest.mark.parametrize("action", ["raise", "exit", "system_exit", "hoard", "unserializable"])
async def test_every_error_names_its_request(handlers_dir: Path, action: str) -> None:
    """Lambda's error documents carry the request id (as requestId, or in the "RequestId: ..." message)."""
    async with pool_of(config(handlers_dir, memory_mb=128)) as pool:
        result = await call(pool, action, mib=256)
    assert result.error is not None
    named = result.error.get("requestId") == result.request_id or result.request_id in result.error["errorMessage"]
    assert named, result.error


# ----------------------------------------------------------------- the context object and the environment


async def test_context_object(handlers_dir: Path) -> None:
    cfg = config(handlers_dir, name="ctx-fn", memory_mb=256, region="eu-west-1", account_id="1" * 12)
    async with pool_of(cfg) as pool:
        results = [await call(pool, "context") for _ in range(3)]
    contexts = [r.json() for r in results]
    for result, ctx in zip(results, contexts, strict=True):
        assert ctx["function_name"] == "ctx-fn"
        assert ctx["function_version"] == "$LATEST"
        assert ctx["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:111111111111:function:ctx-fn"
        assert ctx["memory_limit_in_mb"] == "256"  # a str, as the real runtime has it
        assert ctx["aws_request_id"] == result.request_id
        uuid.UUID(ctx["aws_request_id"])
        assert ctx["log_group_name"] == "/aws/lambda/ctx-fn"
        assert LOG_STREAM.match(ctx["log_stream_name"]), ctx["log_stream_name"]
        assert ctx["identity"] == [None, None]
        assert ctx["client_context"] is None
        first, second = ctx["remaining"]
        assert 0 < second < first <= 60_000
    assert len({c["aws_request_id"] for c in contexts}) == 3
    assert len({c["log_stream_name"] for c in contexts}) == 1  # one environment, one log stream


ENV_NAMES = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "TZ",
    "E2E_SETTING",
    "E2E_OTHER",
]


async def test_environment_variables(handlers_dir: Path) -> None:
    cfg = config(
        handlers_dir,
        name="env-fn",
        memory_mb=512,
        region="eu-central-1",
        environment={"E2E_SETTING": "on", "E2E_OTHER": "two words"},
    )
    async with pool_of(cfg) as pool:
        env = (await call(pool, "env", names=ENV_NAMES)).json()
        ctx = (await call(pool, "context")).json()
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "env-fn"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/env-fn"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == ctx["log_stream_name"]
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-central-1"
    assert re.fullmatch(r"AWS_Lambda_python3\.\d+", env["AWS_EXECUTION_ENV"])
    assert env["_HANDLER"] == "behaviours.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(handlers_dir)
    assert env["TZ"] == ":UTC"
    assert env["E2E_SETTING"] == "on"
    assert env["E2E_OTHER"] == "two words"


async def test_user_environment_does_not_leak_between_functions(handlers_dir: Path) -> None:
    base = config(handlers_dir, environment={"E2E_SETTING": "mine"})
    async with pool_of(base) as one, pool_of(replace(base, name="other", environment={})) as other:
        mine = (await call(one, "env", names=["E2E_SETTING", "AWS_LAMBDA_FUNCTION_NAME"])).json()
        theirs = (await call(other, "env", names=["E2E_SETTING", "AWS_LAMBDA_FUNCTION_NAME"])).json()
    assert mine == {"E2E_SETTING": "mine", "AWS_LAMBDA_FUNCTION_NAME": "e2e-fn"}
    assert theirs == {"E2E_SETTING": None, "AWS_LAMBDA_FUNCTION_NAME": "other"}


# ----------------------------------------------------------------- logs


def talk_lines(tag: str) -> list[str]:
    return [f"stdout {tag}", f"stderr {tag}", f"logging {tag}", f"context.log {tag}"]


async def test_logs_are_captured_per_invocation(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir)) as pool:
        a = await call(pool, "talk", tag="alpha")
        b = await call(pool, "talk", tag="bravo")
        # Two at once run in two environments; each result still holds only its own lines.
        c, d = await asyncio.gather(call(pool, "talk", tag="charlie"), call(pool, "talk", tag="delta"))
    assert a.json()["pid"] == b.json()["pid"]
    assert c.json()["pid"] != d.json()["pid"]
    results = {"alpha": a, "bravo": b, "charlie": c, "delta": d}
    for tag, result in results.items():
        for line in talk_lines(tag):
            assert line in result.logs, (tag, result.logs)
        for other in results:
            if other != tag:
                assert other not in result.logs, (tag, result.logs)
        logging_line = next(x for x in result.logs.splitlines() if f"logging {tag}" in x)
        assert result.request_id in logging_line
        assert logging_line.startswith("[WARNING]")


# ----------------------------------------------------------------- concurrency


async def test_reserved_concurrency_throttles_beyond_the_limit(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir, reserved_concurrency=1)) as pool:
        busy = asyncio.create_task(call(pool, "sleep", seconds=0.05))
        await asyncio.sleep(0)  # let it take the only slot
        assert pool.in_flight == 1
        with pytest.raises(Throttled) as throttled:
            await call(pool, "echo")
        assert throttled.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
        first = await busy
        assert first.ok
        after = await call(pool, "echo")  # the slot is free again
        assert after.ok and after.json()["pid"] == first.json()["pid"]
    assert pool.throttles == 1
    assert pool.invocations == 2  # a throttled invocation never reached the function


async def test_reserved_concurrency_zero_throttles_everything(handlers_dir: Path) -> None:
    async with pool_of(config(handlers_dir, reserved_concurrency=0)) as pool:
        for _ in range(3):
            with pytest.raises(Throttled):
                await call(pool, "echo")
    assert pool.throttles == 3
    assert pool.cold_starts == 0


# ----------------------------------------------------------------- the runtime survives


@pytest.mark.slow
async def test_the_runtime_survives_every_failure(handlers_dir: Path) -> None:
    # The time-out has a pool of its own: a 1 s limit in this pool would race the other failures' own work (a cold
    # start and a 128 MiB allocation on a loaded machine), and one of them could time out instead of failing its way.
    async with (
        pool_of(config(handlers_dir, memory_mb=128)) as pool,
        pool_of(config(handlers_dir, name="e2e-slow", timeout_s=1.0)) as slow,
    ):
        failures = [
            await call(pool, "exit"),
            await call(pool, "system_exit"),
            await call(pool, "hoard", mib=256),
            await call(slow, "sleep", seconds=60),
            await call(pool, "unserializable"),
            await call(pool, "raise"),
        ]
        ok = await call(pool, "echo")
        slow_ok = await call(slow, "echo")
    assert [f.error["errorType"] for f in failures if f.error] == [
        "Runtime.ExitError",
        "Runtime.ExitError",
        "Runtime.OutOfMemory",
        "Sandbox.Timedout",
        "Runtime.MarshalError",
        "ValueError",
    ]
    assert ok.ok and slow_ok.ok
    assert ok.json()["invocations"] == 3  # same environment as the marshal error and the exception
    assert (pool.errors, pool.invocations) == (5, 6)
    assert (slow.errors, slow.invocations) == (1, 2)
