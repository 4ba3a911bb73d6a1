"""Functions: Python handlers run in warm worker processes (execution environments), as Lambda runs them.

A worker is reused between invocations. A crash, ``os._exit``, an endless loop or a memory blow-up in user code
ends only that worker; the invocation is reported with the error Lambda gives ("Task timed out after 3.00
seconds", Runtime.ExitError, Runtime.OutOfMemory) and the next invocation starts a fresh worker (a cold start).
Every failed invocation is logged (a WARNING on ``shardline.function``) and kept, with its Lambda error type, in
the pool's ``recent_errors`` and ``errors_by_type`` for monitoring.

Memory: per invocation the pool reads at most one response (``MAX_RESPONSE_BYTES``, 6 MiB + 100) and one header
(``MAX_HEADER_BYTES``, whose log output is cut at ``MAX_LOG_CHARS``) from the worker's pipe, about 10 MiB in the
worst case; a worker that announces a larger frame is killed unread.

Other parts observe invocations through ``add_result_listener`` (monitoring reads the function's log output from it)
instead of wrapping ``invoke``.

Every worker the pool starts is tracked until it has exited: a cancelled invocation kills its worker, and
``close()`` ends idle and busy workers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..clock import Clock, SystemClock
from ..engine.stats import Histogram
from ._worker import MAX_HEADER_BYTES, MAX_RESPONSE_BYTES, RESPONSE_TOO_LARGE, LambdaContext

__all__ = ["FunctionConfig", "FunctionPool", "InProcessFunction", "InvocationResult", "Throttled"]

log = logging.getLogger("shardline.runtime")
fn_log = logging.getLogger("shardline.function")

_LEN = struct.Struct(">I")
# Run by path, not as a module: importing the shardline package would add to every cold start.
_WORKER_PATH = str(Path(__file__).with_name("_worker.py"))


@dataclass(frozen=True)
class FunctionConfig:
    """A function: ``handler`` is ``path/to/module.function`` relative to ``code_dir`` (Lambda's ``handler``)."""

    name: str
    handler: str
    code_dir: Path
    timeout_s: float = 3.0
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    working_dir: Path | None = None
    region: str = "us-east-1"
    account_id: str = "000000000000"
    enforce_memory: bool = True

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.name}"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.name}-role"


@dataclass(frozen=True)
class InvocationResult:
    """What one invocation produced. ``function_error`` is None on success, else "Unhandled" (as Lambda's
    X-Amz-Function-Error header)."""

    request_id: str
    payload: bytes
    function_error: str | None
    error: dict[str, Any] | None
    duration_ms: float
    init_ms: float | None  # set on a cold start
    logs: str
    status_code: int = 200
    executed_version: str = "$LATEST"

    @property
    def ok(self) -> bool:
        return self.function_error is None

    def json(self) -> Any:
        return orjson.loads(self.payload) if self.payload else None


class Throttled(Exception):
    """The invocation did not reach the function (Lambda's TooManyRequestsException)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _WorkerDied(Exception):
    pass


class _FrameTooLarge(Exception):
    """The worker announced a frame past the bounds a worker keeps to; it is not read."""


class Worker:
    """One execution environment process."""

    def __init__(self, config: FunctionConfig, pid: int, proc: asyncio.subprocess.Process, r: int, w: int) -> None:
        self.config = config
        self.proc = proc
        self.pid = pid
        self._r = r
        self._w = w
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.WriteTransport | None = None
        self.invocations = 0
        self.init_ms = 0.0
        self.fresh = True

    @classmethod
    async def start(cls, config: FunctionConfig) -> tuple[Worker, dict[str, Any]]:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = _environment(config)
        cwd = str(config.working_dir or config.code_dir)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                _WORKER_PATH,
                str(to_child_r),
                str(from_child_w),
                str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=None,
                stderr=None,
                pass_fds=(to_child_r, from_child_w),
                env=env,
                cwd=cwd,
            )
        except BaseException:
            os.close(from_child_r)
            os.close(to_child_w)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        worker = cls(config, proc.pid, proc, from_child_r, to_child_w)
        try:
            init = await worker._connect(from_child_r, to_child_w)
        except BaseException:  # cancelled while starting: the process must not outlive this call
            await asyncio.shield(worker.kill())
            raise
        worker.init_ms = float(init.get("init_ms") or 0.0)
        if init.get("logs"):
            _emit_logs(config.name, "INIT", init["logs"])
        return worker, init

    async def _connect(self, from_child_r: int, to_child_w: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        # The default limit: the reader pauses the pipe once twice this much is buffered beyond what was asked for.
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_child_r, "rb", 0))
        self._reader = reader
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(to_child_w, "wb", 0))
        self._transport = transport
        try:
            init, _ = await asyncio.wait_for(self._read(), timeout=max(10.0, self.config.timeout_s))
        except (TimeoutError, _WorkerDied, _FrameTooLarge):
            await self.kill()
            init = {"error": {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited during init"}}
        return init

    async def _read(self) -> tuple[dict[str, Any], bytes]:
        assert self._reader is not None
        try:
            (hlen,) = _LEN.unpack(await self._reader.readexactly(4))
            if hlen > MAX_HEADER_BYTES:
                raise _FrameTooLarge(f"header of {hlen} bytes")
            header = orjson.loads(await self._reader.readexactly(hlen))
            (blen,) = _LEN.unpack(await self._reader.readexactly(4))
            if blen > MAX_RESPONSE_BYTES:
                raise _FrameTooLarge(f"response of {blen} bytes")
            body = await self._reader.readexactly(blen)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _WorkerDied from exc
        return header, body

    async def invoke(
        self, request_id: str, event: bytes, deadline_ms: int, lease_epoch: int | None = None
    ) -> tuple[dict[str, Any], bytes]:
        assert self._transport is not None
        timeout_ms = int(self.config.timeout_s * 1000)
        fields: dict[str, Any] = {"id": request_id, "deadline_ms": deadline_ms, "timeout_ms": timeout_ms}
        if lease_epoch is not None:
            fields["lease_epoch"] = lease_epoch
        header = orjson.dumps(fields)
        # writelines: no copy of a multi-megabyte event just to prefix it
        self._transport.writelines((_LEN.pack(len(header)), header, _LEN.pack(len(event)), event))
        self.invocations += 1
        return await self._read()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self.close_pipes()

    async def reap(self) -> None:
        """Collect a worker that is exiting on its own, so its real exit status is kept; kill it if it lingers.
        (Killing first would let the status be collected by the wrong waiter and read as 255.)"""
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), 0.5)
        except TimeoutError:
            await self.kill()
        self.close_pipes()

    def close_pipes(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def stop(self) -> None:
        """Ask the worker to exit (EOF on its input), then make sure it did."""
        self.close_pipes()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=2.0)
        except TimeoutError:
            await self.kill()


def _environment(config: FunctionConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_LAMBDA_", "SHARDLINE_"))}
    today = time.strftime("%Y/%m/%d", time.gmtime())
    code = str(config.code_dir)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": config.region,
            "AWS_DEFAULT_REGION": config.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
            "_HANDLER": config.handler,
            "LAMBDA_TASK_ROOT": code,
            "LAMBDA_RUNTIME_DIR": str(Path(__file__).parent),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "TZ": ":UTC",
            "SHARDLINE_FUNCTION_ARN": config.arn,
            "SHARDLINE_ENFORCE_MEMORY": "1" if config.enforce_memory else "0",
            "PYTHONPATH": os.pathsep.join(p for p in (code, env.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(config.environment)
    return env


def _emit_logs(function: str, request_id: str, logs: str) -> None:
    for line in logs.rstrip("\n").splitlines():
        fn_log.info("%s %s %s", function, request_id, line)


class FunctionPool:
    """Warm workers of one function, at most ``concurrency`` at once. Beyond that, invocations are throttled."""

    def __init__(self, config: FunctionConfig, *, max_concurrency: int = 32, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        limit = config.reserved_concurrency if config.reserved_concurrency is not None else max_concurrency
        self.concurrency = limit
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()  # every started worker not yet known to have exited, idle or busy
        self._busy = 0
        self._closed = False
        self.cold_starts = 0
        self.invocations = 0
        self.errors = 0
        self.timeouts = 0
        self.throttles = 0
        self.errors_by_type: dict[str, int] = {}
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=50)
        self.duration = Histogram()  # ms, function-reached invocations
        self.init_duration = Histogram()  # ms, cold starts
        self._listeners: list[Callable[[InvocationResult], None]] = []

    def add_result_listener(self, listener: Callable[[InvocationResult], None]) -> Callable[[], None]:
        """Call ``listener`` with the result of every invocation that reached the function (throttled ones have
        none), after the pool has counted it and before ``invoke`` returns it. A listener that raises is logged and
        the invocation's result stands. Returns a function that removes the listener."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    @property
    def in_flight(self) -> int:
        return self._busy

    async def invoke(self, event: bytes, *, lease_epoch: int | None = None) -> InvocationResult:
        """Run the function once on ``event`` (JSON bytes). Raises Throttled when no execution environment is free.
        ``lease_epoch`` reaches the handler as ``context.lease_epoch``."""
        if self._closed:
            raise Throttled("FunctionClosed")
        if self._busy >= self.concurrency:
            self.throttles += 1
            reason = (
                "ReservedFunctionConcurrentInvocationLimitExceeded"
                if self.config.reserved_concurrency is not None
                else "ConcurrentInvocationLimitExceeded"
            )
            raise Throttled(reason)
        self._busy += 1
        try:
            result = await self._invoke(event, lease_epoch)
        finally:
            self._busy -= 1
        self.duration.observe(result.duration_ms)
        if result.init_ms is not None:
            self.init_duration.observe(result.init_ms)
        if result.error is not None:
            self._record_error(result)
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:
                log.exception("function %s: a result listener failed", self.config.name)
        return result

    async def _invoke(self, event: bytes, lease_epoch: int | None = None) -> InvocationResult:
        request_id = str(uuid.uuid4())
        init_ms: float | None = None
        worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker, init = await Worker.start(self.config)
            self._workers.add(worker)
            self.cold_starts += 1
            init_ms = worker.init_ms
            if init.get("error") or self._closed:
                await self._end(worker.kill())
                if self._closed:
                    raise Throttled("FunctionClosed")
                err = dict(init["error"])
                err["requestId"] = request_id
                self.invocations += 1
                self.errors += 1
                return self._failed(request_id, err, 0.0, init_ms, "")
        try:
            return await self._run(worker, request_id, event, init_ms, lease_epoch)
        except BaseException:  # cancelled mid-invocation: the worker's state is unknown, so it goes
            await asyncio.shield(self._end(worker.kill()))
            raise

    async def _run(
        self, worker: Worker, request_id: str, event: bytes, init_ms: float | None, lease_epoch: int | None = None
    ) -> InvocationResult:
        timeout = self.config.timeout_s
        deadline_ms = self.clock.now_ms() + int(timeout * 1000)
        started = time.perf_counter()
        self.invocations += 1
        try:
            header, body = await asyncio.wait_for(
                worker.invoke(request_id, event, deadline_ms, lease_epoch), timeout=timeout
            )
        except TimeoutError:
            await self._end(worker.kill())
            self.errors += 1
            self.timeouts += 1
            msg = f"Task timed out after {timeout:.2f} seconds"
            fn_log.info("%s %s %s", self.config.name, request_id, msg)
            err = {"errorMessage": f"RequestId: {request_id} Error: {msg}", "errorType": "Sandbox.Timedout"}
            return self._failed(request_id, err, timeout * 1000, init_ms, msg)
        except _FrameTooLarge:
            await self._end(worker.kill())
            self.errors += 1
            err = {**RESPONSE_TOO_LARGE, "requestId": request_id}
            return self._failed(request_id, err, (time.perf_counter() - started) * 1000, init_ms, "")
        except _WorkerDied:
            await self._end(worker.reap())
            self.errors += 1
            code = worker.proc.returncode
            why = f"signal: {_signal_name(-code)}" if code is not None and code < 0 else f"exit status {code}"
            err = {
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {why}",
                "errorType": "Runtime.ExitError",
            }
            logs = _runtime_exit_log(err)
            _emit_logs(self.config.name, request_id, logs)
            return self._failed(request_id, err, (time.perf_counter() - started) * 1000, init_ms, logs)
        logs = header.get("logs", "")
        error = header.get("error")
        if error is not None and error.get("errorType") in ("Runtime.OutOfMemory", "Runtime.ExitError"):
            logs += _runtime_exit_log(error)  # the worker is gone: the runtime says so, as Lambda's does
        elif error is not None and error.get("errorType") in ("Runtime.MarshalError", "Function.ResponseSizeTooLarge"):
            logs += f"[ERROR] {error['errorType']}: {error['errorMessage']}\n"
        if logs:
            _emit_logs(self.config.name, request_id, logs)
        if error is not None:
            self.errors += 1
            if error.get("errorType") in ("Runtime.OutOfMemory", "Runtime.ExitError"):
                await self._end(worker.reap())
            else:
                await self._release(worker)
            return self._failed(request_id, error, float(header.get("duration_ms", 0.0)), init_ms, logs)
        await self._release(worker)
        return InvocationResult(request_id, body, None, None, float(header["duration_ms"]), init_ms, logs)

    async def _release(self, worker: Worker) -> None:
        """A worker that finished its invocation: warm for the next one, or stopped if the pool closed meanwhile."""
        if self._closed:
            await self._end(worker.stop())
        else:
            self._idle.append(worker)

    async def _end(self, ending: Awaitable[None]) -> None:
        """Await a worker's kill/reap/stop; it is no longer tracked once it has exited."""
        await ending
        self._workers = {w for w in self._workers if w.proc.returncode is None}

    def _record_error(self, result: InvocationResult) -> None:
        assert result.error is not None
        error_type = str(result.error.get("errorType", "Unhandled"))
        message = str(result.error.get("errorMessage", ""))
        self.errors_by_type[error_type] = self.errors_by_type.get(error_type, 0) + 1
        self.recent_errors.append(
            {
                "timestamp": _iso(self.clock.now_ms()),
                "function": self.config.name,
                "requestId": result.request_id,
                "errorType": error_type,
                "errorMessage": message,
            }
        )
        # One line in the runtime's log at the level a stopped pipeline is noticed at; the function's own output
        # (its traceback, or the runtime's lines above) went to the function log at INFO.
        fn_log.warning("%s %s invocation failed: %s: %s", self.config.name, result.request_id, error_type, message)

    def _failed(
        self, request_id: str, error: dict[str, Any], duration_ms: float, init_ms: float | None, logs: str
    ) -> InvocationResult:
        payload = orjson.dumps(error)
        return InvocationResult(request_id, payload, "Unhandled", error, duration_ms, init_ms, logs)

    async def close(self) -> None:
        """Stop idle workers and kill busy ones (their invocations fail): no worker outlives the pool."""
        self._closed = True
        idle, self._idle = self._idle, []
        busy = [w for w in self._workers if w not in idle]
        await asyncio.gather(*(w.stop() for w in idle), *(w.kill() for w in busy), return_exceptions=True)
        self._workers = {w for w in self._workers if w.proc.returncode is None}


def _runtime_exit_log(error: dict[str, Any]) -> str:
    """Lambda's runtime lines for an environment that exited: "RequestId: ... Error: Runtime exited with error: exit
    status 3" then the error type."""
    return f"{error['errorMessage']}\n{error['errorType']}\n"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


_SIGNAL_WORDS = {"SIGKILL": "killed", "SIGSEGV": "segmentation fault", "SIGABRT": "aborted", "SIGTERM": "terminated"}


def _signal_name(num: int) -> str:
    """How Lambda's runtime names a fatal signal ("signal: killed")."""
    try:
        name = signal.Signals(num).name
    except ValueError:
        return str(num)
    return _SIGNAL_WORDS.get(name, name.removeprefix("SIG").lower())


class InProcessFunction:
    """Runs a handler in this process, for fast unit tests of handlers and mappings. No isolation: a crash or an
    endless loop in the handler is this process's. Results and errors have the same shape as a worker's."""

    def __init__(
        self,
        handler: Any,
        *,
        name: str = "inprocess",
        timeout_s: float = 3.0,
        memory_mb: int = 128,
        region: str = "us-east-1",
        account_id: str = "000000000000",
    ) -> None:
        self.handler = handler
        self.config = FunctionConfig(
            name,
            "<in-process>",
            Path("."),
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            region=region,
            account_id=account_id,
        )
        self.invocations = 0
        self.errors = 0
        self._stream_suffix = uuid.uuid4().hex  # one log stream per environment, as in a worker

    async def invoke(self, event: bytes, *, lease_epoch: int | None = None) -> InvocationResult:
        request_id = str(uuid.uuid4())
        cfg = self.config
        ctx = LambdaContext(
            request_id,
            time.time_ns() // 1_000_000 + int(cfg.timeout_s * 1000),
            function_name=cfg.name,
            function_arn=cfg.arn,
            memory_mb=str(cfg.memory_mb),
            log_group_name=f"/aws/lambda/{cfg.name}",
            log_stream_name=f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{self._stream_suffix}",
        )
        ctx.lease_epoch = lease_epoch
        started = time.perf_counter()
        self.invocations += 1
        try:
            value = self.handler(orjson.loads(event), ctx)
            if asyncio.iscoroutine(value):
                value = await value
            try:
                body = orjson.dumps(value)
            except TypeError:  # what orjson refuses (ints past 64 bits, ...) the worker's json module accepts
                body = json.dumps(value).encode()
        except Exception as exc:
            self.errors += 1
            err = {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": request_id, "stackTrace": []}
            return InvocationResult(
                request_id, orjson.dumps(err), "Unhandled", err, (time.perf_counter() - started) * 1000, None, ""
            )
        return InvocationResult(request_id, body, None, None, (time.perf_counter() - started) * 1000, None, "")
